//! Configuration of `s3-connector serve`: a TOML file, then environment overrides, then
//! command-line flags. Every key has a default; unknown keys are errors that name the key and
//! where it came from.
//!
//! Environment overrides: `S3_CONNECTOR_<SECTION>__<KEY>`, e.g.
//! `S3_CONNECTOR_SERVER__LISTEN=0.0.0.0:50051` or `S3_CONNECTOR_LIMITS__MAX_CONCURRENT_EXTRACTIONS=8`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Listening, TLS, shutdown.
    pub server: ServerSection,
    /// Bearer-token authentication.
    pub auth: AuthSection,
    /// Default connection settings for requests that leave them empty.
    pub connection: ConnectionSection,
    /// Concurrency and size limits.
    pub limits: LimitsSection,
    /// Sampling rules.
    pub sampling: SamplingSection,
    /// Incremental extraction (`ExtractIncremental`).
    pub incremental: IncrementalSection,
    /// Client-side decryption for schema inference (`ExtractMetadata`, `ExtractIncremental`).
    pub extraction: ExtractionSection,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// gRPC listen address. Default `127.0.0.1:50051` (loopback). Any other address needs TLS
    /// (or the `--insecure` flag).
    pub listen: SocketAddr,
    /// Prometheus metrics (`GET /metrics`) listen address; empty disables. Default
    /// `127.0.0.1:9464`.
    pub metrics_listen: String,
    /// PEM certificate chain of the server; enables TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the server (with `tls_cert_file`).
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate signed by it (mTLS).
    pub tls_client_ca_file: Option<PathBuf>,
    /// On SIGTERM/SIGINT: seconds in-flight streams may run on before they are ended with
    /// UNAVAILABLE. Default 30.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: "127.0.0.1:9464".into(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            shutdown_grace_seconds: 30,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// File holding the bearer token (surrounding whitespace ignored). Takes precedence over
    /// `token_env`.
    pub token_file: Option<PathBuf>,
    /// Name of the environment variable holding the bearer token. Default `S3_CONNECTOR_TOKEN`.
    pub token_env: String,
    /// Serve without a token. Only allowed on a loopback address. Default false: a missing
    /// token is a start-up error.
    pub allow_no_token_on_loopback: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            token_file: None,
            token_env: "S3_CONNECTOR_TOKEN".into(),
            allow_no_token_on_loopback: false,
        }
    }
}

/// `[connection]`: defaults for `ConnectionSettings` fields a request leaves empty.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSection {
    /// Default region (else the standard chain, else us-east-1).
    pub region: Option<String>,
    /// Default endpoint URL (else AWS_ENDPOINT_URL, else AWS).
    pub endpoint_url: Option<String>,
    /// Endpoints a request may name besides the default. The connector signs requests with its
    /// own credentials, so it only talks to endpoints listed here. Default: none.
    pub allowed_endpoints: Vec<String>,
    /// Default role to assume (else the server's own identity).
    pub role_arn: Option<String>,
    /// ExternalId for the default role.
    pub external_id: Option<String>,
    /// Attempts per AWS request, including the first. Default 5.
    pub max_attempts: u32,
}

impl Default for ConnectionSection {
    fn default() -> Self {
        ConnectionSection {
            region: None,
            endpoint_url: None,
            allowed_endpoints: Vec::new(),
            role_arn: None,
            external_id: None,
            max_attempts: 5,
        }
    }
}

