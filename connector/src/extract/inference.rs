//! Per-dataset work after listing: schema reads (ranged GETs), HEAD probes for the encryption
//! survey, KMS key normalisation, and turning failures into problems.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use s3_connector_domain::dataset::DatasetAggregate;
use s3_connector_domain::encryption::{EncryptionSummaryBuilder, observe_headers};
use s3_connector_domain::format::detect_from_key;
use s3_connector_domain::model::{EncryptionType, ObjectMeta, ObservedEncryption};
use s3_connector_domain::schema::{self, Fetched, FirstRead, InferenceStep, merge_schemas};
use tokio::sync::Mutex;

use super::RunContext;
use super::problems::{ObjectContext, object_problem};
use super::report::{BucketDefault, DatasetReport, Problem, Remediation, SchemaSourceReport, Severity};
use crate::aws::{AwsError, AwsErrorKind, ByteRange, KeyDirectory, ResponseEncryption};

/// Footers larger than this are not fetched (a footer this size is a broken or hostile file).
const MAX_FOOTER_BYTES: u64 = 16 * 1024 * 1024;
/// HEAD probes in flight per dataset.
const PROBE_CONCURRENCY: usize = 4;

/// Resolves KMS key ids and aliases to key ARNs with DescribeKey, once per id per run.
pub struct KeyResolver {
    directory: Arc<dyn KeyDirectory>,
    cache: Mutex<HashMap<String, String>>,
}

/// True for `arn:<partition>:kms:<region>:<account>:key/<id>`.
fn is_key_arn(id: &str) -> bool {
    id.starts_with("arn:") && id.contains(":kms:") && id.contains(":key/")
}

impl KeyResolver {
    /// A resolver over a key directory.
    pub fn new(directory: Arc<dyn KeyDirectory>) -> Self {
        KeyResolver { directory, cache: Mutex::new(HashMap::new()) }
    }

    /// The key ARN for an id, alias or ARN; the input itself when DescribeKey is not permitted
    /// or fails (the record then shows what S3 reported).
    pub async fn resolve(&self, id: &str) -> String {
        // Some S3-compatible stores report an alias-default key as `arn:...:key/alias/<name>`:
        // that is an alias, not a key ARN.
        let id = match id.split_once(":key/alias/") {
            Some((_, name)) => format!("alias/{name}"),
            None => id.to_string(),
        };
        let id = id.as_str();
        if is_key_arn(id) {
            return id.to_string();
        }
        let mut cache = self.cache.lock().await;
        if let Some(arn) = cache.get(id) {
            return arn.clone();
        }
        let arn = match self.directory.describe_key(id).await {
            Ok(info) => info.arn,
            Err(e) => {
                tracing::debug!(key_id = id, error = %e, "cannot resolve KMS key to an ARN");
                id.to_string()
            }
        };
        cache.insert(id.to_string(), arn.clone());
        arn
    }
}

fn observed_from_response(enc: &ResponseEncryption) -> ObservedEncryption {
    let mut observed = observe_headers(
        enc.sse.as_deref(),
        enc.kms_key_id.as_deref(),
        enc.bucket_key_enabled,
        enc.sse_customer_algorithm.as_deref(),
        &enc.crypto_metadata,
    );
    // The key KMS named when it unwrapped the data key beats a hint in the metadata.
    if let Some(arn) = enc.client_side_read.as_ref().and_then(|r| r.kms_key_arn.clone()) {
        observed.client_side_kms_key_id = Some(arn);
    }
    observed
}

/// What reading one file gave.
struct FileRead {
    observed: Option<ObservedEncryption>,
    result: Result<SchemaSourceReport, Problem>,
}

struct DatasetWork<'a> {
    ctx: &'a RunContext,
    bucket: &'a str,
    prefix: &'a str,
}

