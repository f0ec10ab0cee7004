//! Dynamic sampling of one object: the fewest ranged reads that give the wanted rows, through
//! an [`ObjectStore`] built for the *requesting user* (the caller decides whose identity; this
//! module never builds clients).
//!
//! ```text
//! key ─► format (extension, else the first bytes)
//!   text (CSV/TSV/PSV, JSON Lines, JSON arrays; gz/zstd/bz2), Avro
//!           ─► GET bytes=0-(max_read) ─► domain::sample_text_head (Avro: its complete blocks)
//!   Parquet ─► GET tail ─► footer ─► plan (row groups × projected chunks)
//!           ─► GET each span of adjacent chunks
//!           ─► domain::sample::parquet::sample
//!   ORC     ─► GET tail (PostScript, Footer, Metadata) ─► plan (stripes)
//!           ─► GET the stripes' footers (small stripes whole) ─► projected streams
//!           ─► GET each span of adjacent streams ─► domain::sample::orc::sample
//! ```
//!
//! AWS failures become [`SampleFailure::Denied`] with the same problem codes as extraction
//! (`KMS_ACCESS_DENIED` with the key ARN and principal, `KMS_KEY_DISABLED`, `SSE_C_KEY_REQUIRED`,
//! `ACCESS_DENIED`, `OBJECT_NOT_FOUND`, ...). Sampled values are never logged.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use s3_connector_domain::format::{DetectedFormat, detect_from_content, detect_from_key};
use s3_connector_domain::model::{Compression, EncryptionType, FileFormat};
use s3_connector_domain::sample::orc::{self, OrcSampleError};
use s3_connector_domain::sample::parquet::{self as pq, ParquetSampleError, SparseFile};
use s3_connector_domain::sample::{Sample, SampleFileError, SampleLimits, SampleMode, sample_text_head};
use s3_connector_domain::schema::{Fetched, InferenceLimits, InferenceStep};

use crate::aws::{AwsError, ByteRange, ObjectStore, ResponseEncryption};
use crate::extract::problems::{ObjectContext, object_problem};
use crate::extract::report::Problem;

/// How to sample.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Columns to return (all when empty).
    pub columns: Vec<String>,
    /// Head or random.
    pub mode: SampleMode,
    /// Rows and value size.
    pub limits: SampleLimits,
    /// Bytes read for text formats and decompressed at most.
    pub inference: InferenceLimits,
    /// Bytes of column chunks (Parquet) or column streams (ORC) read at most.
    pub max_chunk_bytes: u64,
    /// Ranged GETs in flight at once (Parquet chunks).
    pub concurrency: usize,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            columns: Vec::new(),
            mode: SampleMode::Head,
            limits: SampleLimits::default(),
            inference: InferenceLimits::default(),
            max_chunk_bytes: 64 * 1024 * 1024,
            concurrency: 4,
        }
    }
}

/// Rows of one object.
#[derive(Debug, Clone)]
pub struct ObjectSample {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// Format read.
    pub format: FileFormat,
    /// Encryption S3 reported on the reads.
    pub encryption: EncryptionType,
    /// The rows.
    pub sample: Sample,
    /// Bytes fetched.
    pub bytes_read: u64,
}

/// Why no rows came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SampleFailure {
    /// S3 or KMS refused or failed (problem code, key ARN, principal, fixing statement).
    #[error("{}", .0.message)]
    Denied(Box<Problem>),
    /// The file cannot be read as its format.
    #[error("s3://{bucket}/{key}: {message} [{code}]")]
    File {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Stable code (FILE_TRUNCATED, FILE_MALFORMED, INVALID_UTF8, SAMPLE_UNKNOWN_COLUMN, ...).
        code: &'static str,
        /// What is wrong (never the content).
        message: String,
    },
    /// Client-side encrypted: the bytes are ciphertext.
    #[error("s3://{bucket}/{key} is client-side encrypted: sampling it needs the wrapping key")]
    ClientSideEncrypted {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
}

