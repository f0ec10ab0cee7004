//! `s3-connector serve`: runs the gRPC service until SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::serve::config::KEYS_HELP;
use crate::serve::{ServeConfig, StartOptions, start};

/// Options of `serve`.
#[derive(Debug, Args)]
#[command(after_long_help = KEYS_HELP)]
pub struct ServeArgs {
    /// TOML configuration file (every key has a default; see below).
    #[arg(long, short, value_name = "FILE", env = "S3_CONNECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address; overrides `server.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Metrics listen address (`""` disables); overrides `server.metrics_listen`.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Allow plain-text gRPC on a non-loopback address (logs a warning). Never in production.
    #[arg(long)]
    pub insecure: bool,
    /// Print the effective configuration (TOML, every key) and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Runs `serve`; returns the exit code.
pub async fn run(args: ServeArgs) -> anyhow::Result<i32> {
    let mut config = ServeConfig::load(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(metrics) = args.metrics_listen {
        config.server.metrics_listen = metrics;
    }
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(0);
    }
    let server = start(config, StartOptions { insecure: args.insecure }).await?;
    // One machine-readable line, so that scripts (and tests) learn the bound ports.
    let metrics = server.metrics_addr.map(|a| a.to_string()).unwrap_or_default();
    println!("listening grpc={} metrics={} tls={}", server.grpc_addr, metrics, server.tls);
    std::io::stdout().flush().ok();

    shutdown_signal().await;
    server.shutdown();
    server.wait().await.context("the server stopped with an error")?;
    Ok(0)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
