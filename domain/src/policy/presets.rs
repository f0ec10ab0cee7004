//! Three example setups covering the key layouts customers run, with documentation-range
//! account ids (`111122223333` the customer, `444455556666` the vendor). Used by the tests and
//! as starting points printed by the `policy` command.

use super::{InventorySetup, LambdaSetup, PolicySetup, ReportEncryption, SourceBucket};

/// The customer account of the examples.
pub const ACCOUNT: &str = "111122223333";
/// The vendor account trusted by the connector role in the examples.
pub const VENDOR_ROLE: &str = "arn:aws:iam::444455556666:role/catalog-scanner";
/// Key A: the source data key.
pub const KEY_A: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// Key B: the forwarding destination key.
pub const KEY_B: &str = "arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";
/// Key C: a second key used for inventory reports only.
pub const KEY_C: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";

fn base(source_buckets: Vec<SourceBucket>) -> PolicySetup {
    PolicySetup {
        partition: "aws".to_string(),
        account_id: ACCOUNT.to_string(),
        region: "us-east-1".to_string(),
        connector_role_name: "catalog-connector".to_string(),
        trusted_principal: VENDOR_ROLE.to_string(),
        external_id: "tenant-7f3a9c".to_string(),
        source_buckets,
        inventory: None,
        forwarding_lambda: None,
        sampling_principals: Vec::new(),
        sse_c_key_secrets: Vec::new(),
    }
}

fn source(name: &str, key: Option<&str>) -> SourceBucket {
    SourceBucket { name: name.to_string(), kms_key_arn: key.map(str::to_string) }
}

/// Preset 1: the source objects and the inventory reports share key A; reports are forwarded
/// to a bucket under key B; one analyst may sample.
pub fn same_key() -> PolicySetup {
    PolicySetup {
        inventory: Some(InventorySetup {
            destination_bucket: "acme-inventory".to_string(),
            destination_prefix: "reports/".to_string(),
            report_encryption: ReportEncryption::SseKms { key_arn: KEY_A.to_string() },
        }),
        forwarding_lambda: Some(LambdaSetup {
            role_name: "inventory-forwarder".to_string(),
            function_name: Some("inventory-forwarder".to_string()),
            destination_bucket: "acme-catalog-drop".to_string(),
            destination_prefix: "inventory".to_string(),
            destination_key_arn: Some(KEY_B.to_string()),
        }),
        sampling_principals: vec!["arn:aws:iam::111122223333:role/analyst".to_string()],
        ..base(vec![source("acme-raw", Some(KEY_A)), source("acme-curated", Some(KEY_A))])
    }
}

/// Preset 2: every key differs. Sources under key A and key B (and one SSE-S3 bucket; SSE-C
/// objects whose key is in Secrets Manager),
/// inventory reports under key C, forwarding destination under key B; two samplers.
pub fn different_keys() -> PolicySetup {
    PolicySetup {
        inventory: Some(InventorySetup {
            destination_bucket: "acme-inventory".to_string(),
            destination_prefix: String::new(),
            report_encryption: ReportEncryption::SseKms { key_arn: KEY_C.to_string() },
        }),
        forwarding_lambda: Some(LambdaSetup {
            role_name: "inventory-forwarder".to_string(),
            function_name: None,
            destination_bucket: "acme-catalog-drop".to_string(),
            destination_prefix: String::new(),
            destination_key_arn: Some(KEY_B.to_string()),
        }),
        sampling_principals: vec![
            "arn:aws:iam::111122223333:role/analyst".to_string(),
            "arn:aws:iam::111122223333:role/data/steward".to_string(),
        ],
        sse_c_key_secrets: vec![
            "arn:aws:secretsmanager:us-east-1:111122223333:secret:acme/finance-sse-c-AbC123".to_string(),
        ],
        ..base(vec![
            source("acme-raw", Some(KEY_A)),
            source("acme-finance", Some(KEY_B)),
            source("acme-public", None),
        ])
    }
}

/// Preset 3: SSE-KMS source (key A), inventory reports under a second key (key C), and a
/// forwarding destination that uses SSE-S3 (no key B); no samplers.
pub fn kms_source_sse_s3_destination() -> PolicySetup {
    PolicySetup {
        inventory: Some(InventorySetup {
            destination_bucket: "acme-inventory".to_string(),
            destination_prefix: "inv".to_string(),
            report_encryption: ReportEncryption::SseKms { key_arn: KEY_C.to_string() },
        }),
        forwarding_lambda: Some(LambdaSetup {
            role_name: "inventory-forwarder".to_string(),
            function_name: Some("forwarder".to_string()),
            destination_bucket: "vendor-drop".to_string(),
            destination_prefix: "acme/".to_string(),
            destination_key_arn: None,
        }),
        ..base(vec![source("acme-raw", Some(KEY_A))])
    }
}
