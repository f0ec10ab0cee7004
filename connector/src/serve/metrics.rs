//! Prometheus metrics of the service, served on their own HTTP port (`GET /metrics`).
//!
//! Names (all prefixed `s3_connector_`):
//! - `grpc_requests_total{method,code}`: finished calls by gRPC status code;
//! - `grpc_request_duration_seconds{method}`: call durations (streams: until the last record);
//! - `active_extractions`: extraction streams running now;
//! - `records_streamed_total{method}`: records sent to clients;
//! - `unauthenticated_total`: calls refused for a missing or wrong token;
//! - `aws_requests_total{service,operation,outcome}` and `s3_bytes_read_total`: AWS calls made
//!   on the callers' behalf (see `aws::metrics`).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// Counter: finished calls.
pub const GRPC_REQUESTS: &str = "s3_connector_grpc_requests_total";
/// Histogram: call durations.
pub const GRPC_DURATION: &str = "s3_connector_grpc_request_duration_seconds";
/// Gauge: extraction streams running.
pub const ACTIVE_EXTRACTIONS: &str = "s3_connector_active_extractions";
/// Counter: records sent.
pub const RECORDS_STREAMED: &str = "s3_connector_records_streamed_total";
/// Counter: calls refused by authentication.
pub const UNAUTHENTICATED: &str = "s3_connector_unauthenticated_total";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls reuse it). `None` if
/// another recorder was installed first.
pub fn recorder() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(GRPC_DURATION.to_string()),
                    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                )
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Serves, until `shutdown` resolves: `GET /metrics` (Prometheus text), `GET /livez` (200 while
/// the process runs) and `GET /readyz` (200 while serving, 503 once shutdown has begun), for
/// HTTP probes where gRPC probes cannot be used (Kubernetes gRPC probes do not speak TLS).
pub async fn serve_metrics(
    listener: TcpListener,
    handle: Option<PrometheusHandle>,
    draining: tokio_util::sync::CancellationToken,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    match handle {
                        Some(h) => (StatusCode::OK, h.render()),
                        None => {
                            (StatusCode::SERVICE_UNAVAILABLE, "metrics recorder unavailable\n".to_string())
                        }
                    }
                }
            }),
        )
        .route("/livez", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/readyz",
            axum::routing::get(move || {
                let draining = draining.clone();
                async move {
                    if draining.is_cancelled() {
                        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
                    } else {
                        (StatusCode::OK, "ready\n")
                    }
                }
            }),
        );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Bound address of a listener, for start-up messages.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}

/// Records one finished call.
pub fn record_call(method: &'static str, code: tonic::Code, started: Instant) {
    metrics::counter!(GRPC_REQUESTS, "method" => method, "code" => format!("{code:?}")).increment(1);
    metrics::histogram!(GRPC_DURATION, "method" => method).record(started.elapsed().as_secs_f64());
}

/// Records a streaming call when it ends; a stream dropped before it finished (the client went
/// away, its task was aborted) counts as CANCELLED.
pub struct CallRecorder {
    method: &'static str,
    started: Instant,
    code: Option<tonic::Code>,
}

impl CallRecorder {
    /// Starts timing a call.
    pub fn new(method: &'static str, started: Instant) -> CallRecorder {
        CallRecorder { method, started, code: None }
    }

    /// The call ended with this code.
    pub fn finish(&mut self, code: tonic::Code) {
        self.code = Some(code);
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        record_call(self.method, self.code.unwrap_or(tonic::Code::Cancelled), self.started);
    }
}

/// Keeps `active_extractions` up while alive.
pub struct ActiveExtraction;

impl ActiveExtraction {
    /// Counts one more running extraction until dropped.
    pub fn start() -> ActiveExtraction {
        metrics::gauge!(ACTIVE_EXTRACTIONS).increment(1.0);
        ActiveExtraction
    }
}

impl Drop for ActiveExtraction {
    fn drop(&mut self) {
        metrics::gauge!(ACTIVE_EXTRACTIONS).decrement(1.0);
    }
}
