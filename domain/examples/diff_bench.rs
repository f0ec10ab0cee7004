//! Rough timing of the snapshot pipeline on synthetic records (not a test):
//! `cargo run --release -p s3-connector-domain --example diff_bench -- [objects] [run_len]`.
//!
//! Builds two snapshots of `objects` objects from unsorted rows (day 2: 1% removed, 1% added,
//! 1% changed), then streams the diff and the dataset roll-up.

use std::time::Instant;

use s3_connector_domain::dataset::GroupingConfig;
use s3_connector_domain::inventory::EncryptionStatus;
use s3_connector_domain::inventory::InventoryRecord;
use s3_connector_domain::inventory::snapshot::{
    DatasetDiffAggregator, DiffEntry, SnapshotBuilder, SnapshotHeader, SnapshotReader, merge_join,
};

fn record(i: u64, day: u64) -> InventoryRecord {
    // A scrambled index so rows arrive unsorted.
    let n = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_007;
    let changed = day == 2 && n % 100 == 1;
    InventoryRecord {
        bucket: "src".into(),
        key: format!("table{}/dt=2024-01-{:02}/part-{n:010}.parquet", n % 50, 1 + n % 28),
        size: Some(1000 + n % 5000 + u64::from(changed)),
        etag: Some(format!("{:032x}", n.wrapping_mul(31) + u64::from(changed))),
        last_modified_ms: Some(1_700_000_000_000 + n as i64),
        storage_class: Some("STANDARD".into()),
        encryption_status: Some(EncryptionStatus::SseKms),
        bucket_key_enabled: Some(true),
        ..InventoryRecord::default()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let objects: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let run_len: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(250_000);
    let dir = std::env::temp_dir().join(format!("diff-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    let mut infos = Vec::new();
    for day in [1u64, 2] {
        let started = Instant::now();
        let header = SnapshotHeader {
            source_bucket: "src".into(),
            configuration_id: "bench".into(),
            report_timestamp_ms: day as i64,
        };
        let mut builder = SnapshotBuilder::new(header, &dir, run_len);
        let (skip, extra) = if day == 2 { (objects / 100, objects / 100) } else { (0, 0) };
        for i in skip..objects + extra {
            builder.push(&record(i, day))?;
        }
        let info = builder.finish(&dir.join(format!("day{day}.snap")))?;
        let size = std::fs::metadata(&info.path)?.len();
        println!(
            "build day {day}: {} objects, {:.1} MB file, {:.2?}",
            info.object_count,
            size as f64 / 1e6,
            started.elapsed()
        );
        infos.push(info);
    }

    let started = Instant::now();
    let old = SnapshotReader::open(&infos[0].path)?;
    let new = SnapshotReader::open(&infos[1].path)?;
    let opened = started.elapsed();
    let mut agg = DatasetDiffAggregator::new("src", GroupingConfig::default());
    let (mut added, mut removed, mut changed) = (0u64, 0u64, 0u64);
    for entry in merge_join(old, new) {
        let entry = entry?;
        if let DiffEntry::Change(change) = &entry {
            use s3_connector_domain::inventory::snapshot::ObjectChange as C;
            match change {
                C::Added(_) => added += 1,
                C::Removed(_) => removed += 1,
                C::Changed { .. } => changed += 1,
            }
        }
        agg.add(&entry);
    }
    let datasets = agg.finish();
    println!(
        "diff: +{added} -{removed} ~{changed}, {} datasets changed, open+verify {opened:.2?}, total {:.2?}",
        datasets.len(),
        started.elapsed()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