impl SampleFailure {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            SampleFailure::Denied(p) => p.code,
            SampleFailure::File { code, .. } => code,
            SampleFailure::ClientSideEncrypted { .. } => "CLIENT_SIDE_ENCRYPTED",
        }
    }
}

struct Target<'a> {
    store: &'a dyn ObjectStore,
    bucket: &'a str,
    key: &'a str,
    principal: Option<&'a str>,
    region: &'a str,
}

impl Target<'_> {
    fn denied(&self, e: &AwsError) -> SampleFailure {
        let ctx = ObjectContext {
            bucket: self.bucket,
            dataset_prefix: "",
            key: self.key,
            principal: self.principal,
            known_kms_key: None,
            region: self.region,
        };
        SampleFailure::Denied(Box::new(object_problem(e, &ctx)))
    }

    fn file(&self, code: &'static str, message: String) -> SampleFailure {
        SampleFailure::File { bucket: self.bucket.into(), key: self.key.into(), code, message }
    }

    async fn get(&self, range: ByteRange) -> Result<crate::aws::RangeRead, SampleFailure> {
        self.store
            .get_range(self.bucket, self.key, range, range.byte_count())
            .await
            .map_err(|e| self.denied(&e))
    }

    /// The encryption a read reports; a client-side encrypted object that was not decrypted
    /// (no key configured) is refused rather than parsed as if it were plaintext.
    fn readable_encryption(&self, read: &ResponseEncryption) -> Result<EncryptionType, SampleFailure> {
        let encryption = encryption_of(read);
        if encryption == EncryptionType::ClientSide && read.client_side_read.is_none() {
            return Err(SampleFailure::ClientSideEncrypted {
                bucket: self.bucket.into(),
                key: self.key.into(),
            });
        }
        Ok(encryption)
    }
}

fn encryption_of(enc: &ResponseEncryption) -> EncryptionType {
    if !enc.crypto_metadata.is_empty() {
        return EncryptionType::ClientSide;
    }
    if enc.sse_customer_algorithm.is_some() {
        return EncryptionType::SseC;
    }
    match enc.sse.as_deref() {
        Some("aws:kms") => EncryptionType::SseKms,
        Some("aws:kms:dsse") => EncryptionType::DsseKms,
        Some("AES256") => EncryptionType::SseS3,
        Some(_) => EncryptionType::Unknown,
        None => EncryptionType::None,
    }
}

/// CPU work off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    tokio::task::spawn_blocking(work).await.map_err(|e| format!("sampling task failed: {e}"))
}

/// Samples one object as whoever `store` authenticates as. `principal` (the user's ARN) and
/// `region` only enrich denial messages.
pub async fn sample_object(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &str,
    principal: Option<&str>,
    region: &str,
    options: &SampleOptions,
) -> Result<ObjectSample, SampleFailure> {
    let target = Target { store, bucket, key, principal, region };
    let mut detected = detect_from_key(key);
    if detected.format == FileFormat::Parquet && detected.compression == Compression::None {
        return sample_parquet(&target, options).await;
    }
    if detected.format == FileFormat::Orc && detected.compression == Compression::None {
        return sample_orc(&target, options).await;
    }
    let head = target.get(ByteRange::Head(options.inference.max_read_bytes.max(1024))).await?;
    let encryption = target.readable_encryption(&head.encryption)?;
    if detected.format == FileFormat::Unknown
        && let Some(found) = detect_from_content(&head.bytes)
    {
        detected = found;
    }
    if detected.format == FileFormat::Parquet {
        return sample_parquet(&target, options).await;
    }
    if detected.format == FileFormat::Orc {
        return sample_orc(&target, options).await;
    }
    let bytes_read = head.bytes.len() as u64;
    let opts = options.clone();
    let result = blocking(move || {
        sample_text_head(
            detected,
            &head.bytes,
            head.object_size,
            &opts.columns,
            opts.mode,
            &opts.limits,
            &opts.inference,
        )
    })
    .await
    .map_err(|m| target.file("INTERNAL_ERROR", m))?;
    let sample = result.map_err(|e: SampleFileError| target.file(e.code(), e.to_string()))?;
    Ok(ObjectSample {
        bucket: bucket.into(),
        key: key.into(),
        format: detected.format,
        encryption,
        sample,
        bytes_read,
    })
}

