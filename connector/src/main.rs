//! `s3-connector`: the binary. Parses arguments, sets up logging, runs the command.

use clap::Parser;
use s3_connector::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

// Inventory runs allocate and free millions of small rows across threads, where glibc's
// allocator spends a quarter of the time (bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Warnings of our own; aws-config's probing of the credential chain and IMDS (expected to fail
/// off EC2) only when it matters.
const DEFAULT_LOG_FILTER: &str = "warn,aws_config=error,aws_smithy_runtime=error";

/// Transparent huge pages off for this process, as `MIMALLOC_ALLOW_THP=0` would do: mimalloc
/// asks for them on its arenas, and with the kernel's usual `defrag=madvise` a page fault may
/// then compact memory on the spot. On the 5M-object Parquet diff that was 1.1–1.4 s of system
/// CPU against 0.4 s without, and 45–60 MB more peak RSS (bench/README.md). Best effort: a
/// kernel without the call keeps its default.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[tokio::main]
async fn main() {
    disable_transparent_huge_pages();
    let cli = Cli::parse();
    let filter = cli.log.as_deref().map(EnvFilter::new).unwrap_or_else(|| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
    });
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Json => logs.json().init(),
        cli::LogFormat::Text => logs.init(),
    }
    match cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
    }
}
