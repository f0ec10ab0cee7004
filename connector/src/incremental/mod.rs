//! Incremental extraction from S3 Inventory reports (`s3-connector incremental`,
//! `ExtractIncremental`).
//!
//! ```text
//! locate: configuration id (given, or discovered) → report (given, latest.json pointer, or
//!         listing of the configuration's folders: newest with manifest.checksum)
//!   → GET manifest.checksum + manifest.json → MD5 → parse → sourceBucket check
//!   → StateStore::begin: older report refused, same report = summary only, else:
//!   → data files, ≤ file_concurrency at once: GET body stream ─► mpsc ─► blocking thread
//!        (Md5Reader ─► gzip ─► CSV rows, or Parquet bytes ─► rows while the run's MD5
//!        thread hashes them with the other files in hand, checked at the file's end)
//!        ─► batches
//!        ─► one blocking SnapshotBuilder (external sort, all versions → current objects)
//!   → one blocking pass: the final merge of the sorted runs writes the new snapshot and is
//!        merge-joined against the previous snapshot as it goes (SnapshotBuilder::
//!        finish_with_rollup): ObjectChange records as they come, DatasetDiffAggregator
//!        (from the previous snapshot's dataset totals) → DatasetChange records at the end
//!   → Commit barrier: the consumer confirms every record is written (CLI: flushed, fsynced,
//!        renamed) or taken by the gRPC stream
//!   → state advance (not for dry runs) → summary record
//! ```
//!
//! Any failure before the advance (an unreadable or corrupt file, a malformed row, a denied
//! GET, a closed output) ends the run with a typed [`IncrementalError`] and the previous state
//! untouched; the rerun builds the same snapshot and emits the same changes under the same id
//! (the run id names the report, so it is known before the snapshot is written).

pub mod error;
pub mod source;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use s3_connector_domain::dataset::{Classification, DatasetKey, GroupingConfig, classify};
use s3_connector_domain::inventory::location::ReportLocation;
use s3_connector_domain::inventory::manifest::{self, InventoryFormat, Manifest, ManifestFile};
use s3_connector_domain::inventory::md5_lanes::Md5Lanes;
use s3_connector_domain::inventory::snapshot::{
    BuildError, DEFAULT_RUN_LEN, DatasetChange, DatasetChangeKind, DatasetDiffAggregator, ObjectChange,
    ReportDisposition, RowBatch, SnapshotBuilder, SnapshotHeader, SnapshotInfo, SnapshotObject,
    aggregate_datasets,
};
use s3_connector_domain::inventory::{
    InventoryColumn, InventoryRecord, InventoryRows, RowError, csv, orc, parquet,
};
use s3_connector_domain::model::ObjectMeta;
use s3_connector_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};

pub use error::IncrementalError;
use source::{InventorySource, ObjectBody};
pub use state::{RunState, StateLocation};

use crate::aws::{AwsError, AwsErrorKind, ListRequest};
use crate::extract::report::{BucketDefault, DefaultEncryptionStatus};
use crate::output::changes;

/// Largest `manifest.json` read (the Lambda uses the same cap).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;
/// Largest `manifest.checksum` or `latest.json` read.
const MAX_SMALL_FILE_BYTES: u64 = 64 * 1024;
/// Rows handed to the snapshot builder at once.
const BATCH_ROWS: usize = 4096;
/// Body chunks buffered between the download and the parser of one file.
const CHUNKS_IN_FLIGHT: usize = 8;

/// Which inventory to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventorySpec {
    /// Bucket the reports are delivered (or forwarded) to.
    pub destination_bucket: String,
    /// Prefix of the destination: empty or ending with `/`.
    pub destination_prefix: String,
    /// The inventoried bucket.
    pub source_bucket: String,
    /// The configuration id; `None`: discovered from the source bucket.
    pub configuration_id: Option<String>,
    /// A report folder name (`YYYY-MM-DDTHH-MMZ`); `None`: the newest complete report.
    pub report_timestamp: Option<String>,
}

impl InventorySpec {
    /// Normalises a destination prefix: no leading `/`, a trailing `/` unless empty.
    pub fn normalise_prefix(prefix: &str) -> String {
        match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        }
    }
}

/// Default of [`IncrementalOptions::columnar_memory_bytes`]: 256 MiB. At 512 MiB a 50M-object
/// Parquet report (10 files of 256 MB) read two files at once, for no time gained and 280 MiB
/// more peak memory (bench/README.md).
pub const DEFAULT_COLUMNAR_MEMORY_BYTES: u64 = 256 * 1024 * 1024;

/// Memory for Parquet and ORC data files, which are read whole: a file holds a share of the
/// budget from before its GET until its rows are read. Shares are counted in MiB and granted
/// in request order (tokio's semaphore is fair), and a file larger than the whole budget takes
/// all of it, so every file is read eventually.
#[derive(Debug, Clone)]
struct ColumnarMemory {
    mib: Arc<tokio::sync::Semaphore>,
    total_mib: u32,
}

impl ColumnarMemory {
    const MIB: u64 = 1024 * 1024;

    fn new(bytes: u64) -> Self {
        let most = u32::try_from(tokio::sync::Semaphore::MAX_PERMITS).unwrap_or(u32::MAX);
        let total_mib = u32::try_from(bytes.div_ceil(Self::MIB)).unwrap_or(u32::MAX).clamp(1, most);
        ColumnarMemory { mib: Arc::new(tokio::sync::Semaphore::new(total_mib as usize)), total_mib }
    }

    /// Waits until a file of `bytes` fits; its share is given back when the guard drops. (The
    /// semaphore is never closed, so there is always a guard.)
    async fn hold(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let share = u32::try_from(bytes.div_ceil(Self::MIB)).unwrap_or(u32::MAX).clamp(1, self.total_mib);
        self.mib.clone().acquire_many_owned(share).await.ok()
    }
}

/// Tuning of a run.
#[derive(Debug, Clone)]
pub struct IncrementalOptions {
    /// Data files read at once.
    pub file_concurrency: usize,
    /// Decompressed bytes per CSV data file at most.
    pub max_decompressed_bytes: u64,
    /// Bytes of one Parquet data file at most (Parquet is read from memory).
    pub max_parquet_file_bytes: u64,
    /// Bytes of Parquet and ORC data files held in memory at once, across the files read in
    /// parallel: without it, `file_concurrency` files of a large report (256 MB each for 50M
    /// objects in 10 files) would all be in memory together. A file larger than this is read
    /// alone.
    pub columnar_memory_bytes: u64,
    /// Rows per in-memory sort run of the snapshot builder.
    pub sort_run_rows: usize,
    /// Compute and emit the changes without advancing the state.
    pub dry_run: bool,
}

impl Default for IncrementalOptions {
    fn default() -> Self {
        IncrementalOptions {
            file_concurrency: 4,
            max_decompressed_bytes: 16 * 1024 * 1024 * 1024,
            max_parquet_file_bytes: 1024 * 1024 * 1024,
            columnar_memory_bytes: DEFAULT_COLUMNAR_MEMORY_BYTES,
            sort_run_rows: DEFAULT_RUN_LEN,
            dry_run: false,
        }
    }
}

