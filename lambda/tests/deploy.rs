//! The deployment artefacts agree with the policy engine (`s3-connector policy`) and with the
//! function's configuration.
//!
//! For each preset key setup (same key, different keys, SSE-S3 destination), every statement
//! the engine generates for the Lambda role, the connector role, the report key and the
//! inventory bucket appears in the CloudFormation template and the Terraform module with the
//! same Sid, the same actions and the same condition keys. `cfn-lint` (scripts/test.sh) checks
//! the template against the CloudFormation schemas; `terraform validate` checks the module.

use std::collections::{BTreeMap, BTreeSet};

use s3_connector_domain::policy::{PolicyDocuments, generate, presets};
use serde_json::Value;

/// Statements the template adds to the connector role beyond the engine's output: reading the
/// forwarded copies (the engine's connector policy covers the inventory bucket only).
const CONNECTOR_EXTRAS: &[&str] =
    &["ReadForwardedReports", "ListForwardedReports", "DecryptForwardedReports"];

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn template() -> Value {
    serde_json::from_str(&repo_file("deploy/cloudformation/inventory-forwarder.json"))
        .expect("template is JSON")
}

fn presets() -> Vec<(&'static str, PolicyDocuments)> {
    [
        ("same_key", presets::same_key()),
        ("different_keys", presets::different_keys()),
        ("kms_source_sse_s3_destination", presets::kms_source_sse_s3_destination()),
    ]
    .into_iter()
    .map(|(name, setup)| (name, generate(&setup).unwrap_or_else(|e| panic!("{name}: {e}"))))
    .collect()
}

/// Statements of a policy document; a conditional statement (`Fn::If [cond, stmt, NoValue]`)
/// counts as present.
fn statements(document: &Value) -> Vec<&Value> {
    let list = document["Statement"].as_array().unwrap_or_else(|| panic!("no Statement list in {document}"));
    list.iter()
        .map(|s| match s.get("Fn::If") {
            Some(branches) => &branches[1],
            None => s,
        })
        .collect()
}

fn as_set(value: &Value) -> BTreeSet<String> {
    match value {
        Value::String(s) => BTreeSet::from([s.clone()]),
        Value::Array(items) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        other => panic!("expected a string or a list, found {other}"),
    }
}

