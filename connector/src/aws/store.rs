//! The narrow seams through which extraction talks to S3, KMS and STS.
//!
//! Extraction only needs a handful of calls; putting them behind traits lets tests replace AWS
//! (replayed responses, fakes) and keeps request counting and bounded body reads in one place.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use s3_connector_domain::model::ObjectMeta;

use super::error::{AwsError, AwsErrorKind};

/// One ListObjectsV2 request.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// Bucket.
    pub bucket: String,
    /// Key prefix ("" for all).
    pub prefix: String,
    /// Delimiter, to list one level only.
    pub delimiter: Option<String>,
    /// Continuation token from the previous page.
    pub continuation: Option<String>,
    /// List only keys after this one (first page only).
    pub start_after: Option<String>,
    /// Keys per page (`MaxKeys`); `None`: the service's maximum, 1,000.
    pub max_keys: Option<i32>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    /// Objects on the page.
    pub objects: Vec<ObjectMeta>,
    /// Common prefixes (with a delimiter).
    pub common_prefixes: Vec<String>,
    /// Token for the next page, if any.
    pub next: Option<String>,
}

/// Which bytes of an object to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The first `n` bytes.
    Head(u64),
    /// The last `n` bytes.
    Suffix(u64),
    /// `len` bytes from offset `start` (a Parquet column chunk, say).
    Span {
        /// First byte.
        start: u64,
        /// Number of bytes (at least 1).
        len: u64,
    },
}

impl ByteRange {
    /// Bytes asked for.
    pub fn byte_count(self) -> u64 {
        match self {
            ByteRange::Head(n) | ByteRange::Suffix(n) | ByteRange::Span { len: n, .. } => n,
        }
    }

    /// The HTTP Range header value.
    pub fn header(self) -> String {
        match self {
            ByteRange::Head(n) => format!("bytes=0-{}", n.saturating_sub(1)),
            ByteRange::Suffix(n) => format!("bytes=-{n}"),
            ByteRange::Span { start, len } => format!("bytes={start}-{}", start + len.max(1) - 1),
        }
    }
}

/// Encryption-related response headers of a GET or HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEncryption {
    /// `x-amz-server-side-encryption`.
    pub sse: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub kms_key_id: Option<String>,
    /// `x-amz-server-side-encryption-bucket-key-enabled`.
    pub bucket_key_enabled: Option<bool>,
    /// `x-amz-server-side-encryption-customer-algorithm`.
    pub sse_customer_algorithm: Option<String>,
    /// User metadata (names without `x-amz-meta-`); only the S3 Encryption Client's keys are
    /// kept, so user metadata values never travel further than this struct.
    pub crypto_metadata: HashMap<String, String>,
    /// Set when [`crate::cse::DecryptingStore`] decrypted the bytes of a client-side encrypted
    /// object (they are plaintext; the other fields still describe the stored ciphertext).
    pub client_side_read: Option<crate::cse::ClientSideRead>,
}

/// Bytes read from an object.
#[derive(Debug, Clone)]
pub struct RangeRead {
    /// The bytes (at most the requested range, and never more than the cap).
    pub bytes: Bytes,
    /// Offset of `bytes` in the object.
    pub start: u64,
    /// Size of the whole object.
    pub object_size: u64,
    /// Encryption headers of the response.
    pub encryption: ResponseEncryption,
}

/// HEAD of an object.
#[derive(Debug, Clone)]
pub struct ObjectHead {
    /// Object size.
    pub size: u64,
    /// Encryption headers.
    pub encryption: ResponseEncryption,
}

/// A bucket's default encryption rule, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultEncryptionRule {
    /// `AES256`, `aws:kms`, `aws:kms:dsse`.
    pub sse_algorithm: String,
    /// The configured key (id, alias or ARN).
    pub kms_master_key_id: Option<String>,
    /// Bucket Keys enabled.
    pub bucket_key_enabled: bool,
}

/// KMS key metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key ARN.
    pub arn: String,
    /// Key state (`Enabled`, `Disabled`, `PendingDeletion`, ...).
    pub state: String,
    /// `AWS` or `CUSTOMER`.
    pub manager: String,
}

