//! `inventory-gen`: writes a day-1/day-2 S3 Inventory report pair under a directory laid out
//! like the destination bucket (`<out>/<prefix>/<source>/<config>/...`).

use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use inventory_gen::{Day, Delta, ReportFormat, ReportSpec, Universe};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Csv,
    Parquet,
    Orc,
}

#[derive(Parser)]
#[command(about = "Generate a seeded S3 Inventory report pair (day 1 and day 2)")]
struct Args {
    /// Directory standing for the destination bucket.
    #[arg(long)]
    out: PathBuf,
    /// Objects on day 1.
    #[arg(long, default_value_t = 100_000)]
    objects: u64,
    /// Data files per report.
    #[arg(long, default_value_t = 10)]
    files: usize,
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// All-versions reports.
    #[arg(long)]
    all_versions: bool,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Day-2 additions / removals / rewrites / re-encryptions, fractions of day 1.
    #[arg(long, default_value_t = 0.01)]
    added: f64,
    #[arg(long, default_value_t = 0.01)]
    removed: f64,
    #[arg(long, default_value_t = 0.01)]
    changed: f64,
    #[arg(long, default_value_t = 0.005)]
    reencrypted: f64,
    #[arg(long, default_value = "src-bucket")]
    source_bucket: String,
    #[arg(long, default_value = "inventory-dest")]
    destination_bucket: String,
    #[arg(long, default_value = "inventory")]
    prefix: String,
    #[arg(long, default_value = "daily")]
    configuration_id: String,
    /// Threads writing data files.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Also write the expected change counts as JSON here (holds every changed key in memory).
    #[arg(long)]
    expected: Option<PathBuf>,
}

fn main() -> std::io::Result<()> {
    let a = Args::parse();
    let spec = ReportSpec {
        universe: Universe {
            seed: a.seed,
            objects: a.objects,
            delta: Delta {
                added: a.added,
                removed: a.removed,
                changed: a.changed,
                reencrypted: a.reencrypted,
            },
            source_bucket: a.source_bucket,
        },
        format: match a.format {
            Format::Csv => ReportFormat::Csv,
            Format::Parquet => ReportFormat::Parquet,
            Format::Orc => ReportFormat::Orc,
        },
        files: a.files,
        all_versions: a.all_versions,
        destination_bucket: a.destination_bucket,
        prefix: a.prefix,
        configuration_id: a.configuration_id,
        rows_per_group: 100_000,
    };
    let out = a.out.clone();
    let sink = move |key: &str, bytes: Vec<u8>| -> std::io::Result<()> {
        let path = out.join(key);
        std::fs::create_dir_all(path.parent().expect("key has a folder"))?;
        std::fs::write(path, bytes)
    };
    for day in [Day::One, Day::Two] {
        let start = Instant::now();
        let summary = spec.write(day, a.threads, &sink)?;
        let bytes: u64 = summary.data_files.iter().map(|f| f.1).sum();
        eprintln!(
            "{}: {} rows, {} files, {:.1} MiB, {:.1}s -> {}",
            summary.timestamp,
            summary.rows,
            summary.data_files.len(),
            bytes as f64 / 1048576.0,
            start.elapsed().as_secs_f64(),
            summary.manifest_key
        );
    }
    if let Some(path) = a.expected {
        let e = spec.universe.expected_changes();
        let reencrypted = e.changed.values().filter(|f| f.contains("ENCRYPTION_STATUS")).count();
        let json = serde_json::json!({
            "added": e.added.len(), "removed": e.removed.len(), "changed": e.changed.len(),
            "reencrypted": reencrypted,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json).map_err(std::io::Error::other)?)?;
    }
    Ok(())
}
