//! Access diagnostics: `s3-connector check` and the `CheckAccess` RPC.
//!
//! [`run_check`] probes, one call at a time and each reported on its own, everything
//! extraction, incremental extraction (S3 Inventory) and sampling need: who the connector is
//! (and whether its role trusts it, and trusts it *only* with the ExternalId), listing, default
//! encryption, every KMS key seen (state, spec, manager, region), a real 1-byte read per key
//! (the only check that matches what S3 does with KMS on the caller's behalf), inventory
//! configurations with their destination and report key policy, and bucket policies that
//! require encryption on upload. AWS is reached through narrow seams ([`CheckServices`]) so
//! tests substitute fakes or replayed responses.
//!
//! Flow:
//!
//! ```text
//! role probes (base identity: AssumeRole with / without ExternalId)
//!   └─► caller identity ─► buckets, buffered(concurrency):
//!         ListBucket · GetBucketLocation · GetBucketEncryption · HEAD samples (keys seen)
//!         · inventory configurations (+ destination listing) · bucket policy
//!       ─► keys, buffered(concurrency): DescribeKey · 1-byte GET · report key policy
//!       ─► sampling identity (+ 1-byte GET per key as the user) ─► readiness
//! ```

mod policy_text;
mod readiness;
pub mod render;
pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::concurrency::in_order;
use serde_json::{Value, json};

use crate::aws::control::{BucketControl, InventoryConfig, KeyDetails, KeyInspector};
use crate::aws::identity::{AssumeRoleRequest, CallerIdentity, SecurityTokenService, StsError, StsErrorKind};
use crate::aws::{AwsError, AwsErrorKind, ByteRange, ListRequest, ObjectStore};
use crate::extract::BucketTarget;
use crate::extract::problems::{self, ObjectContext};
use crate::extract::report::Problem;
pub use policy_text::{DeliveryGrant, inventory_delivery_grant, upload_encryption_requirement};
pub use report::{
    CheckReport, Evidence, Finding, FindingSeverity, ProbeKind, ProbeResult, ProbeStatus, Readiness,
    ReadinessItem,
};

/// The connector role, as configured, for the trust probes.
#[derive(Clone)]
pub struct RoleProbe {
    /// Role ARN.
    pub role_arn: String,
    /// ExternalId configured for it.
    pub external_id: Option<String>,
    /// Session name.
    pub session_name: String,
}

impl std::fmt::Debug for RoleProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleProbe")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id.as_ref().map(|_| "<set>"))
            .field("session_name", &self.session_name)
            .finish()
    }
}

/// The sampling user's seams: built from a [`crate::aws::identity::UserContext`], never from
/// the service identity.
pub struct SamplingServices {
    /// The role the user acts as.
    pub role_arn: String,
    /// STS as the user.
    pub sts: Arc<dyn SecurityTokenService>,
    /// S3 as the user.
    pub store: Arc<dyn ObjectStore>,
}

/// Everything `check` calls.
pub struct CheckServices {
    /// S3 data path as the service identity.
    pub store: Arc<dyn ObjectStore>,
    /// S3 configuration reads as the service identity.
    pub buckets: Arc<dyn BucketControl>,
    /// KMS as the service identity.
    pub keys: Arc<dyn KeyInspector>,
    /// STS as the service identity (after its role).
    pub sts: Arc<dyn SecurityTokenService>,
    /// STS as the identity *before* the role (the standard chain), for the trust probes;
    /// required when [`CheckOptions::role`] is set.
    pub base_sts: Option<Arc<dyn SecurityTokenService>>,
    /// The sampling user, when one is given.
    pub sampling: Option<SamplingServices>,
    /// Secrets Manager as the service identity, for [`CheckOptions::sse_c_key_secrets`].
    pub secrets: Option<Arc<dyn crate::aws::ssec::SecretSource>>,
    /// Configured region (fallback for a bucket whose location cannot be read).
    pub region: String,
}

impl CheckServices {
    /// The SDK-backed seams: `service` for everything, `base` (the identity before the role,
    /// see [`crate::aws::identity::load_base_context`]) for the trust probes, `sampling` for the
    /// user probes. Requests are counted in `stats`.
    pub fn from_sdk(
        service: &crate::aws::AwsContext,
        base: Option<&crate::aws::AwsContext>,
        sampling: Option<&crate::aws::identity::UserContext>,
        stats: Arc<crate::aws::RequestStats>,
    ) -> CheckServices {
        use crate::aws::SdkObjectStore;
        use crate::aws::control::{SdkBucketControl, SdkKeyInspector};
        use crate::aws::identity::SdkSecurityTokenService;
        let sts = |client| -> Arc<dyn SecurityTokenService> {
            Arc::new(SdkSecurityTokenService::new(client, stats.clone()))
        };
        CheckServices {
            store: Arc::new(SdkObjectStore::new(service.s3_client(), stats.clone())),
            buckets: Arc::new(SdkBucketControl::new(service.s3_client(), stats.clone())),
            keys: Arc::new(SdkKeyInspector::new(service.kms_client(), stats.clone())),
            sts: sts(service.sts_client()),
            base_sts: base.map(|b| sts(b.sts_client())),
            sampling: sampling.map(|user| SamplingServices {
                role_arn: user.role_arn().to_string(),
                sts: sts(user.sts_client()),
                store: Arc::new(SdkObjectStore::new(user.s3_client(), stats.clone())),
            }),
            secrets: Some(Arc::new(crate::aws::ssec::SdkSecrets::new(service.secrets_client()))),
            region: service.region(),
        }
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckScope {
    /// Buckets (prefixes narrow the sample listing).
    pub targets: Vec<BucketTarget>,
}

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The connector role, when one is configured.
    pub role: Option<RoleProbe>,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Objects HEADed per bucket to find the keys in use (round-robin over the folders of the
    /// first listing page).
    pub objects_per_bucket: usize,
    /// Inventory configuration ids the connector consumes: read with
    /// GetBucketInventoryConfiguration (and reported missing) instead of listing them all.
    pub inventory_ids: Vec<String>,
    /// Secrets Manager secrets (names or ARNs) holding SSE-C keys the connector reads at
    /// start-up (`secretsmanager:` key sources): each is read once, its value discarded.
    pub sse_c_key_secrets: Vec<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            role: None,
            concurrency: 8,
            objects_per_bucket: 16,
            inventory_ids: Vec::new(),
            sse_c_key_secrets: Vec::new(),
        }
    }
}

/// Errors that stop a check (failed probes do not).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing to check.
    #[error("no bucket given")]
    NoBuckets,
    /// A role is configured but no pre-role STS seam was given.
    #[error("a role ({role_arn}) is configured but no base identity was given to assume it with")]
    MissingBaseIdentity {
        /// The role.
        role_arn: String,
    },
}

/// Shortest session STS allows: the trust probes' credentials are dropped unused.
const PROBE_SESSION: Duration = Duration::from_secs(900);