impl fmt::Debug for ConnectionSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSection")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("allowed_endpoints", &self.allowed_endpoints)
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Extractions running at once (ExtractMetadata + ExtractIncremental); more get
    /// RESOURCE_EXHAUSTED. Default 4.
    pub max_concurrent_extractions: u32,
    /// Records buffered per stream before the extraction waits for the client. Default 64.
    pub stream_buffer: u32,
    /// Default LIST requests in flight per bucket and extraction. Default 8.
    pub listing_concurrency: u32,
    /// Maximum a request may ask for. Default 32.
    pub max_listing_concurrency: u32,
    /// Pages a listing runs sequentially before its rest is split into top-level folders
    /// listed in parallel. Default 32.
    pub listing_split_after_pages: u32,
    /// Default datasets inferred in parallel. Default 16.
    pub inference_concurrency: u32,
    /// Maximum a request may ask for. Default 64.
    pub max_inference_concurrency: u32,
    /// Default files read per dataset for its schema. Default 2.
    pub schema_files: u32,
    /// Default files tried per dataset when reads fail. Default 4.
    pub schema_candidates: u32,
    /// Maximum of both. Default 16.
    pub max_schema_files: u32,
    /// Default HEAD probes per dataset, beyond the schema reads. Default 1.
    pub encryption_probes: u32,
    /// Maximum a request may ask for. Default 32.
    pub max_encryption_probes: u32,
    /// Default bytes read per file. Default 1 MiB.
    pub max_read_bytes: u64,
    /// Maximum a request may ask for. Default 16 MiB.
    pub max_read_bytes_limit: u64,
    /// Default bytes decompressed per file. Default 8 MiB.
    pub max_decompressed_bytes: u64,
    /// Maximum a request may ask for. Default 64 MiB.
    pub max_decompressed_bytes_limit: u64,
    /// Default records parsed per file. Default 1000.
    pub max_records: u32,
    /// Maximum a request may ask for. Default 100000.
    pub max_records_limit: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_concurrent_extractions: 4,
            stream_buffer: 64,
            listing_concurrency: 8,
            max_listing_concurrency: 32,
            listing_split_after_pages: crate::extract::DEFAULT_LISTING_SPLIT_AFTER_PAGES as u32,
            inference_concurrency: 16,
            max_inference_concurrency: 64,
            schema_files: 2,
            schema_candidates: 4,
            max_schema_files: 16,
            encryption_probes: crate::extract::DEFAULT_ENCRYPTION_PROBES as u32,
            max_encryption_probes: 32,
            max_read_bytes: 1024 * 1024,
            max_read_bytes_limit: 16 * 1024 * 1024,
            max_decompressed_bytes: 8 * 1024 * 1024,
            max_decompressed_bytes_limit: 64 * 1024 * 1024,
            max_records: 1000,
            max_records_limit: 100_000,
        }
    }
}

/// `[sampling]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingSection {
    /// Rows a sample may return at most. Default 10000.
    pub max_rows: u32,
    /// Let a sample request without a user identity run as the service. Default false.
    pub allow_service_identity: bool,
    /// SSE-C keys for sampling: `BUCKET[/PREFIX]=env:VARIABLE`, `BUCKET[/PREFIX]=file:PATH`
    /// (base64 of the 32-byte key) or `BUCKET[/PREFIX]=secretsmanager:SECRET_ID[#JSON_FIELD]`
    /// (AWS Secrets Manager, read with the server's identity). Read once at start-up. Default
    /// none.
    pub sse_c_keys: Vec<String>,
    /// Allow SSE-C keys over plain HTTP to a loopback endpoint (local emulators). Default false.
    pub allow_sse_c_over_loopback_http: bool,
    /// Time a sample may take, identity and reads included (milliseconds); past it the reads
    /// stop and the call fails with DEADLINE_EXCEEDED (`SAMPLE_TIME_BUDGET_EXCEEDED`). A
    /// client's shorter `grpc-timeout` still applies. Default 30000.
    pub time_budget_ms: u64,
    /// Samples running at once; more are refused at once with RESOURCE_EXHAUSTED
    /// (`TOO_MANY_SAMPLES`), not queued. Default 8.
    pub max_concurrent: u32,
    /// Decrypt client-side encrypted objects whose data key is KMS-wrapped, calling kms:Decrypt
    /// as the user. Default false (such objects answer CLIENT_SIDE_ENCRYPTED).
    pub cse_kms: bool,
    /// Raw client-side master keys: `BUCKET[/PREFIX]=aes:env:VARIABLE`, `=aes:file:PATH` or
    /// `=rsa:file:PATH`. Read at start-up. Default none.
    pub cse_master_keys: Vec<String>,
    /// Also decrypt legacy V1 (AES-CBC, unauthenticated) objects. Default false.
    pub cse_allow_v1: bool,
    /// Client-side encrypted objects up to this size are decrypted whole (authenticated);
    /// larger ones by ranges. Default 1 MiB.
    pub cse_full_decrypt_max_bytes: u64,
}

