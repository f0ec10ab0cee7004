//! Seams for the configuration reads `check` makes (bucket location, inventory configurations,
//! bucket policy, KMS key details and key policy), next to the data-path seams of
//! [`super::store`], which they leave untouched.

use std::sync::Arc;

use async_trait::async_trait;

use super::error::AwsError;
use super::store::RequestStats;

/// One S3 Inventory configuration, as configured on the source bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryConfig {
    /// Configuration id.
    pub id: String,
    /// Whether S3 produces reports.
    pub enabled: bool,
    /// Destination bucket name (from the bucket ARN).
    pub destination_bucket: String,
    /// Destination account, when set.
    pub destination_account: Option<String>,
    /// Destination prefix.
    pub destination_prefix: Option<String>,
    /// `CSV`, `ORC` or `Parquet`.
    pub format: String,
    /// `Daily` or `Weekly`.
    pub frequency: String,
    /// `All` or `Current`.
    pub included_versions: String,
    /// Report encryption: `NONE`, `SSE_S3` or `SSE_KMS`.
    pub encryption: String,
    /// The report key, for `SSE_KMS`.
    pub encryption_key_id: Option<String>,
    /// Optional fields included.
    pub optional_fields: Vec<String>,
}

/// KMS key metadata `check` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDetails {
    /// Key ARN.
    pub arn: String,
    /// Key state (`Enabled`, `Disabled`, `PendingDeletion`, ...).
    pub state: String,
    /// `AWS` or `CUSTOMER`.
    pub manager: String,
    /// Key spec (`SYMMETRIC_DEFAULT`, ...).
    pub key_spec: String,
    /// Key usage (`ENCRYPT_DECRYPT`, ...).
    pub key_usage: String,
    /// Scheduled deletion date (RFC 3339), for keys pending deletion.
    pub deletion_date: Option<String>,
}

impl KeyDetails {
    /// The key's region, from its ARN.
    pub fn region(&self) -> Option<&str> {
        self.arn.split(':').nth(3).filter(|r| !r.is_empty())
    }
}

/// Bucket configuration reads.
#[async_trait]
pub trait BucketControl: Send + Sync {
    /// GetBucketLocation, normalised (`us-east-1` for the empty constraint).
    async fn bucket_region(&self, bucket: &str) -> Result<String, AwsError>;
    /// Every inventory configuration (ListBucketInventoryConfigurations, all pages).
    async fn inventory_configurations(&self, bucket: &str) -> Result<Vec<InventoryConfig>, AwsError>;
    /// One inventory configuration by id (GetBucketInventoryConfiguration); `Ok(None)` when
    /// the bucket has no configuration of that id.
    async fn inventory_configuration(
        &self,
        bucket: &str,
        id: &str,
    ) -> Result<Option<InventoryConfig>, AwsError>;
    /// GetBucketPolicy; `Ok(None)` when the bucket has none.
    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, AwsError>;
}

/// KMS reads beyond [`super::KeyDirectory`].
#[async_trait]
pub trait KeyInspector: Send + Sync {
    /// DescribeKey with the fields `check` reports.
    async fn key_details(&self, key_id: &str) -> Result<KeyDetails, AwsError>;
    /// GetKeyPolicy (the `default` policy) as JSON text.
    async fn key_policy(&self, key_id: &str) -> Result<String, AwsError>;
}

fn inventory_config(c: &aws_sdk_s3::types::InventoryConfiguration) -> InventoryConfig {
    let destination = c.destination().and_then(|d| d.s3_bucket_destination());
    let (kind, key) = match destination.and_then(|d| d.encryption()) {
        Some(e) if e.ssekms().is_some() => ("SSE_KMS", e.ssekms().map(|k| k.key_id().to_string())),
        Some(e) if e.sses3().is_some() => ("SSE_S3", None),
        _ => ("NONE", None),
    };
    InventoryConfig {
        id: c.id().to_string(),
        enabled: c.is_enabled(),
        destination_bucket: destination.map(|d| bucket_from_arn(d.bucket())).unwrap_or_default(),
        destination_account: destination.and_then(|d| d.account_id()).map(str::to_string),
        destination_prefix: destination.and_then(|d| d.prefix()).map(str::to_string),
        format: destination.map(|d| d.format().as_str().to_string()).unwrap_or_default(),
        frequency: c.schedule().map(|s| s.frequency().as_str().to_string()).unwrap_or_default(),
        included_versions: c.included_object_versions().as_str().to_string(),
        encryption: kind.to_string(),
        encryption_key_id: key,
        optional_fields: c.optional_fields().iter().map(|f| f.as_str().to_string()).collect(),
    }
}

/// A response the SDK could not read (a 200 with a body of the wrong shape, as some
/// S3-compatible stores send) carries no code or message: say so, with the SDK's reason.
fn with_response_detail<E, R>(
    mut err: AwsError,
    sdk: &aws_smithy_runtime_api::client::result::SdkError<E, R>,
) -> AwsError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let aws_smithy_runtime_api::client::result::SdkError::ResponseError(_) = sdk {
        let mut text = String::from("the response could not be parsed");
        let mut source = std::error::Error::source(sdk);
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        err.message = Some(text);
    }
    err
}

/// [`BucketControl`] over the AWS SDK.
pub struct SdkBucketControl {
    client: aws_sdk_s3::Client,
    stats: Arc<RequestStats>,
}