/// Runs every probe and returns the report.
///
/// # Errors
///
/// Only for unusable input ([`CheckError`]); AWS failures are probe results.
///
/// The future is boxed here, where its lifetimes are named, so that callers that must be
/// `Send` (the gRPC service) do not trip rustc's "not general enough" limitation
/// (rust-lang/rust#110338) on the closures inside.
pub fn run_check<'a>(
    services: &'a CheckServices,
    scope: &'a CheckScope,
    options: &'a CheckOptions,
) -> futures::future::BoxFuture<'a, Result<CheckReport, CheckError>> {
    Box::pin(run_check_unboxed(services, scope, options))
}

async fn run_check_unboxed(
    services: &CheckServices,
    scope: &CheckScope,
    options: &CheckOptions,
) -> Result<CheckReport, CheckError> {
    if scope.targets.is_empty() {
        return Err(CheckError::NoBuckets);
    }
    let mut run = Run { services, options, probes: Vec::new(), findings: Vec::new() };
    let concurrency = options.concurrency.max(1);

    // 1. The role: with the ExternalId, then without it.
    let mut role_ok = true;
    if let Some(role) = &options.role {
        let base = services
            .base_sts
            .clone()
            .ok_or_else(|| CheckError::MissingBaseIdentity { role_arn: role.role_arn.clone() })?;
        role_ok = run.role_probes(base.as_ref(), role).await;
    }

    // 2. Who we are.
    let identity = if role_ok { run.caller_identity().await } else { None };
    let principal = identity.as_ref().map(|i| i.arn.clone());
    if !role_ok {
        let reason = "the connector role could not be assumed (see ROLE_ASSUMPTION)";
        run.probes.push(skipped(ProbeKind::CallerIdentity, "sts", reason));
        for target in &scope.targets {
            run.probes.push(skipped(ProbeKind::ListBucket, &target.bucket, reason).bucket(&target.bucket));
        }
        let probes = std::mem::take(&mut run.probes);
        let findings = std::mem::take(&mut run.findings);
        let readiness = readiness::assess(&probes, scope, services.sampling.is_some());
        return Ok(CheckReport { identity, probes, findings, readiness });
    }

    // 3. Buckets.
    let mut bucket_checks = Vec::with_capacity(scope.targets.len());
    for target in &scope.targets {
        bucket_checks.push(check_bucket(services, options, target, principal.as_deref()));
    }
    let bucket_outcomes: Vec<BucketOutcome> = in_order(bucket_checks, concurrency).await;

    // 4. Keys.
    let mut sightings: Vec<KeySighting> = Vec::new();
    let mut regions: BTreeMap<String, String> = BTreeMap::new();
    let mut inventories: Vec<(String, InventoryConfig)> = Vec::new();
    for outcome in bucket_outcomes {
        run.probes.extend(outcome.probes);
        run.findings.extend(outcome.findings);
        sightings.extend(outcome.sightings);
        regions.insert(outcome.bucket.clone(), outcome.region);
        inventories.extend(outcome.inventories.into_iter().map(|c| (outcome.bucket.clone(), c)));
    }
    let keys = run.key_probes(sightings, &regions, principal.as_deref()).await;
    run.inventory_key_policies(&inventories, &keys, &regions, identity.as_ref()).await;

    // 5. Sampling.
    if let Some(sampling) = &services.sampling {
        run.sampling_probes(sampling, &keys).await;
    }
    // 6. SSE-C keys kept in Secrets Manager (read as the connector).
    run.sse_c_secret_probes(identity.as_ref()).await;

    let probes = std::mem::take(&mut run.probes);
    let findings = std::mem::take(&mut run.findings);
    let readiness = readiness::assess(&probes, scope, services.sampling.is_some());
    Ok(CheckReport { identity, probes, findings, readiness })
}

struct Run<'a> {
    services: &'a CheckServices,
    options: &'a CheckOptions,
    probes: Vec<ProbeResult>,
    findings: Vec<Finding>,
}

/// Where a key was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KeyUse {
    /// Default encryption of a source bucket.
    BucketDefault,
    /// An object of a source bucket.
    SourceObject,
    /// Inventory report encryption (configured), or a report object.
    InventoryReport,
}

#[derive(Debug, Clone)]
struct KeySighting {
    key_id: String,
    bucket: String,
    usage: KeyUse,
    /// An object encrypted under the key, for the decrypt probe.
    sample: Option<(String, String)>,
}

/// A key after DescribeKey, with where it is used.
#[derive(Debug, Clone)]
struct SeenKey {
    arn: String,
    details: Option<KeyDetails>,
    buckets: BTreeSet<String>,
    uses: BTreeSet<KeyUse>,
    sample: Option<(String, String)>,
}

impl SeenKey {
    fn used_for(&self) -> &'static str {
        if self.uses.iter().any(|u| *u != KeyUse::InventoryReport) { "source" } else { "inventory-report" }
    }
}

struct BucketOutcome {
    bucket: String,
    region: String,
    probes: Vec<ProbeResult>,
    findings: Vec<Finding>,
    sightings: Vec<KeySighting>,
    inventories: Vec<InventoryConfig>,
}

fn skipped(kind: ProbeKind, resource: &str, reason: &str) -> ProbeResult {
    ProbeResult::new(kind, resource, ProbeStatus::Skipped, reason).evidence(Evidence {
        error_code: None,
        message: reason.to_string(),
        http_status: None,
    })
}

fn evidence_of(err: &AwsError) -> Evidence {
    Evidence {
        error_code: err.code.clone(),
        message: err.message.clone().unwrap_or_else(|| err.to_string()),
        http_status: err.status,
    }
}

fn sts_evidence(err: &StsError) -> Evidence {
    Evidence {
        error_code: err.error.code.clone(),
        message: err.error.message.clone().unwrap_or_else(|| err.error.to_string()),
        http_status: err.error.status,
    }
}

/// Fills a failed probe from an extraction problem: the same codes and statements as
/// `extract` reports for the same failure.
fn with_problem(result: ProbeResult, problem: &Problem, err: &AwsError) -> ProbeResult {
    let mut result = result.evidence(evidence_of(err)).problem(problem.code);
    if let Some(remediation) = &problem.remediation {
        result = result.remedy(remediation.summary.clone(), remediation.policy_statement.as_ref());
    }
    if result.key_arn.is_none() {
        result.key_arn = problem.kms_key_arn.clone();
    }
    result
}

/// An identity-policy statement allowing one read `check` (or extraction) makes.
fn allow(sid: &str, actions: &[&str], resource: &str) -> Value {
    json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource })
}

fn who(principal: Option<&str>) -> &str {
    principal.unwrap_or("the connector's identity")
}

/// `a/b/c.csv` → `a/b/`.
fn parent_of(key: &str) -> &str {
    key.rfind('/').map(|i| &key[..=i]).unwrap_or("")
}

