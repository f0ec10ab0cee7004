//! `s3-connector serve`: the gRPC service for catalog platforms.
//!
//! ```text
//! TCP (+TLS/mTLS) ─► tonic ─┬─ grpc.health.v1.Health            (no token: probes)
//!                           ├─ grpc.reflection.v1 / v1alpha      (bearer token)
//!                           └─ catalog.s3.v1.ConnectorService    (bearer token)
//!                                 └─ convert (validate) ─► library (extract, policy) ─► records
//! HTTP ─► GET /metrics (Prometheus)
//! ```
//!
//! Secure by default: loopback only unless TLS is configured (or `--insecure` is given), and a
//! bearer token is required unless explicitly waived on loopback.

pub mod auth;
pub mod config;
pub mod convert;
pub mod metrics;
pub mod service;
pub mod status;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use s3_connector_proto::v1::connector_service_server::ConnectorServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use auth::BearerAuth;
pub use config::ServeConfig;
use service::ConnectorApi;

/// Start-up options that are flags, not configuration keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Allow plain-text gRPC on a non-loopback address.
    pub insecure: bool,
}

/// Why the server cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigFileError),
    /// The token cannot be loaded.
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    /// No token configured where one is required.
    #[error(
        "no bearer token: set {env} or auth.token_file (or, on a loopback address only, auth.allow_no_token_on_loopback = true)"
    )]
    NoToken {
        /// The variable that was looked at.
        env: String,
    },
    /// Plain text on a non-loopback address without `--insecure`.
    #[error(
        "refusing plain-text gRPC on non-loopback address {addr}: configure server.tls_cert_file and server.tls_key_file, or pass --insecure"
    )]
    PlainTextRefused {
        /// The address.
        addr: SocketAddr,
    },
    /// A TLS file cannot be read.
    #[error("cannot read {key} ({path}): {reason}")]
    TlsFile {
        /// The configuration key.
        key: &'static str,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// An address cannot be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(String),
}

/// A running server.
pub struct RunningServer {
    /// Bound gRPC address (the real port when the configuration said 0).
    pub grpc_addr: SocketAddr,
    /// Bound metrics address, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether TLS is on.
    pub tls: bool,
    draining: CancellationToken,
    join: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// Begins a graceful shutdown: new calls are refused, health turns NOT_SERVING, running
    /// streams get `server.shutdown_grace_seconds` to finish before they end with UNAVAILABLE.
    pub fn shutdown(&self) {
        self.draining.cancel();
    }

    /// Waits until the server has stopped.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.join.await.map_err(|e| ServeError::Transport(e.to_string()))?
    }
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|e| ServeError::TlsFile {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn tls_config(config: &ServeConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let (Some(cert), Some(key)) = (&config.server.tls_cert_file, &config.server.tls_key_file) else {
        return Ok(None);
    };
    let identity =
        Identity::from_pem(read_file("server.tls_cert_file", cert)?, read_file("server.tls_key_file", key)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &config.server.tls_client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read_file("server.tls_client_ca_file", ca)?));
    }
    Ok(Some(tls))
}

async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind { addr: addr.to_string(), reason: e.to_string() })
}

