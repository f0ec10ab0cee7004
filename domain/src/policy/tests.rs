use proptest::prelude::*;
use serde_json::{Value, json};

use super::presets::{self, KEY_A, KEY_B, KEY_C, VENDOR_ROLE};
use super::*;

const VIA_S3: &str = "s3.us-east-1.amazonaws.com";

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn statements(doc: &Value) -> &Vec<Value> {
    doc.get("Statement").and_then(Value::as_array).expect("document has a Statement list")
}

fn sids(doc: &Value) -> Vec<&str> {
    statements(doc).iter().filter_map(|s| s.get("Sid").and_then(Value::as_str)).collect()
}

fn statement<'a>(doc: &'a Value, sid: &str) -> &'a Value {
    statements(doc)
        .iter()
        .find(|s| s.get("Sid").and_then(Value::as_str) == Some(sid))
        .unwrap_or_else(|| panic!("no statement {sid} in {doc:#}"))
}

/// Checks one statement's actions, resources (order-sensitive) and condition (None: absent).
fn check(statement: &Value, actions: &[&str], resources: &[&str], condition: Option<Value>) {
    assert_eq!(statement["Effect"], "Allow", "{statement:#}");
    assert_eq!(strings(&statement["Action"]), actions, "{statement:#}");
    assert_eq!(strings(&statement["Resource"]), resources, "{statement:#}");
    assert_eq!(statement.get("Condition").cloned(), condition, "{statement:#}");
}

fn via_s3() -> Option<Value> {
    Some(json!({ "StringEquals": { "kms:ViaService": VIA_S3 } }))
}

/// Every statement: parses back, has a unique Sid, Effect, Action without wildcards, and a
/// Resource or Principal.
fn lint_statement(statement: &Value, seen: &mut Vec<String>) {
    let sid = statement.get("Sid").and_then(Value::as_str).expect("Sid");
    assert!(!sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric()), "Sid {sid:?}");
    assert!(!seen.contains(&sid.to_string()), "duplicate Sid {sid}");
    seen.push(sid.to_string());
    assert_eq!(statement.get("Effect").and_then(Value::as_str), Some("Allow"), "{statement:#}");
    let actions = strings(statement.get("Action").expect("Action"));
    assert!(!actions.is_empty(), "{statement:#}");
    for action in &actions {
        assert!(!action.contains('*') && !action.contains('?'), "wildcard action {action}");
        assert!(action.split_once(':').is_some_and(|(s, a)| !s.is_empty() && !a.is_empty()), "{action}");
    }
    assert!(statement.get("Resource").is_some() || statement.get("Principal").is_some(), "{statement:#}");
    if let Some(resource) = statement.get("Resource") {
        assert!(!strings(resource).is_empty(), "{statement:#}");
    }
}

fn lint_document(doc: &Value) {
    let text = serde_json::to_string(doc).expect("serializes");
    let parsed: Value = serde_json::from_str(&text).expect("parses back");
    assert_eq!(&parsed, doc);
    assert_eq!(parsed["Version"], "2012-10-17");
    let mut seen = Vec::new();
    for s in statements(&parsed) {
        lint_statement(s, &mut seen);
    }
}

fn lint_all(docs: &PolicyDocuments) {
    lint_document(&docs.connector_identity_policy);
    lint_document(&docs.connector_trust_policy);
    for doc in [&docs.inventory_destination_bucket_policy, &docs.lambda_role_policy, &docs.sampling_policy]
        .into_iter()
        .flatten()
    {
        lint_document(doc);
    }
    if let Some(statement) = &docs.inventory_key_policy_statement {
        let text = serde_json::to_string(statement).expect("serializes");
        let parsed: Value = serde_json::from_str(&text).expect("parses back");
        lint_statement(&parsed, &mut Vec::new());
    }
}

fn trust_policy() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TrustVendorWithExternalId",
            "Effect": "Allow",
            "Principal": { "AWS": VENDOR_ROLE },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": "tenant-7f3a9c" } },
        }]
    })
}

fn logs(resource_group: &str) -> (String, String) {
    (
        "arn:aws:logs:us-east-1:111122223333:*".to_string(),
        format!("arn:aws:logs:us-east-1:111122223333:log-group:/aws/lambda/{resource_group}:*"),
    )
}

