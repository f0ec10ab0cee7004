//! Reading policies AWS returns (key policies, bucket policies) and producing the statements
//! that fix what is missing, through the same generator as the `policy` command.

use serde_json::Value;

use s3_connector_domain::policy::{
    self, InventorySetup, PolicyDocuments, PolicySetup, ReportEncryption, SourceBucket,
};

/// What a key policy says about S3 Inventory delivery for one source bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryGrant {
    /// Some Allow statement lets `s3.amazonaws.com` call `kms:GenerateDataKey`.
    pub allowed: bool,
    /// That statement conditions on `aws:SourceAccount`.
    pub source_account: bool,
    /// That statement conditions on `aws:SourceArn` with a value matching the source bucket.
    pub source_arn: bool,
    /// Sid of the best statement found.
    pub sid: Option<String>,
}

fn as_strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// IAM-style wildcard match (`*` and `?`), case-insensitive (actions are; ARNs compared here
/// are lowercase in practice).
fn wildcard_match(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], v) || (!v.is_empty() && go(p, &v[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &v[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &v[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

fn statements(policy: &Value) -> Vec<&Value> {
    match policy.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(single @ Value::Object(_)) => vec![single],
        _ => Vec::new(),
    }
}

fn principal_includes_service(statement: &Value, service: &str) -> bool {
    match statement.get("Principal") {
        Some(Value::String(s)) => s == "*",
        Some(Value::Object(map)) => {
            map.get("Service").is_some_and(|v| as_strings(v).contains(&service))
                || map.get("AWS").is_some_and(|v| as_strings(v).contains(&"*"))
        }
        _ => false,
    }
}

fn actions_include(statement: &Value, action: &str) -> bool {
    statement.get("Action").is_some_and(|v| as_strings(v).iter().any(|a| wildcard_match(a, action)))
}

/// Condition values for a key, under any operator (keys compared case-insensitively).
fn condition_values<'a>(statement: &'a Value, key: &str) -> Vec<&'a str> {
    let Some(Value::Object(operators)) = statement.get("Condition") else { return Vec::new() };
    operators
        .values()
        .filter_map(Value::as_object)
        .flat_map(|keys| keys.iter())
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .flat_map(|(_, v)| as_strings(v))
        .collect()
}

/// Whether the key policy lets S3 Inventory encrypt reports of `source_bucket` (and with
/// which confused-deputy conditions). Deny statements are not evaluated.
pub fn inventory_delivery_grant(
    policy_json: &str,
    source_bucket: &str,
) -> Result<DeliveryGrant, serde_json::Error> {
    let policy: Value = serde_json::from_str(policy_json)?;
    let bucket_arn = format!("arn:aws:s3:::{source_bucket}");
    let mut best = DeliveryGrant::default();
    for statement in statements(&policy) {
        if statement.get("Effect").and_then(Value::as_str) != Some("Allow")
            || !principal_includes_service(statement, "s3.amazonaws.com")
            || !actions_include(statement, "kms:GenerateDataKey")
        {
            continue;
        }
        let grant = DeliveryGrant {
            allowed: true,
            source_account: !condition_values(statement, "aws:SourceAccount").is_empty(),
            source_arn: condition_values(statement, "aws:SourceArn")
                .iter()
                .any(|pattern| wildcard_match(pattern, &bucket_arn)),
            sid: statement.get("Sid").and_then(Value::as_str).map(str::to_string),
        };
        let score = |g: &DeliveryGrant| u8::from(g.source_account) + u8::from(g.source_arn);
        if !best.allowed || score(&grant) > score(&best) {
            best = grant;
        }
    }
    Ok(best)
}

/// A bucket policy's requirement on upload encryption, as text (`None`: none found).
pub fn upload_encryption_requirement(policy_json: &str) -> Result<Option<String>, serde_json::Error> {
    let policy: Value = serde_json::from_str(policy_json)?;
    let mut rules = Vec::new();
    for statement in statements(&policy) {
        if statement.get("Effect").and_then(Value::as_str) != Some("Deny")
            || !actions_include(statement, "s3:PutObject")
        {
            continue;
        }
        let Some(Value::Object(operators)) = statement.get("Condition") else { continue };
        for (operator, keys) in operators {
            let Some(keys) = keys.as_object() else { continue };
            for (key, value) in keys {
                let key_lower = key.to_ascii_lowercase();
                if key_lower == "s3:x-amz-server-side-encryption"
                    || key_lower == "s3:x-amz-server-side-encryption-aws-kms-key-id"
                {
                    rules.push(format!(
                        "deny PutObject when {operator} {key} {}",
                        as_strings(value).join("|")
                    ));
                }
            }
        }
    }
    Ok((!rules.is_empty()).then(|| rules.join("; ")))
}

/// The parts of a setup `check` knows, to generate documents with the `policy` engine.
pub struct KnownSetup<'a> {
    /// Partition (`aws`, ...).
    pub partition: &'a str,
    /// The account that owns the buckets and the role.
    pub account_id: &'a str,
    /// Region of buckets and keys.
    pub region: &'a str,
    /// Connector role name (`s3-connector` when none is configured).
    pub role_name: &'a str,
    /// Who assumes the role: an account id, root ARN or role ARN.
    pub trusted_principal: &'a str,
    /// ExternalId.
    pub external_id: Option<&'a str>,
    /// Source buckets.
    pub buckets: Vec<String>,
    /// Inventory destination and its report key, when asked for the key statement.
    pub inventory: Option<(String, String)>,
}

/// Runs the `policy` generator; `None` when what `check` knows does not make a valid setup
/// (the probe then carries a summary without a statement).
pub fn generate(known: &KnownSetup<'_>) -> Option<PolicyDocuments> {
    let setup = PolicySetup {
        partition: known.partition.to_string(),
        account_id: known.account_id.to_string(),
        region: known.region.to_string(),
        connector_role_name: known.role_name.to_string(),
        trusted_principal: known.trusted_principal.to_string(),
        // Only used in the trust policy; a placeholder keeps other documents generable.
        external_id: known.external_id.unwrap_or("replace-with-your-external-id").to_string(),
        source_buckets: known
            .buckets
            .iter()
            .map(|b| SourceBucket { name: b.clone(), kms_key_arn: None })
            .collect(),
        inventory: known.inventory.as_ref().map(|(bucket, key)| InventorySetup {
            destination_bucket: bucket.clone(),
            destination_prefix: String::new(),
            report_encryption: ReportEncryption::SseKms { key_arn: key.clone() },
        }),
        forwarding_lambda: None,
        sampling_principals: Vec::new(),
        sse_c_key_secrets: Vec::new(),
    };
    policy::generate(&setup).ok()
}

/// `arn:<partition>:...` → partition; `aws` otherwise.
pub fn partition_of(arn: &str) -> &str {
    arn.split(':').nth(1).filter(|p| !p.is_empty()).unwrap_or("aws")
}

/// The account of an ARN.
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
}