/// Checks the security rules, binds the listeners and starts serving.
pub async fn start(config: ServeConfig, options: StartOptions) -> Result<RunningServer, ServeError> {
    let config = Arc::new(config);
    let listen = config.server.listen;
    let loopback = listen.ip().is_loopback();

    let auth = match BearerAuth::load(config.auth.token_file.as_deref(), &config.auth.token_env)? {
        Some(auth) => auth,
        None if loopback && config.auth.allow_no_token_on_loopback => {
            tracing::warn!("serving without a bearer token (loopback only)");
            BearerAuth::disabled()
        }
        None => return Err(ServeError::NoToken { env: config.auth.token_env.clone() }),
    };
    let tls = tls_config(&config)?;
    if tls.is_none() && !loopback {
        if !options.insecure {
            return Err(ServeError::PlainTextRefused { addr: listen });
        }
        tracing::warn!(%listen, "--insecure: serving plain-text gRPC on a non-loopback address; tokens and records cross the network unencrypted");
    }

    let grpc_listener = bind(&listen.to_string()).await?;
    let grpc_addr = grpc_listener
        .local_addr()
        .map_err(|e| ServeError::Bind { addr: listen.to_string(), reason: e.to_string() })?;
    let metrics_listener = match config.server.metrics_listen.as_str() {
        "" => None,
        addr => Some(bind(addr).await?),
    };
    let metrics_addr = metrics_listener.as_ref().and_then(metrics::local_addr);
    let handle = metrics::recorder();

    let draining = CancellationToken::new();
    let stop_streams = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ConnectorServiceServer<ConnectorApi>>().await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(s3_connector_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Transport(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(s3_connector_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Transport(e.to_string()))?;

    let sse_c = if config.sampling.sse_c_keys.is_empty() {
        None
    } else {
        let rules = config
            .sampling
            .sse_c_keys
            .iter()
            .map(|r| crate::aws::ssec::parse_rule(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ServeError::Config(config::ConfigFileError::Value {
                    key: "sampling.sse_c_keys",
                    reason: e.to_string(),
                })
            })?;
        crate::aws::ssec::check_transport(
            config.connection.endpoint_url.as_deref(),
            config.sampling.allow_sse_c_over_loopback_http,
        )
        .map_err(|e| {
            ServeError::Config(config::ConfigFileError::Value {
                key: "sampling.sse_c_keys",
                reason: e.to_string(),
            })
        })?;
        let invalid = |reason: String| {
            ServeError::Config(config::ConfigFileError::Value { key: "sampling.sse_c_keys", reason })
        };
        let keys = if crate::aws::ssec::SseCKeys::needs_secrets(&rules) {
            // Read once at start-up, with the server's identity and default connection.
            let settings = convert::connection_settings(None, &config.connection)
                .map_err(|e| invalid(format!("cannot build the Secrets Manager client: {e}")))?;
            let aws = crate::aws::AwsContext::load(&settings)
                .await
                .map_err(|e| invalid(format!("cannot build the Secrets Manager client: {e}")))?;
            let secrets = crate::aws::ssec::SdkSecrets::new(aws.secrets_client());
            crate::aws::ssec::SseCKeys::load_with_secrets(&rules, &secrets).await
        } else {
            crate::aws::ssec::SseCKeys::load(&rules)
        }
        .map_err(|e| invalid(e.to_string()))?;
        Some(Arc::new(keys))
    };
    let cse = crate::cse::ClientSideDecryption::load(&config.sampling.cse_settings()).map_err(|e| {
        ServeError::Config(config::ConfigFileError::Value {
            key: "sampling.cse_master_keys",
            reason: e.to_string(),
        })
    })?;
    let extract_cse =
        crate::cse::ClientSideDecryption::load(&config.extraction.cse_settings()).map_err(|e| {
            ServeError::Config(config::ConfigFileError::Value {
                key: "extraction.cse_master_keys",
                reason: e.to_string(),
            })
        })?;
    let api = ConnectorApi::new(config.clone(), draining.clone(), stop_streams.clone(), sse_c)
        .with_client_side_decryption(cse.map(Arc::new))
        .with_extraction_decryption(extract_cse.map(Arc::new));
    let mut builder = Server::builder();
    let tls_on = tls.is_some();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(|e| ServeError::Transport(e.to_string()))?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(tonic::service::interceptor::InterceptedService::new(reflection_v1, auth.clone()))
        .add_service(tonic::service::interceptor::InterceptedService::new(reflection_v1alpha, auth.clone()))
        .add_service(tonic::service::interceptor::InterceptedService::new(
            ConnectorServiceServer::new(api),
            auth,
        ));

    // The HTTP side (metrics, probes) outlives draining so that readiness can report it; it
    // stops when the gRPC server has stopped.
    let stopped = CancellationToken::new();
    if let Some(listener) = metrics_listener {
        let stop = stopped.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let shutdown = async move { stop.cancelled().await };
            if let Err(e) = metrics::serve_metrics(listener, handle, draining, shutdown).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }

    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let shutdown_signal = {
        let draining = draining.clone();
        async move {
            draining.cancelled().await;
            health.set_not_serving::<ConnectorServiceServer<ConnectorApi>>().await;
            tracing::info!(grace_seconds = grace.as_secs(), "shutting down: refusing new calls");
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                stop_streams.cancel();
            });
        }
    };
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc_listener);
    let join = tokio::spawn(async move {
        let result = router
            .serve_with_incoming_shutdown(incoming, shutdown_signal)
            .await
            .map_err(|e| ServeError::Transport(e.to_string()));
        stopped.cancel();
        result
    });
    tracing::info!(%grpc_addr, ?metrics_addr, tls = tls_on, "serving");
    Ok(RunningServer { grpc_addr, metrics_addr, tls: tls_on, draining, join })
}
