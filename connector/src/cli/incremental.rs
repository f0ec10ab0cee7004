//! `s3-connector incremental`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tokio::sync::mpsc;

use super::extract::ConnectionArgs;
use crate::aws::{AwsContext, RequestStats};
use crate::extract::{ExtractLimits, Services};
use crate::incremental::source::SdkInventorySource;
use crate::incremental::{self, IncrementalOptions, InventorySpec, Output, SchemaInference, StateLocation};
use crate::output::jsonl::{Destination, JsonLinesWriter};

/// Which inventory report to read, and how to read its data files: shared by `incremental`
/// and `extract --from-inventory` (each names the destination itself).
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// The bucket the inventory describes (required).
    #[arg(long, value_name = "BUCKET")]
    pub source_bucket: Option<String>,
    /// The inventory configuration id (default: the source bucket's one configuration that
    /// delivers to the destination; needs s3:GetInventoryConfiguration).
    #[arg(long, value_name = "ID")]
    pub configuration_id: Option<String>,
    /// Read this report (`YYYY-MM-DDTHH-MMZ` folder) instead of the newest complete one.
    #[arg(long, value_name = "TIMESTAMP")]
    pub report: Option<String>,
    /// Inventory data files read in parallel.
    #[arg(long, default_value_t = 4)]
    pub file_concurrency: usize,
    /// Bytes of one Parquet or ORC data file at most (they are read into memory).
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub max_parquet_file_bytes: u64,
    /// Bytes of Parquet and ORC data files held in memory at once, across the files read in
    /// parallel (a larger file is read alone).
    #[arg(long, default_value_t = crate::incremental::DEFAULT_COLUMNAR_MEMORY_BYTES)]
    pub columnar_memory_bytes: u64,
}

impl InventoryArgs {
    /// The report to read from `destination` (`s3://bucket/prefix/`).
    pub fn spec(&self, destination: &str) -> anyhow::Result<InventorySpec> {
        let (bucket, prefix) = crate::extract::targets::split_s3_uri(destination).with_context(|| {
            format!("the inventory destination {destination:?} is not an s3://bucket/prefix/ URI")
        })?;
        let source_bucket = self.source_bucket.as_deref().context("--source-bucket is required")?;
        anyhow::ensure!(
            crate::extract::targets::is_valid_bucket_name(source_bucket),
            "--source-bucket {source_bucket:?} is not a valid bucket name"
        );
        Ok(InventorySpec {
            destination_bucket: bucket.to_string(),
            destination_prefix: InventorySpec::normalise_prefix(prefix),
            source_bucket: source_bucket.to_string(),
            configuration_id: self.configuration_id.clone().filter(|c| !c.is_empty()),
            report_timestamp: self.report.clone(),
        })
    }

    /// How data files are read (CSV files decompress up to `max_decompressed_bytes`).
    pub fn options(&self, max_decompressed_bytes: u64) -> IncrementalOptions {
        IncrementalOptions {
            file_concurrency: self.file_concurrency.max(1),
            max_decompressed_bytes: max_decompressed_bytes.max(1024),
            max_parquet_file_bytes: self.max_parquet_file_bytes.max(1024),
            columnar_memory_bytes: self.columnar_memory_bytes,
            ..IncrementalOptions::default()
        }
    }
}

