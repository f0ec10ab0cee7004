//! Full metadata extraction.
//!
//! Data flow for one bucket:
//!
//! ```text
//! GetBucketEncryption ─┐
//! flat sequential listing ─(large: split)─► shards ─► buffer_unordered(listing) ─► pages ─► Grouper
//!                                                          folder done ─► finished datasets
//!                                    finished datasets ─► bounded inference (ranged GETs, HEAD
//!                                    probes, spawn_blocking parse) ─► DatasetReport ─► sink
//! ```
//!
//! Memory is bounded by the per-dataset aggregates: objects are folded into the grouper as
//! pages arrive and never collected. A dataset whose root lies inside a top-level folder is
//! inferred as soon as the ordered listing has passed that folder, so inference overlaps the
//! rest of the listing.

pub(crate) mod inference;
pub mod inventory;
pub mod problems;
pub mod report;
pub mod targets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::stream::{FuturesUnordered, StreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};
use s3_connector_domain::dataset::{DatasetAggregate, Grouper, GroupingConfig, PathTemplate};
use s3_connector_domain::encryption::BucketDefaultEncryption;
use s3_connector_domain::inventory::InventoryRecord;
use s3_connector_domain::inventory::fold::fold_rows;
use s3_connector_domain::model::{EncryptionType, ObjectMeta};
use s3_connector_domain::schema::InferenceLimits;
use tokio::sync::mpsc;

use crate::aws::{
    AwsContext, AwsError, AwsErrorKind, IdentityProvider, KeyDirectory, ListRequest, ObjectStore,
    RequestStats, SdkIdentity, SdkKeyDirectory, SdkObjectStore,
};
use crate::incremental::IncrementalError;
pub use inference::KeyResolver;
pub use inventory::InventoryInput;
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

/// Sequential pages before a listing splits. A split costs about one request per shard (a
/// partial last page each) plus the delimiter listing: after 32 pages, under a third of what
/// was already listed with 8 shards, and nothing beside a listing long enough to gain from it.
pub const DEFAULT_LISTING_SPLIT_AFTER_PAGES: usize = 32;

/// HEAD probes per dataset, beyond the schema reads. The reads already see the encryption of
/// the dataset's newest and oldest objects, which find a change made over time (a new default
/// key, a rotation, a re-encryption) wherever it fell; a probe adds a sampled object.
pub const DEFAULT_ENCRYPTION_PROBES: usize = 1;

/// Limits and concurrency.
#[derive(Debug, Clone)]
pub struct ExtractLimits {
    /// LIST requests in flight at once per bucket.
    pub listing_concurrency: usize,
    /// Pages a scope prefix is listed sequentially before the rest is split into shards
    /// listed in parallel (never split when `listing_concurrency` is 1).
    pub listing_split_after_pages: usize,
    /// Keys per LIST page (`MaxKeys`); `None`: the service's maximum (1,000 on S3).
    pub listing_page_size: Option<i32>,
    /// Datasets inferred at once.
    pub inference_concurrency: usize,
    /// Files whose schema is read per dataset (when readable).
    pub schema_files: usize,
    /// Files tried per dataset when reads fail.
    pub schema_candidates: usize,
    /// HEAD requests per dataset to survey encryption, on sampled objects other than the
    /// schema reads (which read the newest and the oldest object).
    pub encryption_probes: usize,
    /// Byte and record caps of inference.
    pub inference: InferenceLimits,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            listing_concurrency: 8,
            listing_split_after_pages: DEFAULT_LISTING_SPLIT_AFTER_PAGES,
            listing_page_size: None,
            inference_concurrency: 16,
            schema_files: 2,
            schema_candidates: 4,
            encryption_probes: DEFAULT_ENCRYPTION_PROBES,
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
    /// A bug: an internal task failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The inventory report could not be used (`--from-inventory`): not found, incomplete,
    /// a checksum mismatch, an unreadable data file or row... [`IncrementalError::code`] says
    /// which, as for `incremental`.
    #[error("inventory report: {0}")]
    Inventory(Box<IncrementalError>),
    /// The extraction's scope does not fit the inventory (another bucket, several buckets).
    #[error("{0}")]
    InventoryScope(String),
}

