//! Full extraction from an S3 Inventory report (`extract --from-inventory`,
//! `ExtractMetadataRequest.inventory`): the report replaces the listing, everything else is
//! the listing-based extraction.
//!
//! ```text
//! configuration id, report (incremental::{resolve_configuration, locate_report})
//!   → manifest.json verified against manifest.checksum (incremental::read_manifest)
//!   → data files, MD5-checked while streamed (incremental::read_report_rows) ─► row batches
//!   → grouping loop of `extract`: spawn_blocking(fold_rows: current objects, in scope, into
//!     the Grouper with their listed encryption) ─► end of report ─► take_all ─► inference
//! ```
//!
//! No ListObjectsV2 on the source bucket (locating the newest report without `--report` or the
//! Lambda's pointer lists the destination's report folders). Rows are folded batch by batch:
//! memory is the grouper's, as for a listing. A bad report stops the run with the incremental
//! engine's typed error ([`ExtractError::Inventory`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use s3_connector_domain::inventory::manifest::Manifest;
use s3_connector_domain::inventory::{InventoryColumn, InventoryRecord, RowError};
use tokio::sync::mpsc;

use super::{ExtractError, ListingMessage, RunContext};
use crate::incremental::source::InventorySource;
use crate::incremental::{self, IncrementalError, IncrementalOptions, InventorySpec};

/// Where the report is and how to read it.
#[derive(Clone)]
pub struct InventoryInput {
    /// The S3 seam that reads the reports (the destination bucket).
    pub source: Arc<dyn InventorySource>,
    /// The report: destination, source bucket, configuration id, timestamp.
    pub spec: InventorySpec,
    /// How data files are read (`file_concurrency`, `max_decompressed_bytes`,
    /// `max_parquet_file_bytes`; the state options are not used).
    pub options: IncrementalOptions,
}

impl std::fmt::Debug for InventoryInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryInput")
            .field("spec", &self.spec)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A located, verified report.
#[derive(Debug)]
pub(crate) struct OpenReport {
    /// The parsed manifest.
    pub(crate) manifest: Manifest,
    /// `s3://<destination>/<manifest key>`.
    pub(crate) uri: String,
}

/// Finds the report, verifies and parses its manifest, and checks that it can serve a full
/// extraction of `bucket` (the manifest's source bucket, a `Size` column).
pub(crate) async fn open_report(input: &InventoryInput, bucket: &str) -> Result<OpenReport, ExtractError> {
    // `Extractor::run` has checked that `bucket` is the report's source bucket.
    let spec = &input.spec;
    debug_assert_eq!(spec.source_bucket, bucket);
    let source = input.source.as_ref();
    let configuration_id =
        incremental::resolve_configuration(source, spec).await.map_err(ExtractError::inventory)?;
    let location =
        incremental::locate_report(source, spec, &configuration_id).await.map_err(ExtractError::inventory)?;
    let manifest =
        incremental::read_manifest(source, spec, &location).await.map_err(ExtractError::inventory)?;
    let uri = format!("s3://{}/{}", spec.destination_bucket, location.manifest_key());
    // Without sizes every object would look empty (junk): refuse, naming the report.
    if !manifest.file_schema.contains(&InventoryColumn::Size) {
        let missing = RowError::MissingColumn { file: uri, column: InventoryColumn::Size };
        return Err(ExtractError::inventory(IncrementalError::Row(missing)));
    }
    Ok(OpenReport { manifest, uri })
}

/// Streams the report's rows to the grouping loop as [`ListingMessage::Rows`] batches; a
/// failure is sent as [`ListingMessage::InventoryFailed`]. Ends (dropping `tx`) when every file
/// was read.
pub(crate) async fn feed(
    ctx: Arc<RunContext>,
    input: Arc<InventoryInput>,
    manifest: Manifest,
    tx: mpsc::Sender<ListingMessage>,
) {
    let (rows_tx, mut rows_rx) =
        mpsc::channel::<Vec<InventoryRecord>>(input.options.file_concurrency.max(1) * 2);
    let options = Arc::new(input.options.clone());
    let read = incremental::read_report_rows(input.source.clone(), &manifest, options, rows_tx, Vec::new());
    let forward = {
        let tx = tx.clone();
        async move {
            while let Some(batch) = rows_rx.recv().await {
                ctx.progress.objects_listed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                if tx.send(ListingMessage::Rows(batch)).await.is_err() {
                    // The grouping loop is gone: dropping the receiver stops the readers.
                    return;
                }
            }
        }
    };
    let (read, ()) = tokio::join!(read, forward);
    if let Err(e) = read {
        let _ = tx.send(ListingMessage::InventoryFailed(e)).await;
    }
}
