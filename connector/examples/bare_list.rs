//! Baseline for the extraction benchmark: a bare, sequential, paginated ListObjectsV2 of the
//! given buckets with the same SDK client configuration `extract` uses. Prints one JSON line:
//! `{"objects":N,"pages":N,"seconds":F}`.
//!
//! `cargo run --release --example bare_list -- --endpoint-url http://127.0.0.1:4566 bucket...`

use std::time::Instant;

use s3_connector::aws::{AwsContext, ConnectionSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut settings = ConnectionSettings { max_attempts: 3, ..Default::default() };
    let mut buckets = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoint-url" => settings.endpoint_url = args.next(),
            "--region" => settings.region = args.next(),
            _ => buckets.push(arg),
        }
    }
    anyhow::ensure!(!buckets.is_empty(), "usage: bare_list [--endpoint-url URL] [--region R] BUCKET...");
    let client = AwsContext::load(&settings).await?.s3_client();
    let started = Instant::now();
    let (mut objects, mut pages) = (0u64, 0u64);
    for bucket in &buckets {
        let mut paginator = client.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = paginator.next().await {
            let page = page?;
            pages += 1;
            objects += page.contents().len() as u64;
        }
    }
    println!(r#"{{"objects":{objects},"pages":{pages},"seconds":{:.3}}}"#, started.elapsed().as_secs_f64());
    Ok(())
}