impl DatasetWork<'_> {
    fn object_ctx<'b>(&'b self, key: &'b str, known_kms_key: Option<&'b str>) -> ObjectContext<'b> {
        ObjectContext {
            bucket: self.bucket,
            dataset_prefix: self.prefix,
            key,
            principal: self.ctx.principal.as_deref(),
            known_kms_key,
            region: &self.ctx.services.region,
        }
    }

    /// Normalises the observed KMS keys (server-side, and wrapping a client-side data key) to
    /// ARNs, as far as DescribeKey allows.
    async fn resolve_keys(&self, observed: &mut ObservedEncryption) {
        if let Some(id) = observed.kms_key_id.take() {
            observed.kms_key_id = Some(self.ctx.keys.resolve(&id).await);
        }
        if let Some(id) = observed.client_side_kms_key_id.take() {
            observed.client_side_kms_key_id = Some(self.ctx.keys.resolve(&id).await);
        }
    }

    fn encryption_problem(&self, code: &'static str, key: &str, message: String, summary: &str) -> Problem {
        let mut p = Problem::new(code, Severity::Warning, self.bucket, message);
        p.dataset_prefix = Some(self.prefix.to_string());
        p.key = Some(key.to_string());
        p.operation = Some("s3:GetObject".into());
        p.remediation = Some(Remediation { summary: summary.to_string(), policy_statement: None });
        p
    }

    /// A GET failed: when S3 only said "Access Denied", a HEAD tells whether the object is
    /// under SSE-KMS (HEAD needs no kms:Decrypt, GET does), which makes it a KMS denial.
    async fn explain_get_failure(
        &self,
        object: &ObjectMeta,
        mut err: AwsError,
    ) -> (Option<ObservedEncryption>, Problem) {
        let mut observed = None;
        let mut known_key = None;
        if err.kind == AwsErrorKind::AccessDenied
            && let Ok(head) = self.ctx.services.store.head(self.bucket, &object.key).await
        {
            let mut obs = observed_from_response(&head.encryption);
            self.resolve_keys(&mut obs).await;
            if matches!(obs.kind, EncryptionType::SseKms | EncryptionType::DsseKms) {
                err.kind = AwsErrorKind::KmsAccessDenied;
                known_key = obs.kms_key_id.clone();
            }
            observed = Some(obs);
        }
        if let Some(arn) = err.kms_key_arn_in_message()
            && observed.is_none()
        {
            observed = Some(ObservedEncryption {
                kind: EncryptionType::SseKms,
                kms_key_id: Some(arn),
                ..ObservedEncryption::none()
            });
        }
        if err.kind == AwsErrorKind::SseCKeyRequired && observed.is_none() {
            observed = Some(ObservedEncryption { kind: EncryptionType::SseC, ..ObservedEncryption::none() });
        }
        let problem = object_problem(&err, &self.object_ctx(&object.key, known_key.as_deref()));
        (observed, problem)
    }

    async fn fetch(&self, object: &ObjectMeta, range: ByteRange) -> Result<crate::aws::RangeRead, AwsError> {
        self.ctx.services.store.get_range(self.bucket, &object.key, range, range.byte_count()).await
    }

    /// Reads one file's schema: one ranged GET, a second for large footers.
    async fn read_file(&self, object: &ObjectMeta) -> FileRead {
        let limits = self.ctx.limits.inference;
        let detected = detect_from_key(&object.key);
        let first = match schema::plan_first_read(detected, object.size, &limits) {
            FirstRead::Head { len } => ByteRange::Head(len),
            FirstRead::Suffix { len } => ByteRange::Suffix(len),
        };
        let mut requests = 1u32;
        let read = match self.fetch(object, first).await {
            Ok(read) => read,
            Err(e) => {
                let (observed, problem) = self.explain_get_failure(object, e).await;
                return FileRead { observed, result: Err(problem) };
            }
        };
        let mut observed = observed_from_response(&read.encryption);
        self.resolve_keys(&mut observed).await;
        // Never parse ciphertext as if it were data (decrypted reads are plaintext: see cse.rs).
        if observed.kind == EncryptionType::ClientSide && read.encryption.client_side_read.is_none() {
            let problem = self.encryption_problem(
                "CLIENT_SIDE_ENCRYPTED",
                &object.key,
                format!(
                    "s3://{}/{} is client-side encrypted ({} S3 Encryption Client format): catalogued without a schema",
                    self.bucket,
                    object.key,
                    observed.client_side.map(|f| format!("{f:?}")).unwrap_or_else(|| "unknown".into())
                ),
                "Give the connector access to the wrapping key (KMS key or master key) to read the schema of client-side encrypted files.",
            );
            return FileRead { observed: Some(observed), result: Err(problem) };
        }
        if observed.kind == EncryptionType::SseC {
            let problem = self.encryption_problem(
                "SSE_C_KEY_REQUIRED",
                &object.key,
                format!("s3://{}/{} is encrypted with a customer-provided key (SSE-C) and no key is configured for it", self.bucket, object.key),
                "Configure an SSE-C key for this bucket/prefix to read its schema; the object is catalogued without one.",
            );
            return FileRead { observed: Some(observed), result: Err(problem) };
        }

        let mut bytes_read = read.bytes.len() as u64;
        let mut step = parse_off_runtime(detected, read.clone(), limits).await;
        if let Ok(InferenceStep::NeedSuffix { len }) = &step {
            let len = *len;
            if len > MAX_FOOTER_BYTES {
                let mut p = Problem::new(
                    "FILE_MALFORMED",
                    Severity::Error,
                    self.bucket,
                    format!(
                        "s3://{}/{}: footer of {len} bytes is larger than the {MAX_FOOTER_BYTES}-byte limit",
                        self.bucket, object.key
                    ),
                );
                p.dataset_prefix = Some(self.prefix.to_string());
                p.key = Some(object.key.clone());
                return FileRead { observed: Some(observed), result: Err(p) };
            }
            requests += 1;
            match self.fetch(object, ByteRange::Suffix(len)).await {
                Ok(second) => {
                    bytes_read += second.bytes.len() as u64;
                    step = parse_off_runtime(detected, second, limits).await;
                }
                Err(e) => {
                    let (_, problem) = self.explain_get_failure(object, e).await;
                    return FileRead { observed: Some(observed), result: Err(problem) };
                }
            }
        }
        let result = match step {
            Ok(InferenceStep::Done(inferred)) => {
                Ok(SchemaSourceReport { key: object.key.clone(), inferred, bytes_read, requests })
            }
            Ok(InferenceStep::NeedSuffix { .. }) => {
                let mut p = Problem::new(
                    "FILE_MALFORMED",
                    Severity::Error,
                    self.bucket,
                    format!(
                        "s3://{}/{}: footer still incomplete after a second read",
                        self.bucket, object.key
                    ),
                );
                p.dataset_prefix = Some(self.prefix.to_string());
                p.key = Some(object.key.clone());
                Err(p)
            }
            Err(problem_text) => {
                let (code, message) = problem_text;
                let mut p = Problem::new(
                    code,
                    Severity::Error,
                    self.bucket,
                    format!("s3://{}/{}: {message}", self.bucket, object.key),
                );
                p.dataset_prefix = Some(self.prefix.to_string());
                p.key = Some(object.key.clone());
                Err(p)
            }
        };
        FileRead { observed: Some(observed), result }
    }

    /// HEAD probe for the encryption survey.
    async fn probe(&self, object: &ObjectMeta) -> Option<ObservedEncryption> {
        match self.ctx.services.store.head(self.bucket, &object.key).await {
            Ok(head) => {
                let mut obs = observed_from_response(&head.encryption);
                self.resolve_keys(&mut obs).await;
                Some(obs)
            }
            // An empty-bodied 400 on HEAD is what S3 answers for an SSE-C object without its key.
            Err(e) if e.status == Some(400) && e.code.is_none() => {
                Some(ObservedEncryption { kind: EncryptionType::SseC, ..ObservedEncryption::none() })
            }
            Err(e) => {
                tracing::debug!(bucket = self.bucket, key = %object.key, error = %e, "encryption probe failed");
                None
            }
        }
    }
}