fn parquet_failure(target: &Target<'_>, e: ParquetSampleError) -> SampleFailure {
    target.file(e.code(), e.to_string())
}

async fn sample_parquet(target: &Target<'_>, options: &SampleOptions) -> Result<ObjectSample, SampleFailure> {
    let probe = options.inference.footer_probe_bytes.max(8);
    let mut tail = target.get(ByteRange::Suffix(probe)).await?;
    let encryption = target.readable_encryption(&tail.encryption)?;
    let mut bytes_read = tail.bytes.len() as u64;
    let metadata = match pq::footer_metadata(&tail.bytes).map_err(|e| parquet_failure(target, e))? {
        Ok(m) => m,
        Err(needed) => {
            if needed > options.max_chunk_bytes || needed > tail.object_size {
                return Err(target.file(
                    "FILE_MALFORMED",
                    format!("the footer claims {needed} bytes of a {}-byte file", tail.object_size),
                ));
            }
            tail = target.get(ByteRange::Suffix(needed)).await?;
            bytes_read += tail.bytes.len() as u64;
            pq::footer_metadata(&tail.bytes)
                .map_err(|e| parquet_failure(target, e))?
                .map_err(|_| target.file("FILE_TRUNCATED", "the footer is longer than the file".into()))?
        }
    };
    // The schema as extraction reports it (same names and types).
    let fetched = Fetched { bytes: &tail.bytes, start: tail.start, object_size: tail.object_size };
    let detected = DetectedFormat { format: FileFormat::Parquet, compression: Compression::None };
    let fields = match s3_connector_domain::schema::infer(detected, fetched, &options.inference) {
        Ok(InferenceStep::Done(file)) => file.schema.fields,
        Ok(InferenceStep::NeedSuffix { .. }) => {
            return Err(target.file("FILE_MALFORMED", "the footer could not be read".into()));
        }
        Err(e) => return Err(target.file(e.code(), e.to_string())),
    };
    let plan = pq::plan(
        &metadata,
        &fields,
        &options.columns,
        options.mode,
        &options.limits,
        options.max_chunk_bytes,
    )
    .map_err(|e| parquet_failure(target, e))?;

    let mut file = SparseFile::new(tail.object_size);
    file.insert(tail.start, tail.bytes.clone());
    // Adjacent column chunks (a row group's projected columns) are fetched as one span.
    bytes_read += fetch_spans(target, &mut file, &plan.ranges, options.concurrency).await?;
    let opts = options.clone();
    let fields_for_rows = fields.clone();
    let plan_for_rows = plan.clone();
    let result =
        blocking(move || pq::sample(file, &plan_for_rows, &fields_for_rows, opts.mode, &opts.limits))
            .await
            .map_err(|m| target.file("INTERNAL_ERROR", m))?;
    let sample = result.map_err(|e| parquet_failure(target, e))?;
    Ok(ObjectSample {
        bucket: target.bucket.into(),
        key: target.key.into(),
        format: FileFormat::Parquet,
        encryption,
        sample,
        bytes_read,
    })
}

/// Gap between planned Parquet column chunks still fetched as one span: reading a few
/// unwanted bytes is cheaper than another request.
const PARQUET_MAX_GAP: u64 = 64 * 1024;

