//! Lambda entry point: configuration and the S3 client are built once per cold start.

use lambda_runtime::{LambdaEvent, service_fn};
use s3_connector_lambda::{Config, Forwarder, handle};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Honours AWS_LAMBDA_LOG_FORMAT / AWS_LAMBDA_LOG_LEVEL (JSON logs when configured).
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env().inspect_err(|e| tracing::error!(error = %e, "invalid configuration"))?;
    tracing::info!(
        dest_bucket = config.dest_bucket,
        dest_prefix = config.dest_prefix,
        encryption = %config.encryption,
        "configuration loaded"
    );
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let forwarder = Forwarder::new(aws_sdk_s3::Client::new(&sdk), config);
    let forwarder = &forwarder;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(forwarder, event.payload).await
    }))
    .await
}
