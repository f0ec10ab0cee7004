//! Full metadata extraction.
//!
//! Data flow for one bucket:
//!
//! ```text
//! GetBucketEncryption ─┐
//! root listing (delimiter "/") ─► shards ─► buffer_unordered(listing) ─► pages ─► Grouper
//!                                                          shard done ─► finished datasets
//!                                    finished datasets ─► bounded inference (ranged GETs, HEAD
//!                                    probes, spawn_blocking parse) ─► DatasetReport ─► sink
//! ```
//!
//! Memory is bounded by the per-dataset aggregates: objects are folded into the grouper as
//! pages arrive and never collected. A dataset whose root lies inside a shard is inferred as
//! soon as that shard is listed, so inference overlaps the listing of other shards.

mod inference;
pub mod problems;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{FuturesUnordered, StreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};
use s3_connector_domain::dataset::{DatasetAggregate, Grouper, GroupingConfig, PathTemplate};
use s3_connector_domain::encryption::BucketDefaultEncryption;
use s3_connector_domain::model::{EncryptionType, ObjectMeta};
use s3_connector_domain::schema::InferenceLimits;
use tokio::sync::mpsc;

use crate::aws::{
    AwsError, AwsErrorKind, IdentityProvider, KeyDirectory, ListRequest, ObjectStore, RequestStats,
};
pub use inference::KeyResolver;
use report::{BucketDefault, BucketReport, DefaultEncryptionStatus, ExtractEvent, Problem};

/// One bucket to extract, optionally limited to prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTarget {
    /// Bucket name.
    pub bucket: String,
    /// Prefixes to limit the run to (empty: the whole bucket).
    pub prefixes: Vec<String>,
}

/// What to extract.
#[derive(Debug, Clone, Default)]
pub struct ExtractScope {
    /// Buckets (and prefixes).
    pub targets: Vec<BucketTarget>,
    /// Only keys matching one of these globs (all keys when empty).
    pub include: Vec<String>,
    /// Keys matching one of these globs are skipped.
    pub exclude: Vec<String>,
    /// Explicit path templates, tried before the heuristics.
    pub templates: Vec<String>,
}

/// Limits and concurrency.
#[derive(Debug, Clone)]
pub struct ExtractLimits {
    /// Shards listed at once.
    pub listing_concurrency: usize,
    /// Datasets inferred at once.
    pub inference_concurrency: usize,
    /// Files whose schema is read per dataset (when readable).
    pub schema_files: usize,
    /// Files tried per dataset when reads fail.
    pub schema_candidates: usize,
    /// HEAD requests per dataset to survey encryption.
    pub encryption_probes: usize,
    /// Byte and record caps of inference.
    pub inference: InferenceLimits,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            listing_concurrency: 8,
            inference_concurrency: 16,
            schema_files: 2,
            schema_candidates: 4,
            encryption_probes: 4,
            inference: InferenceLimits::default(),
        }
    }
}

/// Errors that stop a run (problems do not).
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// A glob does not parse.
    #[error("invalid glob '{glob}': {reason}")]
    Glob {
        /// The glob.
        glob: String,
        /// Why.
        reason: String,
    },
    /// A path template does not parse.
    #[error("{0}")]
    Template(String),
    /// No usable credentials.
    #[error(
        "no usable AWS credentials (standard chain: environment, profile, web identity, container, instance metadata): {0}"
    )]
    Credentials(AwsError),
    /// The endpoint cannot be reached.
    #[error("cannot reach AWS: {0}")]
    Network(AwsError),
    /// The receiver of the records went away (client disconnected, output closed).
    #[error("the output was closed")]
    OutputClosed,
    /// Nothing to do.
    #[error("no bucket given")]
    NoBuckets,
}

/// Live counters for progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Objects listed so far.
    pub objects_listed: AtomicU64,
    /// Datasets finished so far.
    pub datasets_done: AtomicU64,
    /// Buckets finished so far.
    pub buckets_done: AtomicU64,
}

/// What a finished run reports besides its records.
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// Buckets processed.
    pub buckets: u64,
    /// Buckets that could not be listed (missing, denied).
    pub unlisted_buckets: Vec<String>,
    /// Datasets emitted.
    pub datasets: u64,
    /// Objects listed.
    pub objects: u64,
    /// Bytes listed.
    pub bytes: u64,
    /// Problems by code.
    pub problems: BTreeMap<&'static str, u64>,
}