/// Fetches `ranges` not yet in `file` (those with gaps of at most [`PARQUET_MAX_GAP`] merged
/// into one span), `concurrency` GETs at a time, into `file`. Returns the bytes fetched.
async fn fetch_spans(
    target: &Target<'_>,
    file: &mut SparseFile,
    ranges: &[(u64, u64)],
    concurrency: usize,
) -> Result<u64, SampleFailure> {
    let missing: Vec<(u64, u64)> = ranges.iter().copied().filter(|&(s, l)| !file.holds(s, l)).collect();
    let spans = pq::coalesce(&missing, PARQUET_MAX_GAP);
    let mut queue = spans.iter().copied();
    let mut running = FuturesUnordered::new();
    let mut bytes_read = 0;
    loop {
        while running.len() < concurrency.max(1) {
            let Some((start, len)) = queue.next() else { break };
            running.push(async move { (start, target.get(ByteRange::Span { start, len }).await) });
        }
        let Some((start, read)) = running.next().await else { break };
        let read = read?;
        bytes_read += read.bytes.len() as u64;
        // A server that ignored the range sent the object from byte 0.
        let at = if read.start == start { start } else { read.start };
        file.insert(at, Bytes::clone(&read.bytes));
    }
    Ok(bytes_read)
}

fn orc_failure(target: &Target<'_>, e: OrcSampleError) -> SampleFailure {
    target.file(e.code(), e.to_string())
}

/// ORC: the tail (one suffix GET, a second only for a tail larger than the probe), the chosen
/// stripes' footers (small stripes whole), then the projected columns' streams.
async fn sample_orc(target: &Target<'_>, options: &SampleOptions) -> Result<ObjectSample, SampleFailure> {
    // orc-rust reads the last 16 KiB first: a smaller probe would always cost a second GET.
    let probe = options.inference.footer_probe_bytes.max(16 * 1024);
    let mut tail = target.get(ByteRange::Suffix(probe)).await?;
    let encryption = target.readable_encryption(&tail.encryption)?;
    let mut bytes_read = tail.bytes.len() as u64;
    let needed = orc::tail_length(&tail.bytes, tail.object_size).map_err(|e| orc_failure(target, e))?;
    if needed > tail.bytes.len() as u64 {
        if needed > options.max_chunk_bytes {
            return Err(orc_failure(
                target,
                OrcSampleError::TooLarge { needed, limit: options.max_chunk_bytes },
            ));
        }
        tail = target.get(ByteRange::Suffix(needed)).await?;
        bytes_read += tail.bytes.len() as u64;
    }
    let mut file = SparseFile::new(tail.object_size);
    file.insert(tail.start, tail.bytes.clone());
    // Footer parsing is CPU work: the schema as extraction reports it (same names and types),
    // then the footer and the plan, off the async runtime.
    let (fields, footer, mut plan) = {
        let file = file.clone();
        let opts = options.clone();
        let (bytes, start, object_size) = (tail.bytes.clone(), tail.start, tail.object_size);
        blocking(move || {
            let fetched = Fetched { bytes: &bytes, start, object_size };
            let detected = DetectedFormat { format: FileFormat::Orc, compression: Compression::None };
            let fields = match s3_connector_domain::schema::infer(detected, fetched, &opts.inference) {
                Ok(InferenceStep::Done(found)) => found.schema.fields,
                Ok(InferenceStep::NeedSuffix { .. }) => {
                    return Err(("FILE_MALFORMED", "the footer could not be read".to_string()));
                }
                Err(e) => return Err((e.code(), e.to_string())),
            };
            let orc_err = |e: OrcSampleError| (e.code(), e.to_string());
            let footer = orc::read_footer(&file).map_err(orc_err)?;
            let plan =
                orc::plan(&footer, &fields, &opts.columns, opts.mode, &opts.limits).map_err(orc_err)?;
            Ok((fields, footer, plan))
        })
        .await
        .map_err(|m| target.file("INTERNAL_ERROR", m))?
        .map_err(|(code, message)| target.file(code, message))?
    };
    bytes_read += fetch_spans(target, &mut file, &plan.footer_ranges, options.concurrency).await?;
    let (ranges, plan) = {
        let (file, footer, max) = (file.clone(), footer.clone(), options.max_chunk_bytes);
        blocking(move || orc::stream_ranges(&file, &footer, &mut plan, max).map(|r| (r, plan)))
            .await
            .map_err(|m| target.file("INTERNAL_ERROR", m))?
            .map_err(|e| orc_failure(target, e))?
    };
    bytes_read += fetch_spans(target, &mut file, &ranges, options.concurrency).await?;
    let opts = options.clone();
    let result = blocking(move || orc::sample(file, &footer, &plan, &fields, opts.mode, &opts.limits))
        .await
        .map_err(|m| target.file("INTERNAL_ERROR", m))?;
    let sample = result.map_err(|e| orc_failure(target, e))?;
    Ok(ObjectSample {
        bucket: target.bucket.into(),
        key: target.key.into(),
        format: FileFormat::Orc,
        encryption,
        sample,
        bytes_read,
    })
}

