//! The command line. `anyhow` lives here and in `main` only.

pub mod check;
pub mod cse;
pub mod extract;
pub mod incremental;
pub mod policy;
pub mod sample;
pub mod serve;

use clap::{Parser, Subcommand};

/// S3 catalog connector: encryption-aware metadata extraction for data catalogs.
#[derive(Debug, Parser)]
#[command(name = "s3-connector", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `s3_connector=debug`. Logs go to
    /// stderr. Overrides RUST_LOG.
    #[arg(long, global = true, env = "S3_CONNECTOR_LOG")]
    pub log: Option<String>,

    /// Log format on stderr: `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "S3_CONNECTOR_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON objects, one per line.
    Json,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Full metadata extraction of buckets: datasets, formats, schemas, encryption, problems.
    Extract(Box<extract::ExtractArgs>),
    /// Incremental extraction from S3 Inventory reports: the object and dataset changes since
    /// the last processed report (verified manifests and data files, CSV or Parquet), then the
    /// state advances once every change is written.
    Incremental(Box<incremental::IncrementalArgs>),
    /// IAM and KMS policy documents for a described setup (connector role, trust policy with
    /// ExternalId, inventory key policy, Lambda role, sampling users). Makes no AWS calls.
    Policy(policy::PolicyArgs),
    /// Access diagnostics: each permission, key and inventory setting extraction, incremental
    /// extraction and sampling need, probed separately with evidence and the fixing statement.
    Check(Box<check::CheckArgs>),
    /// A few rows of an object or dataset, read as the end user (never the service, unless
    /// --as-service): CSV/TSV/PSV, JSON Lines, Parquet; denials name the key and permission.
    Sample(Box<sample::SampleArgs>),
    /// The gRPC service for catalog platforms (health, reflection, metrics, TLS, bearer token).
    Serve(serve::ServeArgs),
}

/// Runs the command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Extract(args) => extract::run(*args).await,
        Command::Incremental(args) => incremental::run(*args).await,
        Command::Policy(args) => policy::run(args),
        Command::Check(args) => check::run(*args).await,
        Command::Serve(args) => serve::run(args).await,
        Command::Sample(args) => sample::run(*args).await,
    }
}