async fn check_bucket(
    services: &CheckServices,
    options: &CheckOptions,
    target: &BucketTarget,
    principal: Option<&str>,
) -> BucketOutcome {
    let bucket = target.bucket.as_str();
    let mut out = BucketOutcome {
        bucket: bucket.to_string(),
        region: services.region.clone(),
        probes: Vec::new(),
        findings: Vec::new(),
        sightings: Vec::new(),
        inventories: Vec::new(),
    };

    // ListBucket: one page per prefix (the whole bucket when none).
    let prefixes: Vec<String> =
        if target.prefixes.is_empty() { vec![String::new()] } else { target.prefixes.clone() };
    let mut objects = Vec::new();
    let mut listed = true;
    for prefix in &prefixes {
        let request = ListRequest {
            bucket: bucket.to_string(),
            prefix: prefix.clone(),
            delimiter: None,
            continuation: None,
            start_after: None,
            max_keys: None,
        };
        let probe = ProbeResult::new(ProbeKind::ListBucket, bucket, ProbeStatus::Pass, "").bucket(bucket);
        match services.store.list_page(&request).await {
            Ok(page) => {
                let probe = ProbeResult {
                    summary: format!("listed s3://{bucket}/{prefix}"),
                    ..probe
                        .detail("prefix", prefix.clone())
                        .detail("objects_on_first_page", page.objects.len().to_string())
                        .detail("truncated", page.next.is_some().to_string())
                };
                objects.extend(page.objects);
                out.probes.push(probe);
            }
            Err(err) => {
                listed = false;
                let problem = problems::listing_problem(&err, bucket, prefix, principal);
                let probe =
                    ProbeResult { status: ProbeStatus::Fail, summary: problem.message.clone(), ..probe }
                        .detail("prefix", prefix.clone());
                out.probes.push(with_problem(probe, &problem, &err));
            }
        }
    }

    // Region (for the key-region comparison).
    match services.buckets.bucket_region(bucket).await {
        Ok(region) => {
            out.probes.push(
                ProbeResult::new(
                    ProbeKind::BucketRegion,
                    bucket,
                    ProbeStatus::Pass,
                    format!("bucket is in {region}"),
                )
                .bucket(bucket)
                .detail("region", region.clone()),
            );
            out.region = region;
        }
        Err(err) => {
            let summary = format!(
                "the location of {bucket} could not be read; assuming the configured region {}",
                services.region
            );
            let mut probe = ProbeResult::new(ProbeKind::BucketRegion, bucket, ProbeStatus::Fail, summary)
                .bucket(bucket)
                .evidence(evidence_of(&err));
            if err.kind == AwsErrorKind::AccessDenied {
                probe = probe.problem("BUCKET_LOCATION_ACCESS_DENIED").remedy(
                    format!("Allow s3:GetBucketLocation on arn:aws:s3:::{bucket} for {}.", who(principal)),
                    Some(&allow(
                        "AllowBucketLocation",
                        &["s3:GetBucketLocation"],
                        &format!("arn:aws:s3:::{bucket}"),
                    )),
                );
            }
            out.probes.push(probe);
        }
    }

    // Default encryption.
    match services.store.bucket_encryption(bucket).await {
        Ok(rule) => {
            let (kind, key) = match &rule {
                None => ("NONE".to_string(), None),
                Some(r) => (
                    match r.sse_algorithm.as_str() {
                        "AES256" => "SSE_S3".to_string(),
                        "aws:kms" => "SSE_KMS".to_string(),
                        "aws:kms:dsse" => "DSSE_KMS".to_string(),
                        other => other.to_string(),
                    },
                    r.kms_master_key_id.clone(),
                ),
            };
            let mut probe = ProbeResult::new(
                ProbeKind::BucketEncryption,
                bucket,
                ProbeStatus::Pass,
                format!(
                    "default encryption {kind}{}",
                    key.as_deref().map(|k| format!(" under {k}")).unwrap_or_default()
                ),
            )
            .bucket(bucket)
            .detail("type", kind.clone());
            if let Some(r) = &rule {
                probe = probe.detail("bucket_key_enabled", r.bucket_key_enabled.to_string());
            }
            if let Some(k) = &key {
                probe = probe.detail("configured_key_id", k.clone());
                out.sightings.push(KeySighting {
                    key_id: k.clone(),
                    bucket: bucket.to_string(),
                    usage: KeyUse::BucketDefault,
                    sample: None,
                });
            }
            out.probes.push(probe);
        }
        Err(err) => {
            let problem = problems::bucket_encryption_problem(&err, bucket, principal);
            let probe = ProbeResult::new(
                ProbeKind::BucketEncryption,
                bucket,
                ProbeStatus::Fail,
                problem.message.clone(),
            )
            .bucket(bucket);
            out.probes.push(with_problem(probe, &problem, &err));
        }
    }

    // HEAD a few objects, spread over folders, to see the keys really in use.
    if listed {
        sample_objects(services, options, bucket, &objects, principal, &mut out).await;
    }

    // Inventory configurations and their destinations.
    check_inventory(services, &options.inventory_ids, bucket, principal, &mut out).await;

    // Bucket policy: a fact about uploads.
    let probe = match services.buckets.bucket_policy(bucket).await {
        Ok(None) => ProbeResult::new(ProbeKind::BucketPolicy, bucket, ProbeStatus::Pass, "no bucket policy")
            .detail("upload_encryption_required", "false"),
        Ok(Some(text)) => match upload_encryption_requirement(&text) {
            Ok(Some(rule)) => {
                out.findings.push(Finding {
                    code: "UPLOAD_ENCRYPTION_REQUIRED".into(),
                    severity: FindingSeverity::Info,
                    resource: bucket.to_string(),
                    buckets: vec![bucket.to_string()],
                    message: format!("the bucket policy of {bucket} requires encryption on upload: {rule}"),
                    remediation: None,
                });
                ProbeResult::new(
                    ProbeKind::BucketPolicy,
                    bucket,
                    ProbeStatus::Pass,
                    "bucket policy requires encryption on upload",
                )
                .detail("upload_encryption_required", "true")
                .detail("upload_encryption_rule", rule)
            }
            Ok(None) => {
                ProbeResult::new(ProbeKind::BucketPolicy, bucket, ProbeStatus::Pass, "bucket policy read")
                    .detail("upload_encryption_required", "false")
            }
            Err(e) => {
                skipped(ProbeKind::BucketPolicy, bucket, &format!("the bucket policy is not valid JSON: {e}"))
            }
        },
        // Not needed by the connector: not being allowed to read it is not a failure.
        Err(err) => ProbeResult::new(
            ProbeKind::BucketPolicy,
            bucket,
            ProbeStatus::Skipped,
            format!("bucket policy not read ({})", err.code.as_deref().unwrap_or("error")),
        )
        .evidence(evidence_of(&err)),
    };
    out.probes.push(probe.bucket(bucket));
    out
}

