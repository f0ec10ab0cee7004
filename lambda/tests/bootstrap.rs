//! The real `bootstrap` binary (what the zip contains) against a minimal fake Lambda Runtime
//! API: configuration at cold start, the runtime loop and the handler, end to end against
//! LocalStack. No timeouts: the test ends when the responses arrive or the process exits.

use std::process::Stdio;

use aws_sdk_s3::types::ServerSideEncryption;
use common::{DEST_PREFIX, Flavor, World, endpoint};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};

mod common;

/// What the function posted back.
#[derive(Debug)]
enum Posted {
    Response { request_id: String, body: Value },
    Error { request_id: String, body: Value },
}

/// Serves `events` one per `invocation/next`, forwards posted results; a `next` after the last
/// event is left unanswered (the function waits, as it would for the next event).
async fn fake_runtime_api(events: Vec<Value>) -> (String, mpsc::UnboundedReceiver<Posted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let queue = std::sync::Arc::new(Mutex::new(events.into_iter().enumerate().collect::<Vec<_>>()));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, queue) = (tx.clone(), queue.clone());
            tokio::spawn(async move { serve_connection(stream, tx, queue).await });
        }
    });
    (address, rx)
}

async fn serve_connection(
    stream: TcpStream,
    tx: mpsc::UnboundedSender<Posted>,
    queue: std::sync::Arc<Mutex<Vec<(usize, Value)>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) =
            (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let reply = if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let next = {
                let mut queue = queue.lock().await;
                if queue.is_empty() { None } else { Some(queue.remove(0)) }
            };
            let Some((index, event)) = next else {
                // Hold the connection: no more events.
                std::future::pending::<()>().await;
                return;
            };
            let payload = event.to_string();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{index}\r\n\
                 Lambda-Runtime-Deadline-Ms: {}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:inventory-forwarder\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n{payload}",
                deadline_ms(),
                payload.len()
            )
        } else {
            let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match segments.as_slice() {
                ["2018-06-01", "runtime", "invocation", id, "response"] => {
                    let _ = tx.send(Posted::Response { request_id: id.to_string(), body: value });
                }
                ["2018-06-01", "runtime", "invocation", id, "error"] => {
                    let _ = tx.send(Posted::Error { request_id: id.to_string(), body: value });
                }
                _ => {
                    let _ = tx.send(Posted::Error { request_id: path.clone(), body: value });
                }
            }
            "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                .to_string()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The invocation deadline the runtime API announces (well in the future: nothing times out).
fn deadline_ms() -> u128 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    now + 15 * 60 * 1000
}

fn bootstrap(runtime_api: &str, vars: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bootstrap"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "inventory-forwarder")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/inventory-forwarder")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    command.spawn().expect("bootstrap starts")
}

#[tokio::test]
async fn cold_start_refuses_a_bad_configuration_naming_the_variable() {
    let (address, _rx) = fake_runtime_api(Vec::new()).await;
    let child = bootstrap(&address, &[("DEST_BUCKET", "drop"), ("DEST_KMS_KEY_ARN", "alias/catalog")]);
    let output = child.wait_with_output().await.expect("bootstrap exits");
    assert!(!output.status.success());
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("environment variable DEST_KMS_KEY_ARN"), "{text}");
}

#[tokio::test]
async fn the_binary_forwards_a_report_through_the_runtime_api() {
    let world = World::new(Flavor::LocalStack, "boot").await;
    let stamp = "2024-01-08T00-00Z";
    world.put_report(stamp, &world.manifest(1), None, None).await;
    let events = vec![
        world.fixture("s3-test-event.json", stamp),
        world.s3_event(stamp, &[0]),
        world.s3_event(stamp, &[0]),
    ];
    let (address, mut rx) = fake_runtime_api(events).await;
    let endpoint = endpoint(Flavor::LocalStack);
    let mut child = bootstrap(
        &address,
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("DEST_BUCKET", world.dest_bucket.as_str()),
            ("DEST_PREFIX", DEST_PREFIX),
            ("DEST_KMS_KEY_ARN", world.dest_key_arn.as_str()),
        ],
    );
    let mut posted = Vec::new();
    while posted.len() < 3 {
        tokio::select! {
            next = rx.recv() => posted.push(next.expect("runtime API alive")),
            status = child.wait() => {
                let status = status.expect("wait");
                let mut stdout = String::new();
                if let Some(mut out) = child.stdout.take() {
                    let _ = out.read_to_string(&mut stdout).await;
                }
                panic!("bootstrap exited early ({status}): {stdout}");
            }
        }
    }
    let _ = child.kill().await;
    let responses: Vec<(String, Value)> = posted
        .into_iter()
        .map(|p| match p {
            Posted::Response { request_id, body } => (request_id, body),
            Posted::Error { request_id, body } => panic!("{request_id}: error {body}"),
        })
        .collect();
    let ids: Vec<&str> = responses.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, vec!["req-0", "req-1", "req-2"]);
    assert_eq!(responses[0].1, serde_json::json!({ "records": [] }));
    assert_eq!(responses[1].1["records"][0]["outcome"], "forwarded", "{}", responses[1].1);
    assert_eq!(responses[1].1["records"][0]["latest"], "created");
    assert_eq!(responses[2].1["records"][0]["outcome"], "already_present", "{}", responses[2].1);
    let head = world.head(&format!("{}manifest.json", world.dest_folder(stamp))).await;
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms));
    assert_eq!(head.ssekms_key_id(), Some(world.dest_key_arn.as_str()));
}
