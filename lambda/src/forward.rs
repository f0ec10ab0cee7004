//! Forwarding one report: verify, copy server-side, advance the `latest` pointer.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{MetadataDirective, ServerSideEncryption, TaggingDirective};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3_connector_domain::inventory::location::{LocationError, ReportFile, ReportLocation};
use s3_connector_domain::inventory::manifest::{Manifest, verify_checksum};
use s3_connector_domain::inventory::md5_reader::md5_hex;
use serde::{Deserialize, Serialize};

use crate::config::{Config, DestinationEncryption};
use crate::error::{AwsErrorKind, AwsFailure, ForwardError, Operation};
use crate::event::ObjectEvent;

/// User metadata (`x-amz-meta-…`) on each copy: the verified MD5 of `manifest.json`.
pub const MD5_METADATA: &str = "inventory-manifest-md5";
/// User metadata on each copy: where it came from, `bucket/key` percent-encoded (headers are ASCII).
pub const SOURCE_METADATA: &str = "inventory-source";
/// The largest `manifest.json` read into memory (a manifest lists files, not objects).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
/// `manifest.checksum` is 32 hex digits; anything much larger is not one.
const MAX_CHECKSUM_BYTES: u64 = 4 * 1024;
/// Conditional writes of the pointer before giving up (the invocation is then retried).
const MAX_POINTER_ATTEMPTS: u32 = 5;
/// Format version of the pointer document.
const POINTER_VERSION: u32 = 1;

/// Sets the destination's encryption on a CopyObject or PutObject request (the two builders
/// share the setters but no trait).
macro_rules! with_destination_encryption {
    ($request:expr, $encryption:expr) => {
        match $encryption {
            DestinationEncryption::Kms { key_arn, bucket_key_enabled } => $request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key_arn)
                .bucket_key_enabled(*bucket_key_enabled),
            DestinationEncryption::S3Managed => $request.server_side_encryption(ServerSideEncryption::Aes256),
        }
    };
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both files were copied.
    Forwarded {
        /// The destination folder.
        destination: String,
        /// What happened to the pointer.
        latest: PointerUpdate,
    },
    /// A redelivery: both copies already carry this report's MD5; nothing was copied.
    AlreadyPresent {
        /// The destination folder.
        destination: String,
        /// What happened to the pointer (normally `Unchanged`).
        latest: PointerUpdate,
    },
    /// A `manifest.json` event before its checksum exists: the checksum's own event forwards it.
    WaitingForChecksum,
    /// Not something this function handles (another event type or key).
    Ignored {
        /// Why.
        reason: &'static str,
    },
}

impl Outcome {
    /// Stable name for logs and responses.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Forwarded { .. } => "forwarded",
            Outcome::AlreadyPresent { .. } => "already_present",
            Outcome::WaitingForChecksum => "waiting_for_checksum",
            Outcome::Ignored { .. } => "ignored",
        }
    }

    /// The pointer update, when the report was handled.
    pub fn latest(&self) -> Option<&PointerUpdate> {
        match self {
            Outcome::Forwarded { latest, .. } | Outcome::AlreadyPresent { latest, .. } => Some(latest),
            Outcome::WaitingForChecksum | Outcome::Ignored { .. } => None,
        }
    }
}

/// What happened to the `latest` pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PointerUpdate {
    /// There was none; it now names this report.
    Created,
    /// It named an older report (its folder given) and now names this one.
    Advanced {
        /// The report folder it named before.
        previous: String,
    },
    /// It already names this report.
    Unchanged,
    /// It names a newer report (folder given) and was left alone.
    KeptNewer {
        /// The newer report's folder.
        current: String,
    },
}

impl PointerUpdate {
    /// Stable name for logs and responses.
    pub fn name(&self) -> &'static str {
        match self {
            PointerUpdate::Created => "created",
            PointerUpdate::Advanced { .. } => "advanced",
            PointerUpdate::Unchanged => "unchanged",
            PointerUpdate::KeptNewer { .. } => "kept_newer",
        }
    }
}

/// The `latest` pointer document, `<prefix><source-bucket>/<config-id>/<pointer name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestPointer {
    /// Document format version.
    pub version: u32,
    /// The inventoried bucket.
    pub source_bucket: String,
    /// The inventory configuration id.
    pub config_id: String,
    /// The report folder name, `YYYY-MM-DDTHH-MMZ` (sorts chronologically as text).
    pub report_timestamp: String,
    /// The manifest's `creationTimestamp`, epoch milliseconds (breaks ties within a minute).
    pub creation_timestamp: i64,
    /// Key of the forwarded `manifest.json` in the destination bucket.
    pub manifest_key: String,
    /// Key of the forwarded `manifest.checksum`.
    pub checksum_key: String,
    /// MD5 of `manifest.json`, lowercase hex.
    pub manifest_md5: String,
}