async fn sample_objects(
    services: &CheckServices,
    options: &CheckOptions,
    bucket: &str,
    objects: &[s3_connector_domain::model::ObjectMeta],
    principal: Option<&str>,
    out: &mut BucketOutcome,
) {
    let candidates = sample_keys(objects, options.objects_per_bucket);
    let mut head_calls = Vec::with_capacity(candidates.len());
    for key in candidates {
        head_calls.push(head_of(services, bucket, key));
    }
    let heads: Vec<(&str, Result<crate::aws::ObjectHead, AwsError>)> =
        in_order(head_calls, options.concurrency.max(1)).await;
    let mut plain_sample: Option<&str> = None;
    let mut head_error: Option<(&str, AwsError)> = None;
    for (key, head) in heads {
        match head {
            Ok(head) => {
                let enc = &head.encryption;
                if enc.sse.as_deref().is_some_and(|s| s.starts_with("aws:kms")) {
                    if let Some(k) = &enc.kms_key_id {
                        out.sightings.push(KeySighting {
                            key_id: k.clone(),
                            bucket: bucket.to_string(),
                            usage: KeyUse::SourceObject,
                            sample: Some((bucket.to_string(), key.to_string())),
                        });
                    }
                } else if enc.sse_customer_algorithm.is_none() && plain_sample.is_none() {
                    plain_sample = Some(key);
                }
            }
            Err(err) => {
                head_error.get_or_insert((key, err));
            }
        }
    }
    let sampled_kms = out.sightings.iter().any(|s| s.usage == KeyUse::SourceObject);
    if let Some(key) = plain_sample {
        let probe = ProbeResult::new(
            ProbeKind::ReadObject,
            bucket,
            ProbeStatus::Pass,
            format!("read 1 byte of s3://{bucket}/{key}"),
        )
        .bucket(bucket)
        .detail("object", key.to_string());
        out.probes.push(match services.store.get_range(bucket, key, ByteRange::Head(1), 1).await {
            Ok(_) => probe,
            Err(err) => {
                let problem =
                    problems::object_problem(&err, &object_ctx(bucket, key, principal, None, &out.region));
                with_problem(
                    ProbeResult { status: ProbeStatus::Fail, summary: problem.message.clone(), ..probe },
                    &problem,
                    &err,
                )
            }
        });
    } else if let Some((key, err)) = head_error.filter(|_| !sampled_kms) {
        let problem = problems::object_problem(&err, &object_ctx(bucket, key, principal, None, &out.region));
        let probe =
            ProbeResult::new(ProbeKind::ReadObject, bucket, ProbeStatus::Fail, problem.message.clone())
                .bucket(bucket)
                .detail("object", key.to_string());
        out.probes.push(with_problem(probe, &problem, &err));
    }
}