impl SamplingSection {
    /// The client-side decryption settings of this section.
    pub fn cse_settings(&self) -> crate::cse::CseSettings {
        crate::cse::CseSettings {
            kms: self.cse_kms,
            master_keys: self.cse_master_keys.clone(),
            allow_v1: self.cse_allow_v1,
            full_decrypt_max_bytes: Some(self.cse_full_decrypt_max_bytes),
        }
    }
}

impl Default for SamplingSection {
    fn default() -> Self {
        SamplingSection {
            max_rows: 10_000,
            allow_service_identity: false,
            sse_c_keys: Vec::new(),
            allow_sse_c_over_loopback_http: false,
            time_budget_ms: 30_000,
            max_concurrent: 8,
            cse_kms: false,
            cse_master_keys: Vec::new(),
            cse_allow_v1: false,
            cse_full_decrypt_max_bytes: crate::cse::DEFAULT_FULL_DECRYPT_MAX_BYTES,
        }
    }
}

/// `[extraction]`: client-side decryption for schema inference, as `extract --cse-*` does.
/// Extraction reads (and calls KMS) with the connector's identity of the request's connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionSection {
    /// Decrypt client-side encrypted objects whose data key is KMS-wrapped, calling kms:Decrypt
    /// as the connector. Default false (such datasets get a CLIENT_SIDE_ENCRYPTED problem and no
    /// schema).
    pub cse_kms: bool,
    /// Raw client-side master keys: `BUCKET[/PREFIX]=aes:env:VARIABLE`, `=aes:file:PATH` or
    /// `=rsa:file:PATH`. Read at start-up. Default none.
    pub cse_master_keys: Vec<String>,
    /// Also decrypt legacy V1 (AES-CBC, unauthenticated) objects. Default false.
    pub cse_allow_v1: bool,
    /// Client-side encrypted objects up to this size are decrypted whole (authenticated);
    /// larger ones by ranges. Default 1 MiB.
    pub cse_full_decrypt_max_bytes: u64,
}

impl ExtractionSection {
    /// The client-side decryption settings of this section.
    pub fn cse_settings(&self) -> crate::cse::CseSettings {
        crate::cse::CseSettings {
            kms: self.cse_kms,
            master_keys: self.cse_master_keys.clone(),
            allow_v1: self.cse_allow_v1,
            full_decrypt_max_bytes: Some(self.cse_full_decrypt_max_bytes),
        }
    }
}

impl Default for ExtractionSection {
    fn default() -> Self {
        ExtractionSection {
            cse_kms: false,
            cse_master_keys: Vec::new(),
            cse_allow_v1: false,
            cse_full_decrypt_max_bytes: crate::cse::DEFAULT_FULL_DECRYPT_MAX_BYTES,
        }
    }
}

/// `[incremental]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncrementalSection {
    /// State directory for requests without `state_url` (last processed snapshot per source
    /// bucket and configuration). Default none: such requests are refused (INVALID_ARGUMENT).
    pub state_dir: Option<PathBuf>,
    /// Inventory data files read at once per request. Default 4.
    pub file_concurrency: u32,
    /// Decompressed bytes per CSV data file at most. Default 16 GiB.
    pub max_decompressed_bytes: u64,
    /// Bytes of one Parquet data file at most (read into memory). Default 1 GiB.
    pub max_parquet_file_bytes: u64,
    /// Bytes of Parquet and ORC data files held in memory at once per request, across the
    /// files read in parallel (a larger file is read alone). Default 256 MiB.
    pub columnar_memory_bytes: u64,
}