/// The AWS seams a run uses.
#[derive(Clone)]
pub struct Services {
    /// S3.
    pub store: Arc<dyn ObjectStore>,
    /// KMS.
    pub keys: Arc<dyn KeyDirectory>,
    /// STS.
    pub identity: Arc<dyn IdentityProvider>,
    /// Request counters.
    pub stats: Arc<RequestStats>,
    /// Region (for policy conditions and bucket records).
    pub region: String,
}

/// Runs extractions.
pub struct Extractor {
    services: Services,
    limits: ExtractLimits,
    progress: Arc<Progress>,
}

/// Per-run shared state handed to the bucket and dataset tasks.
pub(crate) struct RunContext {
    pub(crate) services: Services,
    pub(crate) limits: ExtractLimits,
    pub(crate) principal: Option<String>,
    pub(crate) keys: KeyResolver,
    pub(crate) grouping: GroupingConfig,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    progress: Arc<Progress>,
}

fn glob_set(globs: &[String]) -> Result<Option<GlobSet>, ExtractError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| ExtractError::Glob { glob: g.clone(), reason: e.to_string() })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| ExtractError::Glob { glob: globs.join(","), reason: e.to_string() })
}

impl Extractor {
    /// A new extractor over the given services.
    pub fn new(services: Services, limits: ExtractLimits) -> Self {
        Extractor { services, limits, progress: Arc::new(Progress::default()) }
    }