impl SdkBucketControl {
    /// Wraps a client.
    pub fn new(client: aws_sdk_s3::Client, stats: Arc<RequestStats>) -> Self {
        SdkBucketControl { client, stats }
    }
}

/// `arn:aws:s3:::name` → `name` (a bare name stays as it is).
pub fn bucket_from_arn(arn: &str) -> String {
    arn.rsplit(":::").next().unwrap_or(arn).to_string()
}

#[async_trait]
impl BucketControl for SdkBucketControl {
    async fn bucket_region(&self, bucket: &str) -> Result<String, AwsError> {
        self.stats.count("GetBucketLocation");
        let out = self
            .client
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:GetBucketLocation", Some(bucket), None, &e))?;
        Ok(match out.location_constraint().map(|c| c.as_str()) {
            None | Some("") => "us-east-1".to_string(),
            // The legacy constraint for eu-west-1.
            Some("EU") => "eu-west-1".to_string(),
            Some(region) => region.to_string(),
        })
    }

    async fn inventory_configurations(&self, bucket: &str) -> Result<Vec<InventoryConfig>, AwsError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        // A bucket has at most 1,000 configurations; the page cap only guards against a
        // server that never stops paging.
        for _ in 0..100 {
            self.stats.count("ListBucketInventoryConfigurations");
            let page = self
                .client
                .list_bucket_inventory_configurations()
                .bucket(bucket)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    with_response_detail(
                        AwsError::from_sdk("s3:GetInventoryConfiguration", Some(bucket), None, &e),
                        &e,
                    )
                })?;
            out.extend(page.inventory_configuration_list().iter().map(inventory_config));
            match (page.is_truncated(), page.next_continuation_token()) {
                (Some(true), Some(next)) => token = Some(next.to_string()),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    async fn inventory_configuration(
        &self,
        bucket: &str,
        id: &str,
    ) -> Result<Option<InventoryConfig>, AwsError> {
        self.stats.count("GetBucketInventoryConfiguration");
        match self.client.get_bucket_inventory_configuration().bucket(bucket).id(id).send().await {
            Ok(out) => Ok(out.inventory_configuration().map(inventory_config)),
            Err(e) => {
                let err = with_response_detail(
                    AwsError::from_sdk("s3:GetInventoryConfiguration", Some(bucket), Some(id), &e),
                    &e,
                );
                if err.code.as_deref() == Some("NoSuchConfiguration") { Ok(None) } else { Err(err) }
            }
        }
    }

    async fn bucket_policy(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        self.stats.count("GetBucketPolicy");
        match self.client.get_bucket_policy().bucket(bucket).send().await {
            Ok(out) => Ok(out.policy().map(str::to_string)),
            Err(e) => {
                let err = AwsError::from_sdk("s3:GetBucketPolicy", Some(bucket), None, &e);
                if err.code.as_deref() == Some("NoSuchBucketPolicy") { Ok(None) } else { Err(err) }
            }
        }
    }
}

/// [`KeyInspector`] over the AWS SDK.
pub struct SdkKeyInspector {
    client: aws_sdk_kms::Client,
    stats: Arc<RequestStats>,
}

impl SdkKeyInspector {
    /// Wraps a client.
    pub fn new(client: aws_sdk_kms::Client, stats: Arc<RequestStats>) -> Self {
        SdkKeyInspector { client, stats }
    }
}

#[async_trait]
impl KeyInspector for SdkKeyInspector {
    async fn key_details(&self, key_id: &str) -> Result<KeyDetails, AwsError> {
        let meta = super::store::describe_key_metadata(&self.client, &self.stats, key_id).await?;
        Ok(KeyDetails {
            arn: meta.arn().unwrap_or(key_id).to_string(),
            state: meta.key_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            manager: meta.key_manager().map(|m| m.as_str().to_string()).unwrap_or_default(),
            key_spec: meta.key_spec().map(|s| s.as_str().to_string()).unwrap_or_default(),
            key_usage: meta.key_usage().map(|u| u.as_str().to_string()).unwrap_or_default(),
            deletion_date: meta.deletion_date().map(|d| d.to_string()),
        })
    }

    async fn key_policy(&self, key_id: &str) -> Result<String, AwsError> {
        self.stats.count("kms:GetKeyPolicy");
        let out = self
            .client
            .get_key_policy()
            .key_id(key_id)
            .policy_name("default")
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("kms:GetKeyPolicy", None, Some(key_id), &e))?;
        Ok(out.policy().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_come_out_of_arns() {
        assert_eq!(bucket_from_arn("arn:aws:s3:::reports"), "reports");
        assert_eq!(bucket_from_arn("reports"), "reports");
    }

    #[test]
    fn key_region_is_read_from_the_arn() {
        let k = KeyDetails {
            arn: "arn:aws:kms:eu-west-1:123456789012:key/k".into(),
            state: "Enabled".into(),
            manager: "CUSTOMER".into(),
            key_spec: "SYMMETRIC_DEFAULT".into(),
            key_usage: "ENCRYPT_DECRYPT".into(),
            deletion_date: None,
        };
        assert_eq!(k.region(), Some("eu-west-1"));
        assert_eq!(KeyDetails { arn: "k".into(), ..k }.region(), None);
    }
}
