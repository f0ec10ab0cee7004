//! Prometheus-style counters of AWS calls, recorded by an SDK interceptor on every client.
//!
//! Recording goes through the `metrics` facade: without an installed recorder (the CLI) it
//! costs nothing; `serve` installs the Prometheus exporter.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Counter: AWS request attempts, by `service`, `operation` and `outcome`.
pub const AWS_REQUESTS: &str = "s3_connector_aws_requests_total";
/// Counter: object bytes read from S3 (ranged GETs).
pub const BYTES_READ: &str = "s3_connector_s3_bytes_read_total";

/// Counts every attempt (retries included) when it finishes.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestMetrics;

/// `ok` for 2xx/3xx, the HTTP status class otherwise, `no_response` when the request never got
/// one (connection refused, timeout): the labels stay few so the series stay few.
fn outcome(status: Option<u16>) -> &'static str {
    match status {
        Some(s) if s < 400 => "ok",
        Some(403) => "forbidden",
        Some(404) => "not_found",
        Some(s) if s < 500 => "client_error",
        Some(_) => "server_error",
        None => "no_response",
    }
}

impl Intercept for RequestMetrics {
    fn name(&self) -> &'static str {
        "RequestMetrics"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let status = context.response().map(|r| r.status().as_u16());
        metrics::counter!(AWS_REQUESTS, "service" => service, "operation" => operation, "outcome" => outcome(status))
            .increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_few_and_distinct() {
        assert_eq!(outcome(Some(200)), "ok");
        assert_eq!(outcome(Some(206)), "ok");
        assert_eq!(outcome(Some(403)), "forbidden");
        assert_eq!(outcome(Some(404)), "not_found");
        assert_eq!(outcome(Some(400)), "client_error");
        assert_eq!(outcome(Some(503)), "server_error");
        assert_eq!(outcome(None), "no_response");
    }
}