/// The S3 calls extraction needs.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// One ListObjectsV2 page.
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError>;
    /// A ranged GET; the body is read up to `max_bytes` and the rest is dropped.
    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: ByteRange,
        max_bytes: u64,
    ) -> Result<RangeRead, AwsError>;
    /// HEAD of an object.
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError>;
    /// GetBucketEncryption; `Ok(None)` when no default is configured.
    async fn bucket_encryption(&self, bucket: &str) -> Result<Option<DefaultEncryptionRule>, AwsError>;
}

/// The KMS calls extraction needs.
#[async_trait]
pub trait KeyDirectory: Send + Sync {
    /// DescribeKey for a key id, alias or ARN.
    async fn describe_key(&self, key_id: &str) -> Result<KeyInfo, AwsError>;
}

/// The STS call extraction needs.
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// GetCallerIdentity: the caller's ARN.
    async fn caller_arn(&self) -> Result<String, AwsError>;
}

/// Request counts by operation, and bytes fetched.
#[derive(Debug, Default)]
pub struct RequestStats {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    bytes_fetched: AtomicU64,
}

impl RequestStats {
    /// Counts one request.
    pub fn count(&self, operation: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry(operation).or_default() += 1;
    }

    /// Adds fetched bytes.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_fetched.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(super::metrics::BYTES_READ).increment(n);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Bytes fetched so far.
    pub fn bytes_fetched(&self) -> u64 {
        self.bytes_fetched.load(Ordering::Relaxed)
    }
}

/// Keys of the S3 Encryption Client metadata (V1/V2/V3 and instruction-file marker).
fn is_crypto_metadata_key(name: &str) -> bool {
    matches!(
        name,
        "x-amz-key"
            | "x-amz-key-v2"
            | "x-amz-iv"
            | "x-amz-matdesc"
            | "x-amz-wrap-alg"
            | "x-amz-cek-alg"
            | "x-amz-tag-len"
            | "x-amz-unencrypted-content-length"
            | "x-amz-c"
            | "x-amz-3"
            | "x-amz-w"
            | "x-amz-t"
            | "x-amz-m"
            | "x-amz-d"
            | "x-amz-i"
            | "x-amz-crypto-instr-file"
    )
}