/// Up to `limit` keys, round-robin over folders: first one per folder, then a second per
/// folder, ... so that a folder mixing keys (some objects under A, some under C) shows both when
/// there is room.
fn sample_keys(objects: &[s3_connector_domain::model::ObjectMeta], limit: usize) -> Vec<&str> {
    let mut folders: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for o in objects.iter().filter(|o| o.size > 0 && !o.key.ends_with('/')) {
        let folder = parent_of(&o.key);
        let entry = folders.entry(folder).or_default();
        if entry.is_empty() {
            order.push(folder);
        }
        entry.push(&o.key);
    }
    let mut out = Vec::new();
    for round in 0.. {
        let before = out.len();
        for folder in &order {
            if out.len() >= limit {
                return out;
            }
            if let Some(key) = folders.get(folder).and_then(|keys| keys.get(round)) {
                out.push(*key);
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}

fn object_ctx<'a>(
    bucket: &'a str,
    key: &'a str,
    principal: Option<&'a str>,
    known_kms_key: Option<&'a str>,
    region: &'a str,
) -> ObjectContext<'a> {
    ObjectContext { bucket, dataset_prefix: parent_of(key), key, principal, known_kms_key, region }
}

async fn inventory_by_id(
    services: &CheckServices,
    ids: &[String],
    bucket: &str,
    out: &mut BucketOutcome,
) -> Result<Vec<InventoryConfig>, AwsError> {
    let mut configs = Vec::new();
    for id in ids {
        match services.buckets.inventory_configuration(bucket, id).await? {
            Some(config) => configs.push(config),
            None => out.probes.push(
                ProbeResult::new(
                    ProbeKind::InventoryConfiguration,
                    bucket,
                    ProbeStatus::Fail,
                    format!("{bucket} has no inventory configuration '{id}'"),
                )
                .bucket(bucket)
                .detail("id", id.clone())
                .problem("INVENTORY_NOT_FOUND")
                .remedy("Create the inventory configuration, or pass the id the bucket uses.", None),
            ),
        }
    }
    Ok(configs)
}

async fn check_inventory(
    services: &CheckServices,
    ids: &[String],
    bucket: &str,
    principal: Option<&str>,
    out: &mut BucketOutcome,
) {
    let listed = if ids.is_empty() {
        services.buckets.inventory_configurations(bucket).await
    } else {
        inventory_by_id(services, ids, bucket, out).await
    };
    let configs = match listed {
        Ok(configs) => configs,
        Err(err) => {
            let mut probe = ProbeResult::new(
                ProbeKind::InventoryConfiguration,
                bucket,
                ProbeStatus::Fail,
                format!("the inventory configurations of {bucket} could not be read"),
            )
            .bucket(bucket)
            .evidence(evidence_of(&err));
            if matches!(err.kind, AwsErrorKind::AccessDenied) {
                probe = probe.problem("INVENTORY_CONFIGURATION_ACCESS_DENIED").remedy(
                    format!(
                        "Allow s3:GetInventoryConfiguration on arn:aws:s3:::{bucket} for {}.",
                        who(principal)
                    ),
                    Some(&allow(
                        "AllowReadInventoryConfiguration",
                        &["s3:GetInventoryConfiguration"],
                        &format!("arn:aws:s3:::{bucket}"),
                    )),
                );
            }
            out.probes.push(probe);
            return;
        }
    };
    if configs.is_empty() && ids.is_empty() {
        out.probes.push(
            ProbeResult::new(
                ProbeKind::InventoryConfiguration,
                bucket,
                ProbeStatus::Fail,
                format!("{bucket} has no S3 Inventory configuration: incremental extraction has no reports to read"),
            )
            .bucket(bucket)
            .problem("INVENTORY_NOT_CONFIGURED")
            .remedy(
                "Configure S3 Inventory on the bucket (daily, CSV/ORC/Parquet, with the optional fields the connector uses); see `s3-connector policy` for the destination bucket policy and report key statement.",
                None,
            ),
        );
        return;
    }
    let mut destinations_listed = BTreeSet::new();
    for c in &configs {
        let mut probe = ProbeResult::new(
            ProbeKind::InventoryConfiguration,
            bucket,
            if c.enabled { ProbeStatus::Pass } else { ProbeStatus::Fail },
            format!(
                "inventory '{}' {} → s3://{}/{} ({}, {}, reports {})",
                c.id,
                if c.enabled { "enabled" } else { "DISABLED" },
                c.destination_bucket,
                c.destination_prefix.as_deref().unwrap_or(""),
                c.format,
                c.frequency,
                c.encryption
            ),
        )
        .bucket(bucket)
        .detail("id", c.id.clone())
        .detail("enabled", c.enabled.to_string())
        .detail("destination_bucket", c.destination_bucket.clone())
        .detail("format", c.format.clone())
        .detail("frequency", c.frequency.clone())
        .detail("included_versions", c.included_versions.clone())
        .detail("report_encryption", c.encryption.clone());
        if let Some(prefix) = &c.destination_prefix {
            probe = probe.detail("destination_prefix", prefix.clone());
        }
        if let Some(account) = &c.destination_account {
            probe = probe.detail("destination_account", account.clone());
        }
        if !c.optional_fields.is_empty() {
            probe = probe.detail("optional_fields", c.optional_fields.join(","));
        }
        if let Some(key) = &c.encryption_key_id {
            probe = probe.detail("report_key_id", key.clone());
            out.sightings.push(KeySighting {
                key_id: key.clone(),
                bucket: bucket.to_string(),
                usage: KeyUse::InventoryReport,
                sample: None,
            });
        }
        if !c.enabled {
            probe = probe
                .problem("INVENTORY_DISABLED")
                .remedy("Enable the inventory configuration (IsEnabled=true).", None);
        }
        out.probes.push(probe);

        // The connector reads the reports: list where they land for this bucket and config.
        let base = c
            .destination_prefix
            .as_deref()
            .map(|p| format!("{}/", p.trim_end_matches('/')))
            .unwrap_or_default();
        let prefix = format!("{base}{bucket}/{}/", c.id);
        if !destinations_listed.insert((c.destination_bucket.clone(), prefix.clone()))
            || c.destination_bucket.is_empty()
        {
            continue;
        }
        let dest = c.destination_bucket.as_str();
        let request = ListRequest {
            bucket: dest.to_string(),
            prefix: prefix.clone(),
            delimiter: None,
            continuation: None,
            start_after: None,
            max_keys: None,
        };
        let probe = ProbeResult::new(ProbeKind::InventoryDestination, dest, ProbeStatus::Pass, "")
            .bucket(dest)
            .detail("source_bucket", bucket.to_string())
            .detail("prefix", prefix.clone());
        match services.store.list_page(&request).await {
            Ok(page) => {
                let reports = page.objects.len();
                // A report object shows the key the reports are really encrypted under.
                if let Some(obj) = page.objects.iter().find(|o| o.size > 0)
                    && let Ok(head) = services.store.head(dest, &obj.key).await
                    && let Some(k) = head.encryption.kms_key_id.clone()
                {
                    out.sightings.push(KeySighting {
                        key_id: k,
                        bucket: dest.to_string(),
                        usage: KeyUse::InventoryReport,
                        sample: Some((dest.to_string(), obj.key.clone())),
                    });
                }
                out.probes.push(ProbeResult {
                    summary: format!("listed s3://{dest}/{prefix} ({reports} objects on the first page)"),
                    ..probe.detail("objects_on_first_page", reports.to_string())
                });
            }
            Err(err) => {
                let problem = problems::listing_problem(&err, dest, &prefix, principal);
                let probe =
                    ProbeResult { status: ProbeStatus::Fail, summary: problem.message.clone(), ..probe };
                out.probes.push(with_problem(probe, &problem, &err));
            }
        }
    }
    out.inventories = configs;
}

impl Run<'_> {
    /// ROLE_ASSUMPTION and CONFUSED_DEPUTY; returns whether the role can be assumed.
    async fn role_probes(&mut self, base: &dyn SecurityTokenService, role: &RoleProbe) -> bool {
        let arn = role.role_arn.as_str();
        let base_identity = base.caller_identity().await.ok();
        let trusted = base_identity.as_ref().and_then(|i| policy_text::trust_principal_for(&i.arn));
        let trust_policy = || {
            let account = policy_text::account_of(arn)?;
            policy_text::generate(&policy_text::KnownSetup {
                partition: policy_text::partition_of(arn),
                account_id: account,
                region: &self.services.region,
                role_name: policy_text::role_name_of(arn),
                trusted_principal: trusted.as_deref().unwrap_or(account),
                external_id: role.external_id.as_deref(),
                buckets: vec!["placeholder-bucket".into()],
                inventory: None,
            })
            .map(|docs| docs.connector_trust_policy["Statement"][0].clone())
        };
        let request = AssumeRoleRequest {
            role_arn: arn.to_string(),
            external_id: role.external_id.clone(),
            session_name: role.session_name.clone(),
            duration: PROBE_SESSION,
        };
        let mut probe = ProbeResult::new(ProbeKind::RoleAssumption, arn, ProbeStatus::Pass, "");
        if let Some(identity) = &base_identity {
            probe = probe.detail("caller", identity.arn.clone());
        }
        probe = probe.detail("external_id_sent", role.external_id.is_some().to_string());
        let assumed = base.assume_role(&request).await;
        let ok = assumed.is_ok();
        match assumed {
            Ok(assumed) => {
                let mut p = ProbeResult { summary: format!("assumed {arn}"), ..probe }
                    .detail("assumed_role_arn", assumed.assumed_role_arn);
                if let Some(exp) = assumed.expiration {
                    p = p.detail("expiration", exp);
                }
                self.probes.push(p);
            }
            Err(err) => {
                let (summary, remedy): (String, String) = match err.kind {
                    StsErrorKind::NotTrusted => (
                        format!(
                            "{} may not assume {arn} {}: wrong or missing ExternalId, caller not in the trust policy, or no sts:AssumeRole in the caller's identity policy",
                            base_identity.as_ref().map(|i| i.arn.as_str()).unwrap_or("the caller"),
                            if role.external_id.is_some() { "with the configured ExternalId" } else { "without an ExternalId" },
                        ),
                        "Make the role's trust policy allow the caller with the ExternalId (statement below), and allow sts:AssumeRole on the role in the caller's identity policy.".into(),
                    ),
                    StsErrorKind::RegionDisabled => (
                        format!("STS is not activated in region {}", self.services.region),
                        "Activate STS in this region (IAM → Account settings → Security Token Service endpoints) or use another region.".into(),
                    ),
                    StsErrorKind::MalformedPolicy => (
                        "STS refused the session policy or tags".into(),
                        "Check the session policy / tags; packed policies must stay under the size limit.".into(),
                    ),
                    StsErrorKind::ExpiredToken => (
                        "the calling credentials have expired".into(),
                        "Refresh the base credentials (profile, SSO login, web-identity token).".into(),
                    ),
                    StsErrorKind::InvalidParameter => (
                        "STS refused a parameter (session duration above the role's maximum?)".into(),
                        "Lower --session-duration or raise the role's MaxSessionDuration.".into(),
                    ),
                    StsErrorKind::InvalidCredentials => (
                        "the calling credentials are not valid".into(),
                        "Check the base credentials of the standard chain.".into(),
                    ),
                    _ => (format!("AssumeRole of {arn} failed: {err}"), "See the evidence.".into()),
                };
                let statement = (err.kind == StsErrorKind::NotTrusted).then(trust_policy).flatten();
                self.probes.push(
                    ProbeResult { status: ProbeStatus::Fail, summary, ..probe }
                        .evidence(sts_evidence(&err))
                        .problem(err.kind.code())
                        .remedy(remedy, statement.as_ref()),
                );
            }
        }

        // Confused deputy: the role must refuse a caller that does not present the ExternalId.
        let Some(_) = &role.external_id else {
            self.probes.push(skipped(
                ProbeKind::ConfusedDeputy,
                arn,
                "no ExternalId configured: nothing distinguishes this customer's role from another's",
            ));
            return ok;
        };
        let without = AssumeRoleRequest { external_id: None, ..request };
        let probe = ProbeResult::new(ProbeKind::ConfusedDeputy, arn, ProbeStatus::Pass, "");
        match base.assume_role(&without).await {
            Ok(_) => {
                let statement = trust_policy();
                let message = format!(
                    "{arn} can be assumed without the ExternalId: another customer of the same vendor could make the connector act on this account (confused deputy)"
                );
                self.findings.push(Finding {
                    code: "CONFUSED_DEPUTY".into(),
                    severity: FindingSeverity::Security,
                    resource: arn.to_string(),
                    buckets: Vec::new(),
                    message: message.clone(),
                    remediation: statement.as_ref().map(Value::to_string),
                });
                self.probes.push(
                    ProbeResult { status: ProbeStatus::Fail, summary: message, ..probe }.problem("CONFUSED_DEPUTY").remedy(
                        "Add the sts:ExternalId condition to the role's trust policy (statement below), so AssumeRole without it is refused.",
                        statement.as_ref(),
                    ),
                );
            }
            Err(err) if err.kind == StsErrorKind::NotTrusted => self.probes.push(
                ProbeResult { summary: "AssumeRole without the ExternalId is refused".into(), ..probe }
                    .evidence(sts_evidence(&err)),
            ),
            Err(err) => self.probes.push(
                ProbeResult {
                    status: ProbeStatus::Skipped,
                    summary: format!(
                        "inconclusive: AssumeRole without the ExternalId failed for another reason ({})",
                        err.kind.code()
                    ),
                    ..probe
                }
                .evidence(sts_evidence(&err)),
            ),
        }
        ok
    }

    async fn caller_identity(&mut self) -> Option<CallerIdentity> {
        match self.services.sts.caller_identity().await {
            Ok(identity) => {
                self.probes.push(
                    ProbeResult::new(
                        ProbeKind::CallerIdentity,
                        "sts",
                        ProbeStatus::Pass,
                        format!("acting as {}", identity.arn),
                    )
                    .detail("account", identity.account.clone())
                    .detail("arn", identity.arn.clone()),
                );
                Some(identity)
            }
            Err(err) => {
                self.probes.push(
                    ProbeResult::new(ProbeKind::CallerIdentity, "sts", ProbeStatus::Fail, format!("GetCallerIdentity failed: {err}"))
                        .evidence(sts_evidence(&err))
                        .problem(err.kind.code())
                        .remedy("Check the credentials of the standard chain (environment, profile, web identity, instance role).", None),
                );
                None
            }
        }
    }

    /// DESCRIBE_KEY and DECRYPT per distinct key; returns the keys by ARN.
    async fn key_probes(
        &mut self,
        sightings: Vec<KeySighting>,
        regions: &BTreeMap<String, String>,
        principal: Option<&str>,
    ) -> BTreeMap<String, SeenKey> {
        let concurrency = self.options.concurrency.max(1);
        let services = self.services;
        let ids: BTreeSet<String> = sightings.iter().map(|s| s.key_id.clone()).collect();
        let mut describe_calls = Vec::with_capacity(ids.len());
        for id in ids {
            describe_calls.push(describe(services, id));
        }
        let described: BTreeMap<String, Result<KeyDetails, AwsError>> =
            in_order(describe_calls, concurrency).await.into_iter().collect();
        let mut keys: BTreeMap<String, SeenKey> = BTreeMap::new();
        let mut errors: BTreeMap<String, AwsError> = BTreeMap::new();
        for s in &sightings {
            let (arn, details) = match described.get(&s.key_id) {
                Some(Ok(d)) => (d.arn.clone(), Some(d.clone())),
                Some(Err(e)) => {
                    errors.entry(s.key_id.clone()).or_insert_with(|| e.clone());
                    (s.key_id.clone(), None)
                }
                None => (s.key_id.clone(), None),
            };
            let entry = keys.entry(arn.clone()).or_insert_with(|| SeenKey {
                arn,
                details,
                buckets: BTreeSet::new(),
                uses: BTreeSet::new(),
                sample: None,
            });
            entry.buckets.insert(s.bucket.clone());
            entry.uses.insert(s.usage);
            // Prefer a source object as the sample: it is what extraction reads.
            if entry.sample.is_none() || (s.usage == KeyUse::SourceObject && s.sample.is_some()) {
                entry.sample = s.sample.clone().or(entry.sample.take());
            }
        }

        for key in keys.values() {
            let buckets: Vec<String> = key.buckets.iter().cloned().collect();
            let probe = ProbeResult::new(ProbeKind::DescribeKey, &key.arn, ProbeStatus::Pass, "")
                .key(key.arn.clone())
                .detail("buckets", buckets.join(","))
                .detail("used_for", key.used_for());
            let Some(d) = &key.details else {
                let err = errors.get(&key.arn);
                let mut p = ProbeResult {
                    status: ProbeStatus::Fail,
                    summary: format!("DescribeKey on {} failed", key.arn),
                    ..probe
                };
                if let Some(err) = err {
                    p = p.evidence(evidence_of(err));
                    if matches!(err.kind, AwsErrorKind::AccessDenied | AwsErrorKind::KmsAccessDenied) {
                        p = p.problem("KMS_DESCRIBE_KEY_DENIED").remedy(
                            format!("Allow kms:DescribeKey on {} for {}.", key.arn, who(principal)),
                            Some(&allow("AllowDescribeKey", &["kms:DescribeKey"], &key.arn)),
                        );
                    } else if err.kind == AwsErrorKind::KmsKeyNotFound
                        || err.code.as_deref() == Some("NotFoundException")
                    {
                        p = p.problem("KMS_KEY_NOT_FOUND");
                    }
                }
                self.probes.push(p);
                continue;
            };
            let mut p = probe
                .detail("state", d.state.clone())
                .detail("key_spec", d.key_spec.clone())
                .detail("key_usage", d.key_usage.clone())
                .detail("manager", d.manager.clone());
            if let Some(region) = d.region() {
                p = p.detail("region", region.to_string());
            }
            if let Some(date) = &d.deletion_date {
                p = p.detail("deletion_date", date.clone());
            }
            let state_problem = match d.state.as_str() {
                "Enabled" => None,
                "Disabled" => Some((
                    "KMS_KEY_DISABLED",
                    FindingSeverity::Error,
                    "is disabled: objects under it cannot be read",
                    "Enable the key (kms:EnableKey) if the data should stay readable.",
                )),
                "PendingDeletion" => Some((
                    "KMS_KEY_PENDING_DELETION",
                    FindingSeverity::Error,
                    "is pending deletion: objects under it are unreadable now and lost for good once it is deleted",
                    "Cancel the deletion (kms:CancelKeyDeletion) and re-enable the key.",
                )),
                _ => Some((
                    "KMS_KEY_INVALID_STATE",
                    FindingSeverity::Error,
                    "is not usable in its current state",
                    "Bring the key back to the Enabled state.",
                )),
            };
            // Empty: not reported (some S3-compatible KMS omit them); not a finding.
            let wrong_kind = (!d.key_spec.is_empty() && d.key_spec != "SYMMETRIC_DEFAULT")
                || (!d.key_usage.is_empty() && d.key_usage != "ENCRYPT_DECRYPT");
            if let Some((code, severity, what, fix)) = state_problem {
                let message =
                    format!("KMS key {} ({}) {what}; used by {}", d.arn, d.state, buckets.join(", "));
                self.findings.push(Finding {
                    code: code.into(),
                    severity,
                    resource: d.arn.clone(),
                    buckets: buckets.clone(),
                    message: message.clone(),
                    remediation: None,
                });
                p = ProbeResult { status: ProbeStatus::Fail, summary: message, ..p }
                    .problem(code)
                    .remedy(fix, None);
            } else if wrong_kind {
                p = ProbeResult {
                    status: ProbeStatus::Fail,
                    summary: format!(
                        "KMS key {} is {} / {}: S3 only uses symmetric encryption keys",
                        d.arn, d.key_spec, d.key_usage
                    ),
                    ..p
                }
                .problem("KMS_KEY_NOT_SYMMETRIC");
            } else {
                p.summary =
                    format!("{} ({}, {}, {})", d.state, d.key_spec, d.manager, d.region().unwrap_or("?"));
            }
            if key.uses.contains(&KeyUse::InventoryReport) && d.manager == "AWS" {
                self.findings.push(Finding {
                    code: "INVENTORY_KEY_AWS_MANAGED".into(),
                    severity: FindingSeverity::Error,
                    resource: d.arn.clone(),
                    buckets: buckets.clone(),
                    message: format!("inventory reports are configured under the AWS managed key {}: S3 Inventory does not support it", d.arn),
                    remediation: None,
                });
            }
            if let Some(key_region) = d.region() {
                for bucket in &key.buckets {
                    let bucket_region =
                        regions.get(bucket).map(String::as_str).unwrap_or(&self.services.region);
                    if key_region != bucket_region {
                        self.findings.push(Finding {
                            code: "KMS_KEY_REGION_MISMATCH".into(),
                            severity: FindingSeverity::Error,
                            resource: d.arn.clone(),
                            buckets: vec![bucket.clone()],
                            message: format!("KMS key {} is in {key_region} but bucket {bucket} is in {bucket_region}: S3 uses keys of the bucket's region only", d.arn),
                            remediation: None,
                        });
                    }
                }
            }
            self.probes.push(p);
        }

        // The real thing: S3 decrypting for us.
        let mut decrypt_calls = Vec::with_capacity(keys.len());
        for key in keys.values() {
            decrypt_calls.push(decrypt_probe(
                services.store.as_ref(),
                ProbeKind::Decrypt,
                key,
                principal,
                regions,
                &services.region,
            ));
        }
        let decrypts: Vec<ProbeResult> = in_order(decrypt_calls, concurrency).await;
        self.probes.extend(decrypts);
        keys
    }

    async fn inventory_key_policies(
        &mut self,
        inventories: &[(String, InventoryConfig)],
        keys: &BTreeMap<String, SeenKey>,
        regions: &BTreeMap<String, String>,
        identity: Option<&CallerIdentity>,
    ) {
        let mut policies: BTreeMap<String, Result<String, AwsError>> = BTreeMap::new();
        for (bucket, config) in inventories {
            let Some(key_id) = &config.encryption_key_id else { continue };
            // The ARN DescribeKey resolved the configured id to (when it could).
            let arn = keys
                .values()
                .find(|k| {
                    k.arn == *key_id || k.details.as_ref().is_some_and(|d| d.arn.ends_with(key_id.as_str()))
                })
                .map(|k| k.arn.clone())
                .unwrap_or_else(|| key_id.clone());
            if !policies.contains_key(&arn) {
                let policy = self.services.keys.key_policy(&arn).await;
                policies.insert(arn.clone(), policy);
            }
            let region = regions.get(bucket).cloned().unwrap_or_else(|| self.services.region.clone());
            let account = identity
                .map(|i| i.account.clone())
                .or_else(|| policy_text::account_of(&arn).map(str::to_string));
            let fix = account.as_deref().and_then(|account| {
                policy_text::generate(&policy_text::KnownSetup {
                    partition: policy_text::partition_of(&arn),
                    account_id: account,
                    region: &region,
                    role_name: self
                        .options
                        .role
                        .as_ref()
                        .map(|r| policy_text::role_name_of(&r.role_arn))
                        .unwrap_or("s3-connector"),
                    trusted_principal: account,
                    external_id: None,
                    buckets: vec![bucket.clone()],
                    inventory: Some((config.destination_bucket.clone(), arn.clone())),
                })
                .and_then(|docs| docs.inventory_key_policy_statement)
            });
            let probe = ProbeResult::new(ProbeKind::InventoryKeyPolicy, &arn, ProbeStatus::Pass, "")
                .bucket(bucket)
                .key(arn.clone())
                .detail("inventory_id", config.id.clone());
            let result = match policies.get(&arn) {
                Some(Ok(text)) => match inventory_delivery_grant(text, bucket) {
                    Ok(grant) if grant.allowed && grant.source_account && grant.source_arn => ProbeResult {
                        summary: format!("the key policy lets s3.amazonaws.com kms:GenerateDataKey for {bucket}, with aws:SourceAccount and aws:SourceArn"),
                        ..probe.detail("statement_sid", grant.sid.unwrap_or_default())
                    },
                    Ok(grant) if grant.allowed => {
                        let missing = match (grant.source_account, grant.source_arn) {
                            (false, false) => "aws:SourceAccount and aws:SourceArn conditions".to_string(),
                            (false, true) => "an aws:SourceAccount condition".to_string(),
                            _ => format!("an aws:SourceArn condition matching arn:aws:s3:::{bucket}"),
                        };
                        let message = format!(
                            "the key policy of {arn} lets s3.amazonaws.com kms:GenerateDataKey without {missing}: another account's inventory could use the key"
                        );
                        self.findings.push(Finding {
                            code: "INVENTORY_KEY_POLICY_UNCONDITIONED".into(),
                            severity: FindingSeverity::Security,
                            resource: arn.clone(),
                            buckets: vec![bucket.clone()],
                            message: message.clone(),
                            remediation: fix.as_ref().map(Value::to_string),
                        });
                        ProbeResult { summary: message, ..probe }
                            .problem("INVENTORY_KEY_POLICY_UNCONDITIONED")
                            .remedy("Add the aws:SourceAccount / aws:SourceArn conditions (statement below).", fix.as_ref())
                    }
                    Ok(_) => ProbeResult {
                        status: ProbeStatus::Fail,
                        summary: format!("the key policy of {arn} does not let s3.amazonaws.com kms:GenerateDataKey: S3 cannot write the inventory reports of {bucket}"),
                        ..probe
                    }
                    .problem("INVENTORY_KEY_POLICY_MISSING_S3")
                    .remedy("Add this statement to the key policy of the report key.", fix.as_ref()),
                    Err(e) => skipped(ProbeKind::InventoryKeyPolicy, &arn, &format!("the key policy is not valid JSON: {e}")).bucket(bucket).key(arn.clone()),
                },
                Some(Err(err)) => ProbeResult {
                    status: ProbeStatus::Skipped,
                    summary: format!("the key policy of {arn} could not be read ({}); whether S3 may encrypt reports with it is unverified", err.code.as_deref().unwrap_or("error")),
                    ..probe
                }
                .evidence(evidence_of(err))
                .remedy(
                    "To let check verify it, allow kms:GetKeyPolicy on the key; the statement S3 Inventory needs is below.",
                    fix.as_ref(),
                ),
                None => continue,
            };
            self.probes.push(result);
        }
    }

    async fn sampling_probes(&mut self, sampling: &SamplingServices, keys: &BTreeMap<String, SeenKey>) {
        let arn = sampling.role_arn.as_str();
        let user = match sampling.sts.caller_identity().await {
            Ok(identity) => {
                self.probes.push(
                    ProbeResult::new(
                        ProbeKind::SamplingIdentity,
                        arn,
                        ProbeStatus::Pass,
                        format!("sampling acts as {}", identity.arn),
                    )
                    .detail("arn", identity.arn.clone()),
                );
                Some(identity.arn)
            }
            Err(err) => {
                self.probes.push(
                    ProbeResult::new(
                        ProbeKind::SamplingIdentity,
                        arn,
                        ProbeStatus::Fail,
                        format!("the sampling identity cannot act as {arn}: {}", err.kind.code()),
                    )
                    .evidence(sts_evidence(&err))
                    .problem(err.kind.code())
                    .remedy("The user's role must trust the connector (with the platform's ExternalId) or the web-identity provider; sampling never falls back to the connector's own identity.", None),
                );
                None
            }
        };
        let regions = BTreeMap::new();
        let region = self.services.region.clone();
        let mut sampling_calls = Vec::new();
        for key in keys.values() {
            if key.used_for() == "source" {
                sampling_calls.push(sampling_decrypt(
                    sampling,
                    key,
                    user.as_deref(),
                    &regions,
                    region.as_str(),
                ));
            }
        }
        let results: Vec<ProbeResult> = in_order(sampling_calls, self.options.concurrency.max(1)).await;
        self.probes.extend(results);
    }
}

