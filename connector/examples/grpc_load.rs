//! Load driver for `s3-connector serve` (used by `bench/grpc_load.sh`; not a test).
//!
//! Keeps N `ExtractMetadata` streams running back to back and fires `GetCapabilities` at a
//! fixed rate for a fixed time, then prints one JSON object: calls, errors by code and latency
//! percentiles per method.
//!
//! ```sh
//! cargo run --release --example grpc_load -- --addr 127.0.0.1:50051 --token T \
//!     --streams 50 --rps 200 --seconds 60 estate-sse-s3 estate-kms-a
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use s3_connector_proto::v1 as pb;
use s3_connector_proto::v1::connector_service_client::ConnectorServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    codes: BTreeMap<String, u64>,
    records: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = arg(&args, "--addr", "127.0.0.1:50051");
    let token = std::env::var("S3_CONNECTOR_TOKEN").unwrap_or_else(|_| arg(&args, "--token", ""));
    let streams: usize = arg(&args, "--streams", "50").parse()?;
    let rps: u64 = arg(&args, "--rps", "200").parse()?;
    let seconds: u64 = arg(&args, "--seconds", "60").parse()?;
    let flags = ["--addr", "--token", "--streams", "--rps", "--seconds"];
    let mut targets = Vec::new();
    let mut skip = false;
    for a in &args {
        if skip {
            skip = false;
        } else if flags.contains(&a.as_str()) {
            skip = true;
        } else {
            targets.push(a.clone());
        }
    }
    if targets.is_empty() {
        return Err("name at least one bucket to extract".into());
    }

    // A few HTTP/2 connections, as a platform's client pool would use.
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(Channel::from_shared(format!("http://{addr}"))?.connect().await?);
    }
    let extract = Arc::new(Mutex::new(Tally::default()));
    let capabilities = Arc::new(Mutex::new(Tally::default()));
    let end = Instant::now() + Duration::from_secs(seconds);

    let mut tasks = Vec::new();
    for i in 0..streams {
        let mut client = ConnectorServiceClient::new(channels[i % channels.len()].clone());
        let tally = extract.clone();
        let token = token.clone();
        let scope = pb::ExtractScope { targets: targets.clone(), ..Default::default() };
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let started = Instant::now();
                let request = pb::ExtractMetadataRequest { scope: Some(scope.clone()), ..Default::default() };
                let (code, records) = match client.extract_metadata(with_token(request, &token)).await {
                    Err(status) => (format!("{:?}", status.code()), 0),
                    Ok(response) => {
                        let mut stream = response.into_inner();
                        let mut records = 0u64;
                        let mut code = "Ok".to_string();
                        while let Some(item) = stream.next().await {
                            match item {
                                Ok(_) => records += 1,
                                Err(status) => {
                                    code = format!("{:?}", status.code());
                                    break;
                                }
                            }
                        }
                        (code, records)
                    }
                };
                let busy = code == "ResourceExhausted";
                let mut t = tally.lock().await;
                if !busy {
                    t.latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                t.records += records;
                *t.codes.entry(code).or_default() += 1;
                drop(t);
                if busy {
                    // The server said so: back off briefly before trying again.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rps.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::new();
    let mut n = 0usize;
    while Instant::now() < end {
        ticker.tick().await;
        let mut client = ConnectorServiceClient::new(channels[n % channels.len()].clone());
        n += 1;
        let tally = capabilities.clone();
        let token = token.clone();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let code = match client.get_capabilities(with_token(pb::GetCapabilitiesRequest {}, &token)).await
            {
                Ok(_) => "Ok".to_string(),
                Err(status) => format!("{:?}", status.code()),
            };
            let mut t = tally.lock().await;
            t.latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            *t.codes.entry(code).or_default() += 1;
        }));
    }
    for t in tasks.into_iter().chain(calls) {
        let _ = t.await;
    }

    let mut out = serde_json::Map::new();
    for (name, tally) in [("ExtractMetadata", extract), ("GetCapabilities", capabilities)] {
        let mut t = tally.lock().await;
        t.latencies_ms.sort_by(|a, b| a.total_cmp(b));
        let errors: u64 =
            t.codes.iter().filter(|(c, _)| *c != "Ok" && *c != "ResourceExhausted").map(|(_, n)| n).sum();
        out.insert(
            name.to_string(),
            serde_json::json!({
                "calls": t.codes.values().sum::<u64>(),
                "codes": t.codes,
                "errors_beyond_resource_exhausted": errors,
                "records": t.records,
                "p50_ms": percentile(&t.latencies_ms, 50.0),
                "p99_ms": percentile(&t.latencies_ms, 99.0),
                "max_ms": t.latencies_ms.last().copied().unwrap_or(0.0),
            }),
        );
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