/// What the engine sends to its consumer.
#[derive(Debug)]
pub enum Output {
    /// A record to deliver.
    Record(Box<pb::ChangeRecord>),
    /// Every record sent so far must be durably written (CLI) or handed to the client (gRPC)
    /// before the answer; an error answer stops the run without advancing the state.
    Commit(oneshot::Sender<Result<(), String>>),
}

/// Re-inference of the schemas of datasets with new or changed files, with `extract`'s code
/// (ranged reads, encryption probes): the services and limits it uses.
#[derive(Clone)]
pub struct SchemaInference {
    /// S3/KMS/STS seams of the source bucket.
    pub services: crate::extract::Services,
    /// Inference limits (as for `extract`).
    pub limits: crate::extract::ExtractLimits,
}

impl std::fmt::Debug for SchemaInference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaInference").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// Counters of a finished run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncrementalOutcome {
    /// The summary sent last.
    pub summary: pb::IncrementalSummary,
}

/// The inventory's folder `<prefix><source>/<config>/`.
fn config_folder(spec: &InventorySpec, configuration_id: &str) -> String {
    format!("{}{}/{}/", spec.destination_prefix, spec.source_bucket, configuration_id)
}

/// The forwarding Lambda's pointer (`lambda/README.md`); unknown fields are ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LatestPointer {
    source_bucket: String,
    config_id: String,
    report_timestamp: String,
    manifest_key: String,
}

/// Reads a whole (small) object; `Ok(None)` when it does not exist.
async fn get_small(
    source: &dyn InventorySource,
    bucket: &str,
    key: &str,
    limit: u64,
) -> Result<Option<Bytes>, IncrementalError> {
    let mut body = match source.get(bucket, key).await {
        Ok(body) => body,
        Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IncrementalError::Aws(e)),
    };
    collect_capped(&mut body, bucket, key, limit).await.map(Some)
}

/// Collects a body into memory, refusing it (`TooLarge`) past `limit` bytes, whatever its
/// `Content-Length` claims.
async fn collect_capped(
    body: &mut ObjectBody,
    bucket: &str,
    key: &str,
    limit: u64,
) -> Result<Bytes, IncrementalError> {
    let too_large = |size| IncrementalError::TooLarge { bucket: bucket.into(), key: key.into(), size, limit };
    if body.size > limit {
        return Err(too_large(body.size));
    }
    let mut buffer = BytesMut::with_capacity(body.size as usize);
    while let Some(chunk) = body.chunks.next().await {
        let chunk = chunk.map_err(IncrementalError::Aws)?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Err(too_large((buffer.len() + chunk.len()) as u64));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// The configuration id: given, or the one inventory configuration of the source bucket that
/// delivers to the destination.
pub async fn resolve_configuration(
    source: &dyn InventorySource,
    spec: &InventorySpec,
) -> Result<String, IncrementalError> {
    if let Some(id) = &spec.configuration_id {
        return Ok(id.clone());
    }
    let configs =
        source.inventory_configurations(&spec.source_bucket).await.map_err(IncrementalError::Aws)?;
    let matching: Vec<String> = configs
        .iter()
        .filter(|c| {
            c.destination_bucket == spec.destination_bucket
                && InventorySpec::normalise_prefix(c.destination_prefix.as_deref().unwrap_or(""))
                    == spec.destination_prefix
        })
        .map(|c| c.id.clone())
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(IncrementalError::NoConfiguration {
            bucket: spec.source_bucket.clone(),
            destination: format!("{}/{}", spec.destination_bucket, spec.destination_prefix),
        }),
        many => Err(IncrementalError::AmbiguousConfiguration {
            bucket: spec.source_bucket.clone(),
            ids: many.join(", "),
        }),
    }
}

/// Finds the report to process: the one asked for, the Lambda's pointer, or the newest
/// complete report in a listing of the configuration's folder.
pub async fn locate_report(
    source: &dyn InventorySource,
    spec: &InventorySpec,
    configuration_id: &str,
) -> Result<ReportLocation, IncrementalError> {
    let folder = config_folder(spec, configuration_id);
    let parse = |stamp: &str| {
        ReportLocation::parse(&format!("{folder}{stamp}/manifest.json"))
            .map(|(location, _)| location)
            .map_err(|_| IncrementalError::InvalidReportTimestamp { value: stamp.to_string() })
    };
    if let Some(stamp) = &spec.report_timestamp {
        return parse(stamp);
    }
    let bucket = &spec.destination_bucket;
    let pointer_key = format!("{folder}latest.json");
    if let Some(bytes) = get_small(source, bucket, &pointer_key, MAX_SMALL_FILE_BYTES).await? {
        let invalid = |detail: String| IncrementalError::InvalidPointer {
            bucket: bucket.clone(),
            key: pointer_key.clone(),
            detail,
        };
        let pointer: LatestPointer = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if pointer.source_bucket != spec.source_bucket || pointer.config_id != configuration_id {
            return Err(invalid(format!(
                "it is for s3://{} configuration {}",
                pointer.source_bucket, pointer.config_id
            )));
        }
        let location = parse(&pointer.report_timestamp).map_err(|e| invalid(e.to_string()))?;
        if pointer.manifest_key != location.manifest_key() {
            return Err(invalid(format!(
                "manifestKey {:?} is not in the report folder",
                pointer.manifest_key
            )));
        }
        return Ok(location);
    }
    // Report folders, newest first; a folder without its checksum is still in delivery.
    let mut folders = Vec::new();
    let mut request = ListRequest {
        bucket: bucket.clone(),
        prefix: folder.clone(),
        delimiter: Some("/".into()),
        continuation: None,
        start_after: None,
        max_keys: None,
    };
    loop {
        let page = source.list_page(&request).await.map_err(IncrementalError::Aws)?;
        for common in page.common_prefixes {
            if let Ok((location, _)) = ReportLocation::parse(&format!("{common}manifest.json"))
                && location.folder() == common
            {
                folders.push(location);
            }
        }
        match page.next {
            Some(token) => request.continuation = Some(token),
            None => break,
        }
    }
    folders.sort();
    for location in folders.into_iter().rev() {
        let listing = source
            .list_page(&ListRequest {
                bucket: bucket.clone(),
                prefix: location.folder(),
                delimiter: Some("/".into()),
                continuation: None,
                start_after: None,
                max_keys: None,
            })
            .await
            .map_err(IncrementalError::Aws)?;
        if location.is_complete(listing.objects.iter().map(|o| o.key.as_str())) {
            return Ok(location);
        }
    }
    Err(IncrementalError::NoReport { bucket: bucket.clone(), folder })
}

/// Fetches, verifies and parses the report's manifest.
pub async fn read_manifest(
    source: &dyn InventorySource,
    spec: &InventorySpec,
    location: &ReportLocation,
) -> Result<Manifest, IncrementalError> {
    let bucket = &spec.destination_bucket;
    let (manifest_key, checksum_key) = (location.manifest_key(), location.checksum_key());
    let checksum =
        get_small(source, bucket, &checksum_key, MAX_SMALL_FILE_BYTES).await?.ok_or_else(|| {
            IncrementalError::ReportIncomplete { bucket: bucket.clone(), key: checksum_key.clone() }
        })?;
    let manifest_bytes =
        get_small(source, bucket, &manifest_key, MAX_MANIFEST_BYTES).await?.ok_or_else(|| {
            IncrementalError::ReportIncomplete { bucket: bucket.clone(), key: manifest_key.clone() }
        })?;
    let manifest_error =
        |source| IncrementalError::Manifest { bucket: bucket.clone(), key: manifest_key.clone(), source };
    manifest::verify_checksum(&manifest_bytes, &checksum).map_err(manifest_error)?;
    let manifest = Manifest::parse(&manifest_bytes).map_err(manifest_error)?;
    if manifest.source_bucket != spec.source_bucket {
        return Err(IncrementalError::ManifestSourceMismatch {
            bucket: bucket.clone(),
            key: manifest_key,
            found: manifest.source_bucket,
            expected: spec.source_bucket.clone(),
        });
    }
    Ok(manifest)
}

/// How the rows of a data file are read. One arm per `fileFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileReader {
    /// Gzipped CSV, streamed.
    CsvGzip,
    /// Parquet, read from memory (random access to the footer and row groups).
    Parquet,
    /// ORC, read from memory (random access to the tail and stripes).
    Orc,
}