/// `arn:aws:iam::1:role/path/name` → `name`.
pub fn role_name_of(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// The principal a trust policy names for a caller: role ARNs as they are, assumed-role
/// sessions as their role, anything else (users) as its account.
pub fn trust_principal_for(caller_arn: &str) -> Option<String> {
    let account = account_of(caller_arn)?;
    let partition = partition_of(caller_arn);
    let resource = caller_arn.splitn(6, ':').nth(5)?;
    if resource.starts_with("role/") {
        return Some(caller_arn.to_string());
    }
    if let Some(rest) = resource.strip_prefix("assumed-role/") {
        let role = rest.split('/').next()?;
        return Some(format!("arn:{partition}:iam::{account}:role/{role}"));
    }
    Some(account.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_POLICY_WITH_DELIVERY: &str = r#"{"Version":"2012-10-17","Statement":[
        {"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"},
        {"Sid":"Inv","Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":["kms:GenerateDataKey"],"Resource":"*",
         "Condition":{"StringEquals":{"aws:SourceAccount":"111122223333"},"ArnLike":{"aws:SourceARN":"arn:aws:s3:::src-*"}}}]}"#;

    #[test]
    fn a_conditioned_delivery_statement_is_recognised() {
        let g = inventory_delivery_grant(KEY_POLICY_WITH_DELIVERY, "src-sales").unwrap();
        assert_eq!(
            g,
            DeliveryGrant { allowed: true, source_account: true, source_arn: true, sid: Some("Inv".into()) }
        );
        let other = inventory_delivery_grant(KEY_POLICY_WITH_DELIVERY, "elsewhere").unwrap();
        assert!(other.allowed && other.source_account && !other.source_arn);
    }

    #[test]
    fn a_root_only_policy_does_not_allow_delivery() {
        let p = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}"#;
        assert!(!inventory_delivery_grant(p, "b").unwrap().allowed);
        let unconditioned = r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["s3.amazonaws.com"]},"Action":"kms:GenerateDataKey*","Resource":"*"}}"#;
        let g = inventory_delivery_grant(unconditioned, "b").unwrap();
        assert!(g.allowed && !g.source_account && !g.source_arn);
        assert!(inventory_delivery_grant("not json", "b").is_err());
    }

    #[test]
    fn upload_encryption_rules_are_reported() {
        let p = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*",
            "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}]}"#;
        let rule = upload_encryption_requirement(p).unwrap().unwrap();
        assert!(rule.contains("StringNotEquals s3:x-amz-server-side-encryption aws:kms"), "{rule}");
        let none =
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"*"}]}"#;
        assert_eq!(upload_encryption_requirement(none).unwrap(), None);
    }

    #[test]
    fn trust_principals_follow_the_caller() {
        assert_eq!(
            trust_principal_for("arn:aws:sts::111122223333:assumed-role/vendor/s1").as_deref(),
            Some("arn:aws:iam::111122223333:role/vendor")
        );
        assert_eq!(trust_principal_for("arn:aws:iam::111122223333:user/u").as_deref(), Some("111122223333"));
        assert_eq!(trust_principal_for("garbage"), None);
        assert_eq!(role_name_of("arn:aws:iam::111122223333:role/path/reader"), "reader");
    }

    #[test]
    fn the_policy_engine_generates_the_fixes() {
        let known = KnownSetup {
            partition: "aws",
            account_id: "111122223333",
            region: "us-east-1",
            role_name: "reader",
            trusted_principal: "444455556666",
            external_id: Some("ext-42-abc"),
            buckets: vec!["src".into()],
            inventory: Some((
                "reports".into(),
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            )),
        };
        let docs = generate(&known).expect("valid setup");
        let trust = &docs.connector_trust_policy["Statement"][0];
        assert_eq!(trust["Condition"]["StringEquals"]["sts:ExternalId"], "ext-42-abc");
        let key = docs.inventory_key_policy_statement.expect("key statement");
        assert_eq!(key["Principal"]["Service"], "s3.amazonaws.com");
        assert_eq!(key["Condition"]["StringEquals"]["aws:SourceAccount"], "111122223333");
    }
}
