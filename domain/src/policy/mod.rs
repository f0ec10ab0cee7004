//! IAM and KMS policy generation: the engine of the `policy` command.
//!
//! [`generate`] turns a described setup ([`PolicySetup`], read from JSON or TOML) into the exact
//! least-privilege documents the customer pastes into IAM, KMS and S3:
//!
//! - the connector role's identity policy and its trust policy (STS ExternalId against the
//!   confused deputy);
//! - the statement the inventory report's KMS key needs so S3 can encrypt reports, and the
//!   inventory destination bucket policy;
//! - the forwarding Lambda's role policy;
//! - the policy for principals who sample object contents.
//!
//! Output is `serde_json::Value`. Every object is rebuilt with its keys in sorted (byte) order
//! before it is returned, so the serialized text is the same whether or not another crate in the
//! build turns on serde_json's `preserve_order` feature. Lists keep the setup's order with
//! duplicates removed. A list of one element is written as a plain string, as AWS prints it.
//!
//! Pure: no AWS calls. Nothing here checks that buckets, keys or roles exist.

mod documents;
mod error;
pub mod presets;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use error::PolicyError;

/// A description of the customer's estate, from which every policy document is derived.
///
/// Deserializes from JSON or TOML; unknown fields are refused so a typo does not silently
/// drop a permission. [`generate`] validates it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySetup {
    /// AWS partition: `aws` (default) or `aws-us-gov`.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// The customer account that owns the source buckets and the connector role (12 digits).
    pub account_id: String,
    /// Region of the buckets and keys, e.g. `us-east-1`.
    pub region: String,
    /// Name of the role the connector assumes (the identity policy is attached to it).
    pub connector_role_name: String,
    /// Who may assume the connector role: the vendor's account id, its root ARN, or a role ARN.
    pub trusted_principal: String,
    /// The STS external ID the vendor generated for this customer.
    pub external_id: String,
    /// Buckets to catalogue.
    pub source_buckets: Vec<SourceBucket>,
    /// Where S3 Inventory delivers reports for the source buckets, if used.
    #[serde(default)]
    pub inventory: Option<InventorySetup>,
    /// The Lambda that forwards inventory reports to another bucket, if used.
    #[serde(default)]
    pub forwarding_lambda: Option<LambdaSetup>,
    /// Role ARNs of the people allowed to sample object contents.
    #[serde(default)]
    pub sampling_principals: Vec<String>,
    /// ARNs of the AWS Secrets Manager secrets holding SSE-C keys (the `secretsmanager:` key
    /// sources of `--sse-c-key` / `sampling.sse_c_keys`): the connector reads them with its own
    /// identity (`secretsmanager:GetSecretValue`).
    #[serde(default)]
    pub sse_c_key_secrets: Vec<String>,
}

fn default_partition() -> String {
    "aws".to_string()
}

// The external ID is not a credential, but it is per-customer and has no business in logs.
impl fmt::Debug for PolicySetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySetup")
            .field("partition", &self.partition)
            .field("account_id", &self.account_id)
            .field("region", &self.region)
            .field("connector_role_name", &self.connector_role_name)
            .field("trusted_principal", &self.trusted_principal)
            .field("external_id", &"<redacted>")
            .field("source_buckets", &self.source_buckets)
            .field("inventory", &self.inventory)
            .field("forwarding_lambda", &self.forwarding_lambda)
            .field("sampling_principals", &self.sampling_principals)
            .field("sse_c_key_secrets", &self.sse_c_key_secrets)
            .finish()
    }
}

/// One bucket the connector catalogues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBucket {
    /// The bucket name.
    pub name: String,
    /// ARN of the SSE-KMS key its objects are encrypted with (`None`: SSE-S3 or unencrypted).
    #[serde(default)]
    pub kms_key_arn: Option<String>,
}

/// Where S3 Inventory delivers the source buckets' reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventorySetup {
    /// The destination bucket (same account and region as the sources).
    pub destination_bucket: String,
    /// The report prefix configured on the inventory (empty: the bucket root).
    #[serde(default)]
    pub destination_prefix: String,
    /// How S3 encrypts the reports.
    pub report_encryption: ReportEncryption,
}

/// Encryption of inventory reports, as configured on the inventory.
///
/// Serialized with a `type` tag: `{ type = "sse-s3" }` or `{ type = "sse-kms", key_arn = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReportEncryption {
    /// S3-managed keys: no key policy needed.
    SseS3,
    /// A customer managed KMS key (the AWS managed `aws/s3` key is not supported by inventory).
    SseKms {
        /// The key ARN (not an alias).
        key_arn: String,
    },
}

/// The Lambda that copies inventory reports to a forwarding destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSetup {
    /// Name of the Lambda's execution role.
    pub role_name: String,
    /// The function name, to scope its log permissions (`None`: any `/aws/lambda/*` group).
    #[serde(default)]
    pub function_name: Option<String>,
    /// Bucket the reports are forwarded to.
    pub destination_bucket: String,
    /// Prefix under which they are written (empty: the bucket root).
    #[serde(default)]
    pub destination_prefix: String,
    /// SSE-KMS key of the forwarding destination ("key B"); `None` when it uses SSE-S3.
    #[serde(default)]
    pub destination_key_arn: Option<String>,
}