#[test]
fn preset_same_key_for_source_and_inventory() {
    let docs = generate(&presets::same_key()).expect("valid preset");
    lint_all(&docs);

    let id = &docs.connector_identity_policy;
    assert_eq!(
        sids(id),
        [
            "ListAndInspectSourceBuckets",
            "ReadSourceObjects",
            "ListInventoryDestination",
            "ReadInventoryReports",
            "DecryptViaS3",
            "DescribeKeys"
        ]
    );
    check(
        statement(id, "ListAndInspectSourceBuckets"),
        &[
            "s3:GetBucketLocation",
            "s3:GetEncryptionConfiguration",
            "s3:GetInventoryConfiguration",
            "s3:ListBucket",
        ],
        &["arn:aws:s3:::acme-raw", "arn:aws:s3:::acme-curated"],
        None,
    );
    check(
        statement(id, "ReadSourceObjects"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-raw/*", "arn:aws:s3:::acme-curated/*"],
        None,
    );
    check(
        statement(id, "ListInventoryDestination"),
        &["s3:GetBucketLocation", "s3:ListBucket"],
        &["arn:aws:s3:::acme-inventory"],
        None,
    );
    check(
        statement(id, "ReadInventoryReports"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-inventory/reports/*"],
        None,
    );
    // One key for everything: listed once.
    check(statement(id, "DecryptViaS3"), &["kms:Decrypt"], &[KEY_A], via_s3());
    check(statement(id, "DescribeKeys"), &["kms:DescribeKey"], &[KEY_A], None);

    assert_eq!(docs.connector_trust_policy, trust_policy());

    let key = docs.inventory_key_policy_statement.as_ref().expect("SSE-KMS reports");
    assert_eq!(
        key,
        &json!({
            "Sid": "AllowS3InventoryToEncryptReports",
            "Effect": "Allow",
            "Principal": { "Service": "s3.amazonaws.com" },
            "Action": "kms:GenerateDataKey",
            "Resource": "*",
            "Condition": {
                "StringEquals": { "aws:SourceAccount": "111122223333" },
                "ArnLike": { "aws:SourceArn": ["arn:aws:s3:::acme-raw", "arn:aws:s3:::acme-curated"] },
            },
        })
    );

    let bucket = docs.inventory_destination_bucket_policy.as_ref().expect("inventory");
    assert_eq!(
        bucket,
        &json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AllowS3InventoryDelivery",
                "Effect": "Allow",
                "Principal": { "Service": "s3.amazonaws.com" },
                "Action": "s3:PutObject",
                "Resource": "arn:aws:s3:::acme-inventory/reports/*",
                "Condition": {
                    "StringEquals": {
                        "aws:SourceAccount": "111122223333",
                        "s3:x-amz-acl": "bucket-owner-full-control",
                    },
                    "ArnLike": { "aws:SourceArn": ["arn:aws:s3:::acme-raw", "arn:aws:s3:::acme-curated"] },
                },
            }]
        })
    );

    let lambda = docs.lambda_role_policy.as_ref().expect("lambda");
    assert_eq!(
        sids(lambda),
        [
            "ReadInventoryReports",
            "DecryptInventoryReports",
            "WriteForwardedReports",
            "CheckForwardedReports",
            "EncryptForwardedReports",
            "CreateLogGroup",
            "WriteLogs"
        ]
    );
    check(
        statement(lambda, "ReadInventoryReports"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-inventory/reports/*"],
        None,
    );
    check(statement(lambda, "DecryptInventoryReports"), &["kms:Decrypt"], &[KEY_A], via_s3());
    check(
        statement(lambda, "WriteForwardedReports"),
        &["s3:GetObject", "s3:PutObject"],
        &["arn:aws:s3:::acme-catalog-drop/inventory/*"],
        None,
    );
    check(
        statement(lambda, "CheckForwardedReports"),
        &["s3:ListBucket"],
        &["arn:aws:s3:::acme-catalog-drop"],
        None,
    );
    check(
        statement(lambda, "EncryptForwardedReports"),
        &["kms:Decrypt", "kms:GenerateDataKey"],
        &[KEY_B],
        via_s3(),
    );
    let (group, streams) = logs("inventory-forwarder");
    check(statement(lambda, "CreateLogGroup"), &["logs:CreateLogGroup"], &[&group], None);
    check(statement(lambda, "WriteLogs"), &["logs:CreateLogStream", "logs:PutLogEvents"], &[&streams], None);

    let sampling = docs.sampling_policy.as_ref().expect("one sampler");
    assert_eq!(sids(sampling), ["SampleSourceObjects", "DecryptSourceObjectsViaS3"]);
    check(
        statement(sampling, "SampleSourceObjects"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-raw/*", "arn:aws:s3:::acme-curated/*"],
        None,
    );
    check(statement(sampling, "DecryptSourceObjectsViaS3"), &["kms:Decrypt"], &[KEY_A], via_s3());

    assert_eq!(docs.targets.inventory_key_arn.as_deref(), Some(KEY_A));
    assert_eq!(docs.targets.sampling_principals, ["arn:aws:iam::111122223333:role/analyst"]);
}

#[test]
fn preset_different_keys() {
    let docs = generate(&presets::different_keys()).expect("valid preset");
    lint_all(&docs);

    let id = &docs.connector_identity_policy;
    assert_eq!(
        sids(id),
        [
            "ListAndInspectSourceBuckets",
            "ReadSourceObjects",
            "ListInventoryDestination",
            "ReadInventoryReports",
            "DecryptViaS3",
            "DescribeKeys",
            "ReadSseCKeySecrets"
        ]
    );
    let sources = ["arn:aws:s3:::acme-raw", "arn:aws:s3:::acme-finance", "arn:aws:s3:::acme-public"];
    check(
        statement(id, "ListAndInspectSourceBuckets"),
        &[
            "s3:GetBucketLocation",
            "s3:GetEncryptionConfiguration",
            "s3:GetInventoryConfiguration",
            "s3:ListBucket",
        ],
        &sources,
        None,
    );
    let objects = ["arn:aws:s3:::acme-raw/*", "arn:aws:s3:::acme-finance/*", "arn:aws:s3:::acme-public/*"];
    check(statement(id, "ReadSourceObjects"), &["s3:GetObject"], &objects, None);
    check(
        statement(id, "ListInventoryDestination"),
        &["s3:GetBucketLocation", "s3:ListBucket"],
        &["arn:aws:s3:::acme-inventory"],
        None,
    );
    // Empty prefix: the whole destination bucket.
    check(statement(id, "ReadInventoryReports"), &["s3:GetObject"], &["arn:aws:s3:::acme-inventory/*"], None);
    // Source keys first (SSE-S3 bucket contributes none), then the report key.
    check(statement(id, "DecryptViaS3"), &["kms:Decrypt"], &[KEY_A, KEY_B, KEY_C], via_s3());
    check(statement(id, "DescribeKeys"), &["kms:DescribeKey"], &[KEY_A, KEY_B, KEY_C], None);
    // SSE-C keys in Secrets Manager: read by the connector itself.
    check(
        statement(id, "ReadSseCKeySecrets"),
        &["secretsmanager:GetSecretValue"],
        &["arn:aws:secretsmanager:us-east-1:111122223333:secret:acme/finance-sse-c-AbC123"],
        None,
    );

    assert_eq!(docs.connector_trust_policy, trust_policy());

    let key = docs.inventory_key_policy_statement.as_ref().expect("SSE-KMS reports");
    assert_eq!(strings(&key["Action"]), ["kms:GenerateDataKey"]);
    assert_eq!(key["Resource"], "*");
    assert_eq!(key["Principal"], json!({ "Service": "s3.amazonaws.com" }));
    assert_eq!(
        key["Condition"],
        json!({
            "StringEquals": { "aws:SourceAccount": "111122223333" },
            "ArnLike": { "aws:SourceArn": sources },
        })
    );

    let bucket = docs.inventory_destination_bucket_policy.as_ref().expect("inventory");
    let delivery = statement(bucket, "AllowS3InventoryDelivery");
    check(
        delivery,
        &["s3:PutObject"],
        &["arn:aws:s3:::acme-inventory/*"],
        Some(json!({
            "StringEquals": { "aws:SourceAccount": "111122223333", "s3:x-amz-acl": "bucket-owner-full-control" },
            "ArnLike": { "aws:SourceArn": sources },
        })),
    );

    let lambda = docs.lambda_role_policy.as_ref().expect("lambda");
    check(
        statement(lambda, "ReadInventoryReports"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-inventory/*"],
        None,
    );
    check(statement(lambda, "DecryptInventoryReports"), &["kms:Decrypt"], &[KEY_C], via_s3());
    check(
        statement(lambda, "WriteForwardedReports"),
        &["s3:GetObject", "s3:PutObject"],
        &["arn:aws:s3:::acme-catalog-drop/*"],
        None,
    );
    check(
        statement(lambda, "CheckForwardedReports"),
        &["s3:ListBucket"],
        &["arn:aws:s3:::acme-catalog-drop"],
        None,
    );
    check(
        statement(lambda, "EncryptForwardedReports"),
        &["kms:Decrypt", "kms:GenerateDataKey"],
        &[KEY_B],
        via_s3(),
    );
    // No function name: any Lambda log group of the account and region.
    let (group, streams) = logs("*");
    check(statement(lambda, "CreateLogGroup"), &["logs:CreateLogGroup"], &[&group], None);
    check(statement(lambda, "WriteLogs"), &["logs:CreateLogStream", "logs:PutLogEvents"], &[&streams], None);

    let sampling = docs.sampling_policy.as_ref().expect("samplers");
    check(statement(sampling, "SampleSourceObjects"), &["s3:GetObject"], &objects, None);
    // Only source keys: samplers do not read inventory reports.
    check(statement(sampling, "DecryptSourceObjectsViaS3"), &["kms:Decrypt"], &[KEY_A, KEY_B], via_s3());
    assert_eq!(docs.targets.sampling_principals.len(), 2);
}

#[test]
fn preset_kms_source_sse_s3_destination_report_under_second_key() {
    let docs = generate(&presets::kms_source_sse_s3_destination()).expect("valid preset");
    lint_all(&docs);

    let id = &docs.connector_identity_policy;
    check(
        statement(id, "ListAndInspectSourceBuckets"),
        &[
            "s3:GetBucketLocation",
            "s3:GetEncryptionConfiguration",
            "s3:GetInventoryConfiguration",
            "s3:ListBucket",
        ],
        &["arn:aws:s3:::acme-raw"],
        None,
    );
    check(statement(id, "ReadSourceObjects"), &["s3:GetObject"], &["arn:aws:s3:::acme-raw/*"], None);
    check(
        statement(id, "ListInventoryDestination"),
        &["s3:GetBucketLocation", "s3:ListBucket"],
        &["arn:aws:s3:::acme-inventory"],
        None,
    );
    check(
        statement(id, "ReadInventoryReports"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-inventory/inv/*"],
        None,
    );
    check(statement(id, "DecryptViaS3"), &["kms:Decrypt"], &[KEY_A, KEY_C], via_s3());
    check(statement(id, "DescribeKeys"), &["kms:DescribeKey"], &[KEY_A, KEY_C], None);
    assert_eq!(docs.connector_trust_policy, trust_policy());

    // The report key (C) gets the S3 statement; a single source bucket is a plain string.
    let key = docs.inventory_key_policy_statement.as_ref().expect("SSE-KMS reports");
    assert_eq!(
        key["Condition"],
        json!({
            "StringEquals": { "aws:SourceAccount": "111122223333" },
            "ArnLike": { "aws:SourceArn": "arn:aws:s3:::acme-raw" },
        })
    );
    assert_eq!(docs.targets.inventory_key_arn.as_deref(), Some(KEY_C));
    let bucket = docs.inventory_destination_bucket_policy.as_ref().expect("inventory");
    check(
        statement(bucket, "AllowS3InventoryDelivery"),
        &["s3:PutObject"],
        &["arn:aws:s3:::acme-inventory/inv/*"],
        Some(json!({
            "StringEquals": { "aws:SourceAccount": "111122223333", "s3:x-amz-acl": "bucket-owner-full-control" },
            "ArnLike": { "aws:SourceArn": "arn:aws:s3:::acme-raw" },
        })),
    );

    // SSE-S3 forwarding destination: no statement for a destination key.
    let lambda = docs.lambda_role_policy.as_ref().expect("lambda");
    assert_eq!(
        sids(lambda),
        [
            "ReadInventoryReports",
            "DecryptInventoryReports",
            "WriteForwardedReports",
            "CheckForwardedReports",
            "CreateLogGroup",
            "WriteLogs"
        ]
    );
    check(
        statement(lambda, "ReadInventoryReports"),
        &["s3:GetObject"],
        &["arn:aws:s3:::acme-inventory/inv/*"],
        None,
    );
    check(statement(lambda, "DecryptInventoryReports"), &["kms:Decrypt"], &[KEY_C], via_s3());
    check(
        statement(lambda, "WriteForwardedReports"),
        &["s3:GetObject", "s3:PutObject"],
        &["arn:aws:s3:::vendor-drop/acme/*"],
        None,
    );
    check(
        statement(lambda, "CheckForwardedReports"),
        &["s3:ListBucket"],
        &["arn:aws:s3:::vendor-drop"],
        None,
    );
    let (group, streams) = logs("forwarder");
    check(statement(lambda, "CreateLogGroup"), &["logs:CreateLogGroup"], &[&group], None);
    check(statement(lambda, "WriteLogs"), &["logs:CreateLogStream", "logs:PutLogEvents"], &[&streams], None);
    let all_keys: Vec<String> = statements(lambda).iter().flat_map(|s| strings(&s["Resource"])).collect();
    assert!(!all_keys.iter().any(|r| r == KEY_A), "the Lambda never touches source data");

    assert_eq!(docs.sampling_policy, None);
}

#[test]
fn sse_s3_everywhere_has_no_kms_statements() {
    let mut setup = presets::kms_source_sse_s3_destination();
    setup.source_buckets[0].kms_key_arn = None;
    if let Some(inventory) = setup.inventory.as_mut() {
        inventory.report_encryption = ReportEncryption::SseS3;
    }
    setup.sampling_principals = vec!["arn:aws:iam::111122223333:role/analyst".to_string()];
    let docs = generate(&setup).expect("valid");
    lint_all(&docs);
    assert_eq!(
        sids(&docs.connector_identity_policy),
        [
            "ListAndInspectSourceBuckets",
            "ReadSourceObjects",
            "ListInventoryDestination",
            "ReadInventoryReports"
        ]
    );
    assert_eq!(docs.inventory_key_policy_statement, None);
    assert!(docs.inventory_destination_bucket_policy.is_some());
    let lambda = docs.lambda_role_policy.as_ref().expect("lambda");
    assert!(!sids(lambda).iter().any(|s| s.contains("crypt")), "{lambda:#}");
    assert_eq!(sids(docs.sampling_policy.as_ref().expect("sampler")), ["SampleSourceObjects"]);
}

#[test]
fn minimal_setup_has_only_connector_documents() {
    let mut setup = presets::same_key();
    setup.inventory = None;
    setup.forwarding_lambda = None;
    setup.sampling_principals.clear();
    setup.trusted_principal = "444455556666".to_string();
    let docs = generate(&setup).expect("valid");
    lint_all(&docs);
    assert_eq!(
        sids(&docs.connector_identity_policy),
        ["ListAndInspectSourceBuckets", "ReadSourceObjects", "DecryptViaS3", "DescribeKeys"]
    );
    // A bare account id is written as its root ARN.
    assert_eq!(
        docs.connector_trust_policy["Statement"][0]["Principal"],
        json!({ "AWS": "arn:aws:iam::444455556666:root" })
    );
    assert_eq!(docs.inventory_key_policy_statement, None);
    assert_eq!(docs.inventory_destination_bucket_policy, None);
    assert_eq!(docs.lambda_role_policy, None);
    assert_eq!(docs.sampling_policy, None);
}

#[test]
fn inventory_destination_that_is_a_source_is_listed_once() {
    let mut setup = presets::kms_source_sse_s3_destination();
    if let Some(inventory) = setup.inventory.as_mut() {
        inventory.destination_bucket = "acme-raw".to_string();
    }
    let docs = generate(&setup).expect("valid");
    let id = &docs.connector_identity_policy;
    assert!(!sids(id).contains(&"ListInventoryDestination"));
    check(statement(id, "ReadInventoryReports"), &["s3:GetObject"], &["arn:aws:s3:::acme-raw/inv/*"], None);
}

#[test]
fn gov_cloud_partition_is_used_in_every_arn() {
    let setup = PolicySetup {
        partition: "aws-us-gov".to_string(),
        region: "us-gov-west-1".to_string(),
        trusted_principal: "arn:aws-us-gov:iam::444455556666:role/scanner".to_string(),
        source_buckets: vec![SourceBucket {
            name: "gov-data".to_string(),
            kms_key_arn: Some(
                "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                    .to_string(),
            ),
        }],
        inventory: None,
        forwarding_lambda: None,
        sampling_principals: Vec::new(),
        ..presets::same_key()
    };
    let docs = generate(&setup).expect("valid");
    let id = &docs.connector_identity_policy;
    check(statement(id, "ReadSourceObjects"), &["s3:GetObject"], &["arn:aws-us-gov:s3:::gov-data/*"], None);
    assert_eq!(
        statement(id, "DecryptViaS3")["Condition"],
        json!({ "StringEquals": { "kms:ViaService": "s3.us-gov-west-1.amazonaws.com" } })
    );
}

#[test]
fn invalid_setups_name_the_field() {
    type Mutation = fn(&mut PolicySetup);
    let cases: Vec<(Mutation, &str, &str)> = vec![
        (|s| s.partition = "aws-cn".into(), "POLICY_UNSUPPORTED_PARTITION", "partition"),
        (|s| s.account_id = "12345".into(), "POLICY_INVALID_ACCOUNT_ID", "account_id"),
        (|s| s.region = "us_east_1".into(), "POLICY_INVALID_REGION", "region"),
        (|s| s.region = "us-gov-west-1".into(), "POLICY_REGION_NOT_IN_PARTITION", "region"),
        (|s| s.connector_role_name = "bad role".into(), "POLICY_INVALID_NAME", "connector_role_name"),
        (|s| s.trusted_principal = "*".into(), "POLICY_INVALID_TRUSTED_PRINCIPAL", "trusted_principal"),
        (|s| s.external_id = "x".into(), "POLICY_INVALID_EXTERNAL_ID", "external_id"),
        (|s| s.source_buckets.clear(), "POLICY_NO_SOURCE_BUCKETS", "source_buckets"),
        (
            |s| s.source_buckets[1].name = "Bad_Bucket".into(),
            "POLICY_INVALID_BUCKET_NAME",
            "source_buckets[1].name",
        ),
        (
            |s| s.source_buckets[1].name = "acme-raw".into(),
            "POLICY_DUPLICATE_BUCKET",
            "source_buckets[1].name",
        ),
        (
            |s| {
                s.source_buckets[1].kms_key_arn = Some("arn:aws:kms:us-east-1:111122223333:alias/data".into())
            },
            "POLICY_KEY_ALIAS_NOT_ALLOWED",
            "source_buckets[1].kms_key_arn",
        ),
        (
            |s| s.source_buckets[1].kms_key_arn = Some("1234abcd-12ab-34cd-56ef-1234567890ab".into()),
            "POLICY_INVALID_KEY_ARN",
            "source_buckets[1].kms_key_arn",
        ),
        (
            |s| s.source_buckets[0].kms_key_arn = Some(KEY_A.replace("us-east-1", "eu-west-1")),
            "POLICY_KEY_REGION_MISMATCH",
            "source_buckets[0].kms_key_arn",
        ),
        (
            |s| {
                if let Some(i) = s.inventory.as_mut() {
                    i.destination_bucket = "x".into();
                }
            },
            "POLICY_INVALID_BUCKET_NAME",
            "inventory.destination_bucket",
        ),
        (
            |s| {
                if let Some(i) = s.inventory.as_mut() {
                    i.destination_prefix = "reports/*".into();
                }
            },
            "POLICY_INVALID_PREFIX",
            "inventory.destination_prefix",
        ),
        (
            |s| {
                if let Some(i) = s.inventory.as_mut() {
                    i.report_encryption = ReportEncryption::SseKms { key_arn: "alias/aws/s3".into() };
                }
            },
            "POLICY_KEY_ALIAS_NOT_ALLOWED",
            "inventory.report_encryption.key_arn",
        ),
        (|s| s.inventory = None, "POLICY_LAMBDA_WITHOUT_INVENTORY", "forwarding_lambda"),
        (
            |s| {
                if let Some(l) = s.forwarding_lambda.as_mut() {
                    l.role_name = String::new();
                }
            },
            "POLICY_INVALID_NAME",
            "forwarding_lambda.role_name",
        ),
        (
            |s| {
                if let Some(l) = s.forwarding_lambda.as_mut() {
                    l.function_name = Some("bad.name".into());
                }
            },
            "POLICY_INVALID_NAME",
            "forwarding_lambda.function_name",
        ),
        (
            |s| {
                if let Some(l) = s.forwarding_lambda.as_mut() {
                    l.destination_bucket = "a..b".into();
                }
            },
            "POLICY_INVALID_BUCKET_NAME",
            "forwarding_lambda.destination_bucket",
        ),
        (
            |s| {
                if let Some(l) = s.forwarding_lambda.as_mut() {
                    l.destination_prefix = "${aws:userid}".into();
                }
            },
            "POLICY_INVALID_PREFIX",
            "forwarding_lambda.destination_prefix",
        ),
        (
            |s| {
                if let Some(l) = s.forwarding_lambda.as_mut() {
                    l.destination_key_arn = Some(KEY_B.replace(":aws:", ":aws-us-gov:"));
                }
            },
            "POLICY_PARTITION_MISMATCH",
            "forwarding_lambda.destination_key_arn",
        ),
        (
            |s| s.sampling_principals.push("arn:aws:iam::111122223333:user/alice".into()),
            "POLICY_INVALID_ROLE_ARN",
            "sampling_principals[1]",
        ),
        (
            |s| s.sampling_principals.push("arn:aws:iam::111122223333:role/analyst".into()),
            "POLICY_DUPLICATE_PRINCIPAL",
            "sampling_principals[1]",
        ),
        (
            |s| s.sse_c_key_secrets.push("arn:aws:ssm:us-east-1:111122223333:parameter/k".into()),
            "POLICY_INVALID_SECRET_ARN",
            "sse_c_key_secrets[0]",
        ),
        (
            |s| {
                s.sse_c_key_secrets
                    .push("arn:aws:secretsmanager:eu-west-1:111122223333:secret:k-AbC123".into())
            },
            "POLICY_INVALID_SECRET_ARN",
            "sse_c_key_secrets[0]",
        ),
        (
            |s| s.sse_c_key_secrets.push("arn:aws:secretsmanager:us-east-1:111122223333:secret:a?b".into()),
            "POLICY_INVALID_SECRET_ARN",
            "sse_c_key_secrets[0]",
        ),
        (
            |s| {
                s.sse_c_key_secrets
                    .push("arn:aws-us-gov:secretsmanager:us-east-1:111122223333:secret:k".into())
            },
            "POLICY_PARTITION_MISMATCH",
            "sse_c_key_secrets[0]",
        ),
    ];
    for (mutate, code, field) in cases {
        let mut setup = presets::same_key();
        mutate(&mut setup);
        let err = generate(&setup).expect_err(field);
        assert_eq!((err.code(), err.field()), (code, field), "{err}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
}

#[test]
fn alias_error_explains_how_to_get_the_key_arn() {
    let mut setup = presets::same_key();
    setup.source_buckets[0].kms_key_arn = Some("alias/data".into());
    let message = generate(&setup).expect_err("alias").to_string();
    assert!(message.contains("key ARN") && message.contains("describe-key"), "{message}");
}

#[test]
fn deserializes_from_json_and_refuses_unknown_fields() {
    let text = r#"{
        "account_id": "111122223333",
        "region": "us-east-1",
        "connector_role_name": "catalog-connector",
        "trusted_principal": "444455556666",
        "external_id": "tenant-1",
        "source_buckets": [{ "name": "acme-raw", "kms_key_arn": null }, { "name": "acme-curated" }],
        "inventory": {
            "destination_bucket": "acme-inventory",
            "report_encryption": { "type": "sse-kms", "key_arn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab" }
        },
        "sampling_principals": []
    }"#;
    let setup: PolicySetup = serde_json::from_str(text).expect("parses");
    assert_eq!(setup.partition, "aws");
    assert_eq!(setup.forwarding_lambda, None);
    let inventory = setup.inventory.as_ref().expect("inventory");
    assert_eq!(inventory.destination_prefix, "");
    assert_eq!(inventory.report_encryption, ReportEncryption::SseKms { key_arn: KEY_A.to_string() });
    assert!(generate(&setup).is_ok());

    let sse_s3: ReportEncryption = serde_json::from_str(r#"{"type":"sse-s3"}"#).expect("sse-s3");
    assert_eq!(sse_s3, ReportEncryption::SseS3);

    for bad in [
        text.replace("\"sampling_principals\"", "\"sampling_principal\""),
        text.replace("{ \"name\": \"acme-curated\" }", "{ \"name\": \"acme-curated\", \"key\": \"x\" }"),
        text.replace("\"type\": \"sse-kms\"", "\"type\": \"sse-c\""),
    ] {
        assert!(serde_json::from_str::<PolicySetup>(&bad).is_err(), "{bad}");
    }
    // The presets round-trip through their own serialization.
    let preset = presets::kms_source_sse_s3_destination();
    let back: PolicySetup =
        serde_json::from_str(&serde_json::to_string(&preset).expect("serializes")).expect("parses");
    assert_eq!(back, preset);
}

#[test]
fn debug_redacts_the_external_id() {
    let setup = presets::same_key();
    let debug = format!("{setup:?}");
    assert!(!debug.contains(&setup.external_id), "{debug}");
    assert!(debug.contains("<redacted>") && debug.contains("acme-raw"));
}

#[test]
fn output_key_order_is_sorted_and_stable() {
    let docs = generate(&presets::same_key()).expect("valid");
    let text = serde_json::to_string(&docs.connector_trust_policy).expect("serializes");
    assert_eq!(
        text,
        concat!(
            r#"{"Statement":[{"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"tenant-7f3a9c"}},"#,
            r#""Effect":"Allow","Principal":{"AWS":"arn:aws:iam::444455556666:role/catalog-scanner"},"#,
            r#""Sid":"TrustVendorWithExternalId"}],"Version":"2012-10-17"}"#
        )
    );
    assert_eq!(generate(&presets::same_key()).expect("valid"), docs, "deterministic");
}

#[test]
fn render_text_has_a_titled_section_per_document() {
    let docs = generate(&presets::same_key()).expect("valid");
    let text = render_text(&docs);
    let titles: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(
        titles,
        [
            "== Identity policy of the connector role `catalog-connector` ==",
            "== Trust policy of the connector role `catalog-connector` ==",
            &format!("== Statement to add to the key policy of the inventory report key {KEY_A} =="),
            "== Bucket policy of the inventory destination bucket `acme-inventory` (merge with existing statements) ==",
            "== Identity policy of the forwarding Lambda role `inventory-forwarder` ==",
            "== Sampling policy, to attach to each of: arn:aws:iam::111122223333:role/analyst ==",
        ]
    );
    // Each section body is the pretty JSON of its document.
    let bodies: Vec<Value> = text
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|section| {
            let body = section.split_once('\n').map(|(_, b)| b).unwrap_or_default();
            serde_json::from_str(body).expect("section body is JSON")
        })
        .collect();
    assert_eq!(bodies.first(), Some(&docs.connector_identity_policy));
    assert_eq!(bodies.get(2), docs.inventory_key_policy_statement.as_ref());
    assert_eq!(bodies.len(), 6);
    assert!(text.contains("\n  \"Statement\": ["), "pretty-printed");

    let minimal = generate(&PolicySetup {
        inventory: None,
        forwarding_lambda: None,
        sampling_principals: Vec::new(),
        ..presets::same_key()
    })
    .expect("valid");
    assert_eq!(render_text(&minimal).lines().filter(|l| l.starts_with("== ")).count(), 2);
}

fn arbitrary_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[a-z0-9.-]{0,70}",
        Just(KEY_A.to_string()),
        "arn:aws:(kms|iam):(us-east-1)?:[0-9]{12}:(key|alias|role)/[ -~]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Any field content: an error or documents that pass the lint, never a panic.
    #[test]
    fn generate_never_panics_and_valid_output_lints(
        field in 0usize..8,
        text in arbitrary_text(),
        preset in 0usize..3,
    ) {
        let mut setup = match preset {
            0 => presets::same_key(),
            1 => presets::different_keys(),
            _ => presets::kms_source_sse_s3_destination(),
        };
        match field {
            0 => setup.account_id = text,
            1 => setup.region = text,
            2 => setup.trusted_principal = text,
            3 => setup.external_id = text,
            4 => setup.source_buckets[0].name = text,
            5 => setup.source_buckets[0].kms_key_arn = Some(text),
            6 => if let Some(i) = setup.inventory.as_mut() { i.destination_prefix = text },
            _ => setup.sampling_principals.push(text),
        }
        if let Ok(docs) = generate(&setup) {
            lint_all(&docs);
            let _ = render_text(&docs);
        }
    }
}

#[test]
fn sse_c_key_secrets_are_read_by_the_connector_and_accept_the_suffix_pattern() {
    let mut setup = presets::same_key();
    let id = generate(&setup).expect("valid").connector_identity_policy;
    assert!(!sids(&id).contains(&"ReadSseCKeySecrets"), "no secrets, no statement");
    let named = "arn:aws:secretsmanager:us-east-1:111122223333:secret:team/key-??????";
    setup.sse_c_key_secrets = vec![named.into(), named.into()];
    let docs = generate(&setup).expect("valid");
    lint_all(&docs);
    check(
        statement(&docs.connector_identity_policy, "ReadSseCKeySecrets"),
        &["secretsmanager:GetSecretValue"],
        &[named],
        None,
    );
    assert!(
        docs.sampling_policy.as_ref().is_some_and(|p| !p.to_string().contains("secretsmanager")),
        "users never read the keys"
    );
}