impl LatestPointer {
    fn order(&self) -> (&str, i64) {
        (&self.report_timestamp, self.creation_timestamp)
    }
}

/// A report file as read from the inventory bucket.
struct Fetched {
    bytes: Vec<u8>,
    etag: Option<String>,
}

/// Forwards reports with one S3 client (built once at cold start) and the validated config.
#[derive(Debug, Clone)]
pub struct Forwarder {
    s3: Client,
    config: Config,
}

impl Forwarder {
    /// A forwarder writing where `config` says.
    pub fn new(s3: Client, config: Config) -> Forwarder {
        Forwarder { s3, config }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one S3 object notification.
    pub async fn forward(&self, event: &ObjectEvent) -> Result<Outcome, ForwardError> {
        if !event.is_object_created() {
            return Ok(Outcome::Ignored { reason: "not an ObjectCreated event" });
        }
        let (location, file) = match ReportLocation::parse(&event.key) {
            Ok(parsed) => parsed,
            Err(LocationError::NotAManifest { .. }) => {
                return Ok(Outcome::Ignored { reason: "not a manifest.json or manifest.checksum key" });
            }
            Err(source) => {
                return Err(ForwardError::ReportKey {
                    bucket: event.bucket.clone(),
                    key: event.key.clone(),
                    source,
                });
            }
        };
        let bucket = event.bucket.as_str();
        let checksum_key = location.checksum_key();
        let manifest_key = location.manifest_key();

        // S3 writes the checksum after the manifest: until it exists the report is incomplete.
        let checksum = match self.get_report(bucket, &checksum_key, MAX_CHECKSUM_BYTES).await {
            Ok(fetched) => fetched,
            Err(ForwardError::Aws(failure))
                if failure.kind == AwsErrorKind::NotFound && file == ReportFile::Manifest =>
            {
                return Ok(Outcome::WaitingForChecksum);
            }
            Err(e) => return Err(e),
        };
        let manifest = self.get_report(bucket, &manifest_key, MAX_MANIFEST_BYTES).await?;
        let manifest_error =
            |source| ForwardError::Manifest { bucket: bucket.to_string(), key: manifest_key.clone(), source };
        verify_checksum(&manifest.bytes, &checksum.bytes).map_err(manifest_error)?;
        let parsed = Manifest::parse(&manifest.bytes).map_err(manifest_error)?;
        if parsed.source_bucket != location.source_bucket {
            return Err(ForwardError::SourceBucketMismatch {
                bucket: bucket.to_string(),
                key: manifest_key,
                in_manifest: parsed.source_bucket,
                in_key: location.source_bucket,
            });
        }
        let md5 = md5_hex(&manifest.bytes);

        let destination = ReportLocation { prefix: self.config.dest_prefix.clone(), ..location.clone() };
        let (dest_manifest, dest_checksum) = (destination.manifest_key(), destination.checksum_key());
        // The checksum copy is written last, so it is checked first.
        let present = self.copy_md5(&dest_checksum).await?.as_deref() == Some(md5.as_str())
            && self.copy_md5(&dest_manifest).await?.as_deref() == Some(md5.as_str());
        if !present {
            self.copy(
                bucket,
                &manifest_key,
                manifest.etag.as_deref(),
                &dest_manifest,
                &md5,
                "application/json",
            )
            .await?;
            self.copy(bucket, &checksum_key, checksum.etag.as_deref(), &dest_checksum, &md5, "text/plain")
                .await?;
        }

        let stamp = destination.folder();
        let candidate = LatestPointer {
            version: POINTER_VERSION,
            source_bucket: destination.source_bucket.clone(),
            config_id: destination.config_id.clone(),
            report_timestamp: folder_name(&destination),
            creation_timestamp: parsed.creation_timestamp_ms,
            manifest_key: dest_manifest,
            checksum_key: dest_checksum,
            manifest_md5: md5,
        };
        let latest = self.advance_pointer(&destination, &candidate).await?;
        Ok(if present {
            Outcome::AlreadyPresent { destination: stamp, latest }
        } else {
            Outcome::Forwarded { destination: stamp, latest }
        })
    }

    /// The pointer key for a report's (source bucket, configuration).
    pub fn pointer_key(&self, location: &ReportLocation) -> String {
        format!(
            "{}{}/{}/{}",
            self.config.dest_prefix, location.source_bucket, location.config_id, self.config.pointer_name
        )
    }

    async fn get_report(&self, bucket: &str, key: &str, limit: u64) -> Result<Fetched, ForwardError> {
        let output = self.s3.get_object().bucket(bucket).key(key).send().await.map_err(|err| {
            AwsFailure::from_sdk(Operation::GetReport, bucket, key, None, &err).into_error()
        })?;
        let size = output.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        if size > limit {
            return Err(ForwardError::ManifestTooLarge {
                bucket: bucket.to_string(),
                key: key.to_string(),
                size,
                limit,
            });
        }
        let etag = output.e_tag().map(str::to_string);
        let bytes = read_body(output.body, Operation::GetReport, bucket, key).await?;
        Ok(Fetched { bytes, etag })
    }

    /// The MD5 recorded on a forwarded copy; `None` when there is no copy (or no MD5).
    async fn copy_md5(&self, key: &str) -> Result<Option<String>, ForwardError> {
        let bucket = self.config.dest_bucket.as_str();
        match self.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(output) => Ok(output.metadata().and_then(|m| m.get(MD5_METADATA)).cloned()),
            Err(err) => {
                let failure = AwsFailure::from_sdk(Operation::HeadCopy, bucket, key, None, &err);
                if failure.kind == AwsErrorKind::NotFound { Ok(None) } else { Err(failure.into_error()) }
            }
        }
    }

