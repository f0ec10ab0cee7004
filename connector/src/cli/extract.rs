//! `s3-connector extract`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use s3_connector_domain::schema::InferenceLimits;
use tokio::sync::mpsc;

use crate::aws::{AwsContext, ConnectionSettings, RequestStats};
use crate::extract::targets::parse_targets;
use crate::extract::{ExtractLimits, ExtractScope, Extractor, InventoryInput, Services};
use crate::incremental::source::SdkInventorySource;
use crate::output::jsonl::{Destination, JsonLinesWriter};
use crate::output::stream::{extract_records, new_run_id};
use crate::output::summary;

/// Exit code: the run completed (problems are data).
pub const EXIT_OK: i32 = 0;
/// Exit code: the run completed, but some bucket could not be listed (missing or denied).
pub const EXIT_BUCKETS_UNLISTED: i32 = 2;

/// Path-style addressing choice.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PathStyle {
    /// On for IP-address and localhost endpoints, off otherwise.
    Auto,
    /// Always path-style (`https://endpoint/bucket/key`), as MinIO and most S3-compatible stores need.
    On,
    /// Always virtual-hosted style (`https://bucket.endpoint/key`).
    Off,
}

/// Connection options shared by every command that talks to AWS.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// AWS region (default: AWS_REGION / profile, else us-east-1).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// Endpoint URL for S3, KMS and STS (default: AWS_ENDPOINT_URL), for S3-compatible stores
    /// and local emulators.
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// Path-style addressing.
    #[arg(long, value_enum, default_value_t = PathStyle::Auto)]
    pub path_style: PathStyle,
    /// IAM role to assume with STS before extracting.
    #[arg(long)]
    pub role_arn: Option<String>,
    /// ExternalId for the role's trust policy (sts:ExternalId).
    #[arg(long, requires = "role_arn")]
    pub external_id: Option<String>,
    /// Role session name.
    #[arg(long, requires = "role_arn", default_value = "s3-connector")]
    pub session_name: String,
    /// Role session duration in seconds (900-43200).
    #[arg(long, requires = "role_arn")]
    pub session_duration: Option<u64>,
    /// Attempts per AWS request, including the first (standard retry with backoff).
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
}

impl ConnectionArgs {
    /// The connection settings these options describe.
    pub fn settings(&self) -> ConnectionSettings {
        ConnectionSettings {
            region: self.region.clone(),
            endpoint_url: self.endpoint_url.clone(),
            force_path_style: match self.path_style {
                PathStyle::Auto => None,
                PathStyle::On => Some(true),
                PathStyle::Off => Some(false),
            },
            role_arn: self.role_arn.clone(),
            external_id: self.external_id.clone(),
            session_name: self.role_arn.as_ref().map(|_| self.session_name.clone()),
            session_duration: self.session_duration.map(Duration::from_secs),
            max_attempts: self.max_attempts,
        }
    }
}

/// Options of `extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Buckets to extract: `bucket` or `s3://bucket/prefix/` (repeat for several). With
    /// --from-inventory: optional, the source bucket (with prefixes to limit the run).
    #[arg(required_unless_present = "from_inventory", value_name = "BUCKET_OR_URI")]
    pub targets: Vec<String>,
    /// Read the objects from the S3 Inventory report delivered (or forwarded) to this
    /// `s3://bucket/prefix/` instead of listing the bucket: no ListObjectsV2 on the source
    /// bucket, and per-object encryption counts (`encryption.inventory`) in dataset records.
    /// The report is located and verified as by `incremental` (--source-bucket,
    /// --configuration-id, --report).
    #[arg(long, value_name = "DESTINATION", requires = "source_bucket")]
    pub from_inventory: Option<String>,
    /// The inventory report (with --from-inventory).
    #[command(flatten)]
    pub inventory: super::incremental::InventoryArgs,
    /// Bytes decompressed per CSV inventory data file at most (with --from-inventory).
    #[arg(long, default_value_t = 16 * 1024 * 1024 * 1024)]
    pub inventory_max_decompressed_bytes: u64,
    /// Only keys matching this glob (repeatable), e.g. `sales/**`.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip keys matching this glob (repeatable), e.g. `**/tmp/**`.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Explicit path template (repeatable), tried before the heuristics, e.g.
    /// `s3://bucket/{table}/{partition_key}={partition_value}/*`.
    #[arg(long = "template", value_name = "TEMPLATE")]
    pub templates: Vec<String>,
    /// Write JSON Lines here instead of stdout (written as FILE.partial, renamed when done; a
    /// device or FIFO is written in place).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Connection options.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// LIST requests in flight at once per bucket (once a listing is split).
    #[arg(long, default_value_t = 8)]
    pub listing_concurrency: usize,
    /// Pages listed sequentially before the rest of a listing is split into top-level folders
    /// listed in parallel.
    #[arg(long, default_value_t = crate::extract::DEFAULT_LISTING_SPLIT_AFTER_PAGES)]
    pub listing_split_after_pages: usize,
    /// Keys per LIST page (1–1000; default: the service's maximum, 1,000). Smaller pages mean
    /// more requests: for stores that limit response sizes, and for tests.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub listing_page_size: Option<i32>,
    /// Datasets inferred in parallel.
    #[arg(long, default_value_t = 16)]
    pub inference_concurrency: usize,
    /// Files whose schema is read and merged per dataset.
    #[arg(long, default_value_t = 2)]
    pub schema_files: usize,
    /// Files tried per dataset when reads fail.
    #[arg(long, default_value_t = 4)]
    pub schema_candidates: usize,
    /// HEAD requests per dataset to survey encryption, beyond the schema reads
    /// (which see the newest and the oldest object).
    #[arg(long, default_value_t = crate::extract::DEFAULT_ENCRYPTION_PROBES)]
    pub encryption_probes: usize,
    /// Bytes read per file for text formats and Avro.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_read_bytes: u64,
    /// Bytes decompressed per file at most (compression bombs stop here).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_decompressed_bytes: u64,
    /// Records parsed per file for type inference.
    #[arg(long, default_value_t = 1000)]
    pub max_records: usize,
    /// Client-side decryption.
    #[command(flatten)]
    pub cse: super::cse::CseArgs,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Runs `extract`; returns the exit code.