    /// Live progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Runs the extraction, sending events to `sink` as they are ready. Returns when every
    /// bucket is done, or early with [`ExtractError::OutputClosed`] when the sink goes away
    /// (which also drops, and so cancels, all in-flight S3 work).
    pub async fn run(
        &self,
        scope: &ExtractScope,
        sink: mpsc::Sender<ExtractEvent>,
    ) -> Result<RunOutcome, ExtractError> {
        if scope.targets.is_empty() {
            return Err(ExtractError::NoBuckets);
        }
        let templates = scope
            .templates
            .iter()
            .map(|t| PathTemplate::parse(t).map_err(|e| ExtractError::Template(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let grouping = GroupingConfig {
            templates,
            schema_candidates: self.limits.schema_candidates.max(self.limits.schema_files),
            encryption_probes: self.limits.encryption_probes,
        };
        let principal = match self.services.identity.caller_arn().await {
            Ok(arn) if !arn.is_empty() => Some(arn),
            Ok(_) => None,
            Err(e) if e.kind == AwsErrorKind::Credentials => {
                return Err(ExtractError::Credentials(e));
            }
            Err(e) if e.kind == AwsErrorKind::Network => return Err(ExtractError::Network(e)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot determine the caller identity; problems will not name it");
                None
            }
        };
        let ctx = Arc::new(RunContext {
            services: self.services.clone(),
            limits: self.limits.clone(),
            principal,
            keys: KeyResolver::new(self.services.keys.clone()),
            grouping,
            include: glob_set(&scope.include)?,
            exclude: glob_set(&scope.exclude)?,
            progress: self.progress.clone(),
        });
        let mut outcome = RunOutcome::default();
        for target in &scope.targets {
            let report = extract_bucket(ctx.clone(), target, &sink, &mut outcome).await?;
            outcome.buckets += 1;
            outcome.objects += report.tally.object_count;
            outcome.bytes += report.tally.total_bytes;
            if !report.listed {
                outcome.unlisted_buckets.push(report.bucket.clone());
            }
            ctx.progress.buckets_done.fetch_add(1, Ordering::Relaxed);
            send(&sink, ExtractEvent::Bucket(Box::new(report))).await?;
        }
        Ok(outcome)
    }
}

async fn send(sink: &mpsc::Sender<ExtractEvent>, event: ExtractEvent) -> Result<(), ExtractError> {
    sink.send(event).await.map_err(|_| ExtractError::OutputClosed)
}

async fn send_problem(
    sink: &mpsc::Sender<ExtractEvent>,
    outcome: &mut RunOutcome,
    problem: Problem,
) -> Result<(), ExtractError> {
    *outcome.problems.entry(problem.code).or_default() += 1;
    send(sink, ExtractEvent::Problem(Box::new(problem))).await
}

/// Reads and normalises a bucket's default encryption.
async fn bucket_default(ctx: &RunContext, bucket: &str) -> Result<BucketDefault, AwsError> {
    match ctx.services.store.bucket_encryption(bucket).await {
        Ok(None) => Ok(BucketDefault {
            encryption: Some(BucketDefaultEncryption {
                kind: EncryptionType::None,
                kms_key_arn: None,
                bucket_key_enabled: false,
            }),
            configured_key_id: None,
            status: DefaultEncryptionStatus::NotConfigured,
        }),
        Ok(Some(rule)) => {
            let kind = match rule.sse_algorithm.as_str() {
                "AES256" => EncryptionType::SseS3,
                "aws:kms" => EncryptionType::SseKms,
                "aws:kms:dsse" => EncryptionType::DsseKms,
                _ => EncryptionType::Unknown,
            };
            let kms_key_arn = match (&rule.kms_master_key_id, kind) {
                (Some(id), _) => Some(ctx.keys.resolve(id).await),
                // aws:kms without a key id means the AWS managed key aws/s3.
                (None, EncryptionType::SseKms | EncryptionType::DsseKms) => {
                    Some(ctx.keys.resolve("alias/aws/s3").await)
                }
                (None, _) => None,
            };
            Ok(BucketDefault {
                encryption: Some(BucketDefaultEncryption {
                    kind,
                    kms_key_arn,
                    bucket_key_enabled: rule.bucket_key_enabled,
                }),
                configured_key_id: rule.kms_master_key_id,
                status: DefaultEncryptionStatus::Ok,
            })
        }
        Err(e) => Err(e),
    }
}

/// Messages from the listing tasks to the grouping loop.
enum ListingMessage {
    Objects(Vec<ObjectMeta>),
    ShardDone(String),
    ShardFailed(String, AwsError),
}

/// Lists one shard (recursively, no delimiter), page by page.
async fn list_shard(ctx: Arc<RunContext>, bucket: String, prefix: String, tx: mpsc::Sender<ListingMessage>) {
    let mut request = ListRequest { bucket, prefix: prefix.clone(), delimiter: None, continuation: None };
    loop {
        match ctx.services.store.list_page(&request).await {
            Ok(page) => {
                ctx.progress.objects_listed.fetch_add(page.objects.len() as u64, Ordering::Relaxed);
                if !page.objects.is_empty() && tx.send(ListingMessage::Objects(page.objects)).await.is_err() {
                    return;
                }
                match page.next {
                    Some(token) => request.continuation = Some(token),
                    None => break,
                }
            }
            Err(e) => {
                let _ = tx.send(ListingMessage::ShardFailed(prefix, e)).await;
                return;
            }
        }
    }
    let _ = tx.send(ListingMessage::ShardDone(prefix)).await;
}

/// The root listing: one level with a delimiter, yielding root objects and shard prefixes.
async fn list_root(
    ctx: &RunContext,
    bucket: &str,
    prefix: &str,
    tx: &mpsc::Sender<ListingMessage>,
) -> Result<Vec<String>, AwsError> {
    let mut shards = Vec::new();
    let mut request = ListRequest {
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        delimiter: Some("/".into()),
        continuation: None,
    };
    loop {
        let page = ctx.services.store.list_page(&request).await?;
        ctx.progress.objects_listed.fetch_add(page.objects.len() as u64, Ordering::Relaxed);
        shards.extend(page.common_prefixes);
        if !page.objects.is_empty() && tx.send(ListingMessage::Objects(page.objects)).await.is_err() {
            break;
        }
        match page.next {
            Some(token) => request.continuation = Some(token),
            None => break,
        }
    }
    Ok(shards)
}

impl RunContext {
    fn in_scope(&self, key: &str) -> bool {
        if let Some(include) = &self.include
            && !include.is_match(key)
        {
            return false;
        }
        if let Some(exclude) = &self.exclude
            && exclude.is_match(key)
        {
            return false;
        }
        true
    }
}

async fn extract_bucket(
    ctx: Arc<RunContext>,
    target: &BucketTarget,
    sink: &mpsc::Sender<ExtractEvent>,
    outcome: &mut RunOutcome,
) -> Result<BucketReport, ExtractError> {
    let bucket = target.bucket.clone();
    let mut problem_count = 0u64;
    let default = match bucket_default(&ctx, &bucket).await {
        Ok(d) => d,
        Err(e) if e.kind == AwsErrorKind::NoSuchBucket => {
            let problem = problems::listing_problem(&e, &bucket, "", ctx.principal.as_deref());
            send_problem(sink, outcome, problem).await?;
            return Ok(BucketReport {
                bucket: bucket.clone(),
                region: ctx.services.region.clone(),
                prefixes: target.prefixes.clone(),
                default: BucketDefault {
                    encryption: None,
                    configured_key_id: None,
                    status: DefaultEncryptionStatus::Error,
                },
                tally: Grouper::new(&bucket, ctx.grouping.clone()).tally().clone(),
                dataset_count: 0,
                problem_count: 1,
                listing_shards: 0,
                listed: false,
            });
        }
        Err(e) if e.kind == AwsErrorKind::Credentials => return Err(ExtractError::Credentials(e)),
        Err(e) if e.kind == AwsErrorKind::Network => return Err(ExtractError::Network(e)),
        Err(e) => {
            let status = if e.kind == AwsErrorKind::AccessDenied {
                DefaultEncryptionStatus::AccessDenied
            } else {
                DefaultEncryptionStatus::Error
            };
            problem_count += 1;
            send_problem(
                sink,
                outcome,
                problems::bucket_encryption_problem(&e, &bucket, ctx.principal.as_deref()),
            )
            .await?;
            BucketDefault { encryption: None, configured_key_id: None, status }
        }
    };

    let mut grouper = Grouper::new(&bucket, ctx.grouping.clone());
    let (tx, rx) = mpsc::channel::<ListingMessage>(32);
    let prefixes = if target.prefixes.is_empty() { vec![String::new()] } else { target.prefixes.clone() };

    // The listing side: root level per prefix, then shards in parallel. It runs as a future
    // joined with the grouping loop below, so dropping this function cancels it.
    let listing = {
        let ctx = ctx.clone();
        let bucket = bucket.clone();
        async move {
            let mut shards = Vec::new();
            for prefix in &prefixes {
                match list_root(&ctx, &bucket, prefix, &tx).await {
                    Ok(found) => shards.extend(found),
                    Err(e) => {
                        let _ = tx.send(ListingMessage::ShardFailed(prefix.clone(), e)).await;
                        return 0u64;
                    }
                }
            }
            let shard_count = shards.len() as u64;
            futures::stream::iter(shards)
                .map(|shard| list_shard(ctx.clone(), bucket.clone(), shard, tx.clone()))
                .buffer_unordered(ctx.limits.listing_concurrency.max(1))
                .collect::<Vec<()>>()
                .await;
            shard_count
        }
    };

    let mut listed = true;
    let mut dataset_count = 0u64;
    let grouping_loop = async {
        // Owning the receiver here means that if this loop stops early, the receiver is
        // dropped with it and the listing tasks stop at their next send.
        let mut rx = rx;
        let mut inflight = FuturesUnordered::new();
        let limit = ctx.limits.inference_concurrency.max(1);
        let mut pending: Vec<DatasetAggregate> = Vec::new();
        let mut listing_open = true;
        loop {
            // Start inference for finished datasets while there is room.
            while inflight.len() < limit {
                let Some(aggregate) = pending.pop() else {
                    break;
                };
                inflight.push(inference::infer_dataset(
                    ctx.clone(),
                    bucket.clone(),
                    aggregate,
                    default.clone(),
                ));
            }
            tokio::select! {
                Some(result) = inflight.next(), if !inflight.is_empty() => {
                    let (report, dataset_problems) = result;
                    for problem in dataset_problems {
                        problem_count += 1;
                        send_problem(sink, outcome, problem).await?;
                    }
                    dataset_count += 1;
                    outcome.datasets += 1;
                    ctx.progress.datasets_done.fetch_add(1, Ordering::Relaxed);
                    send(sink, ExtractEvent::Dataset(report)).await?;
                }
                message = rx.recv(), if listing_open && pending.len() < limit => match message {
                    Some(ListingMessage::Objects(objects)) => {
                        for object in objects {
                            if ctx.in_scope(&object.key) {
                                grouper.add(object);
                            }
                        }
                    }
                    Some(ListingMessage::ShardDone(prefix)) => pending.extend(grouper.take_complete_under(&prefix)),
                    Some(ListingMessage::ShardFailed(prefix, e)) => {
                        listed = false;
                        if matches!(e.kind, AwsErrorKind::Credentials) {
                            return Err(ExtractError::Credentials(e));
                        }
                        if matches!(e.kind, AwsErrorKind::Network) {
                            return Err(ExtractError::Network(e));
                        }
                        problem_count += 1;
                        send_problem(sink, outcome, problems::listing_problem(&e, &bucket, &prefix, ctx.principal.as_deref())).await?;
                    }
                    None => {
                        listing_open = false;
                        pending.extend(grouper.take_all());
                    }
                },
                else => break,
            }
        }
        Ok::<(), ExtractError>(())
    };

    let (shards, result) = tokio::join!(listing, grouping_loop);
    result?;
    Ok(BucketReport {
        bucket: bucket.clone(),
        region: ctx.services.region.clone(),
        prefixes: target.prefixes.clone(),
        default,
        tally: grouper.tally().clone(),
        dataset_count,
        problem_count,
        listing_shards: shards,
        listed,
    })
}