    /// Server-side copy into the destination; `source_etag` pins the bytes that were verified.
    async fn copy(
        &self,
        source_bucket: &str,
        source_key: &str,
        source_etag: Option<&str>,
        dest_key: &str,
        md5: &str,
        content_type: &str,
    ) -> Result<(), ForwardError> {
        let dest_bucket = self.config.dest_bucket.as_str();
        let source = format!("{source_bucket}/{source_key}");
        let mut request = self
            .s3
            .copy_object()
            .bucket(dest_bucket)
            .key(dest_key)
            .copy_source(utf8_percent_encode(&source, COPY_SOURCE).to_string())
            .metadata_directive(MetadataDirective::Replace)
            .metadata(MD5_METADATA, md5)
            .metadata(SOURCE_METADATA, utf8_percent_encode(&source, COPY_SOURCE).to_string())
            .content_type(content_type)
            // Inventory files carry no tags; REPLACE (with none) spares s3:GetObjectTagging.
            .tagging_directive(TaggingDirective::Replace);
        if let Some(etag) = source_etag {
            request = request.copy_source_if_match(etag);
        }
        request = with_destination_encryption!(request, &self.config.encryption);
        request.send().await.map(|_| ()).map_err(|err| {
            let mut failure = AwsFailure::from_sdk(
                Operation::CopyReport,
                dest_bucket,
                dest_key,
                self.config.kms_key_arn(),
                &err,
            );
            // A 412 here is the copy-source condition: the report changed after it was verified.
            if failure.kind == AwsErrorKind::PreconditionFailed {
                failure.message = Some(format!(
                    "s3://{source_bucket}/{source_key} changed after it was verified{}",
                    failure.message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                ));
            }
            failure.into_error()
        })
    }

    /// Moves the pointer to `candidate` if it is newer than what the pointer names, with a
    /// conditional write (If-None-Match for the first pointer, If-Match on the ETag read
    /// otherwise) so that concurrent deliveries cannot move it backwards.
    async fn advance_pointer(
        &self,
        location: &ReportLocation,
        candidate: &LatestPointer,
    ) -> Result<PointerUpdate, ForwardError> {
        let bucket = self.config.dest_bucket.as_str();
        let key = self.pointer_key(location);
        for _ in 0..MAX_POINTER_ATTEMPTS {
            let current = self.read_pointer(&key).await?;
            let (etag, update) = match current {
                None => (None, PointerUpdate::Created),
                Some((etag, Some(pointer))) => {
                    if candidate.order() < pointer.order() {
                        return Ok(PointerUpdate::KeptNewer { current: pointer.report_timestamp });
                    }
                    if candidate.order() == pointer.order() && candidate.manifest_md5 == pointer.manifest_md5
                    {
                        return Ok(PointerUpdate::Unchanged);
                    }
                    (Some(etag), PointerUpdate::Advanced { previous: pointer.report_timestamp })
                }
                Some((etag, None)) => {
                    tracing::warn!(bucket, key, "latest pointer is unreadable, replacing it");
                    (Some(etag), PointerUpdate::Advanced { previous: String::new() })
                }
            };
            match self.put_pointer(&key, candidate, etag.as_deref()).await {
                Ok(()) => return Ok(update),
                Err(ForwardError::Aws(failure)) if failure.kind == AwsErrorKind::PreconditionFailed => {
                    tracing::info!(bucket, key, "latest pointer changed concurrently, re-reading");
                }
                Err(e) => return Err(e),
            }
        }
        Err(ForwardError::PointerContention {
            bucket: bucket.to_string(),
            key,
            attempts: MAX_POINTER_ATTEMPTS,
        })
    }