pub async fn run(args: ExtractArgs) -> anyhow::Result<i32> {
    let inventory = match &args.from_inventory {
        Some(destination) => Some(args.inventory.spec(destination)?),
        None => {
            anyhow::ensure!(
                args.inventory.source_bucket.is_none()
                    && args.inventory.configuration_id.is_none()
                    && args.inventory.report.is_none(),
                "--source-bucket, --configuration-id and --report need --from-inventory"
            );
            None
        }
    };
    let targets = match (&inventory, args.targets.is_empty()) {
        (Some(spec), true) => vec![spec.source_bucket.clone()],
        _ => args.targets.clone(),
    };
    let scope = ExtractScope {
        targets: parse_targets(&targets)?,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        templates: args.templates.clone(),
    };
    let limits = ExtractLimits {
        listing_concurrency: args.listing_concurrency.max(1),
        listing_split_after_pages: args.listing_split_after_pages.max(1),
        listing_page_size: args.listing_page_size,
        inference_concurrency: args.inference_concurrency.max(1),
        schema_files: args.schema_files.max(1),
        schema_candidates: args.schema_candidates.max(1),
        encryption_probes: args.encryption_probes,
        inference: InferenceLimits {
            max_read_bytes: args.max_read_bytes.max(1024),
            max_decompressed_bytes: args.max_decompressed_bytes.max(1024),
            max_records: args.max_records.max(1),
            ..InferenceLimits::default()
        },
    };
    let aws = AwsContext::load(&args.connection.settings()).await.context("invalid connection settings")?;
    let stats = Arc::new(RequestStats::default());
    let mut services = Services::from_aws(&aws, stats.clone());
    if let Some(config) = crate::cse::ClientSideDecryption::load(&args.cse.settings())? {
        // Extraction decrypts as the connector's identity (its KMS client).
        services.store = Arc::new(crate::cse::DecryptingStore::new(
            services.store.clone(),
            Arc::new(config),
            Some(Arc::new(crate::cse::SdkDataKeyDecryptor::new(aws.kms_client(), stats.clone()))),
        ));
    }
    let destination = match &args.output {
        Some(path) => Destination::File(path.clone()),
        None => Destination::Stdout,
    };
    let mut writer = JsonLinesWriter::open(&destination).context("cannot open the output")?;

    let mut extractor = Extractor::new(services, limits);
    if let Some(spec) = inventory {
        extractor = extractor.with_inventory(InventoryInput {
            source: Arc::new(SdkInventorySource::from_aws(&aws, stats.clone())),
            spec,
            options: args.inventory.options(args.inventory_max_decompressed_bytes),
        });
    }
    let extractor = Arc::new(extractor);
    let progress = extractor.progress();
    let run_id = new_run_id();
    let started = Instant::now();

    // Records are written on a blocking thread; the bounded channel makes a slow disk or pipe
    // slow the extraction down instead of buffering without limit.
    let (tx, mut rx) = mpsc::channel(256);
    let writer_task = tokio::task::spawn_blocking(move || -> std::io::Result<JsonLinesWriter> {
        while let Some(record) = rx.blocking_recv() {
            writer.write(&record)?;
        }
        Ok(writer)
    });

    let bar = (!args.no_progress && !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
    let ticker = bar.clone().map(|bar| {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(200));
            loop {
                interval.tick().await;
                bar.set_message(format!(
                    "{} objects listed, {} datasets, {} buckets done",
                    progress.objects_listed.load(Ordering::Relaxed),
                    progress.datasets_done.load(Ordering::Relaxed),
                    progress.buckets_done.load(Ordering::Relaxed)
                ));
            }
        })
    });

    let result = extract_records(extractor, Arc::new(scope), run_id.into(), stats.clone(), None, tx).await;
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let writer = writer_task.await.context("output writer failed")?.context("writing records failed")?;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            writer.abandon();
            let context = match e.inventory_code() {
                Some(code) => format!("extraction failed [{code}]"),
                None => "extraction failed".to_string(),
            };
            return Err(anyhow::Error::new(e).context(context));
        }
    };
    writer.finish().context("writing records failed")?;
    if !args.quiet {
        eprint!("{}", summary::render(&outcome, &stats.snapshot(), stats.bytes_fetched(), started.elapsed()));
    }
    Ok(if outcome.unlisted_buckets.is_empty() { EXIT_OK } else { EXIT_BUCKETS_UNLISTED })
}