fn file_reader(format: InventoryFormat) -> Result<FileReader, IncrementalError> {
    match format {
        InventoryFormat::Csv => Ok(FileReader::CsvGzip),
        InventoryFormat::Parquet => Ok(FileReader::Parquet),
        InventoryFormat::Orc => Ok(FileReader::Orc),
    }
}

/// A blocking [`Read`] over body chunks arriving on a channel (from the async download).
struct ChannelReader {
    chunks: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                // End of body, or the download stopped (its error is kept by the caller; the
                // MD5 check or the gzip decoder then fails on the short stream).
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// How a reader packs a file's rows for their consumer: as they are (`extract
/// --from-inventory` groups them) or encoded for the snapshot builder on the reader's own
/// thread (`incremental`; the parsed rows never cross threads).
pub(crate) trait Batch: Send + 'static {
    /// An empty batch for the same consumer.
    fn empty_like(&self) -> Self;
    /// Adds one row.
    fn add(&mut self, record: InventoryRecord) -> Result<(), IncrementalError>;
    /// Rows added.
    fn rows(&self) -> usize;

    /// Pushes a data file's rows into `batcher`: as records, unless the batch takes only the
    /// columns a snapshot keeps.
    fn drain(rows: impl InventoryRows, batcher: Batcher<Self>) -> Result<u64, IncrementalError>
    where
        Self: Sized,
    {
        drain_rows(rows, batcher)
    }
}

impl Batch for Vec<InventoryRecord> {
    fn empty_like(&self) -> Self {
        Vec::with_capacity(BATCH_ROWS)
    }

    fn add(&mut self, record: InventoryRecord) -> Result<(), IncrementalError> {
        self.push(record);
        Ok(())
    }

    fn rows(&self) -> usize {
        self.len()
    }
}

impl Batch for RowBatch {
    fn empty_like(&self) -> Self {
        RowBatch::empty_like(self)
    }

    fn add(&mut self, record: InventoryRecord) -> Result<(), IncrementalError> {
        self.push(&record).map_err(build_error)
    }

    fn rows(&self) -> usize {
        usize::try_from(self.rows_seen()).unwrap_or(usize::MAX)
    }

    fn drain(rows: impl InventoryRows, mut batcher: Batcher<Self>) -> Result<u64, IncrementalError> {
        // No `InventoryRecord` per row where the reader can lend the cells (CSV, Parquet).
        let count = rows.for_each_snapshot_row(|row| {
            batcher.batch.push_row(row).map_err(build_error)?;
            match batcher.send_if_full() {
                true => Ok(()),
                false => Err(IncrementalError::OutputClosed),
            }
        })?;
        if !batcher.finish() {
            return Err(IncrementalError::OutputClosed);
        }
        Ok(count)
    }
}

/// Sends a file's rows to their consumer in batches.
pub(crate) struct Batcher<B> {
    tx: mpsc::Sender<B>,
    batch: B,
}

impl<B: Batch> Batcher<B> {
    fn new(tx: mpsc::Sender<B>, template: &B) -> Self {
        Batcher { tx, batch: template.empty_like() }
    }

    /// `Ok(false)` once the consumer is gone.
    fn push(&mut self, record: InventoryRecord) -> Result<bool, IncrementalError> {
        self.batch.add(record)?;
        Ok(self.send_if_full())
    }

    /// Sends the batch once it is full; `false` once the consumer is gone.
    fn send_if_full(&mut self) -> bool {
        if self.batch.rows() < BATCH_ROWS {
            return true;
        }
        let next = self.batch.empty_like();
        self.tx.blocking_send(std::mem::replace(&mut self.batch, next)).is_ok()
    }

    /// Sends the last rows; `false` once the consumer is gone.
    fn finish(self) -> bool {
        self.batch.rows() == 0 || self.tx.blocking_send(self.batch).is_ok()
    }
}

/// Pushes a file's rows into the batcher; the first error (fatal or a malformed row) stops it.
fn drain_rows<B: Batch>(
    rows: impl Iterator<Item = Result<InventoryRecord, RowError>>,
    mut batcher: Batcher<B>,
) -> Result<u64, IncrementalError> {
    let mut count = 0u64;
    for row in rows {
        count += 1;
        if !batcher.push(row?)? {
            return Err(IncrementalError::OutputClosed);
        }
    }
    if !batcher.finish() {
        return Err(IncrementalError::OutputClosed);
    }
    Ok(count)
}