/// Parsing is CPU work: keep it off the async runtime.
async fn parse_off_runtime(
    detected: s3_connector_domain::format::DetectedFormat,
    read: crate::aws::RangeRead,
    limits: schema::InferenceLimits,
) -> Result<InferenceStep, (&'static str, String)> {
    let joined = tokio::task::spawn_blocking(move || {
        let fetched = Fetched { bytes: &read.bytes, start: read.start, object_size: read.object_size };
        schema::infer(detected, fetched, &limits).map_err(|e| (e.code(), e.to_string()))
    })
    .await;
    match joined {
        Ok(result) => result,
        Err(e) => Err(("INTERNAL_ERROR", format!("schema inference task failed: {e}"))),
    }
}

/// Merges problems of the same code on one dataset into one record that counts them.
fn coalesce(problems: Vec<Problem>) -> Vec<Problem> {
    let mut by_code: BTreeMap<&'static str, (Problem, usize)> = BTreeMap::new();
    let mut order = Vec::new();
    for p in problems {
        match by_code.get_mut(p.code) {
            Some((_, n)) => *n += 1,
            None => {
                order.push(p.code);
                by_code.insert(p.code, (p, 1));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|code| by_code.remove(code))
        .map(|(mut p, n)| {
            if n > 1 {
                p.message = format!("{} (and {} more file(s) of this dataset)", p.message, n - 1);
            }
            p
        })
        .collect()
}

/// Everything done for one finished dataset.
pub(crate) async fn infer_dataset(
    ctx: Arc<RunContext>,
    bucket: String,
    aggregate: DatasetAggregate,
    default: BucketDefault,
) -> (Box<DatasetReport>, Vec<Problem>) {
    let prefix = aggregate.key().prefix.clone();
    let work = DatasetWork { ctx: &ctx, bucket: &bucket, prefix: &prefix };
    let mut encryption = EncryptionSummaryBuilder::new();
    let mut problems = Vec::new();
    let mut sources = Vec::new();

    // Schema reads: sequential within a dataset (stop as soon as enough files were read, to
    // keep the GET budget), parallel across datasets.
    let wanted = ctx.limits.schema_files.max(1);
    for candidate in aggregate.schema_candidates().iter().take(ctx.limits.schema_candidates.max(wanted)) {
        if sources.len() >= wanted {
            break;
        }
        let read = work.read_file(candidate).await;
        if let Some(obs) = &read.observed {
            encryption.observe(obs);
        }
        match read.result {
            Ok(source) => sources.push(source),
            Err(problem) => problems.push(problem),
        }
    }

    let probes: Vec<ObjectMeta> = aggregate.encryption_probe_candidates().to_vec();
    let mut probe_calls = Vec::with_capacity(probes.len());
    for object in &probes {
        probe_calls.push(work.probe(object));
    }
    let observations = crate::concurrency::unordered(probe_calls, PROBE_CONCURRENCY).await;
    for obs in observations.iter().flatten() {
        encryption.observe(obs);
    }

    let schema = if sources.is_empty() {
        None
    } else {
        let files: Vec<(String, s3_connector_domain::model::Schema)> =
            sources.iter().map(|s| (s.key.clone(), s.inferred.schema.clone())).collect();
        Some(merge_schemas(&files))
    };
    let problems = coalesce(problems);
    let summary = encryption.finish(default.encryption.as_ref());
    let report = DatasetReport {
        bucket: bucket.clone(),
        aggregate,
        schema,
        sources,
        encryption: summary,
        bucket_default: default,
        problem_count: problems.len() as u64,
    };
    (Box::new(report), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arns_are_recognised() {
        assert!(is_key_arn("arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!is_key_arn("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!is_key_arn("alias/estate-b"));
        assert!(!is_key_arn("arn:aws:kms:us-east-1:123456789012:alias/estate-b"));
    }

    #[test]
    fn problems_of_one_code_are_coalesced() {
        let p = |code| Problem::new(code, Severity::Warning, "b", "m");
        let out = coalesce(vec![p("SSE_C_KEY_REQUIRED"), p("FILE_TRUNCATED"), p("SSE_C_KEY_REQUIRED")]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].code, "SSE_C_KEY_REQUIRED");
        assert!(out[0].message.contains("1 more"));
    }
}