/// `{operator: {condition keys}}`, e.g. `{"StringEquals": {"kms:ViaService"}}`.
fn condition_shape(statement: &Value) -> BTreeMap<String, BTreeSet<String>> {
    statement
        .get("Condition")
        .and_then(Value::as_object)
        .map(|c| {
            c.iter()
                .map(|(op, keys)| {
                    let keys = keys.as_object().map(|k| k.keys().cloned().collect()).unwrap_or_default();
                    (op.clone(), keys)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn by_sid(document: &Value) -> BTreeMap<String, &Value> {
    statements(document)
        .into_iter()
        .map(|s| (s["Sid"].as_str().unwrap_or_else(|| panic!("statement without Sid: {s}")).to_string(), s))
        .collect()
}

fn role_policy<'a>(template: &'a Value, role: &str) -> &'a Value {
    &template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
}

/// Every engine statement is in the template with the same actions and condition shape.
fn assert_covers(preset: &str, what: &str, engine: &Value, template_doc: &Value) -> BTreeSet<String> {
    let ours = by_sid(template_doc);
    let mut sids = BTreeSet::new();
    for (sid, statement) in by_sid(engine) {
        let Some(mine) = ours.get(&sid) else { panic!("{preset}: {what} lacks statement {sid}") };
        assert_eq!(as_set(&mine["Action"]), as_set(&statement["Action"]), "{preset}: {what} {sid} actions");
        assert_eq!(condition_shape(mine), condition_shape(statement), "{preset}: {what} {sid} conditions");
        sids.insert(sid);
    }
    sids
}

#[test]
fn cloudformation_roles_match_the_policy_engine() {
    let template = template();
    let mut lambda_sids = BTreeSet::new();
    let mut connector_sids = BTreeSet::new();
    for (preset, docs) in presets() {
        let lambda = docs.lambda_role_policy.as_ref().expect("presets describe the Lambda");
        lambda_sids.extend(assert_covers(
            preset,
            "ForwarderRole",
            lambda,
            role_policy(&template, "ForwarderRole"),
        ));
        connector_sids.extend(assert_covers(
            preset,
            "ConnectorRole",
            &docs.connector_identity_policy,
            role_policy(&template, "ConnectorRole"),
        ));
    }
    // Nothing beyond what the engine grants (bar the documented extras).
    let template_lambda: BTreeSet<String> =
        by_sid(role_policy(&template, "ForwarderRole")).into_keys().collect();
    assert_eq!(template_lambda, lambda_sids, "the Lambda role grants exactly the engine's statements");
    let template_connector: BTreeSet<String> =
        by_sid(role_policy(&template, "ConnectorRole")).into_keys().collect();
    let extras: BTreeSet<String> = template_connector.difference(&connector_sids).cloned().collect();
    let allowed: BTreeSet<String> = CONNECTOR_EXTRAS.iter().map(|s| s.to_string()).collect();
    assert_eq!(extras, allowed, "connector role statements beyond the engine");
}

#[test]
fn cloudformation_trust_key_and_bucket_policies_match_the_policy_engine() {
    let template = template();
    let resources = &template["Resources"];
    for (preset, docs) in presets() {
        // Trust: the ExternalId condition against the confused deputy.
        let trust = statements(&resources["ConnectorRole"]["Properties"]["AssumeRolePolicyDocument"]);
        let engine_trust = statements(&docs.connector_trust_policy);
        assert_eq!(trust.len(), 1);
        assert_eq!(trust[0]["Action"], engine_trust[0]["Action"], "{preset}");
        assert_eq!(condition_shape(trust[0]), condition_shape(engine_trust[0]), "{preset}");
        assert_eq!(
            condition_shape(trust[0]),
            BTreeMap::from([("StringEquals".to_string(), BTreeSet::from(["sts:ExternalId".to_string()]))])
        );

        // The report key's S3 Inventory statement (SourceAccount + SourceArn conditions).
        let engine_key = docs.inventory_key_policy_statement.as_ref().expect("presets use SSE-KMS reports");
        let key_policy = by_sid(&resources["ReportKey"]["Properties"]["KeyPolicy"]);
        let ours = key_policy
            .get("AllowS3InventoryToEncryptReports")
            .expect("inventory statement on the report key");
        for field in ["Effect", "Principal", "Action", "Resource"] {
            assert_eq!(ours[field], engine_key[field], "{preset}: key statement {field}");
        }
        assert_eq!(condition_shape(ours), condition_shape(engine_key), "{preset}: key statement conditions");
        let output = &template["Outputs"]["ReportKeyPolicyStatementToAdd"]["Value"]["Fn::ToJsonString"];
        assert_eq!(output, *ours, "the output for an existing key is the same statement");

        // The inventory bucket policy.
        let engine_bucket = docs.inventory_destination_bucket_policy.as_ref().expect("inventory described");
        let ours = by_sid(&resources["InventoryBucketPolicy"]["Properties"]["PolicyDocument"]);
        for (sid, statement) in by_sid(engine_bucket) {
            let mine = ours.get(&sid).unwrap_or_else(|| panic!("{preset}: bucket policy lacks {sid}"));
            for field in ["Effect", "Principal", "Action"] {
                assert_eq!(mine[field], statement[field], "{preset}: {sid} {field}");
            }
            assert_eq!(condition_shape(mine), condition_shape(statement), "{preset}: {sid} conditions");
        }
    }
}

#[test]
fn cloudformation_function_matches_the_configuration() {
    let template = template();
    let resources = &template["Resources"];
    let function = &resources["ForwarderFunction"]["Properties"];
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(function["Handler"], "bootstrap");
    let variables: BTreeSet<&str> = function["Environment"]["Variables"]
        .as_object()
        .expect("variables")
        .keys()
        .map(String::as_str)
        .collect();
    let known = BTreeSet::from([
        s3_connector_lambda::config::DEST_BUCKET,
        s3_connector_lambda::config::DEST_PREFIX,
        s3_connector_lambda::config::DEST_SSE,
        s3_connector_lambda::config::DEST_KMS_KEY_ARN,
        s3_connector_lambda::config::DEST_BUCKET_KEY_ENABLED,
        s3_connector_lambda::config::LATEST_POINTER_NAME,
        s3_connector_lambda::config::MAX_CONCURRENCY,
    ]);
    assert!(variables.is_subset(&known), "{variables:?}");
    assert!(variables.contains("DEST_BUCKET") && variables.contains("DEST_KMS_KEY_ARN"));

    let notification =
        &resources["InventoryBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"][0];
    assert_eq!(notification["Event"], "s3:ObjectCreated:*");
    let rules = notification["Filter"]["S3Key"]["Rules"]["Fn::If"][1].as_array().expect("rules");
    assert!(rules.iter().any(|r| r["Name"] == "suffix" && r["Value"] == "manifest.checksum"), "{rules:?}");
    let permission = &resources["ForwarderInvokePermission"]["Properties"];
    assert_eq!(permission["Principal"], "s3.amazonaws.com");
    assert!(permission.get("SourceAccount").is_some() && permission.get("SourceArn").is_some());
}

/// `Sid = "X"` blocks of the Terraform module with their actions (HCL string lists are JSON).
fn terraform_statements(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut found = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(sid) = line.strip_prefix("Sid").map(|r| r.trim_start().trim_start_matches('=').trim())
        else {
            continue;
        };
        let sid: String = serde_json::from_str(sid).unwrap_or_else(|e| panic!("Sid line {line:?}: {e}"));
        let action = lines
            .iter()
            .skip(i + 1)
            .take_while(|l| !l.starts_with("Sid"))
            .find_map(|l| l.strip_prefix("Action"))
            .map(|r| r.trim_start().trim_start_matches('=').trim())
            .unwrap_or_else(|| panic!("{sid}: no Action"));
        let action: Value =
            serde_json::from_str(action).unwrap_or_else(|e| panic!("{sid}: Action {action:?}: {e}"));
        found.insert(sid, as_set(&action));
    }
    found
}

#[test]
fn terraform_module_matches_the_policy_engine() {
    let main = repo_file("deploy/terraform/main.tf");
    let module = terraform_statements(&main);
    for (preset, docs) in presets() {
        let mut engine = vec![&docs.connector_identity_policy, &docs.connector_trust_policy];
        engine.extend(docs.lambda_role_policy.as_ref());
        engine.extend(docs.inventory_destination_bucket_policy.as_ref());
        let key =
            docs.inventory_key_policy_statement.as_ref().map(|s| serde_json::json!({ "Statement": [s] }));
        engine.extend(key.as_ref());
        for document in engine {
            for (sid, statement) in by_sid(document) {
                let actions = module.get(&sid).unwrap_or_else(|| panic!("{preset}: main.tf lacks {sid}"));
                assert_eq!(actions, &as_set(&statement["Action"]), "{preset}: main.tf {sid}");
                for (operator, keys) in condition_shape(statement) {
                    for key in keys {
                        assert!(
                            main.contains(&format!("\"{key}\"")),
                            "{preset}: main.tf lacks condition key {key} ({operator})"
                        );
                    }
                }
            }
        }
    }
    for extra in CONNECTOR_EXTRAS {
        assert!(module.contains_key(*extra), "main.tf lacks {extra}");
    }
    for variable in ["DEST_BUCKET", "DEST_PREFIX", "DEST_SSE", "DEST_KMS_KEY_ARN", "DEST_BUCKET_KEY_ENABLED"]
    {
        assert!(main.contains(variable), "main.tf does not set {variable}");
    }
    assert!(main.contains("runtime          = \"provided.al2023\""));
    assert!(main.contains("filter_suffix       = \"manifest.checksum\""));
}