/// Files of a dataset tried at most.
const DATASET_FILES: usize = 3;

/// Samples `s3://bucket/<key_or_prefix>`: one object, or — for a prefix ending in `/` — a
/// dataset, reading files chosen across its listing (first, middle, last of the first page,
/// skipping junk) until enough rows are found. Rows of files whose columns differ from the
/// first file's are not mixed in.
pub async fn sample_uri(
    store: &dyn ObjectStore,
    bucket: &str,
    key_or_prefix: &str,
    principal: Option<&str>,
    region: &str,
    options: &SampleOptions,
) -> Result<ObjectSample, SampleFailure> {
    if !(key_or_prefix.is_empty() || key_or_prefix.ends_with('/')) {
        return sample_object(store, bucket, key_or_prefix, principal, region, options).await;
    }
    let target = Target { store, bucket, key: key_or_prefix, principal, region };
    let request = crate::aws::ListRequest {
        bucket: bucket.to_string(),
        prefix: key_or_prefix.to_string(),
        delimiter: None,
        continuation: None,
        start_after: None,
        max_keys: None,
    };
    let page = store.list_page(&request).await.map_err(|e| target.denied(&e))?;
    let grouping = s3_connector_domain::dataset::GroupingConfig::default();
    let files: Vec<&s3_connector_domain::model::ObjectMeta> = page
        .objects
        .iter()
        .filter(|o| {
            matches!(
                s3_connector_domain::dataset::classify(bucket, o, &grouping),
                s3_connector_domain::dataset::Classification::Data(_)
            )
        })
        .collect();
    if files.is_empty() {
        return Err(
            target.file("NO_DATA_FILES", format!("no data files under s3://{bucket}/{key_or_prefix}"))
        );
    }
    let mut picks: Vec<usize> = vec![0, files.len() / 2, files.len() - 1];
    picks.dedup();
    let mut result: Option<ObjectSample> = None;
    let mut last_failure = None;
    for &i in picks.iter().take(DATASET_FILES) {
        let file = files[i];
        match sample_object(store, bucket, &file.key, principal, region, options).await {
            Ok(found) => match result.as_mut() {
                None => result = Some(found),
                Some(acc) => {
                    let same = acc.sample.columns.iter().map(|c| &c.name).eq(found
                        .sample
                        .columns
                        .iter()
                        .map(|c| &c.name));
                    if same {
                        let room = options.limits.max_rows.saturating_sub(acc.sample.rows.len());
                        acc.sample.more_rows |= found.sample.rows.len() > room || found.sample.more_rows;
                        acc.sample.rows.extend(found.sample.rows.into_iter().take(room));
                        acc.bytes_read += found.bytes_read;
                    }
                }
            },
            // A denial on one file is the answer for the user: do not hide it behind others.
            Err(e @ SampleFailure::Denied(_)) | Err(e @ SampleFailure::ClientSideEncrypted { .. }) => {
                return Err(e);
            }
            Err(e) => last_failure = Some(e),
        }
        if result.as_ref().is_some_and(|r| r.sample.rows.len() >= options.limits.max_rows) {
            break;
        }
    }
    match (result, last_failure) {
        (Some(r), _) => Ok(r),
        (None, Some(e)) => Err(e),
        (None, None) => {
            Err(target
                .file("NO_DATA_FILES", format!("no readable files under s3://{bucket}/{key_or_prefix}")))
        }
    }
}