impl Run<'_> {
    async fn sse_c_secret_probes(&mut self, identity: Option<&CallerIdentity>) {
        let mut seen: Vec<&String> = Vec::new();
        for id in &self.options.sse_c_key_secrets {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            let Some(secrets) = &self.services.secrets else {
                self.probes.push(skipped(ProbeKind::SseCKeySecret, id, "no Secrets Manager client"));
                continue;
            };
            // The value is dropped (and zeroized) at once: only readability matters here.
            let result = match secrets.secret_value(id).await {
                Ok(_) => ProbeResult::new(
                    ProbeKind::SseCKeySecret,
                    id,
                    ProbeStatus::Pass,
                    "the SSE-C key secret is readable (value not shown)",
                ),
                Err(message) => {
                    let statement = allow(
                        "ReadSseCKeySecrets",
                        &["secretsmanager:GetSecretValue"],
                        &secret_resource(id, identity, &self.services.region),
                    );
                    ProbeResult::new(
                        ProbeKind::SseCKeySecret,
                        id,
                        ProbeStatus::Fail,
                        format!("cannot read the SSE-C key secret {id}"),
                    )
                    .evidence(Evidence {
                        error_code: message.split(": ").nth(1).map(str::to_string),
                        message,
                        http_status: None,
                    })
                    .problem("SSE_C_KEY_SECRET_UNREADABLE")
                    .remedy(
                        format!(
                            "Allow {} secretsmanager:GetSecretValue on the secret (and kms:Decrypt on its KMS key when it is a customer managed key); `s3-connector policy` adds it with `sse_c_key_secrets`.",
                            who(identity.map(|i| i.arn.as_str()))
                        ),
                        Some(&statement),
                    )
                }
            };
            self.probes.push(result);
        }
    }
}