/// Reads one data file into `rows`; returns the number of rows read.
async fn read_data_file<B: Batch>(
    source: Arc<dyn InventorySource>,
    bucket: String,
    file: ManifestFile,
    reader: FileReader,
    columns: Arc<Vec<InventoryColumn>>,
    (options, md5): (Arc<IncrementalOptions>, Arc<Md5Lanes>),
    (rows, template): (mpsc::Sender<B>, B),
) -> Result<u64, IncrementalError> {
    let mut body = match source.get(&bucket, &file.key).await {
        Ok(body) => body,
        Err(e) if e.kind == AwsErrorKind::NotFound => {
            return Err(IncrementalError::DataFileMissing { bucket, key: file.key });
        }
        Err(e) => return Err(IncrementalError::Aws(e)),
    };
    let join_error =
        |e: tokio::task::JoinError| IncrementalError::Internal(format!("reader task failed: {e}"));
    match reader {
        FileReader::CsvGzip => {
            let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
            let limit = options.max_decompressed_bytes;
            let parse = tokio::task::spawn_blocking(move || {
                let reader = ChannelReader { chunks: chunk_rx, current: Bytes::new() };
                let records = csv::read_verified_csv_gz(&file, reader, &columns, limit)?;
                B::drain(records, Batcher::new(rows, &template))
            });
            // The download error, if any, is the real cause of a short stream.
            let failed: Arc<Mutex<Option<AwsError>>> = Arc::default();
            let pump = {
                let failed = failed.clone();
                async move {
                    while let Some(chunk) = body.chunks.next().await {
                        match chunk {
                            Ok(chunk) => {
                                if chunk_tx.send(chunk).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                return;
                            }
                        }
                    }
                }
            };
            let ((), parsed) = tokio::join!(pump, parse);
            let parsed = parsed.map_err(join_error)?;
            if let Some(e) = failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Err(IncrementalError::Aws(e));
            }
            parsed
        }
        columnar @ (FileReader::Parquet | FileReader::Orc) => {
            let bytes = collect_capped(&mut body, &bucket, &file.key, options.max_parquet_file_bytes).await?;
            // Hashed on the run's MD5 thread, with the other files in hand, while this one is
            // decoded; a mismatch is the file's error, whatever the decoding found. (Rows of a
            // file are sent before its check ends, as a streamed CSV file's are: a mismatch
            // fails the run before anything is emitted or the state moves.)
            let digest = md5.digest(bytes.clone());
            tokio::task::spawn_blocking(move || {
                let batcher = Batcher::new(rows, &template);
                let decoded = if columnar == FileReader::Orc {
                    orc::read_orc(&file.key, bytes)
                        .map_err(IncrementalError::from)
                        .and_then(|r| B::drain(r, batcher))
                } else {
                    parquet::read_parquet(&file.key, bytes)
                        .map_err(IncrementalError::from)
                        .and_then(|r| B::drain(r, batcher))
                };
                file.check_digest(&digest.wait())
                    .map_err(|m| IncrementalError::Row(RowError::Checksum(m)))?;
                decoded
            })
            .await
            .map_err(join_error)?
        }
    }
}

/// The dataset prefix of an object (`None` for junk), with extraction's grouping.
fn dataset_prefix(bucket: &str, obj: &SnapshotObject, cfg: &GroupingConfig) -> Option<String> {
    let meta = ObjectMeta {
        key: obj.key.clone(),
        size: obj.size.unwrap_or(0),
        last_modified_ms: obj.last_modified_ms,
        etag: None,
        storage_class: None,
    };
    match classify(bucket, &meta, cfg) {
        Classification::Data(placement) => Some(placement.dataset.prefix),
        Classification::Junk(_) => None,
    }
}

/// `YYYY-MM-DDTHH-MMZ` of a creation timestamp.
fn folder_stamp(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H-%MZ").to_string())
        .unwrap_or_default()
}

async fn send(sink: &mpsc::Sender<Output>, record: pb::ChangeRecord) -> Result<(), IncrementalError> {
    sink.send(Output::Record(Box::new(record))).await.map_err(|_| IncrementalError::OutputClosed)
}

/// Asks the consumer to confirm delivery of everything sent so far.
async fn commit(sink: &mpsc::Sender<Output>) -> Result<(), IncrementalError> {
    let (tx, rx) = oneshot::channel();
    sink.send(Output::Commit(tx)).await.map_err(|_| IncrementalError::OutputClosed)?;
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(IncrementalError::Output(e)),
        Err(_) => Err(IncrementalError::OutputClosed),
    }
}

/// Counts of the diff.
#[derive(Debug, Default)]
struct DiffCounts {
    added: u64,
    removed: u64,
    changed: u64,
}

/// Reads every data file of `manifest` (at most `file_concurrency` at once; each MD5-verified
/// while it streams) and sends its rows to `rows` in batches like `template`. Stops at the
/// first failure (the other reads are dropped). Returns the files and rows read.
///
/// Shared by the incremental snapshot and `extract --from-inventory`.
pub(crate) async fn read_report_rows<B: Batch>(
    source: Arc<dyn InventorySource>,
    manifest: &Manifest,
    options: Arc<IncrementalOptions>,
    rows: mpsc::Sender<B>,
    template: B,
) -> Result<(u64, u64), IncrementalError> {
    let reader = file_reader(manifest.file_format)?;
    let columns = Arc::new(manifest.file_schema.clone());
    let memory = ColumnarMemory::new(options.columnar_memory_bytes);
    // One thread hashes the Parquet or ORC files in hand together (CSV files are hashed as
    // they stream, and leave it idle); it ends when the last file's read drops it. It gathers
    // as many files as can be in hand at once: the concurrency, or fewer when the memory
    // bound lets fewer of the largest file in.
    let largest = manifest.files.iter().map(|f| f.size).max().unwrap_or(0).max(1);
    let fit = usize::try_from(options.columnar_memory_bytes / largest).unwrap_or(usize::MAX);
    let in_hand = options.file_concurrency.min(fit).min(manifest.files.len()).max(1);
    let md5 = Md5Lanes::spawn(in_hand).map_err(|e| IncrementalError::Internal(format!("MD5 thread: {e}")))?;
    let md5 = Arc::new(md5);
    let mut pending = Vec::with_capacity(manifest.files.len());
    for file in &manifest.files {
        let read = read_data_file(
            source.clone(),
            manifest.destination_bucket.clone(),
            file.clone(),
            reader,
            columns.clone(),
            (options.clone(), md5.clone()),
            (rows.clone(), template.empty_like()),
        );
        let (memory, size) = (memory.clone(), file.size);
        pending.push(async move {
            // A Parquet or ORC file is held whole: it waits for its share of memory (by the
            // manifest's size) before its GET, and keeps it until its rows are read.
            let _held = match reader {
                FileReader::CsvGzip => None,
                FileReader::Parquet | FileReader::Orc => memory.hold(size).await,
            };
            read.await
        });
    }
    drop(rows);
    // Bounded concurrency, stopping at the first failure (the other reads are dropped).
    let (mut files_read, mut rows_read) = (0u64, 0u64);
    let mut pending = pending.into_iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < options.file_concurrency.max(1) {
            let Some(next) = pending.next() else { break };
            running.push(next);
        }
        match running.next().await {
            Some(Ok(rows)) => {
                files_read += 1;
                rows_read += rows;
            }
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    Ok((files_read, rows_read))
}

/// Reads the report's rows into a snapshot builder (spilled next to `path`; dealt into the key
/// ranges between `splitters`, the previous snapshot's, when there are any); the final merge is
/// left to the caller.
async fn sort_report_rows(
    source: Arc<dyn InventorySource>,
    manifest: &Manifest,
    header: SnapshotHeader,
    path: &std::path::Path,
    splitters: Vec<Vec<u8>>,
    options: Arc<IncrementalOptions>,
    summary: &mut pb::IncrementalSummary,
) -> Result<SnapshotBuilder, IncrementalError> {
    file_reader(manifest.file_format)?;
    let spill_dir = path.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let (rows_tx, mut rows_rx) = mpsc::channel(options.file_concurrency.max(1) * 2);
    let mut builder = SnapshotBuilder::new(header, &spill_dir, options.sort_run_rows);
    let ranges = splitters.len() + 1;
    if builder.distribute_by(splitters) {
        tracing::debug!(ranges, "rows dealt into the previous snapshot's key ranges");
    }
    // Readers encode rows on their own threads; this one only appends them to sort runs.
    let template = builder.row_batch();
    let builder = tokio::task::spawn_blocking(move || {
        while let Some(batch) = rows_rx.blocking_recv() {
            builder.push_batch(batch).map_err(build_error)?;
        }
        Ok::<_, IncrementalError>(builder)
    });
    let read = read_report_rows(source, manifest, options, rows_tx, template).await;
    let joined = |e: tokio::task::JoinError| IncrementalError::Internal(format!("snapshot task failed: {e}"));
    let (files, rows) = match read {
        Ok(counts) => counts,
        // The rows' consumer went away: the builder stopped, and its error (a spill file that
        // could not be written, say) is the cause, not the closed channel.
        Err(IncrementalError::OutputClosed) => {
            return Err(builder.await.map_err(joined)?.err().unwrap_or(IncrementalError::OutputClosed));
        }
        Err(e) => return Err(e),
    };
    summary.files_read += files;
    summary.rows_read += rows;
    builder.await.map_err(joined)?
}

/// A build error as the run reports it: errors of the previous snapshot keep their own type.
fn build_error(e: BuildError) -> IncrementalError {
    match e {
        BuildError::Snapshot(e) => IncrementalError::Snapshot(e),
        other => IncrementalError::Build(other),
    }
}

/// Runs one incremental extraction, sending its records (and the commit barrier) to `sink`.
///
/// The future is boxed so that the gRPC service can spawn it (rust-lang/rust#110338).
/// With `inference`, the datasets with new or changed files are inferred again (their
/// `DatasetChange.dataset` is then a full dataset record, and inference problems are problem
/// records); without it, dataset records carry the snapshot's counts only.
pub fn run(
    source: Arc<dyn InventorySource>,
    state_location: StateLocation,
    spec: InventorySpec,
    options: IncrementalOptions,
    inference: Option<SchemaInference>,
    sink: mpsc::Sender<Output>,
) -> futures::future::BoxFuture<'static, Result<IncrementalOutcome, IncrementalError>> {
    Box::pin(run_unboxed(source, state_location, spec, options, inference, sink))
}