/// Who reads: an S3 seam acting as the user (or, only when explicitly allowed, the service).
pub struct Reader {
    /// S3 as the reader.
    pub store: Arc<dyn ObjectStore>,
    /// The reader's ARN (STS GetCallerIdentity), `None` for the service identity.
    pub principal: Option<String>,
}

/// Why no reader could be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReaderError {
    /// No user identity, and service-identity sampling is not allowed.
    #[error("a user identity is required: samples never run as the service unless the operator allows it")]
    NoUser,
    /// The identity is malformed.
    #[error("invalid user identity: {0}")]
    Invalid(String),
    /// STS refused the identity (not trusted, bad token, ...).
    #[error("{message}")]
    Identity {
        /// Stable STS failure code, e.g. ROLE_NOT_TRUSTED.
        code: &'static str,
        /// Explanation.
        message: String,
    },
}

/// Builds the reader for a sample. A user identity gets its own credentials (never the
/// service's: see `aws::identity`), resolved up front so that a role the user cannot assume is
/// an identity error, not a failed read.
pub async fn reader_for(
    service: &crate::aws::AwsContext,
    user: Option<crate::aws::identity::UserIdentity>,
    allow_service_identity: bool,
    sse_c: Option<Arc<crate::aws::ssec::SseCKeys>>,
    cse: Option<Arc<crate::cse::ClientSideDecryption>>,
    stats: Arc<crate::aws::RequestStats>,
) -> Result<Reader, ReaderError> {
    // Client-side decryption reads (and calls KMS) as the same identity as the store.
    let decrypting = |store: Arc<dyn ObjectStore>, kms: aws_sdk_kms::Client| -> Arc<dyn ObjectStore> {
        match &cse {
            Some(config) => Arc::new(crate::cse::DecryptingStore::new(
                store,
                config.clone(),
                Some(Arc::new(crate::cse::SdkDataKeyDecryptor::new(kms, stats.clone()))),
            )),
            None => store,
        }
    };
    let keyed = |store: SdkObjectStore| -> Arc<dyn ObjectStore> {
        match &sse_c {
            Some(keys) => Arc::new(store.with_sse_c(keys.clone())),
            None => Arc::new(store),
        }
    };
    use crate::aws::SdkObjectStore;
    use crate::aws::identity::{SdkSecurityTokenService, SecurityTokenService};
    match user {
        Some(identity) => {
            let ctx = identity.load(service).await.map_err(|e| ReaderError::Invalid(e.to_string()))?;
            let sts = SdkSecurityTokenService::new(ctx.sts_client(), stats.clone());
            let caller = sts.caller_identity().await.map_err(|e| ReaderError::Identity {
                code: e.kind.code(),
                message: format!("cannot act as {}: {e}", ctx.role_arn()),
            })?;
            // The operator's SSE-C keys serve the user's reads too (S3 still checks the user's
            // own permissions on the object).
            Ok(Reader {
                store: decrypting(
                    keyed(SdkObjectStore::new(ctx.s3_client(), stats.clone())),
                    ctx.kms_client(),
                ),
                principal: Some(caller.arn),
            })
        }
        None if allow_service_identity => Ok(Reader {
            store: decrypting(
                keyed(SdkObjectStore::new(service.s3_client(), stats.clone())),
                service.kms_client(),
            ),
            principal: None,
        }),
        None => Err(ReaderError::NoUser),
    }
}