/// Every document generated for a setup. Identity and bucket policies are whole documents
/// (`Version` + `Statement`); the key-policy statement is a single statement to add to the
/// existing key policy (replacing a key policy wholesale can lock the account out of the key).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocuments {
    /// Identity policy attached to the connector role.
    pub connector_identity_policy: Value,
    /// Trust policy of the connector role.
    pub connector_trust_policy: Value,
    /// Statement to add to the inventory report key's policy (SSE-KMS reports only).
    pub inventory_key_policy_statement: Option<Value>,
    /// Bucket policy of the inventory destination bucket (when an inventory is described).
    pub inventory_destination_bucket_policy: Option<Value>,
    /// Identity policy attached to the forwarding Lambda's role.
    pub lambda_role_policy: Option<Value>,
    /// Identity policy attached to each sampling principal (when there are any).
    pub sampling_policy: Option<Value>,
    /// Where each document goes, for [`render_text`] and the CLI.
    pub targets: PolicyTargets,
}

impl PolicyDocuments {
    /// The documents present, by stable name (`connectorIdentityPolicy`,
    /// `connectorTrustPolicy`, `inventoryKeyPolicyStatement`, `inventoryDestinationBucketPolicy`,
    /// `lambdaRolePolicy`, `samplingPolicy`), always in this order. The CLI's JSON output and the
    /// gRPC `GeneratePolicies` answer both use these names.
    pub fn named(&self) -> Vec<(&'static str, &Value)> {
        let optional = [
            ("inventoryKeyPolicyStatement", &self.inventory_key_policy_statement),
            ("inventoryDestinationBucketPolicy", &self.inventory_destination_bucket_policy),
            ("lambdaRolePolicy", &self.lambda_role_policy),
            ("samplingPolicy", &self.sampling_policy),
        ];
        let mut out = vec![
            ("connectorIdentityPolicy", &self.connector_identity_policy),
            ("connectorTrustPolicy", &self.connector_trust_policy),
        ];
        out.extend(optional.into_iter().filter_map(|(name, doc)| doc.as_ref().map(|d| (name, d))));
        out
    }
}

/// Names of the things the documents are attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTargets {
    /// The connector role name.
    pub connector_role_name: String,
    /// The inventory report key ARN (SSE-KMS reports only).
    pub inventory_key_arn: Option<String>,
    /// The inventory destination bucket.
    pub inventory_destination_bucket: Option<String>,
    /// The forwarding Lambda's role name.
    pub lambda_role_name: Option<String>,
    /// The role ARNs the sampling policy is attached to.
    pub sampling_principals: Vec<String>,
}

/// Validates the setup and generates every document.
///
/// # Errors
///
/// [`PolicyError`] naming the first invalid field (in declaration order).
pub fn generate(setup: &PolicySetup) -> Result<PolicyDocuments, PolicyError> {
    let valid = documents::Validated::new(setup)?;
    Ok(valid.documents())
}

/// Human-readable rendering: one titled section per document, saying where it goes, with the
/// document as pretty-printed JSON.
pub fn render_text(docs: &PolicyDocuments) -> String {
    let t = &docs.targets;
    let mut sections: Vec<(String, &Value)> = vec![
        (
            format!("Identity policy of the connector role `{}`", t.connector_role_name),
            &docs.connector_identity_policy,
        ),
        (
            format!("Trust policy of the connector role `{}`", t.connector_role_name),
            &docs.connector_trust_policy,
        ),
    ];
    if let (Some(statement), Some(key)) = (&docs.inventory_key_policy_statement, &t.inventory_key_arn) {
        sections.push((
            format!("Statement to add to the key policy of the inventory report key {key}"),
            statement,
        ));
    }
    if let (Some(policy), Some(bucket)) =
        (&docs.inventory_destination_bucket_policy, &t.inventory_destination_bucket)
    {
        sections.push((
            format!("Bucket policy of the inventory destination bucket `{bucket}` (merge with existing statements)"),
            policy,
        ));
    }
    if let (Some(policy), Some(role)) = (&docs.lambda_role_policy, &t.lambda_role_name) {
        sections.push((format!("Identity policy of the forwarding Lambda role `{role}`"), policy));
    }
    if let Some(policy) = &docs.sampling_policy {
        sections.push((
            format!("Sampling policy, to attach to each of: {}", t.sampling_principals.join(", ")),
            policy,
        ));
    }
    let mut out = String::new();
    for (title, value) in sections {
        out.push_str("== ");
        out.push_str(&title);
        out.push_str(" ==\n");
        // Serializing a Value cannot fail (its map keys are strings).
        out.push_str(&serde_json::to_string_pretty(value).unwrap_or_default());
        out.push_str("\n\n");
    }
    out
}
