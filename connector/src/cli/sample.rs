//! `s3-connector sample`: a few rows of one object or dataset, read as the end user.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use s3_connector_domain::sample::{SampleLimits, SampleMode};

use super::extract::ConnectionArgs;
use crate::aws::identity::{UserIdentity, WebIdentityToken};
use crate::aws::ssec::{SdkSecrets, SseCKeys, check_transport, parse_rule};
use crate::aws::{AwsContext, RequestStats};
use crate::sample::{ReaderError, SampleOptions, reader_for, sample_uri};

/// Exit code: the rows could not be read (denied, key unusable, unreadable file); the problem
/// code is on stderr.
pub const EXIT_NOT_SAMPLED: i32 = 3;

/// Sampling mode.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// The first rows.
    Head,
    /// Random rows (reservoir over the read window; random row groups for Parquet, random
    /// stripes for ORC).
    Random,
}

/// Options of `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// `s3://bucket/key` (one object) or `s3://bucket/prefix/` (a dataset).
    #[arg(value_name = "S3_URI")]
    pub uri: String,
    /// Rows to return (at most 10000).
    #[arg(long, default_value_t = 100)]
    pub rows: u32,
    /// Columns to return (comma-separated or repeated); all when absent.
    #[arg(long = "columns", value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Head or random rows.
    #[arg(long, value_enum, default_value_t = Mode::Head)]
    pub mode: Mode,
    /// Seed of random mode (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Longer values are cut and marked.
    #[arg(long, default_value_t = 1024)]
    pub max_value_bytes: u32,
    /// The end user's role (STS AssumeRole from the connector's identity).
    #[arg(long, value_name = "ARN")]
    pub user_role_arn: Option<String>,
    /// ExternalId the user's role requires.
    #[arg(long, requires = "user_role_arn")]
    pub user_external_id: Option<String>,
    /// File with the user's OIDC token (STS AssumeRoleWithWebIdentity into --user-role-arn).
    #[arg(long, value_name = "FILE", requires = "user_role_arn")]
    pub user_web_identity_token_file: Option<PathBuf>,
    /// Session name of the user's role session (names the user in CloudTrail).
    #[arg(long, default_value = "s3-connector-sample")]
    pub user_session_name: String,
    /// Read as the connector's own identity. Off by default: samples run as the end user.
    #[arg(long, conflicts_with = "user_role_arn")]
    pub as_service: bool,
    /// SSE-C key for objects under a bucket/prefix: `BUCKET[/PREFIX]=env:VARIABLE`,
    /// `BUCKET[/PREFIX]=file:PATH` (base64 of the 32-byte key) or
    /// `BUCKET[/PREFIX]=secretsmanager:SECRET_ID[#JSON_FIELD]` (AWS Secrets Manager, read once
    /// with the connector's identity); repeatable. Sent only over https.
    #[arg(long = "sse-c-key", value_name = "RULE")]
    pub sse_c_keys: Vec<String>,
    /// Allow SSE-C keys over plain HTTP to a loopback endpoint (local emulators only).
    #[arg(long)]
    pub allow_sse_c_over_loopback_http: bool,
    /// Time the sample may take, identity and reads included (milliseconds); past it the reads
    /// stop and the command exits 3 with SAMPLE_TIME_BUDGET_EXCEEDED.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub time_budget_ms: u64,
    /// Client-side decryption (KMS unwrapping runs as the user, like the reads).
    #[command(flatten)]
    pub cse: super::cse::CseArgs,
    /// Print the S3 requests made and the bytes fetched to stderr, as one JSON line
    /// (`{"sampleStats":{"requests":{"GetObject":2},"bytesFetched":123}}`).
    #[arg(long)]
    pub stats: bool,
    /// Connection options (the connector's identity the user's role is assumed from).
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Runs `sample`; prints the rows as proto3 JSON (`SampleRowsResponse`); returns the exit code.
pub async fn run(args: SampleArgs) -> anyhow::Result<i32> {
    let Some((bucket, key)) = crate::extract::targets::split_s3_uri(&args.uri) else {
        bail!("expected s3://bucket/key or s3://bucket/prefix/ with a valid bucket name, got '{}'", args.uri)
    };
    if args.rows == 0 || args.rows > 10_000 {
        bail!("--rows must be 1..=10000");
    }
    let user = match &args.user_role_arn {
        None => None,
        Some(role_arn) => Some(match &args.user_web_identity_token_file {
            Some(path) => UserIdentity::WebIdentity {
                role_arn: role_arn.clone(),
                token: WebIdentityToken::new(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("cannot read the token file {}", path.display()))?,
                ),
                session_name: args.user_session_name.clone(),
            },
            None => UserIdentity::Role {
                role_arn: role_arn.clone(),
                external_id: args.user_external_id.clone(),
                session_name: args.user_session_name.clone(),
            },
        }),
    };
    let settings = args.connection.settings();
    let aws = AwsContext::load(&settings).await.context("invalid connection settings")?;
    let sse_c = if args.sse_c_keys.is_empty() {
        None
    } else {
        let rules = args.sse_c_keys.iter().map(|r| parse_rule(r)).collect::<Result<Vec<_>, _>>()?;
        let endpoint = settings.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
        check_transport(endpoint.as_deref(), args.allow_sse_c_over_loopback_http)?;
        // Secrets are read once, as the connector (not the end user).
        let keys = if SseCKeys::needs_secrets(&rules) {
            SseCKeys::load_with_secrets(&rules, &SdkSecrets::new(aws.secrets_client())).await?
        } else {
            SseCKeys::load(&rules)?
        };
        Some(Arc::new(keys))
    };
    let stats = Arc::new(RequestStats::default());
    let cse = crate::cse::ClientSideDecryption::load(&args.cse.settings())?.map(Arc::new);
    // One budget for the identity and the reads; dropping the futures at the deadline stops
    // the requests in flight.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(args.time_budget_ms);
    let over_budget = || {
        eprintln!(
            "error: the sample did not finish within the time budget of {} ms (--time-budget-ms); its reads were stopped [SAMPLE_TIME_BUDGET_EXCEEDED]",
            args.time_budget_ms
        );
        Ok(EXIT_NOT_SAMPLED)
    };
    let reader = reader_for(&aws, user, args.as_service, sse_c, cse, stats.clone());
    let Ok(reader) = tokio::time::timeout_at(deadline, reader).await else { return over_budget() };
    let reader = match reader {
        Ok(r) => r,
        Err(ReaderError::NoUser) => bail!("name the end user (--user-role-arn) or pass --as-service"),
        Err(ReaderError::Invalid(reason)) => bail!("invalid user identity: {reason}"),
        Err(ReaderError::Identity { code, message }) => {
            eprintln!("error: {message} [{code}]");
            return Ok(EXIT_NOT_SAMPLED);
        }
    };
    let options = SampleOptions {
        columns: args.columns.clone(),
        mode: match args.mode {
            Mode::Head => SampleMode::Head,
            Mode::Random => SampleMode::Random { seed: args.seed.unwrap_or_else(rand::random) },
        },
        limits: SampleLimits {
            max_rows: args.rows as usize,
            max_value_bytes: args.max_value_bytes.max(1) as usize,
        },
        ..SampleOptions::default()
    };
    let region = aws.region();
    let sampling =
        sample_uri(reader.store.as_ref(), bucket, key, reader.principal.as_deref(), &region, &options);
    let Ok(result) = tokio::time::timeout_at(deadline, sampling).await else { return over_budget() };
    if args.stats {
        let stats = serde_json::json!({"sampleStats": {
            "requests": stats.snapshot(),
            "bytesFetched": stats.bytes_fetched(),
        }});
        eprintln!("{stats}");
    }
    match result {
        Ok(sample) => {
            let response = crate::output::records::sample_response(&sample);
            println!("{}", serde_json::to_string_pretty(&response)?);
            Ok(0)
        }
        Err(failure) => {
            eprintln!("error: {failure} [{}]", failure.code());
            if let crate::sample::SampleFailure::Denied(problem) = &failure
                && let Some(statement) =
                    problem.remediation.as_ref().and_then(|r| r.policy_statement.as_ref())
            {
                eprintln!("the reader needs:\n{}", serde_json::to_string_pretty(statement)?);
            }
            Ok(EXIT_NOT_SAMPLED)
        }
    }
}