impl ExtractError {
    /// An error of the inventory report.
    pub fn inventory(e: IncrementalError) -> Self {
        ExtractError::Inventory(Box::new(e))
    }

    /// The inventory engine's stable code, for errors of the inventory report.
    pub fn inventory_code(&self) -> Option<&'static str> {
        match self {
            ExtractError::Inventory(e) => Some(e.code()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("p{i:03}/")).collect()
    }

    #[test]
    fn shards_are_contiguous_balanced_runs() {
        let shards = plan_shards(names(10), 4);
        let sizes: Vec<usize> = shards.iter().map(|s| s.prefixes.len()).collect();
        assert_eq!(sizes, vec![3, 3, 2, 2]);
        assert_eq!(shards[0].stop_at.as_deref(), Some("p003/"));
        assert_eq!(shards[3].stop_at, None);
        let all: Vec<String> = shards.into_iter().flat_map(|s| s.prefixes).collect();
        assert_eq!(all, names(10));
        assert_eq!(plan_shards(names(3), 8).len(), 3, "never more shards than prefixes");
        assert!(plan_shards(Vec::new(), 8).is_empty());
    }

    #[test]
    fn start_after_sorts_between_the_previous_keys_and_the_prefix() {
        let after = start_after_for("sales/").unwrap();
        assert!(after.as_str() < "sales/");
        assert!(after.as_str() > "sales.zzzz/part-0.csv");
        assert!(after.as_str() > "sale/x");
        assert_eq!(start_after_for("no-delimiter"), None);
    }
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

impl Services {
    /// The SDK-backed services of a connection; requests are counted in `stats`.
    pub fn from_aws(aws: &AwsContext, stats: Arc<RequestStats>) -> Services {
        Services {
            store: Arc::new(SdkObjectStore::new(aws.s3_client(), stats.clone())),
            keys: Arc::new(SdkKeyDirectory::new(aws.kms_client(), stats.clone())),
            identity: Arc::new(SdkIdentity::new(aws.sts_client(), stats.clone())),
            stats,
            region: aws.region(),
        }
    }
}

/// Runs extractions.
pub struct Extractor {
    services: Services,
    limits: ExtractLimits,
    progress: Arc<Progress>,
    inventory: Option<Arc<InventoryInput>>,
}

/// Per-run shared state handed to the bucket and dataset tasks.
pub(crate) struct RunContext {
    pub(crate) services: Services,
    pub(crate) limits: ExtractLimits,
    pub(crate) principal: Option<String>,
    pub(crate) keys: KeyResolver,
    pub(crate) grouping: GroupingConfig,
    inventory: Option<Arc<InventoryInput>>,
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
        Extractor { services, limits, progress: Arc::new(Progress::default()), inventory: None }
    }

    /// Reads the objects of the (single) bucket from this inventory report instead of listing
    /// it (`extract --from-inventory`).
    pub fn with_inventory(mut self, input: InventoryInput) -> Self {
        self.inventory = Some(Arc::new(input));
        self
    }