/// The IAM resource of a secret named by `id`: its ARN, or — for a name — the ARN pattern with
/// AWS's random 6-character suffix (`-??????`) in the caller's account and region.
fn secret_resource(id: &str, identity: Option<&CallerIdentity>, region: &str) -> String {
    if id.starts_with("arn:") {
        return id.to_string();
    }
    let (partition, account) = identity
        .and_then(|i| {
            let mut parts = i.arn.split(':');
            Some((parts.nth(1)?.to_string(), i.account.clone()))
        })
        .unwrap_or_else(|| ("aws".into(), "*".into()));
    format!("arn:{partition}:secretsmanager:{region}:{account}:secret:{id}-??????")
}

async fn head_of<'a>(
    services: &CheckServices,
    bucket: &str,
    key: &'a str,
) -> (&'a str, Result<crate::aws::ObjectHead, AwsError>) {
    (key, services.store.head(bucket, key).await)
}

async fn describe(services: &CheckServices, id: String) -> (String, Result<KeyDetails, AwsError>) {
    let result = services.keys.key_details(&id).await;
    (id, result)
}

async fn sampling_decrypt(
    sampling: &SamplingServices,
    key: &SeenKey,
    user: Option<&str>,
    regions: &BTreeMap<String, String>,
    region: &str,
) -> ProbeResult {
    if user.is_none() {
        return skipped(ProbeKind::SamplingDecrypt, &key.arn, "the sampling identity is not usable")
            .key(key.arn.clone());
    }
    decrypt_probe(sampling.store.as_ref(), ProbeKind::SamplingDecrypt, key, user, regions, region).await
}