/// The datasets of `changes` that need their schema inferred again, inferred with `extract`'s
/// code over the aggregates of the new snapshot. Returns dataset records by dataset, and
/// the problems met.
async fn reinfer(
    inference: SchemaInference,
    bucket: &str,
    snapshot: PathBuf,
    changes: &[DatasetChange],
) -> Result<(BTreeMap<DatasetKey, pb::DatasetRecord>, Vec<pb::ProblemRecord>), IncrementalError> {
    use crate::extract::{RunContext, bucket_default, inference::infer_dataset};
    let needed: BTreeSet<DatasetKey> = changes
        .iter()
        .filter(|c| c.kind != DatasetChangeKind::Removed && c.needs_schema_inference())
        .map(|c| c.dataset.clone())
        .collect();
    if needed.is_empty() {
        return Ok((BTreeMap::new(), Vec::new()));
    }
    let principal = inference.services.identity.caller_arn().await.ok().filter(|a| !a.is_empty());
    let ctx = Arc::new(RunContext::for_inference(inference.services, inference.limits, principal));
    // Second pass over the new snapshot: aggregates of the needed datasets only.
    let (grouping, owner) = (ctx.grouping.clone(), bucket.to_string());
    let aggregates = tokio::task::spawn_blocking(move || {
        Ok::<_, IncrementalError>(aggregate_datasets(&snapshot, &owner, &grouping, &needed)?)
    })
    .await
    .map_err(|e| IncrementalError::Internal(format!("grouping task failed: {e}")))??;
    let default = match bucket_default(&ctx, bucket).await {
        Ok(default) => default,
        Err(e) => BucketDefault {
            encryption: None,
            configured_key_id: None,
            status: if e.kind == AwsErrorKind::AccessDenied {
                DefaultEncryptionStatus::AccessDenied
            } else {
                DefaultEncryptionStatus::Error
            },
        },
    };
    let mut work = Vec::with_capacity(aggregates.len());
    for aggregate in aggregates {
        work.push(infer_dataset(ctx.clone(), bucket.to_string(), aggregate, default.clone()));
    }
    let mut records = BTreeMap::new();
    let mut problems = Vec::new();
    for (report, found) in crate::concurrency::in_order(work, ctx.limits.inference_concurrency).await {
        problems.extend(found.iter().map(crate::output::records::problem_record));
        records.insert(report.aggregate.key().clone(), crate::output::records::dataset_record(&report));
    }
    Ok((records, problems))
}