    /// `None` when there is no pointer; `Some((etag, None))` when it does not parse.
    async fn read_pointer(&self, key: &str) -> Result<Option<(String, Option<LatestPointer>)>, ForwardError> {
        let bucket = self.config.dest_bucket.as_str();
        let known_key = self.config.kms_key_arn();
        let output = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(output) => output,
            Err(err) => {
                let failure = AwsFailure::from_sdk(Operation::GetPointer, bucket, key, known_key, &err);
                return if failure.kind == AwsErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(failure.into_error())
                };
            }
        };
        // Without an ETag the write cannot be conditional; `*` still refuses to clobber blindly.
        let etag = output.e_tag().map(str::to_string).unwrap_or_else(|| "*".to_string());
        let bytes = read_body(output.body, Operation::GetPointer, bucket, key).await?;
        let pointer = serde_json::from_slice::<LatestPointer>(&bytes).ok();
        Ok(Some((etag, pointer)))
    }

    async fn put_pointer(
        &self,
        key: &str,
        pointer: &LatestPointer,
        etag: Option<&str>,
    ) -> Result<(), ForwardError> {
        let bucket = self.config.dest_bucket.as_str();
        // Serializing a struct of strings and integers cannot fail.
        let body = serde_json::to_vec_pretty(pointer).unwrap_or_default();
        let mut request = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        request = match etag {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        request = with_destination_encryption!(request, &self.config.encryption);
        request.send().await.map(|_| ()).map_err(|err| {
            AwsFailure::from_sdk(Operation::PutPointer, bucket, key, self.config.kms_key_arn(), &err)
                .into_error()
        })
    }
}

/// Everything but unreserved characters and `/` is escaped in `x-amz-copy-source`.
const COPY_SOURCE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The folder name of a report (`2024-01-08T00-00Z`).
fn folder_name(location: &ReportLocation) -> String {
    let folder = location.folder();
    folder.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string()
}

async fn read_body(
    body: ByteStream,
    operation: Operation,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, ForwardError> {
    match body.collect().await {
        Ok(data) => Ok(data.into_bytes().to_vec()),
        // The connection broke mid-body: worth another attempt.
        Err(err) => Err(AwsFailure {
            operation,
            bucket: bucket.to_string(),
            key: key.to_string(),
            kind: AwsErrorKind::Network,
            code: None,
            message: Some(format!("reading the body: {err}")),
            status: None,
            kms_key_arn: None,
            principal: None,
        }
        .into_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encoding() {
        let encoded = utf8_percent_encode(
            "inv/inv reports/src/daily+full/2024-01-01T00-00Z/manifest.json",
            COPY_SOURCE,
        )
        .to_string();
        assert_eq!(encoded, "inv/inv%20reports/src/daily%2Bfull/2024-01-01T00-00Z/manifest.json");
        assert_eq!(utf8_percent_encode("b/\u{e9}~", COPY_SOURCE).to_string(), "b/%C3%A9~");
    }

    #[test]
    fn pointer_order_and_format() {
        let pointer = |stamp: &str, ms: i64| LatestPointer {
            version: 1,
            source_bucket: "src".into(),
            config_id: "cfg".into(),
            report_timestamp: stamp.into(),
            creation_timestamp: ms,
            manifest_key: format!("src/cfg/{stamp}/manifest.json"),
            checksum_key: format!("src/cfg/{stamp}/manifest.checksum"),
            manifest_md5: "0".repeat(32),
        };
        assert!(pointer("2024-01-01T00-00Z", 5).order() < pointer("2024-01-08T00-00Z", 1).order());
        assert!(pointer("2024-01-08T00-00Z", 1).order() < pointer("2024-01-08T00-00Z", 2).order());
        assert!(pointer("2023-12-31T23-59Z", 9).order() < pointer("2024-01-01T00-00Z", 0).order());
        let json = serde_json::to_value(pointer("2024-01-08T00-00Z", 1)).unwrap();
        assert_eq!(json["reportTimestamp"], "2024-01-08T00-00Z");
        assert_eq!(json["manifestKey"], "src/cfg/2024-01-08T00-00Z/manifest.json");
        let (location, _) = ReportLocation::parse("p/q/src/cfg/2024-01-08T00-00Z/manifest.json").unwrap();
        assert_eq!(folder_name(&location), "2024-01-08T00-00Z");
    }
}