fn crypto_metadata(metadata: Option<&HashMap<String, String>>) -> HashMap<String, String> {
    metadata
        .map(|m| {
            m.iter()
                .filter(|(k, _)| is_crypto_metadata_key(&k.to_ascii_lowercase()))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The encryption headers GET and HEAD responses share.
fn response_encryption(
    sse: Option<&aws_sdk_s3::types::ServerSideEncryption>,
    kms_key_id: Option<&str>,
    bucket_key_enabled: Option<bool>,
    sse_customer_algorithm: Option<&str>,
    metadata: Option<&HashMap<String, String>>,
) -> ResponseEncryption {
    ResponseEncryption {
        sse: sse.map(|s| s.as_str().to_string()),
        kms_key_id: kms_key_id.map(str::to_string),
        bucket_key_enabled,
        sse_customer_algorithm: sse_customer_algorithm.map(str::to_string),
        crypto_metadata: crypto_metadata(metadata),
        client_side_read: None,
    }
}

/// Parses `Content-Range: bytes first-last/total`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// [`ObjectStore`] over the AWS SDK.
pub struct SdkObjectStore {
    client: aws_sdk_s3::Client,
    stats: std::sync::Arc<RequestStats>,
    sse_c: Option<std::sync::Arc<super::ssec::SseCKeys>>,
}

impl SdkObjectStore {
    /// Wraps a client; requests are counted in `stats`.
    pub fn new(client: aws_sdk_s3::Client, stats: std::sync::Arc<RequestStats>) -> Self {
        SdkObjectStore { client, stats, sse_c: None }
    }

    /// Sends the configured SSE-C key (with its MD5) on GET and HEAD of the objects it covers.
    /// The caller checks the transport first ([`super::ssec::check_transport`]).
    pub fn with_sse_c(mut self, keys: std::sync::Arc<super::ssec::SseCKeys>) -> Self {
        self.sse_c = (!keys.is_empty()).then_some(keys);
        self
    }

    fn sse_c_key(&self, bucket: &str, key: &str) -> Option<&super::ssec::SseCustomerKey> {
        self.sse_c.as_ref().and_then(|k| k.key_for(bucket, key))
    }
}

/// With an SSE-C key sent, S3 answers a wrong key with a bare 403: say which it is.
fn with_key_mismatch(mut e: AwsError, key_sent: bool) -> AwsError {
    if key_sent && e.status == Some(403) && e.kind == AwsErrorKind::AccessDenied {
        e.kind = AwsErrorKind::SseCKeyMismatch;
    }
    e
}

#[async_trait]
impl ObjectStore for SdkObjectStore {
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError> {
        self.stats.count("ListObjectsV2");
        let mut call = self.client.list_objects_v2().bucket(&request.bucket);
        if !request.prefix.is_empty() {
            call = call.prefix(&request.prefix);
        }
        if let Some(d) = &request.delimiter {
            call = call.delimiter(d);
        }
        if let Some(token) = &request.continuation {
            call = call.continuation_token(token);
        } else if let Some(after) = &request.start_after {
            call = call.start_after(after);
        }
        if let Some(max_keys) = request.max_keys {
            call = call.max_keys(max_keys);
        }
        let out = call.send().await.map_err(|e| {
            let prefix = (!request.prefix.is_empty()).then_some(request.prefix.as_str());
            AwsError::from_sdk("s3:ListBucket", Some(&request.bucket), prefix, &e)
        })?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    last_modified_ms: o.last_modified().and_then(|t| t.to_millis().ok()),
                    etag: o.e_tag().map(|e| e.trim_matches('"').to_string()),
                    storage_class: o.storage_class().map(|s| s.as_str().to_string()),
                })
            })
            .collect();
        let common_prefixes =
            out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_string)).collect();
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok(ListPage { objects, common_prefixes, next })
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: ByteRange,
        max_bytes: u64,
    ) -> Result<RangeRead, AwsError> {
        self.stats.count("GetObject");
        let customer_key = self.sse_c_key(bucket, key);
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(range.header())
            .set_sse_customer_algorithm(customer_key.map(|_| "AES256".to_string()))
            .set_sse_customer_key(customer_key.map(|k| k.key_base64().to_string()))
            .set_sse_customer_key_md5(customer_key.map(|k| k.md5_base64().to_string()))
            .send()
            .await
            .map_err(|e| {
                with_key_mismatch(
                    AwsError::from_sdk("s3:GetObject", Some(bucket), Some(key), &e),
                    customer_key.is_some(),
                )
            })?;
        let encryption = response_encryption(
            out.server_side_encryption(),
            out.ssekms_key_id(),
            out.bucket_key_enabled(),
            out.sse_customer_algorithm(),
            out.metadata(),
        );
        let content_length = out.content_length().unwrap_or(0).max(0) as u64;
        let (start, object_size) = match out.content_range().and_then(parse_content_range) {
            Some((first, _last, total)) => (first, total),
            // 200 instead of 206: the server ignored the range and sends the whole object.
            None => (0, content_length),
        };
        let mut body = out.body;
        let mut buffer = BytesMut::with_capacity(content_length.min(max_bytes) as usize);
        while (buffer.len() as u64) < max_bytes {
            match body.try_next().await {
                Ok(Some(chunk)) => {
                    let room = (max_bytes - buffer.len() as u64) as usize;
                    buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(AwsError {
                        operation: "s3:GetObject",
                        bucket: Some(bucket.to_string()),
                        resource: Some(key.to_string()),
                        kind: AwsErrorKind::Network,
                        code: None,
                        message: Some(format!("reading the response body: {e}")),
                        status: None,
                    });
                }
            }
        }
        self.stats.add_bytes(buffer.len() as u64);
        Ok(RangeRead { bytes: buffer.freeze(), start, object_size, encryption })
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError> {
        self.stats.count("HeadObject");
        let customer_key = self.sse_c_key(bucket, key);
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_sse_customer_algorithm(customer_key.map(|_| "AES256".to_string()))
            .set_sse_customer_key(customer_key.map(|k| k.key_base64().to_string()))
            .set_sse_customer_key_md5(customer_key.map(|k| k.md5_base64().to_string()))
            .send()
            .await
            .map_err(|e| {
                with_key_mismatch(
                    AwsError::from_sdk("s3:GetObject", Some(bucket), Some(key), &e),
                    customer_key.is_some(),
                )
            })?;
        Ok(ObjectHead {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            encryption: response_encryption(
                out.server_side_encryption(),
                out.ssekms_key_id(),
                out.bucket_key_enabled(),
                out.sse_customer_algorithm(),
                out.metadata(),
            ),
        })
    }

    async fn bucket_encryption(&self, bucket: &str) -> Result<Option<DefaultEncryptionRule>, AwsError> {
        self.stats.count("GetBucketEncryption");
        match self.client.get_bucket_encryption().bucket(bucket).send().await {
            Ok(out) => {
                let rule = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first())
                    .and_then(|r| {
                        let default = r.apply_server_side_encryption_by_default()?;
                        Some(DefaultEncryptionRule {
                            sse_algorithm: default.sse_algorithm().as_str().to_string(),
                            kms_master_key_id: default.kms_master_key_id().map(str::to_string),
                            bucket_key_enabled: r.bucket_key_enabled().unwrap_or(false),
                        })
                    });
                Ok(rule)
            }
            Err(e) => {
                let err = AwsError::from_sdk("s3:GetEncryptionConfiguration", Some(bucket), None, &e);
                // Legacy S3 and S3-compatible stores answer 404 when no default is configured.
                if err.code.as_deref() == Some("ServerSideEncryptionConfigurationNotFoundError") {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }
}

/// [`KeyDirectory`] over the AWS SDK.
pub struct SdkKeyDirectory {
    client: aws_sdk_kms::Client,
    stats: std::sync::Arc<RequestStats>,
}

impl SdkKeyDirectory {
    /// Wraps a client.
    pub fn new(client: aws_sdk_kms::Client, stats: std::sync::Arc<RequestStats>) -> Self {
        SdkKeyDirectory { client, stats }
    }
}

/// kms:DescribeKey, counted; shared by extraction's [`SdkKeyDirectory`] and `check`'s key
/// inspector.
pub(crate) async fn describe_key_metadata(
    client: &aws_sdk_kms::Client,
    stats: &RequestStats,
    key_id: &str,
) -> Result<aws_sdk_kms::types::KeyMetadata, AwsError> {
    stats.count("kms:DescribeKey");
    let out = client
        .describe_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("kms:DescribeKey", None, Some(key_id), &e))?;
    out.key_metadata.ok_or_else(|| AwsError {
        operation: "kms:DescribeKey",
        bucket: None,
        resource: Some(key_id.to_string()),
        kind: AwsErrorKind::Other,
        code: None,
        message: Some("response had no key metadata".into()),
        status: None,
    })
}

#[async_trait]
impl KeyDirectory for SdkKeyDirectory {
    async fn describe_key(&self, key_id: &str) -> Result<KeyInfo, AwsError> {
        let meta = describe_key_metadata(&self.client, &self.stats, key_id).await?;
        Ok(KeyInfo {
            arn: meta.arn().unwrap_or(key_id).to_string(),
            state: meta.key_state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            manager: meta.key_manager().map(|m| m.as_str().to_string()).unwrap_or_default(),
        })
    }
}

/// [`IdentityProvider`] over the AWS SDK.
pub struct SdkIdentity {
    client: aws_sdk_sts::Client,
    stats: std::sync::Arc<RequestStats>,
}

impl SdkIdentity {
    /// Wraps a client.
    pub fn new(client: aws_sdk_sts::Client, stats: std::sync::Arc<RequestStats>) -> Self {
        SdkIdentity { client, stats }
    }
}

#[async_trait]
impl IdentityProvider for SdkIdentity {
    async fn caller_arn(&self) -> Result<String, AwsError> {
        self.stats.count("sts:GetCallerIdentity");
        let out = self
            .client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", None, None, &e))?;
        Ok(out.arn().unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 0-8/10"), Some((0, 8, 10)));
        assert_eq!(parse_content_range("bytes 8-9/10"), Some((8, 9, 10)));
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("garbage"), None);
    }

    #[test]
    fn ranges_render_as_http_headers() {
        assert_eq!(ByteRange::Head(1024).header(), "bytes=0-1023");
        assert_eq!(ByteRange::Suffix(65536).header(), "bytes=-65536");
    }

    #[test]
    fn only_crypto_metadata_is_kept() {
        let mut m = HashMap::new();
        m.insert("x-amz-key-v2".to_string(), "edk".to_string());
        m.insert("owner-email".to_string(), "someone@example.com".to_string());
        let kept = crypto_metadata(Some(&m));
        assert_eq!(kept.len(), 1);
        assert!(kept.contains_key("x-amz-key-v2"));
    }
}