    /// Live progress counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Runs the extraction, sending events to `sink` as they are ready. Returns when every
    /// bucket is done, or early with [`ExtractError::OutputClosed`] when the sink goes away
    /// (which also drops, and so cancels, all in-flight S3 work).
    ///
    /// The future is boxed here, where its lifetimes are named: spawning it (the gRPC service
    /// does) otherwise trips rustc's "Send is not general enough" (rust-lang/rust#110338).
    pub fn run<'a>(
        &'a self,
        scope: &'a ExtractScope,
        sink: mpsc::Sender<ExtractEvent>,
    ) -> futures::future::BoxFuture<'a, Result<RunOutcome, ExtractError>> {
        Box::pin(self.run_unboxed(scope, sink))
    }

    async fn run_unboxed(
        &self,
        scope: &ExtractScope,
        sink: mpsc::Sender<ExtractEvent>,
    ) -> Result<RunOutcome, ExtractError> {
        if scope.targets.is_empty() {
            return Err(ExtractError::NoBuckets);
        }
        if let Some(input) = &self.inventory
            && (scope.targets.len() != 1 || scope.targets[0].bucket != input.spec.source_bucket)
        {
            return Err(ExtractError::InventoryScope(format!(
                "an extraction from an inventory report covers its source bucket s3://{} only",
                input.spec.source_bucket
            )));
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
            inventory: self.inventory.clone(),
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
pub(crate) async fn bucket_default(ctx: &RunContext, bucket: &str) -> Result<BucketDefault, AwsError> {
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
pub(crate) enum ListingMessage {
    Objects(Vec<ObjectMeta>),
    ShardDone(String),
    ShardFailed(String, AwsError),
    /// Rows of an inventory report (instead of a listing).
    Rows(Vec<InventoryRecord>),
    /// The inventory report could not be read: the run stops.
    InventoryFailed(IncrementalError),
}

/// A listing shard: a contiguous run of the root's common prefixes, listed flat and in key
/// order. One LIST sequence per run instead of one per prefix keeps the request count close to
/// a bare listing when a bucket has many small prefixes, while runs still list in parallel.
struct Shard {
    /// The common prefixes this shard covers, sorted.
    prefixes: Vec<String>,
    /// The first prefix of the next shard: listing stops at it.
    stop_at: Option<String>,
    /// For a shard of one prefix whose start the sequential listing already returned: the
    /// last key returned, where this shard resumes.
    resume_after: Option<String>,
}

/// Splits the root's sorted common prefixes into at most `max_shards` contiguous runs.
fn plan_shards(prefixes: Vec<String>, max_shards: usize) -> Vec<Shard> {
    let count = prefixes.len();
    if count == 0 {
        return Vec::new();
    }
    let shards = count.min(max_shards.max(1));
    let mut runs: Vec<Vec<String>> = Vec::with_capacity(shards);
    let mut iter = prefixes.into_iter();
    for i in 0..shards {
        // Spread the remainder over the first runs.
        let size = count / shards + usize::from(i < count % shards);
        runs.push(iter.by_ref().take(size).collect());
    }
    let firsts: Vec<Option<String>> = runs.iter().skip(1).map(|r| r.first().cloned()).chain([None]).collect();
    runs.into_iter()
        .zip(firsts)
        .map(|(prefixes, stop_at)| Shard { prefixes, stop_at, resume_after: None })
        .collect()
}

/// The greatest practical key below every key that starts with `prefix` (which ends with the
/// delimiter "/"): `StartAfter` is exclusive, and no real key sorts between the two.
fn start_after_for(prefix: &str) -> Option<String> {
    let stem = prefix.strip_suffix('/')?;
    Some(format!("{stem}.{}", '\u{10FFFF}'.to_string().repeat(4)))
}

/// The top-level folder of `key` under `root` (`root` + first segment + "/"), or `None` for
/// an object at the root level.
fn folder_of<'k>(root: &str, key: &'k str) -> Option<&'k str> {
    let rest = key.strip_prefix(root)?;
    rest.find('/').map(|i| &key[..root.len() + i + 1])
}

/// The requests of one bucket's listing: every LIST call holds one of `listing_concurrency`
/// permits for its duration (never while sending results), however the work is split.
struct Lister {
    ctx: Arc<RunContext>,
    bucket: String,
    permits: Arc<tokio::sync::Semaphore>,
    tx: mpsc::Sender<ListingMessage>,
}

impl Lister {
    async fn page(&self, request: &ListRequest) -> Result<crate::aws::ListPage, AwsError> {
        // The semaphore is never closed; without a permit the call still runs, unbounded.
        let _permit = self.permits.acquire().await.ok();
        self.ctx.services.store.list_page(request).await
    }

    /// Lists `root`: flat and sequentially first, as a bare listing would; once that has taken
    /// `listing_split_after_pages` pages and is not finished, the rest is split into shards
    /// listed in parallel. A small listing so costs no more requests than a bare one, and a
    /// large one pays the split's extra requests (one delimiter page per 1,000 folders, one
    /// partial last page per shard) only when they are small beside what is left. Returns the
    /// number of listings run (1, plus the shards of a split).
    async fn list_root(self: Arc<Self>, root: String) -> u64 {
        let limits = &self.ctx.limits;
        let mut request = ListRequest {
            bucket: self.bucket.clone(),
            prefix: root.clone(),
            delimiter: None,
            continuation: None,
            start_after: None,
            max_keys: limits.listing_page_size,
        };
        // The top-level folder the ordered listing is in: done once a key outside it arrives.
        let mut open: Option<String> = None;
        let mut pages = 0usize;
        loop {
            let page = match self.page(&request).await {
                Ok(page) => page,
                Err(e) => {
                    // Everything from here on is unlisted: the failure names the root.
                    let _ = self.tx.send(ListingMessage::ShardFailed(root, e)).await;
                    return 1;
                }
            };
            pages += 1;
            let mut finished = Vec::new();
            for object in &page.objects {
                let folder = folder_of(&root, &object.key);
                if folder != open.as_deref() {
                    finished.extend(open.take());
                    open = folder.map(str::to_string);
                }
            }
            let last_key = page.objects.last().map(|o| o.key.clone());
            self.ctx.progress.objects_listed.fetch_add(page.objects.len() as u64, Ordering::Relaxed);
            if !page.objects.is_empty() && self.tx.send(ListingMessage::Objects(page.objects)).await.is_err()
            {
                return 1;
            }
            for folder in finished {
                if self.tx.send(ListingMessage::ShardDone(folder)).await.is_err() {
                    return 1;
                }
            }
            match (page.next, last_key) {
                (None, _) => break,
                (Some(_), Some(last))
                    if limits.listing_concurrency > 1 && pages >= limits.listing_split_after_pages =>
                {
                    return 1 + self.clone().split(root, open, last).await;
                }
                (Some(token), _) => request.continuation = Some(token),
            }
        }
        if let Some(folder) = open {
            let _ = self.tx.send(ListingMessage::ShardDone(folder)).await;
        }
        1
    }

    /// Lists what follows `last_key` under `root` in parallel: the folder `open` from just
    /// after `last_key`, and the folders after it (found by one delimiter listing, which also
    /// returns the remaining root-level objects) as contiguous shards. Returns the shard count.
    async fn split(self: Arc<Self>, root: String, open: Option<String>, last_key: String) -> u64 {
        let folders = match self.list_level(&root, Some(last_key.clone())).await {
            Ok(folders) => folders,
            Err(e) => {
                let _ = self.tx.send(ListingMessage::ShardFailed(open.unwrap_or(root), e)).await;
                return 0;
            }
        };
        let mut shards = Vec::new();
        if let Some(folder) = &open {
            shards.push(Shard {
                prefixes: vec![folder.clone()],
                stop_at: None,
                resume_after: Some(last_key),
            });
        }
        // S3 rolls the open folder's remaining keys up into a common prefix too.
        let rest: Vec<String> = folders.into_iter().filter(|f| Some(f) != open.as_ref()).collect();
        shards.extend(plan_shards(rest, self.ctx.limits.listing_concurrency));
        let count = shards.len() as u64;
        let mut listings = Vec::with_capacity(shards.len());
        for shard in shards {
            listings.push(self.clone().list_shard(root.clone(), shard));
        }
        crate::concurrency::unordered(listings, self.ctx.limits.listing_concurrency).await;
        count
    }

    /// One level of `prefix` with a delimiter, after `start_after`: sends the objects at that
    /// level and returns the folders.
    async fn list_level(&self, prefix: &str, start_after: Option<String>) -> Result<Vec<String>, AwsError> {
        let mut folders = Vec::new();
        let mut request = ListRequest {
            bucket: self.bucket.clone(),
            prefix: prefix.to_string(),
            delimiter: Some("/".into()),
            continuation: None,
            start_after,
            max_keys: self.ctx.limits.listing_page_size,
        };
        loop {
            let page = self.page(&request).await?;
            self.ctx.progress.objects_listed.fetch_add(page.objects.len() as u64, Ordering::Relaxed);
            folders.extend(page.common_prefixes);
            if !page.objects.is_empty() && self.tx.send(ListingMessage::Objects(page.objects)).await.is_err()
            {
                break;
            }
            match page.next {
                Some(token) => request.continuation = Some(token),
                None => break,
            }
        }
        Ok(folders)
    }

    /// Lists one shard flat and in order; a prefix is reported done as soon as the listing
    /// has moved past it, so its datasets can be inferred while the rest is still being listed.
    async fn list_shard(self: Arc<Self>, root_prefix: String, shard: Shard) {
        let tx = &self.tx;
        let single = shard.prefixes.len() == 1;
        let first = shard.prefixes.first().cloned().unwrap_or_default();
        // A shard of one prefix lists exactly that prefix; a run lists the root prefix from
        // just before its first member.
        let mut request = ListRequest {
            bucket: self.bucket.clone(),
            prefix: if single { first.clone() } else { root_prefix },
            delimiter: None,
            continuation: None,
            start_after: if single { shard.resume_after.clone() } else { start_after_for(&first) },
            max_keys: self.ctx.limits.listing_page_size,
        };
        let mut next_open = 0usize; // index of the first prefix not yet reported done
        let last = shard.prefixes.len().saturating_sub(1);
        'pages: loop {
            let page = match self.page(&request).await {
                Ok(page) => page,
                Err(e) => {
                    let failed = shard.prefixes.get(next_open).cloned().unwrap_or(first);
                    let _ = tx.send(ListingMessage::ShardFailed(failed, e)).await;
                    return;
                }
            };
            let mut objects = Vec::with_capacity(page.objects.len());
            let mut finished = Vec::new();
            let mut reached_stop = false;
            for object in page.objects {
                if shard.stop_at.as_deref().is_some_and(|stop| object.key.as_str() >= stop) {
                    reached_stop = true;
                    break;
                }
                // Close every prefix the ordered listing has moved past.
                while let Some(open) = shard.prefixes.get(next_open) {
                    if object.key.starts_with(open.as_str()) || object.key.as_str() < open.as_str() {
                        break;
                    }
                    finished.push(open.clone());
                    next_open += 1;
                }
                // Objects between prefixes sit at the root level: the root listing has them.
                if shard.prefixes.get(next_open).is_some_and(|open| object.key.starts_with(open.as_str())) {
                    objects.push(object);
                }
            }
            self.ctx.progress.objects_listed.fetch_add(objects.len() as u64, Ordering::Relaxed);
            // Where a listing narrowed to the shard's last prefix resumes (see below).
            let last_key = objects.last().map(|o| o.key.clone());
            if !objects.is_empty() && tx.send(ListingMessage::Objects(objects)).await.is_err() {
                return;
            }
            for prefix in finished {
                if tx.send(ListingMessage::ShardDone(prefix)).await.is_err() {
                    return;
                }
            }
            if reached_stop {
                break 'pages;
            }
            match page.next {
                // Once only the shard's last prefix is left, list just that prefix: an
                // open-ended run listing would return keys of the next shard on its last page,
                // listed twice.
                Some(_)
                    if !single
                        && next_open == last
                        && let Some(tail) = shard.prefixes.get(last)
                        && request.prefix != *tail =>
                {
                    request.start_after = last_key.filter(|k| k.starts_with(tail.as_str()));
                    request.prefix = tail.clone();
                    request.continuation = None;
                }
                Some(token) => request.continuation = Some(token),
                None => break,
            }
        }
        for prefix in shard.prefixes.into_iter().skip(next_open) {
            if tx.send(ListingMessage::ShardDone(prefix)).await.is_err() {
                return;
            }
        }
    }
}