async fn run_unboxed(
    source: Arc<dyn InventorySource>,
    state_location: StateLocation,
    spec: InventorySpec,
    options: IncrementalOptions,
    inference: Option<SchemaInference>,
    sink: mpsc::Sender<Output>,
) -> Result<IncrementalOutcome, IncrementalError> {
    let options = Arc::new(options);
    let configuration_id = resolve_configuration(source.as_ref(), &spec).await?;
    let location = locate_report(source.as_ref(), &spec, &configuration_id).await?;
    let manifest = read_manifest(source.as_ref(), &spec, &location).await?;
    // Checked before any data file is read.
    file_reader(manifest.file_format)?;
    let bucket = spec.source_bucket.clone();
    let mut summary = pb::IncrementalSummary {
        source_bucket: bucket.clone(),
        configuration_id: configuration_id.clone(),
        report_timestamp: location.timestamp.format("%Y-%m-%dT%H-%MZ").to_string(),
        ..Default::default()
    };
    let header = SnapshotHeader {
        source_bucket: bucket.clone(),
        configuration_id: configuration_id.clone(),
        report_timestamp_ms: manifest.creation_timestamp_ms,
    };
    let state = RunState::open(&state_location, source.as_ref(), &bucket, &configuration_id).await?;
    let (snapshot_path, previous) = match state.store().begin(&header)? {
        ReportDisposition::AlreadyProcessed(pointer) => {
            summary.already_processed = true;
            summary.snapshot_id = pointer.snapshot_id.clone();
            summary.previous_report_timestamp = folder_stamp(pointer.report_timestamp_ms);
            summary.previous_snapshot_id = pointer.snapshot_id.clone();
            if let Some(reader) = state.store().current_snapshot(&bucket, &configuration_id)? {
                summary.object_count = reader.info().object_count;
            }
            commit(&sink).await?;
            send(
                &sink,
                changes::envelope(&pointer.snapshot_id, pb::change_record::Record::Summary(summary.clone())),
            )
            .await?;
            return Ok(IncrementalOutcome { summary });
        }
        ReportDisposition::Process { snapshot_path, previous } => (snapshot_path, previous),
    };
    if let Some(p) = &previous {
        summary.previous_report_timestamp = folder_stamp(p.report_timestamp_ms);
        summary.previous_snapshot_id = p.snapshot_id.clone();
    }

    // Known before the snapshot is written (it names the report), so object changes can
    // stream while it is.
    let run_id = header.snapshot_id();
    summary.snapshot_id = run_id.clone();
    // Opening the previous snapshot checks its SHA-256 over the whole file: done while the
    // report is read, not after.
    let opening = {
        let (store, bucket, configuration_id) =
            (state.store().clone(), bucket.clone(), configuration_id.clone());
        tokio::task::spawn_blocking(move || store.current_snapshot(&bucket, &configuration_id))
    };
    // The previous snapshot's splitters only steer the sort: without them (a first report, a
    // snapshot written before they were kept, an unreadable tail) rows are sorted in runs, and
    // the snapshot is the same.
    let splitters = match previous {
        Some(_) => {
            let (store, bucket, configuration_id) =
                (state.store().clone(), bucket.clone(), configuration_id.clone());
            let read =
                tokio::task::spawn_blocking(move || store.current_splitters(&bucket, &configuration_id));
            match read.await {
                Ok(Ok(splitters)) => splitters,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "previous snapshot's splitters unreadable: sorting the report in runs");
                    Vec::new()
                }
                Err(e) => return Err(IncrementalError::Internal(format!("splitters read failed: {e}"))),
            }
        }
        None => Vec::new(),
    };
    let builder = sort_report_rows(
        source.clone(),
        &manifest,
        header,
        &snapshot_path,
        splitters,
        options.clone(),
        &mut summary,
    )
    .await?;

    // The final merge writes the new snapshot and merge-joins it against the previous one in
    // the same pass: object changes stream out as they are found.
    let old =
        opening.await.map_err(|e| IncrementalError::Internal(format!("snapshot open failed: {e}")))??;
    let diff_sink = sink.clone();
    let (diff_bucket, diff_run) = (bucket.clone(), run_id.clone());
    let diffed = tokio::task::spawn_blocking(move || {
        let cfg = GroupingConfig::default();
        let mut aggregator = DatasetDiffAggregator::new(&diff_bucket, cfg.clone());
        let mut counts = DiffCounts::default();
        let info = builder.finish_with_rollup(&snapshot_path, old, &mut aggregator, |change| {
            let now = match change {
                ObjectChange::Added(o) => {
                    counts.added += 1;
                    o
                }
                ObjectChange::Removed(o) => {
                    counts.removed += 1;
                    o
                }
                ObjectChange::Changed { new, .. } => {
                    counts.changed += 1;
                    new
                }
            };
            let prefix = dataset_prefix(&diff_bucket, now, &cfg);
            let record = changes::object_change(&diff_bucket, change, prefix.as_deref());
            let record = changes::envelope(&diff_run, pb::change_record::Record::Object(record));
            diff_sink
                .blocking_send(Output::Record(Box::new(record)))
                .map_err(|_| IncrementalError::OutputClosed)
        })?;
        let info = info.map_err(build_error)?;
        Ok::<_, IncrementalError>((info, aggregator.finish(), counts))
    });
    let (info, datasets, counts): (SnapshotInfo, Vec<DatasetChange>, DiffCounts) =
        diffed.await.map_err(|e| IncrementalError::Internal(format!("diff task failed: {e}")))??;
    summary.object_count = info.object_count;
    summary.objects_added = counts.added;
    summary.objects_removed = counts.removed;
    summary.objects_changed = counts.changed;
    let (mut inferred, problems) = match inference {
        Some(inference) => reinfer(inference, &bucket, info.path.clone(), &datasets).await?,
        None => (BTreeMap::new(), Vec::new()),
    };
    summary.datasets_reinferred = inferred.len() as u64;
    for problem in problems {
        send(&sink, changes::envelope(&run_id, pb::change_record::Record::Problem(problem))).await?;
    }
    for change in &datasets {
        match change.kind {
            DatasetChangeKind::Added => summary.datasets_added += 1,
            DatasetChangeKind::Removed => summary.datasets_removed += 1,
            DatasetChangeKind::Changed => summary.datasets_changed += 1,
        }
        let record = changes::dataset_change(&bucket, change, inferred.remove(&change.dataset));
        send(&sink, changes::envelope(&run_id, pb::change_record::Record::Dataset(record))).await?;
    }

    // Every change is out: only now may the state move.
    commit(&sink).await?;
    if !options.dry_run {
        summary.state_advanced = state.advance(source.as_ref(), &info).await?;
    }
    send(&sink, changes::envelope(&run_id, pb::change_record::Record::Summary(summary.clone()))).await?;
    Ok(IncrementalOutcome { summary })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use async_trait::async_trait;
    use s3_connector_domain::inventory::md5_reader::md5_hex;

    use super::*;
    use crate::aws::ListPage;
    use crate::aws::control::InventoryConfig;

    /// An in-memory bucket store.
    #[derive(Default)]
    struct FakeSource {
        objects: Mutex<BTreeMap<(String, String), Bytes>>,
        configs: Vec<InventoryConfig>,
        /// Keys whose GET is denied.
        denied: BTreeSet<String>,
    }

    impl FakeSource {
        fn put(&self, bucket: &str, key: &str, bytes: impl Into<Bytes>) {
            self.objects.lock().unwrap().insert((bucket.into(), key.into()), bytes.into());
        }
    }

    fn aws_error(kind: AwsErrorKind, bucket: &str, key: &str) -> AwsError {
        AwsError {
            operation: "s3:GetObject",
            bucket: Some(bucket.into()),
            resource: Some(key.into()),
            kind,
            code: None,
            message: None,
            status: None,
        }
    }

    #[async_trait]
    impl InventorySource for FakeSource {
        async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError> {
            let objects = self.objects.lock().unwrap();
            let mut page = ListPage::default();
            let mut prefixes = BTreeSet::new();
            for ((bucket, key), bytes) in objects.iter() {
                if bucket != &request.bucket || !key.starts_with(&request.prefix) {
                    continue;
                }
                let rest = &key[request.prefix.len()..];
                match (&request.delimiter, rest.find('/')) {
                    (Some(_), Some(i)) => {
                        prefixes.insert(format!("{}{}", request.prefix, &rest[..=i]));
                    }
                    _ => page.objects.push(ObjectMeta {
                        key: key.clone(),
                        size: bytes.len() as u64,
                        last_modified_ms: None,
                        etag: None,
                        storage_class: None,
                    }),
                }
            }
            page.common_prefixes = prefixes.into_iter().collect();
            Ok(page)
        }

        async fn get(&self, bucket: &str, key: &str) -> Result<ObjectBody, AwsError> {
            if self.denied.contains(key) {
                return Err(aws_error(AwsErrorKind::KmsAccessDenied, bucket, key));
            }
            let bytes = self
                .objects
                .lock()
                .unwrap()
                .get(&(bucket.to_string(), key.to_string()))
                .cloned()
                .ok_or_else(|| aws_error(AwsErrorKind::NotFound, bucket, key))?;
            // Several chunks, as a real body arrives.
            let chunks: Vec<Result<Bytes, AwsError>> =
                bytes.chunks(7).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            Ok(ObjectBody { size: bytes.len() as u64, chunks: Box::pin(futures::stream::iter(chunks)) })
        }

        async fn put_file(
            &self,
            bucket: &str,
            key: &str,
            path: &Path,
            _kms_key_id: Option<&str>,
        ) -> Result<(), AwsError> {
            self.put(bucket, key, std::fs::read(path).unwrap());
            Ok(())
        }

        async fn inventory_configurations(&self, _bucket: &str) -> Result<Vec<InventoryConfig>, AwsError> {
            Ok(self.configs.clone())
        }

        async fn delete(&self, bucket: &str, key: &str) -> Result<(), AwsError> {
            self.objects.lock().unwrap().remove(&(bucket.to_string(), key.to_string()));
            Ok(())
        }
    }

    fn gzip(text: &str) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap()
    }

    /// Puts a CSV report (one data file) of `rows` (`key,size,etag,encryption`) for `stamp`.
    fn put_report(source: &FakeSource, stamp: &str, created_ms: i64, rows: &[(&str, u64, &str, &str)]) {
        let text: String =
            rows.iter().map(|(k, size, etag, enc)| format!("src,{k},{size},{etag},{enc}\n")).collect();
        let data = gzip(&text);
        let data_key = format!("inv/src/daily/data/{stamp}.csv.gz");
        let manifest = format!(
            r#"{{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::dest","version":"2016-11-30","creationTimestamp":"{created_ms}","fileFormat":"CSV","fileSchema":"Bucket, Key, Size, ETag, EncryptionStatus","files":[{{"key":"{data_key}","size":{},"MD5checksum":"{}"}}]}}"#,
            data.len(),
            md5_hex(&data)
        );
        source.put("dest", &data_key, data);
        source.put("dest", &format!("inv/src/daily/{stamp}/manifest.json"), manifest.clone());
        source.put("dest", &format!("inv/src/daily/{stamp}/manifest.checksum"), md5_hex(manifest.as_bytes()));
    }

    fn spec() -> InventorySpec {
        InventorySpec {
            destination_bucket: "dest".into(),
            destination_prefix: "inv/".into(),
            source_bucket: "src".into(),
            configuration_id: None,
            report_timestamp: None,
        }
    }

    fn config(id: &str, bucket: &str, prefix: &str) -> InventoryConfig {
        InventoryConfig {
            id: id.into(),
            enabled: true,
            destination_bucket: bucket.into(),
            destination_account: None,
            destination_prefix: Some(prefix.into()),
            format: "CSV".into(),
            frequency: "Daily".into(),
            included_versions: "Current".into(),
            encryption: "NONE".into(),
            encryption_key_id: None,
            optional_fields: Vec::new(),
        }
    }

    /// Runs the engine, confirming commits; returns the records and the result.
    async fn run_once(
        source: Arc<FakeSource>,
        state: StateLocation,
        spec: InventorySpec,
    ) -> (Vec<pb::ChangeRecord>, Result<IncrementalOutcome, IncrementalError>) {
        let (tx, mut rx) = mpsc::channel(4);
        let consumer = async move {
            let mut records = Vec::new();
            while let Some(message) = rx.recv().await {
                match message {
                    Output::Record(r) => records.push(*r),
                    Output::Commit(ack) => {
                        let _ = ack.send(Ok(()));
                    }
                }
            }
            records
        };
        let (result, records) =
            tokio::join!(run(source, state, spec, IncrementalOptions::default(), None, tx), consumer);
        (records, result)
    }

    fn object_keys(records: &[pb::ChangeRecord], kind: &str) -> Vec<String> {
        records
            .iter()
            .filter_map(|r| match &r.record {
                Some(pb::change_record::Record::Object(o)) if o.kind == kind => Some(o.key.clone()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn two_reports_diff_and_the_state_follows_only_complete_runs() {
        let source = Arc::new(FakeSource {
            configs: vec![config("daily", "dest", "inv"), config("other", "elsewhere", "")],
            ..FakeSource::default()
        });
        put_report(
            &source,
            "2024-01-01T00-00Z",
            1_704_067_200_000,
            &[("t/a.csv", 1, "e1", "SSE-S3"), ("t/b+c.csv", 2, "e2", "SSE-S3")],
        );
        let dir = tempfile::tempdir().unwrap();
        let state = StateLocation::Local(dir.path().to_path_buf());
        let (records, result) = run_once(source.clone(), state.clone(), spec()).await;
        let outcome = result.unwrap();
        assert_eq!(outcome.summary.configuration_id, "daily", "discovered from the configurations");
        assert_eq!(object_keys(&records, "ADDED"), vec!["t/a.csv", "t/b c.csv"]);
        assert!(outcome.summary.state_advanced);

        // Day 2: b re-encrypted, a removed, d added. Day 3 is in delivery (no checksum).
        put_report(
            &source,
            "2024-01-02T00-00Z",
            1_704_153_600_000,
            &[("t/b+c.csv", 2, "e3", "SSE-KMS"), ("t/d.csv", 4, "e4", "SSE-KMS")],
        );
        source.put("dest", "inv/src/daily/2024-01-03T00-00Z/manifest.json", "{}");
        // A denied data file stops the run before the diff: no records, state unchanged.
        let denied = Arc::new(FakeSource {
            objects: Mutex::new(source.objects.lock().unwrap().clone()),
            configs: source.configs.clone(),
            denied: ["inv/src/daily/data/2024-01-02T00-00Z.csv.gz".to_string()].into(),
        });
        let (records, result) = run_once(denied, state.clone(), spec()).await;
        let err = result.unwrap_err();
        assert_eq!(err.code(), "KMS_ACCESS_DENIED");
        assert!(records.is_empty(), "{records:?}");
        let store = s3_connector_domain::inventory::snapshot::StateStore::open(dir.path()).unwrap();
        assert_eq!(store.current("src", "daily").unwrap().unwrap().snapshot_id, outcome.summary.snapshot_id);

        let (records, result) = run_once(source.clone(), state.clone(), spec()).await;
        let day2 = result.unwrap().summary;
        assert_eq!(day2.report_timestamp, "2024-01-02T00-00Z", "the report in delivery is skipped");
        assert_eq!(object_keys(&records, "ADDED"), vec!["t/d.csv"]);
        assert_eq!(object_keys(&records, "REMOVED"), vec!["t/a.csv"]);
        assert_eq!(object_keys(&records, "CHANGED"), vec!["t/b c.csv"]);
        let datasets: Vec<_> = records
            .iter()
            .filter_map(|r| match &r.record {
                Some(pb::change_record::Record::Dataset(d)) => Some(d.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(datasets.len(), 1);
        assert_eq!(datasets[0].prefix, "t/");
        assert_eq!(datasets[0].changed_aspects, vec!["OBJECTS", "BYTES", "ENCRYPTION"]);
        assert_eq!(store.current("src", "daily").unwrap().unwrap().snapshot_id, day2.snapshot_id);
    }

    #[tokio::test]
    async fn a_snapshot_build_that_fails_while_rows_are_read_reports_its_own_error() {
        let source = Arc::new(FakeSource::default());
        // Rows for many batches, so the readers are still sending when the builder stops.
        let keys: Vec<String> = (0..100_000).map(|i| format!("t/{i:06}.csv")).collect();
        let rows: Vec<(&str, u64, &str, &str)> =
            keys.iter().map(|k| (k.as_str(), 1, "e", "SSE-S3")).collect();
        put_report(&source, "2024-01-01T00-00Z", 1_704_067_200_000, &rows);
        let manifest = source.objects.lock().unwrap()
            [&("dest".to_string(), "inv/src/daily/2024-01-01T00-00Z/manifest.json".to_string())]
            .clone();
        let manifest = Manifest::parse(&manifest).unwrap();
        // The spill directory is a regular file: the first sort run written out fails.
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").unwrap();
        let options = Arc::new(IncrementalOptions { sort_run_rows: 1, ..IncrementalOptions::default() });
        let header = SnapshotHeader {
            source_bucket: "src".into(),
            configuration_id: "daily".into(),
            report_timestamp_ms: 1_704_067_200_000,
        };
        let mut summary = pb::IncrementalSummary::default();
        let sorted = sort_report_rows(
            source,
            &manifest,
            header,
            &not_a_dir.join("s.snap"),
            Vec::new(),
            options,
            &mut summary,
        )
        .await;
        let Err(err) = sorted else { panic!("the build went on without its spill directory") };
        assert_eq!(err.code(), "SNAPSHOT_SPILL", "{err}");
    }

    #[tokio::test]
    async fn s3_state_round_trips_through_the_mirror() {
        let source = Arc::new(FakeSource::default());
        put_report(&source, "2024-01-01T00-00Z", 1_704_067_200_000, &[("a.csv", 1, "e", "SSE-S3")]);
        let state = StateLocation::s3("s3://state-bucket/runs", Some("alias/state".into())).unwrap();
        let spec = InventorySpec { configuration_id: Some("daily".into()), ..spec() };
        let (_, first) = run_once(source.clone(), state.clone(), spec.clone()).await;
        let first = first.unwrap().summary;
        assert!(first.state_advanced);
        let keys: Vec<String> = source
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter(|(b, _)| b == "state-bucket")
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(keys, vec!["runs/src/daily/current.json", "runs/src/daily/snapshot-1704067200000.snap"]);
        // A fresh mirror sees the state: the same report is a no-op.
        let (records, again) = run_once(source.clone(), state.clone(), spec.clone()).await;
        let again = again.unwrap().summary;
        assert!(again.already_processed);
        assert_eq!(again.snapshot_id, first.snapshot_id);
        assert_eq!(records.len(), 1);

        // A leftover of a crashed run (uploaded, pointer never written), then the next report:
        // once the pointer names the new snapshot, the superseded ones are gone.
        source.put("state-bucket", "runs/src/daily/snapshot-1704100000000.snap", "partial");
        source.put("state-bucket", "runs/src/daily/notes.txt", "not ours");
        put_report(&source, "2024-01-02T00-00Z", 1_704_153_600_000, &[("b.csv", 2, "e", "SSE-KMS")]);
        let (records, second) = run_once(source.clone(), state, spec).await;
        assert!(second.unwrap().summary.state_advanced);
        assert_eq!(object_keys(&records, "REMOVED"), vec!["a.csv"]);
        let keys: Vec<String> = source
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter(|(b, _)| b == "state-bucket")
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(
            keys,
            vec![
                "runs/src/daily/current.json",
                "runs/src/daily/notes.txt",
                "runs/src/daily/snapshot-1704153600000.snap"
            ]
        );
    }

    #[tokio::test]
    async fn locating_reports_and_configurations_fails_with_typed_errors() {
        let source = FakeSource {
            configs: vec![config("a", "dest", "inv/"), config("b", "dest", "/inv")],
            ..FakeSource::default()
        };
        let err = resolve_configuration(&source, &spec()).await.unwrap_err();
        assert_eq!(err.code(), "INVENTORY_CONFIGURATION_AMBIGUOUS");
        let err = resolve_configuration(&FakeSource::default(), &spec()).await.unwrap_err();
        assert_eq!(err.code(), "INVENTORY_NOT_CONFIGURED");
        let err = locate_report(&source, &spec(), "a").await.unwrap_err();
        assert_eq!(err.code(), "INVENTORY_NO_REPORT");
        source.put("dest", "inv/src/a/latest.json", "not json");
        let err = locate_report(&source, &spec(), "a").await.unwrap_err();
        assert_eq!(err.code(), "INVENTORY_INVALID_POINTER");
        let asked = InventorySpec { report_timestamp: Some("yesterday".into()), ..spec() };
        assert_eq!(
            locate_report(&source, &asked, "a").await.unwrap_err().code(),
            "INVENTORY_BAD_REPORT_TIMESTAMP"
        );
        let asked = InventorySpec { report_timestamp: Some("2024-01-01T00-00Z".into()), ..spec() };
        let location = locate_report(&source, &asked, "a").await.unwrap();
        let err = read_manifest(&source, &asked, &location).await.unwrap_err();
        assert_eq!(err.code(), "INVENTORY_REPORT_INCOMPLETE");
    }

    const MIB: u64 = ColumnarMemory::MIB;

    #[tokio::test]
    async fn columnar_files_are_held_within_the_memory_budget_in_request_order() {
        use futures::FutureExt;
        let memory = ColumnarMemory::new(100 * MIB);
        let first = memory.hold(60 * MIB).await.expect("a guard");
        let mut second = Box::pin(memory.hold(60 * MIB));
        assert!((&mut second).now_or_never().is_none(), "two 60 MiB files exceed 100 MiB");
        // A small file that would fit waits behind the larger one asked before it.
        let mut third = Box::pin(memory.hold(10 * MIB));
        assert!((&mut third).now_or_never().is_none(), "the budget is granted in request order");
        drop(first);
        let second = (&mut second).now_or_never().expect("the first file's share came back");
        let third = (&mut third).now_or_never().expect("60 + 10 MiB fit");
        assert!(memory.hold(31 * MIB).now_or_never().is_none());
        drop((second, third));
        assert!(memory.hold(100 * MIB).now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_columnar_file_larger_than_the_budget_is_read_alone() {
        use futures::FutureExt;
        let memory = ColumnarMemory::new(10 * MIB);
        let large = memory.hold(1 << 40).now_or_never().expect("granted when nothing else is held");
        assert!(memory.hold(1).now_or_never().is_none(), "nothing else while it is held");
        drop(large);
        assert!(memory.hold(1).now_or_never().is_some());
        // A budget below 1 MiB is one share: files are read one at a time.
        let tiny = ColumnarMemory::new(1);
        let held = tiny.hold(0).now_or_never().expect("an empty file still takes a share");
        assert!(tiny.hold(5).now_or_never().is_none());
        drop(held);
    }
}
