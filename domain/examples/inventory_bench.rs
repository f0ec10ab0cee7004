//! The day-over-day inventory pipeline on real report files in a local folder (not a test; see
//! bench/README.md): verify `manifest.checksum`, read every data file on `--threads` threads
//! (a CSV file through its MD5 check as it streams; a Parquet or ORC file decoded while the
//! MD5 thread hashes it with the other files in hand: up to `--files-in-hand`, read ahead by a
//! thread of their own, as `incremental` holds `file_concurrency` files), build the sorted snapshot (rows dealt
//! into the previous snapshot's key ranges, as `incremental` does), diff it against the
//! previous report's snapshot from the state directory, roll changes up to datasets, advance
//! the state.
//!
//! `cargo run --release -p s3-connector-domain --example inventory_bench -- \
//!     --dest DIR --state DIR [--threads 2] [--files-in-hand 4] [--report TIMESTAMP] [--run-len ROWS]
//!     [--sort-in-runs yes|no]`
//!
//! `--sort-in-runs yes` ignores the previous snapshot's splitters and sorts in runs (A/B runs).
//!
//! `--dest` is a folder standing for the destination bucket (keys are paths under it), as
//! `inventory-gen` writes it.
//!
//! Without `--report`, processes every complete report in order. Prints one JSON line per
//! report with phase timings, change counts and the process's peak RSS so far.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::time::Instant;

// Inventory runs allocate and free millions of small rows across threads, where glibc's
// allocator spends a quarter of the time (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bytes::Bytes;
use s3_connector_domain::dataset::GroupingConfig;
use s3_connector_domain::inventory::md5_lanes::{Md5Lanes, PendingMd5};
use s3_connector_domain::inventory::snapshot::{
    DEFAULT_RUN_LEN, DatasetDiffAggregator, ObjectChange, ReportDisposition, RowBatch, SnapshotBuilder,
    SnapshotHeader, StateStore,
};
use s3_connector_domain::inventory::{
    InventoryFormat, InventoryRows, Manifest, SnapshotRow, csv, location, manifest, orc, parquet,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    dest: PathBuf,
    state: PathBuf,
    threads: usize,
    /// Parquet or ORC files held at once (decoded or read ahead): `incremental`'s default
    /// `file_concurrency`.
    files_in_hand: usize,
    report: Option<String>,
    run_len: usize,
    /// `--sort-in-runs yes`: ignore the previous snapshot's splitters (for A/B runs).
    sort_in_runs: bool,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        dest: PathBuf::new(),
        state: PathBuf::new(),
        threads: 2,
        files_in_hand: 4,
        report: None,
        run_len: DEFAULT_RUN_LEN,
        sort_in_runs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dest" => a.dest = value.into(),
            "--state" => a.state = value.into(),
            "--threads" => a.threads = value.parse()?,
            "--files-in-hand" => a.files_in_hand = value.parse()?,
            "--report" => a.report = Some(value),
            "--run-len" => a.run_len = value.parse()?,
            "--sort-in-runs" => {
                a.sort_in_runs = match value.as_str() {
                    "yes" => true,
                    "no" => false,
                    other => return Err(format!("--sort-in-runs takes yes or no, not {other}").into()),
                }
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.dest.as_os_str().is_empty() || a.state.as_os_str().is_empty() {
        return Err("--dest and --state are required".into());
    }
    Ok(a)
}

/// Peak resident set size of this process, from /proc (kB → MiB).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A Parquet or ORC file read ahead: its index in the manifest, its bytes, and its digest
/// being computed on the MD5 thread.
type Fetched = (usize, Bytes, PendingMd5);

/// Reads the Parquet or ORC files of `manifest` in order, handing each to the MD5 thread and
/// then to `ahead` (which bounds how many are read ahead).
fn fetch_files(
    root: &Path,
    manifest: &Manifest,
    md5: &Md5Lanes,
    ahead: &SyncSender<Result<Fetched, BoxError>>,
) {
    for (index, file) in manifest.files.iter().enumerate() {
        let read = std::fs::read(root.join(&file.key)).map_err(BoxError::from);
        let fetched = read.map(|bytes| {
            let bytes = Bytes::from(bytes);
            (index, bytes.clone(), md5.digest(bytes))
        });
        let failed = fetched.is_err();
        if ahead.send(fetched).is_err() || failed {
            return;
        }
    }
}

/// Reads one data file, sending its records to `tx`: a CSV file from `path`, checked as it
/// streams; a Parquet or ORC file from `fetched`, decoded while the MD5 thread hashes it.
fn read_file(
    path: &Path,
    file: &s3_connector_domain::inventory::ManifestFile,
    manifest: &Manifest,
    (template, tx): (&RowBatch, &SyncSender<RowBatch>),
    fetched: Option<(Bytes, PendingMd5)>,
) -> Result<(), BoxError> {
    // Rows are encoded here, on the reading thread, from the cells the reader lends (no
    // record per row), as `incremental` does.
    let mut batch = template.empty_like();
    let mut send_row = |row: &SnapshotRow<'_>| -> Result<(), BoxError> {
        batch.push_row(row)?;
        if batch.rows_seen() == 4096 {
            tx.send(std::mem::replace(&mut batch, template.empty_like()))?;
        }
        Ok(())
    };
    match fetched {
        None => {
            let reader = BufReader::with_capacity(1 << 20, File::open(path)?);
            csv::read_verified_csv_gz(file, reader, &manifest.file_schema, 64 << 30)?
                .for_each_snapshot_row(&mut send_row)?;
        }
        Some((bytes, digest)) => {
            // A mismatch is the file's error, whatever the decoding found.
            let decoded: Result<u64, BoxError> = if manifest.file_format == InventoryFormat::Parquet {
                parquet::read_parquet(&file.key, bytes)
                    .map_err(BoxError::from)
                    .and_then(|rows| rows.for_each_snapshot_row(&mut send_row))
            } else {
                orc::read_orc(&file.key, bytes)
                    .map_err(BoxError::from)
                    .and_then(|rows| rows.for_each_snapshot_row(&mut send_row))
            };
            file.check_digest(&digest.wait())?;
            decoded?;
        }
    }
    if batch.rows_seen() > 0 {
        tx.send(batch)?;
    }
    Ok(())
}