impl RunContext {
    /// A context for inferring known datasets outside a listing run (incremental extraction
    /// re-infers the schemas of changed datasets with the same code as `extract`).
    pub(crate) fn for_inference(
        services: Services,
        limits: ExtractLimits,
        principal: Option<String>,
    ) -> RunContext {
        let grouping = GroupingConfig {
            templates: Vec::new(),
            schema_candidates: limits.schema_candidates.max(limits.schema_files),
            encryption_probes: limits.encryption_probes,
        };
        RunContext {
            keys: KeyResolver::new(services.keys.clone()),
            services,
            limits,
            principal,
            grouping,
            inventory: None,
            include: None,
            exclude: None,
            progress: Arc::default(),
        }
    }

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

/// Lists a bucket: each scope prefix sequentially first, split into parallel shards once it
/// proves large (see [`Lister::list_root`]); returns the number of listings run.
async fn list_bucket(
    ctx: Arc<RunContext>,
    bucket: String,
    prefixes: Vec<String>,
    tx: mpsc::Sender<ListingMessage>,
) -> u64 {
    let concurrency = ctx.limits.listing_concurrency.max(1);
    let lister =
        Arc::new(Lister { ctx, bucket, permits: Arc::new(tokio::sync::Semaphore::new(concurrency)), tx });
    let mut roots = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        roots.push(lister.clone().list_root(prefix));
    }
    crate::concurrency::unordered(roots, concurrency).await.into_iter().sum()
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
                inventory_report: None,
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