/// Options of `incremental`.
#[derive(Debug, Args)]
pub struct IncrementalArgs {
    /// Where the reports are delivered (or forwarded by the Lambda): `s3://bucket/prefix/`.
    #[arg(value_name = "DESTINATION")]
    pub destination: String,
    /// The report and how to read it.
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Local state directory (last processed snapshot per bucket and configuration).
    #[arg(long, value_name = "DIR", required_unless_present = "state_url", conflicts_with = "state_url")]
    pub state_dir: Option<PathBuf>,
    /// State in S3 instead (`s3://bucket/prefix/`), written with SSE-KMS, for stateless
    /// containers.
    #[arg(long, value_name = "URL")]
    pub state_url: Option<String>,
    /// KMS key (id, alias or ARN) for the state objects of --state-url (default: the bucket's
    /// aws:kms default key).
    #[arg(long, value_name = "KEY", requires = "state_url")]
    pub state_kms_key_id: Option<String>,
    /// Compute and write the changes without advancing the state.
    #[arg(long)]
    pub dry_run: bool,
    /// Write JSON Lines here instead of stdout (written as FILE.partial, renamed once every
    /// change is written, before the state advances; a device or FIFO is written in place).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Connection options.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Bytes decompressed per CSV data file at most (compression bombs stop here).
    #[arg(long, default_value_t = 16 * 1024 * 1024 * 1024)]
    pub max_decompressed_bytes: u64,
    /// Rows per in-memory sort run while building the snapshot (memory vs. spill files).
    #[arg(long, default_value_t = s3_connector_domain::inventory::snapshot::DEFAULT_RUN_LEN)]
    pub sort_run_rows: usize,
    /// Do not re-infer the schemas of datasets with new or changed files (dataset records then
    /// carry the snapshot's counts only; no object is read).
    #[arg(long)]
    pub no_schema_inference: bool,
    /// Files whose schema is read and merged per re-inferred dataset.
    #[arg(long, default_value_t = 2)]
    pub schema_files: usize,
    /// HEAD requests per re-inferred dataset to survey encryption, beyond the schema reads
    /// (which see the newest and the oldest object).
    #[arg(long, default_value_t = crate::extract::DEFAULT_ENCRYPTION_PROBES)]
    pub encryption_probes: usize,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

impl IncrementalArgs {
    fn state(&self) -> anyhow::Result<StateLocation> {
        match (&self.state_dir, &self.state_url) {
            (Some(dir), _) => Ok(StateLocation::Local(dir.clone())),
            (None, Some(url)) => Ok(StateLocation::s3(url, self.state_kms_key_id.clone())?),
            (None, None) => anyhow::bail!("--state-dir or --state-url is required"),
        }
    }
}

/// Runs `incremental`; returns the exit code.
pub async fn run(args: IncrementalArgs) -> anyhow::Result<i32> {
    let spec = args.inventory.spec(&args.destination)?;
    let state = args.state()?;
    let options = IncrementalOptions {
        sort_run_rows: args.sort_run_rows.max(1),
        dry_run: args.dry_run,
        ..args.inventory.options(args.max_decompressed_bytes)
    };
    let aws = AwsContext::load(&args.connection.settings()).await.context("invalid connection settings")?;
    let stats = Arc::new(RequestStats::default());
    let source = Arc::new(SdkInventorySource::from_aws(&aws, stats.clone()));
    let destination = match &args.output {
        Some(path) => Destination::File(path.clone()),
        None => Destination::Stdout,
    };
    let mut writer = JsonLinesWriter::open(&destination).context("cannot open the output")?;

    // Records are written on a blocking thread; a commit request flushes and fsyncs before it
    // is answered, so the state only advances over changes that are on disk (or in the pipe).
    let (tx, mut rx) = mpsc::channel::<Output>(256);
    let writer_task = tokio::task::spawn_blocking(move || -> std::io::Result<JsonLinesWriter> {
        while let Some(message) = rx.blocking_recv() {
            match message {
                Output::Record(record) => writer.write(&*record)?,
                Output::Commit(ack) => {
                    let result = writer.commit();
                    let failed = result.as_ref().err().map(|e| std::io::Error::new(e.kind(), e.to_string()));
                    let _ = ack.send(result.map_err(|e| e.to_string()));
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
            }
        }
        Ok(writer)
    });

    let inference = (!args.no_schema_inference).then(|| SchemaInference {
        services: Services::from_aws(&aws, stats.clone()),
        limits: ExtractLimits {
            schema_files: args.schema_files.max(1),
            schema_candidates: args.schema_files.max(1) * 2,
            encryption_probes: args.encryption_probes,
            ..ExtractLimits::default()
        },
    });
    let result = incremental::run(source, state, spec, options, inference, tx).await;
    let writer = writer_task.await.context("output writer failed")?.context("writing records failed")?;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            writer.abandon();
            let code = e.code();
            return Err(anyhow::Error::new(e).context(format!("incremental extraction failed [{code}]")));
        }
    };
    writer.finish().context("writing records failed")?;
    if !args.quiet {
        let s = &outcome.summary;
        let requests: u64 = stats.snapshot().values().sum();
        eprintln!(
            "report {} of s3://{} ({}): {} objects; {} added, {} removed, {} changed; datasets {} added, {} removed, {} changed; {}; {} requests",
            s.report_timestamp,
            s.source_bucket,
            s.configuration_id,
            s.object_count,
            s.objects_added,
            s.objects_removed,
            s.objects_changed,
            s.datasets_added,
            s.datasets_removed,
            s.datasets_changed,
            if s.already_processed {
                "already processed, nothing emitted".to_string()
            } else if s.state_advanced {
                format!("state advanced to {}", s.snapshot_id)
            } else {
                "state not advanced (dry run)".to_string()
            },
            requests,
        );
    }
    Ok(0)
}