fn process(a: &Args, store: &StateStore, report: &location::ReportLocation) -> Result<(), BoxError> {
    let started = Instant::now();
    let manifest_bytes = std::fs::read(a.dest.join(report.manifest_key()))?;
    let checksum = std::fs::read(a.dest.join(report.checksum_key()))?;
    manifest::verify_checksum(&manifest_bytes, &checksum)?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    let header = SnapshotHeader {
        source_bucket: manifest.source_bucket.clone(),
        configuration_id: report.config_id.clone(),
        report_timestamp_ms: manifest.creation_timestamp_ms,
    };
    let (snapshot_path, previous) = match store.begin(&header)? {
        ReportDisposition::Process { snapshot_path, previous } => (snapshot_path, previous),
        ReportDisposition::AlreadyProcessed(_) => {
            println!(r#"{{"report":"{}","already_processed":true}}"#, report.folder());
            return Ok(());
        }
    };
    let root = a.dest.clone();
    let spill = snapshot_path.with_extension("spill");
    std::fs::create_dir_all(&spill)?;
    let mut builder = SnapshotBuilder::new(header, &spill, a.run_len);
    // As `incremental` does: the previous snapshot's splitters steer the sort.
    let dealt = !a.sort_in_runs
        && builder.distribute_by(store.current_splitters(&manifest.source_bucket, &report.config_id)?);
    let (tx, rx) = sync_channel::<RowBatch>(64);
    let template = builder.row_batch();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let columnar = manifest.file_format != InventoryFormat::Csv;
    let in_hand = a.files_in_hand.max(a.threads).max(1).min(manifest.files.len());
    let md5 = Md5Lanes::spawn(in_hand)?;
    // Files in hand: one per reader, one held by the fetching thread, the rest queued.
    let (ahead_tx, ahead_rx) =
        sync_channel::<Result<Fetched, BoxError>>(in_hand.saturating_sub(a.threads + 1));
    let ahead_rx = std::sync::Mutex::new(ahead_rx);
    let read_started = Instant::now();
    let outcome: Result<_, BoxError> = std::thread::scope(|scope| {
        // The previous snapshot's checksum pass runs while the report is read, as in
        // `incremental`.
        let opening =
            std::thread::Builder::new().name("snapshot-open".into()).spawn_scoped(
                scope,
                || match previous {
                    Some(_) => store.current_snapshot(&manifest.source_bucket, &report.config_id),
                    None => Ok(None),
                },
            )?;
        if columnar {
            let (root, manifest, md5) = (&root, &manifest, &md5);
            std::thread::Builder::new()
                .name("inventory-fetch".into())
                .spawn_scoped(scope, move || fetch_files(root, manifest, md5, &ahead_tx))?;
        } else {
            drop(ahead_tx);
        }
        let workers: Vec<_> = (0..a.threads.max(1))
            .map(|_| {
                let tx = tx.clone();
                let (next, manifest, root, template, ahead) = (&next, &manifest, &root, &template, &ahead_rx);
                let named = std::thread::Builder::new().name("inventory-read".into());
                named.spawn_scoped(scope, move || -> Result<(), BoxError> {
                    loop {
                        let (n, fetched) = if columnar {
                            let received = ahead.lock().map_err(|_| "a reader panicked")?.recv();
                            let Ok(fetched) = received else { return Ok(()) };
                            let (n, bytes, digest) = fetched?;
                            (n, Some((bytes, digest)))
                        } else {
                            (next.fetch_add(1, std::sync::atomic::Ordering::Relaxed), None)
                        };
                        let Some(file) = manifest.files.get(n) else { return Ok(()) };
                        read_file(&root.join(&file.key), file, manifest, (template, &tx), fetched)?;
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        drop(tx);
        for batch in rx {
            builder.push_batch(batch)?;
        }
        for w in workers {
            w.join().map_err(|_| "reader thread panicked")??;
        }
        Ok(opening.join().map_err(|_| "snapshot open thread panicked")??)
    });
    let old = outcome?;
    let read_and_sort = read_started.elapsed();
    let rows = builder.rows_seen();
    // The final merge writes the new snapshot and diffs it against the previous one in one
    // pass, as `incremental` does.
    let merged_at = Instant::now();
    let (mut added, mut removed, mut changed) = (0u64, 0u64, 0u64);
    if previous.is_some() && old.is_none() {
        return Err("state pointer without snapshot".into());
    }
    // As `incremental` does, a first report too goes through the roll-up (every object
    // added): its snapshot stores the dataset totals the next day starts from.
    let mut agg = DatasetDiffAggregator::new(&manifest.source_bucket, GroupingConfig::default());
    let info = builder.finish_with_rollup(&snapshot_path, old, &mut agg, |change| {
        match change {
            ObjectChange::Added(_) => added += 1,
            ObjectChange::Removed(_) => removed += 1,
            ObjectChange::Changed { .. } => changed += 1,
        }
        Ok::<_, BoxError>(())
    })??;
    let datasets = agg.finish().len();
    std::fs::remove_dir_all(&spill).ok();
    let merge_diff = merged_at.elapsed();
    store.advance(&info)?;
    println!(
        "{}",
        serde_json::json!({
            "report": report.folder(),
            "format": manifest.file_format.as_str(),
            "rows": rows,
            "dealt_into_ranges": dealt,
            "objects": info.object_count,
            "added": added, "removed": removed, "changed": changed, "datasets_changed": datasets,
            "read_sort_s": read_and_sort.as_secs_f64(),
            "merge_diff_rollup_s": merge_diff.as_secs_f64(),
            "total_s": started.elapsed().as_secs_f64(),
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // As the `s3-connector` binary does (connector/src/main.rs): no transparent huge pages.
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let a = args()?;
    let store = StateStore::open(&a.state)?;
    // Every key of the destination, to find the complete reports as a listing would.
    let mut keys = Vec::new();
    let mut pending = vec![a.dest.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(rel) = path.strip_prefix(&a.dest) {
                keys.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let reports = location::complete_reports(keys.iter().map(String::as_str));
    let selected: Vec<_> = reports
        .iter()
        .filter(|r| a.report.as_deref().is_none_or(|t| r.folder().trim_end_matches('/').ends_with(t)))
        .collect();
    if selected.is_empty() {
        return Err(format!("no complete report under {}", a.dest.display()).into());
    }
    for report in selected {
        process(&a, &store, report)?;
    }
    Ok(())
}