    // From an inventory report: located and verified before anything is read.
    let report = match &ctx.inventory {
        Some(input) => Some(inventory::open_report(input, &bucket).await?),
        None => None,
    };
    let mut grouper = Grouper::new(&bucket, ctx.grouping.clone());
    let (tx, rx) = mpsc::channel::<ListingMessage>(32);
    let prefixes = if target.prefixes.is_empty() { vec![String::new()] } else { target.prefixes.clone() };
    let inventory_report = report.as_ref().map(|r| r.uri.clone());

    // The object source: the inventory report's rows, or the listing (root level per prefix,
    // then shards in parallel). It runs as a future joined with the grouping loop below, so
    // dropping this function cancels it.
    let listing: futures::future::BoxFuture<'static, u64> = match (report, ctx.inventory.clone()) {
        (Some(report), Some(input)) => {
            let feed = inventory::feed(ctx.clone(), input, report.manifest, tx);
            Box::pin(async move {
                feed.await;
                0
            })
        }
        _ => Box::pin(list_bucket(ctx.clone(), bucket.clone(), prefixes, tx)),
    };
    // A target's prefixes limit the inventory's rows as they limit a listing.
    let target_prefixes = target.prefixes.clone();

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
                        // Folding a page (up to 1,000 keys: decoding, hashing) is CPU work:
                        // do it on the blocking pool, handing the grouper over and back.
                        let mut owned = std::mem::replace(&mut grouper, Grouper::new(&bucket, GroupingConfig::default()));
                        let scope = ctx.clone();
                        owned = tokio::task::spawn_blocking(move || {
                            for object in objects {
                                if scope.in_scope(&object.key) {
                                    owned.add(object);
                                }
                            }
                            owned
                        })
                        .await
                        .map_err(|e| ExtractError::Internal(format!("grouping task failed: {e}")))?;
                        grouper = owned;
                    }
                    Some(ListingMessage::Rows(rows)) => {
                        let mut owned = std::mem::replace(&mut grouper, Grouper::new(&bucket, GroupingConfig::default()));
                        let (scope, owner, prefixes) = (ctx.clone(), bucket.clone(), target_prefixes.clone());
                        let (returned, folded) = tokio::task::spawn_blocking(move || {
                            let keep = |key: &str| {
                                (prefixes.is_empty() || prefixes.iter().any(|p| key.starts_with(p.as_str())))
                                    && scope.in_scope(key)
                            };
                            let folded = fold_rows(&mut owned, &owner, rows, keep);
                            (owned, folded)
                        })
                        .await
                        .map_err(|e| ExtractError::Internal(format!("grouping task failed: {e}")))?;
                        grouper = returned;
                        folded.map_err(|e| ExtractError::inventory(IncrementalError::Build(e)))?;
                    }
                    Some(ListingMessage::InventoryFailed(e)) => return Err(ExtractError::inventory(e)),
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
        inventory_report,
    })
}
