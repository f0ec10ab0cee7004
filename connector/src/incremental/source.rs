//! The S3 seam of incremental extraction: listing report folders, reading the small report
//! files, streaming data files, reading inventory configurations, and (for an S3 state
//! location) writing state objects under SSE-KMS. Tests replace it; production uses the SDK.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::aws::control::{BucketControl, InventoryConfig, SdkBucketControl};
use crate::aws::{
    AwsContext, AwsError, AwsErrorKind, ListPage, ListRequest, ObjectStore, RequestStats, SdkObjectStore,
};

/// A GET whose body is read as a stream of chunks, in order.
pub struct ObjectBody {
    /// `Content-Length` of the response.
    pub size: u64,
    /// The body.
    pub chunks: BoxStream<'static, Result<Bytes, AwsError>>,
}

impl std::fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBody").field("size", &self.size).finish_non_exhaustive()
    }
}

/// The S3 calls incremental extraction makes.
#[async_trait]
pub trait InventorySource: Send + Sync {
    /// One ListObjectsV2 page.
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError>;
    /// GetObject, body streamed.
    async fn get(&self, bucket: &str, key: &str) -> Result<ObjectBody, AwsError>;
    /// PutObject of a local file, encrypted with SSE-KMS under `kms_key_id` (or the bucket
    /// default when `None`).
    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        kms_key_id: Option<&str>,
    ) -> Result<(), AwsError>;
    /// The source bucket's inventory configurations.
    async fn inventory_configurations(&self, bucket: &str) -> Result<Vec<InventoryConfig>, AwsError>;
    /// DeleteObject (superseded state snapshots of an S3 state location).
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), AwsError>;
}

/// [`InventorySource`] over the AWS SDK.
pub struct SdkInventorySource {
    client: aws_sdk_s3::Client,
    store: SdkObjectStore,
    control: SdkBucketControl,
    stats: Arc<RequestStats>,
}

impl SdkInventorySource {
    /// The SDK-backed source of a connection; requests are counted in `stats`.
    pub fn from_aws(aws: &AwsContext, stats: Arc<RequestStats>) -> Self {
        let client = aws.s3_client();
        SdkInventorySource {
            store: SdkObjectStore::new(client.clone(), stats.clone()),
            control: SdkBucketControl::new(client.clone(), stats.clone()),
            client,
            stats,
        }
    }
}

fn body_error(bucket: &str, key: &str, detail: String) -> AwsError {
    AwsError {
        operation: "s3:GetObject",
        bucket: Some(bucket.to_string()),
        resource: Some(key.to_string()),
        kind: AwsErrorKind::Network,
        code: None,
        message: Some(format!("reading the response body: {detail}")),
        status: None,
    }
}

#[async_trait]
impl InventorySource for SdkInventorySource {
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError> {
        self.store.list_page(request).await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<ObjectBody, AwsError> {
        self.stats.count("GetObject");
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:GetObject", Some(bucket), Some(key), &e))?;
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        let (bucket, key, stats) = (bucket.to_string(), key.to_string(), self.stats.clone());
        let chunks = futures::stream::unfold(Some(out.body), move |body| {
            let (bucket, key, stats) = (bucket.clone(), key.clone(), stats.clone());
            async move {
                let mut body = body?;
                match body.try_next().await {
                    Ok(Some(chunk)) => {
                        stats.add_bytes(chunk.len() as u64);
                        Some((Ok(chunk), Some(body)))
                    }
                    Ok(None) => None,
                    Err(e) => Some((Err(body_error(&bucket, &key, e.to_string())), None)),
                }
            }
        });
        Ok(ObjectBody { size, chunks: Box::pin(chunks) })
    }

    async fn put_file(
        &self,
        bucket: &str,
        key: &str,
        path: &Path,
        kms_key_id: Option<&str>,
    ) -> Result<(), AwsError> {
        self.stats.count("PutObject");
        let body = aws_sdk_s3::primitives::ByteStream::from_path(path).await.map_err(|e| AwsError {
            operation: "s3:PutObject",
            bucket: Some(bucket.to_string()),
            resource: Some(key.to_string()),
            kind: AwsErrorKind::Other,
            code: None,
            message: Some(format!("reading {}: {e}", path.display())),
            status: None,
        })?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(kms_key_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:PutObject", Some(bucket), Some(key), &e))?;
        Ok(())
    }

    async fn inventory_configurations(&self, bucket: &str) -> Result<Vec<InventoryConfig>, AwsError> {
        self.control.inventory_configurations(bucket).await
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), AwsError> {
        self.stats.count("DeleteObject");
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("s3:DeleteObject", Some(bucket), Some(key), &e))?;
        Ok(())
    }
}