async fn decrypt_probe(
    store: &dyn ObjectStore,
    kind: ProbeKind,
    key: &SeenKey,
    principal: Option<&str>,
    regions: &BTreeMap<String, String>,
    default_region: &str,
) -> ProbeResult {
    let probe = ProbeResult::new(kind, &key.arn, ProbeStatus::Pass, "")
        .key(key.arn.clone())
        .detail("used_for", key.used_for());
    let Some((bucket, object)) = &key.sample else {
        return ProbeResult {
            status: ProbeStatus::Skipped,
            summary: "no object encrypted under this key was found in the sampled listing".into(),
            ..probe
        };
    };
    let probe = probe.bucket(bucket).detail("object", object.clone());
    match store.get_range(bucket, object, ByteRange::Head(1), 1).await {
        Ok(_) => ProbeResult { summary: format!("S3 decrypted 1 byte of s3://{bucket}/{object}"), ..probe },
        Err(err) => {
            let region = regions.get(bucket).map(String::as_str).unwrap_or(default_region);
            let problem = problems::object_problem(
                &err,
                &object_ctx(bucket, object, principal, Some(&key.arn), region),
            );
            with_problem(
                ProbeResult { status: ProbeStatus::Fail, summary: problem.message.clone(), ..probe },
                &problem,
                &err,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_connector_domain::model::ObjectMeta;

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta { key: key.into(), size, last_modified_ms: None, etag: None, storage_class: None }
    }

    #[test]
    fn samples_go_round_robin_over_folders() {
        let objects: Vec<ObjectMeta> = ["a/1", "a/2", "a/3", "b/1", "c/", "c/1", "d/empty"]
            .iter()
            .map(|k| meta(k, if k.ends_with("empty") { 0 } else { 5 }))
            .collect();
        assert_eq!(sample_keys(&objects, 3), vec!["a/1", "b/1", "c/1"]);
        assert_eq!(sample_keys(&objects, 10), vec!["a/1", "b/1", "c/1", "a/2", "a/3"]);
        assert!(sample_keys(&objects, 0).is_empty());
        assert_eq!(parent_of("x.csv"), "");
    }
}
