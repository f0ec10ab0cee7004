//! `s3-connector check`: access diagnostics.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::extract::ConnectionArgs;
use crate::aws::identity::{UserIdentity, WebIdentityToken, load_base_context};
use crate::aws::{AwsContext, RequestStats};
use crate::check::{self, CheckOptions, CheckScope, CheckServices, RoleProbe, render};

/// Options of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Buckets to check: `bucket` or `s3://bucket/prefix/` (repeat for several).
    #[arg(required = true, value_name = "BUCKET_OR_URI")]
    pub targets: Vec<String>,
    /// Connection options (the same as `extract`).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// AWS requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Objects HEADed per bucket (round-robin over the folders of the first listing page) to
    /// find the KMS keys in use.
    #[arg(long, default_value_t = 16)]
    pub objects_per_bucket: usize,
    /// Inventory configuration id the connector consumes (repeatable): read with
    /// GetBucketInventoryConfiguration on every bucket instead of listing all configurations.
    #[arg(long = "inventory-id", value_name = "ID")]
    pub inventory_ids: Vec<String>,
    /// Role of a sampling user to check (assumed by the connector with --sampling-external-id,
    /// or with a web-identity token).
    #[arg(long)]
    pub sampling_role_arn: Option<String>,
    /// ExternalId for the sampling user's role.
    #[arg(long, requires = "sampling_role_arn", conflicts_with = "sampling_web_identity_token_file")]
    pub sampling_external_id: Option<String>,
    /// File holding the sampling user's web-identity (OIDC) token, exchanged with
    /// AssumeRoleWithWebIdentity.
    #[arg(long, requires = "sampling_role_arn", value_name = "FILE")]
    pub sampling_web_identity_token_file: Option<PathBuf>,
    /// Session name of the sampling user's role session.
    #[arg(long, default_value = "s3-connector-sampling")]
    pub sampling_session_name: String,
    /// SSE-C key rule, as for `sample` (repeatable): the `secretsmanager:` sources are read
    /// once as the connector (secretsmanager:GetSecretValue), their values never shown.
    #[arg(long = "sse-c-key", value_name = "RULE")]
    pub sse_c_keys: Vec<String>,
}

/// Runs `check`; returns the exit code (docs/check.md).
pub async fn run(args: CheckArgs) -> anyhow::Result<i32> {
    let scope = CheckScope { targets: crate::extract::targets::parse_targets(&args.targets)? };
    let settings = args.connection.settings();
    let aws = AwsContext::load(&settings).await.context("invalid connection settings")?;
    let stats = Arc::new(RequestStats::default());

    let (role, base) = match &settings.role_arn {
        Some(role_arn) => {
            let base = load_base_context(&settings).await.context("invalid connection settings")?;
            let role = RoleProbe {
                role_arn: role_arn.clone(),
                external_id: settings.external_id.clone(),
                session_name: args.connection.session_name.clone(),
            };
            (Some(role), Some(base))
        }
        None => (None, None),
    };

    let user = match &args.sampling_role_arn {
        None => None,
        Some(role_arn) => {
            let identity = match &args.sampling_web_identity_token_file {
                Some(path) => {
                    let token = std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read the web-identity token file {}", path.display())
                    })?;
                    UserIdentity::WebIdentity {
                        role_arn: role_arn.clone(),
                        token: WebIdentityToken::new(token),
                        session_name: args.sampling_session_name.clone(),
                    }
                }
                None => UserIdentity::Role {
                    role_arn: role_arn.clone(),
                    external_id: args.sampling_external_id.clone(),
                    session_name: args.sampling_session_name.clone(),
                },
            };
            Some(identity.load(&aws).await.context("invalid sampling identity")?)
        }
    };

    let services = CheckServices::from_sdk(&aws, base.as_ref(), user.as_ref(), stats.clone());
    let options = CheckOptions {
        role,
        concurrency: args.concurrency.max(1),
        objects_per_bucket: args.objects_per_bucket.max(1),
        inventory_ids: args.inventory_ids.clone(),
        sse_c_key_secrets: crate::aws::ssec::secret_ids(&args.sse_c_keys)?,
    };
    let started = std::time::Instant::now();
    let report = check::run_check(&services, &scope, &options).await.context("check failed")?;
    let requests = stats.snapshot();
    // On stderr, so that stdout stays the table or the JSON document.
    eprintln!(
        "check: {} probes, {} AWS requests ({}) in {:.2} s",
        report.probes.len(),
        requests.values().sum::<u64>(),
        requests.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).context("serializing the report")?);
    } else {
        print!("{}", render::render_text(&report));
    }
    Ok(render::exit_code(&report))
}