impl IncrementalSection {
    /// How inventory data files are read (`ExtractIncremental`, and `ExtractMetadata` from an
    /// inventory report).
    pub fn read_options(&self) -> crate::incremental::IncrementalOptions {
        crate::incremental::IncrementalOptions {
            file_concurrency: self.file_concurrency.max(1) as usize,
            max_decompressed_bytes: self.max_decompressed_bytes.max(1024),
            max_parquet_file_bytes: self.max_parquet_file_bytes.max(1024),
            columnar_memory_bytes: self.columnar_memory_bytes,
            ..Default::default()
        }
    }
}

impl Default for IncrementalSection {
    fn default() -> Self {
        IncrementalSection {
            state_dir: None,
            file_concurrency: 4,
            max_decompressed_bytes: 16 * 1024 * 1024 * 1024,
            max_parquet_file_bytes: 1024 * 1024 * 1024,
            columnar_memory_bytes: crate::incremental::DEFAULT_COLUMNAR_MEMORY_BYTES,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read or a key is wrong (figment names the key and the source).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value is well-typed but not usable.
    #[error("invalid configuration: key `{key}`: {reason}")]
    Value {
        /// The key, e.g. `limits.stream_buffer`.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// Environment prefix of overrides.
pub const ENV_PREFIX: &str = "S3_CONNECTOR_";

impl ServeConfig {
    /// Loads defaults, then the file (when given; it must exist), then environment overrides.
    pub fn load(file: Option<&Path>) -> Result<ServeConfig, ConfigFileError> {
        Self::load_with_env(file, ENV_PREFIX)
    }

    fn load_with_env(file: Option<&Path>, env_prefix: &str) -> Result<ServeConfig, ConfigFileError> {
        let env = Env::prefixed(env_prefix);
        let mut figment = Figment::from(Serialized::defaults(ServeConfig::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigFileError::Invalid(format!(
                    "cannot read {}: no such file",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `SECTION__KEY` variables are overrides; other S3_CONNECTOR_* variables (LOG,
        // TOKEN) are not configuration keys.
        let env = env.filter(|key| key.as_str().contains("__")).split("__");
        let config: ServeConfig =
            figment.merge(env).extract().map_err(|e| ConfigFileError::Invalid(describe(e, env_prefix)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigFileError> {
        let positive = [
            ("limits.max_concurrent_extractions", self.limits.max_concurrent_extractions),
            ("limits.stream_buffer", self.limits.stream_buffer),
            ("limits.listing_concurrency", self.limits.listing_concurrency),
            ("limits.listing_split_after_pages", self.limits.listing_split_after_pages),
            ("limits.inference_concurrency", self.limits.inference_concurrency),
            ("limits.schema_files", self.limits.schema_files),
            ("limits.max_records", self.limits.max_records),
            ("sampling.max_rows", self.sampling.max_rows),
            ("sampling.max_concurrent", self.sampling.max_concurrent),
            ("incremental.file_concurrency", self.incremental.file_concurrency),
            ("connection.max_attempts", self.connection.max_attempts),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigFileError::Value { key, reason: "must be at least 1".into() });
            }
        }
        if self.sampling.time_budget_ms == 0 {
            return Err(ConfigFileError::Value {
                key: "sampling.time_budget_ms",
                reason: "must be at least 1".into(),
            });
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return Err(ConfigFileError::Value {
                key: "server.tls_key_file",
                reason: "tls_cert_file and tls_key_file go together".into(),
            });
        }
        if self.server.tls_client_ca_file.is_some() && self.server.tls_cert_file.is_none() {
            return Err(ConfigFileError::Value {
                key: "server.tls_client_ca_file",
                reason: "mTLS needs TLS: set tls_cert_file and tls_key_file".into(),
            });
        }
        if !self.server.metrics_listen.is_empty() && self.server.metrics_listen.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigFileError::Value {
                key: "server.metrics_listen",
                reason: format!("'{}' is not an address such as 127.0.0.1:9464", self.server.metrics_listen),
            });
        }
        Ok(())
    }

    /// The configuration as TOML (every key, with its value).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// figment's messages (`default.` profile prefix dropped); for a value from the environment,
/// also the exact variable.
fn describe(error: figment::Error, env_prefix: &str) -> String {
    error
        .into_iter()
        .map(|e| {
            let text = e.to_string().replace("\"default.", "\"");
            let from_env = e.metadata.as_ref().is_some_and(|m| m.name.contains("environment"));
            if from_env && !e.path.is_empty() {
                let var: Vec<String> = e.path.iter().map(|p| p.to_uppercase()).collect();
                format!("{text} (variable {env_prefix}{})", var.join("__"))
            } else {
                text
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reference of every key, for `serve --help` and docs/serve.md.
pub const KEYS_HELP: &str = "\
Configuration keys (TOML file via --config; override with env S3_CONNECTOR_<SECTION>__<KEY>):
  [server]
    listen                       gRPC address (default 127.0.0.1:50051; non-loopback needs TLS or --insecure)
    metrics_listen               Prometheus /metrics address (default 127.0.0.1:9464; \"\" disables)
    tls_cert_file, tls_key_file  PEM certificate chain and key: enable TLS
    tls_client_ca_file           PEM CA: require client certificates signed by it (mTLS)
    shutdown_grace_seconds       on SIGTERM, time in-flight streams get before UNAVAILABLE (default 30)
  [auth]
    token_file                   file holding the bearer token
    token_env                    env variable holding the token (default S3_CONNECTOR_TOKEN)
    allow_no_token_on_loopback   serve without a token, loopback only (default false)
  [connection]
    region, endpoint_url         defaults for requests that leave them empty
    allowed_endpoints            endpoints a request may name besides the default (default none)
    role_arn, external_id        default role to assume
    max_attempts                 attempts per AWS request (default 5)
  [limits]
    max_concurrent_extractions   extractions at once; beyond: RESOURCE_EXHAUSTED (default 4)
    stream_buffer                records buffered per stream (default 64)
    listing_concurrency / max_listing_concurrency         default 8 / max 32
    listing_split_after_pages    sequential pages before a listing splits (default 32)
    inference_concurrency / max_inference_concurrency     default 16 / max 64
    schema_files, schema_candidates / max_schema_files    default 2, 4 / max 16
    encryption_probes / max_encryption_probes             default 1 / max 32
    max_read_bytes / max_read_bytes_limit                 default 1 MiB / max 16 MiB
    max_decompressed_bytes / max_decompressed_bytes_limit default 8 MiB / max 64 MiB
    max_records / max_records_limit                       default 1000 / max 100000
  [sampling]
    max_rows                     rows a sample may return at most (default 10000)
    allow_service_identity       sample without a user identity, as the service (default false)
    sse_c_keys                   [\"BUCKET[/PREFIX]=env:VAR\" | \"...=file:PATH\" | \"...=secretsmanager:ID[#FIELD]\"]: SSE-C keys (default none)
    allow_sse_c_over_loopback_http  SSE-C keys over plain HTTP to loopback only (default false)
    time_budget_ms               time a sample may take; beyond: DEADLINE_EXCEEDED (default 30000)
    max_concurrent               samples at once; beyond: RESOURCE_EXHAUSTED (default 8)
    cse_kms                      decrypt client-side (S3EC V2/V3) objects with KMS-wrapped keys, as the user (default false)
    cse_master_keys              [\"BUCKET[/PREFIX]=aes:env:VAR\" | \"...=aes:file:PATH\" | \"...=rsa:file:PATH\"]: raw master keys (default none)
    cse_allow_v1                 also decrypt legacy V1 (AES-CBC, unauthenticated) objects (default false)
    cse_full_decrypt_max_bytes   objects up to this size are decrypted whole and authenticated, larger by ranges (default 1 MiB)
  [extraction]                   client-side decryption for schema inference (ExtractMetadata, ExtractIncremental), as the connector
    cse_kms                      decrypt client-side objects with KMS-wrapped keys (default false)
    cse_master_keys              raw master keys, same rules as [sampling] (default none)
    cse_allow_v1                 also decrypt legacy V1 objects (default false)
    cse_full_decrypt_max_bytes   whole-object decryption up to this size (default 1 MiB)
";

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<ServeConfig, ConfigFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text).unwrap();
        // A prefix nothing sets, so the test does not see the process environment.
        ServeConfig::load_with_env(Some(&path), "S3C_TEST_NONE_")
    }

    #[test]
    fn defaults_are_safe() {
        let c = ServeConfig::default();
        assert!(c.server.listen.ip().is_loopback());
        assert!(!c.auth.allow_no_token_on_loopback);
        assert!(c.connection.allowed_endpoints.is_empty());
        assert!(!c.sampling.allow_service_identity);
        c.validate().unwrap();
    }

    #[test]
    fn the_file_overrides_defaults_and_unknown_keys_are_named() {
        let c = load_text("[server]\nlisten = \"127.0.0.1:6000\"\n[limits]\nstream_buffer = 8\n").unwrap();
        assert_eq!(c.server.listen.port(), 6000);
        assert_eq!(c.limits.stream_buffer, 8);
        assert_eq!(c.limits.max_concurrent_extractions, 4, "untouched keys keep defaults");

        let err = load_text("[server]\nlisen = \"127.0.0.1:6000\"\n").unwrap_err().to_string();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("serve.toml"), "names the file: {err}");

        let err = load_text("[limits]\nstream_buffer = \"many\"\n").unwrap_err().to_string();
        assert!(err.contains("limits.stream_buffer"), "{err}");

        let err = load_text("[limits]\nstream_buffer = 0\n").unwrap_err().to_string();
        assert!(err.contains("limits.stream_buffer"), "{err}");

        let c = load_text("[sampling]\ntime_budget_ms = 250\nmax_concurrent = 2\n").unwrap();
        assert_eq!((c.sampling.time_budget_ms, c.sampling.max_concurrent), (250, 2));
        for zero in ["time_budget_ms = 0", "max_concurrent = 0"] {
            let err = load_text(&format!("[sampling]\n{zero}\n")).unwrap_err().to_string();
            assert!(err.contains(&format!("sampling.{}", zero.split(' ').next().unwrap())), "{err}");
        }

        let err = load_text("[server]\ntls_client_ca_file = \"ca.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("server.tls_client_ca_file"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API returns its own error type
    fn environment_overrides_win_over_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("serve.toml", "[limits]\nstream_buffer = 8\n")?;
            jail.set_env("S3C_JAIL_LIMITS__STREAM_BUFFER", "99");
            jail.set_env("S3C_JAIL_SERVER__LISTEN", "127.0.0.1:7001");
            jail.set_env("S3C_JAIL_LOG", "debug");
            let c = ServeConfig::load_with_env(Some(Path::new("serve.toml")), "S3C_JAIL_")
                .map_err(|e| e.to_string())?;
            assert_eq!(c.limits.stream_buffer, 99);
            assert_eq!(c.server.listen.port(), 7001);

            jail.set_env("S3C_JAIL_LIMITS__STREAM_BUFER", "1");
            let err = ServeConfig::load_with_env(Some(Path::new("serve.toml")), "S3C_JAIL_")
                .unwrap_err()
                .to_string();
            assert!(err.contains("stream_bufer"), "{err}");
            assert!(err.contains("S3C_JAIL_LIMITS__STREAM_BUFER"), "names the variable: {err}");
            Ok(())
        });
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = ServeConfig::load(Some(Path::new("/nonexistent/serve.toml"))).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/serve.toml"), "{err}");
    }

    #[test]
    fn the_rendered_defaults_load_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, ServeConfig::default().to_toml()).unwrap();
        let c = ServeConfig::load_with_env(Some(&path), "S3C_TEST_NONE_").unwrap();
        assert_eq!(c, ServeConfig::default());
    }
}
