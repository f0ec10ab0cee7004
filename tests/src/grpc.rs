//! The real `s3-connector serve` as a child process, and what tests need to talk to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use s3_connector_proto::v1::connector_service_client::ConnectorServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The token the test servers expect.
pub const TOKEN: &str = "e2e-token-0123456789abcdef";

/// A running `serve` process; killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `host:port` of the gRPC listener.
    pub grpc_addr: String,
    /// `host:port` of the metrics listener.
    pub metrics_addr: String,
    /// Holds the config file (and any certificates) for the process's lifetime.
    pub dir: tempfile::TempDir,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// What a `serve` process printed when it failed to start.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status.
    pub status: ExitStatus,
    /// stderr.
    pub stderr: String,
}

fn serve_command(dir: &Path, config: &str, extra_args: &[&str], token: Option<&str>) -> Command {
    let path = dir.join("serve.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = crate::binary_as("test", "test");
    cmd.arg("serve")
        .arg("--config")
        .arg(&path)
        .args(extra_args)
        .env("AWS_REGION", "us-east-1")
        .env("S3_CONNECTOR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.env("S3_CONNECTOR_TOKEN", token);
    }
    cmd
}

impl ServerProcess {
    /// Starts `serve` with this configuration (TOML) and the test token; returns once it has
    /// printed its `listening` line, or the failure if it exited instead.
    pub fn try_start(config: &str, extra_args: &[&str]) -> Result<ServerProcess, StartFailure> {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::try_start_in(dir, config, extra_args, Some(TOKEN))
    }

    /// As [`ServerProcess::try_start`], in a prepared directory (certificates) and with an
    /// optional token.
    pub fn try_start_in(
        dir: tempfile::TempDir,
        config: &str,
        extra_args: &[&str],
        token: Option<&str>,
    ) -> Result<ServerProcess, StartFailure> {
        let mut child = serve_command(dir.path(), config, extra_args, token).spawn().expect("spawn serve");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        // Blocks until the server prints its line or exits (EOF).
        let _ = BufReader::new(stdout).read_line(&mut line);
        let Some(rest) = line.trim().strip_prefix("listening ") else {
            let status = child.wait().expect("wait");
            return Err(StartFailure { status, stderr: stderr.join().unwrap_or_default() });
        };
        let field = |name: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_string()
        };
        Ok(ServerProcess {
            grpc_addr: field("grpc"),
            metrics_addr: field("metrics"),
            child,
            dir,
            stderr: Some(stderr),
        })
    }

    /// Starts or panics with the server's stderr.
    pub fn start(config: &str) -> ServerProcess {
        Self::try_start(config, &[])
            .unwrap_or_else(|f| panic!("serve failed to start ({}):\n{}", f.status, f.stderr))
    }

    /// A plain-text client with the test token.
    pub async fn client(&self) -> ConnectorServiceClient<InterceptedService<Channel, TokenInterceptor>> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        ConnectorServiceClient::with_interceptor(channel, TokenInterceptor(Some(TOKEN.to_string())))
    }

    /// A plain-text channel.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// `GET /metrics` (the body).
    pub fn scrape(&self) -> String {
        let (status, body) = self.http_get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// A plain HTTP/1.0 GET on the metrics port: status and body.
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(&self.metrics_addr).expect("metrics endpoint");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.metrics_addr).expect("request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("response");
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }

    /// Sends SIGTERM and waits for the exit; returns the status and stderr.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let status = self.child.wait().expect("wait");
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        (status, stderr)
    }

    /// Path of a file in the server's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct TokenInterceptor(pub Option<String>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            let value = format!("Bearer {token}").parse().map_err(|_| tonic::Status::internal("token"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Sum of a metric's samples whose label set contains every `key="value"` given.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A minimal configuration for a test server against `endpoint`, plus extra TOML.
pub fn config_for(endpoint: &str, extra_limits: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nshutdown_grace_seconds = 2\n\n\
         [connection]\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\n\n[limits]\n{extra_limits}\n"
    )
}
