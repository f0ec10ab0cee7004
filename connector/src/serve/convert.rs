//! Requests into library types, validated: every refusal names the request field at fault.

use std::time::Duration;

use globset::Glob;
use s3_connector_domain::dataset::PathTemplate;
use s3_connector_domain::policy::{
    self, InventorySetup, LambdaSetup, PolicySetup, ReportEncryption, SourceBucket,
};
use s3_connector_domain::schema::InferenceLimits;
use s3_connector_proto::v1 as pb;

use super::config::{ConnectionSection, LimitsSection};
use super::status::{ServiceError, from_config_error};
use crate::aws::ConnectionSettings;
use crate::aws::config::{validate_external_id, validate_role_arn};
use crate::extract::targets::parse_targets;
use crate::extract::{ExtractLimits, ExtractScope};

fn non_empty(s: &str) -> Option<String> {
    (!s.trim().is_empty()).then(|| s.trim().to_string())
}

fn normalized_endpoint(e: &str) -> String {
    e.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The connection a request asks for, over the server's defaults.
/// The inventory of an `ExtractIncrementalRequest`; errors name the field.
pub fn inventory_spec(
    inventory: Option<&pb::InventoryLocation>,
) -> Result<crate::incremental::InventorySpec, ServiceError> {
    use crate::incremental::InventorySpec;
    let inv = inventory.ok_or_else(|| ServiceError::invalid("inventory", "required"))?;
    for (field, bucket) in [
        ("inventory.destination_bucket", &inv.destination_bucket),
        ("inventory.source_bucket", &inv.source_bucket),
    ] {
        if !crate::extract::targets::is_valid_bucket_name(bucket) {
            return Err(ServiceError::invalid(field, format!("'{bucket}' is not a valid bucket name")));
        }
    }
    if inv.configuration_id.contains('/') {
        return Err(ServiceError::invalid("inventory.configuration_id", "must not contain '/'"));
    }
    let report = (!inv.report_timestamp.is_empty()).then(|| inv.report_timestamp.clone());
    if let Some(stamp) = &report {
        let probe = format!("p/b/c/{stamp}/manifest.json");
        if s3_connector_domain::inventory::ReportLocation::parse(&probe).is_err() || stamp.contains('/') {
            return Err(ServiceError::invalid(
                "inventory.report_timestamp",
                format!("'{stamp}' is not a YYYY-MM-DDTHH-MMZ report folder"),
            ));
        }
    }
    Ok(InventorySpec {
        destination_bucket: inv.destination_bucket.clone(),
        destination_prefix: InventorySpec::normalise_prefix(&inv.destination_prefix),
        source_bucket: inv.source_bucket.clone(),
        configuration_id: (!inv.configuration_id.is_empty()).then(|| inv.configuration_id.clone()),
        report_timestamp: report,
    })
}

/// Connection settings of a request, over the server's defaults; errors name the field.
pub fn connection_settings(
    request: Option<&pb::ConnectionSettings>,
    defaults: &ConnectionSection,
) -> Result<ConnectionSettings, ServiceError> {
    let empty = pb::ConnectionSettings::default();
    let req = request.unwrap_or(&empty);

    let endpoint_url = match non_empty(&req.endpoint_url) {
        None => defaults.endpoint_url.clone(),
        Some(e) => {
            let wanted = normalized_endpoint(&e);
            let allowed = defaults
                .endpoint_url
                .iter()
                .chain(defaults.allowed_endpoints.iter())
                .any(|a| normalized_endpoint(a) == wanted);
            if !allowed {
                return Err(ServiceError::EndpointNotAllowed { endpoint: e });
            }
            Some(e)
        }
    };
    let force_path_style = match req.path_style.trim().to_ascii_uppercase().as_str() {
        "" | "AUTO" => None,
        "ON" => Some(true),
        "OFF" => Some(false),
        other => {
            return Err(ServiceError::invalid(
                "connection.path_style",
                format!("'{other}' is not one of AUTO, ON, OFF"),
            ));
        }
    };
    let (role_arn, external_id) = match non_empty(&req.role_arn) {
        Some(arn) => {
            validate_role_arn(&arn).map_err(from_config_error)?;
            (Some(arn), non_empty(&req.external_id))
        }
        None => {
            if non_empty(&req.external_id).is_some() {
                return Err(ServiceError::invalid("connection.external_id", "needs connection.role_arn"));
            }
            if non_empty(&req.session_name).is_some() || req.session_duration_seconds != 0 {
                return Err(ServiceError::invalid(
                    "connection.session_name",
                    "session name and duration need connection.role_arn",
                ));
            }
            (defaults.role_arn.clone(), defaults.external_id.clone())
        }
    };
    if let Some(id) = &external_id {
        validate_external_id(id).map_err(from_config_error)?;
    }
    let session_name =
        role_arn.as_ref().map(|_| non_empty(&req.session_name).unwrap_or_else(|| "s3-connector".to_string()));
    let session_duration = match req.session_duration_seconds {
        0 => None,
        s if (900..=43_200).contains(&s) => Some(Duration::from_secs(u64::from(s))),
        s => {
            return Err(ServiceError::invalid(
                "connection.session_duration_seconds",
                format!("{s} is outside 900..=43200 seconds"),
            ));
        }
    };
    let region = match non_empty(&req.region) {
        Some(r) if !is_region_like(&r) => {
            return Err(ServiceError::invalid(
                "connection.region",
                format!("'{r}' is not a region code such as us-east-1"),
            ));
        }
        Some(r) => Some(r),
        None => defaults.region.clone(),
    };
    Ok(ConnectionSettings {
        region,
        endpoint_url,
        force_path_style,
        role_arn,
        external_id,
        session_name,
        session_duration,
        max_attempts: match req.max_attempts {
            0 => defaults.max_attempts,
            n => n.min(20),
        },
    })
}

/// Region codes are lowercase letters, digits and hyphens (`us-east-1`, `eu-central-2`); the
/// check keeps request text out of hostnames.
fn is_region_like(r: &str) -> bool {
    (4..=32).contains(&r.len())
        && r.contains('-')
        && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The scope of an extraction.
pub fn extract_scope(scope: Option<&pb::ExtractScope>) -> Result<ExtractScope, ServiceError> {
    let Some(scope) = scope else {
        return Err(ServiceError::invalid("scope", "required: at least one target bucket"));
    };
    if scope.targets.is_empty() {
        return Err(ServiceError::invalid("scope.targets", "at least one bucket or s3:// URI is required"));
    }
    let targets = parse_targets(&scope.targets)
        .map_err(|e| ServiceError::invalid(format!("scope.targets[{}]", e.index), e.to_string()))?;
    for (name, globs) in [("scope.include", &scope.include), ("scope.exclude", &scope.exclude)] {
        for (i, g) in globs.iter().enumerate() {
            Glob::new(g).map_err(|e| {
                ServiceError::invalid(format!("{name}[{i}]"), format!("invalid glob '{g}': {e}"))
            })?;
        }
    }
    for (i, t) in scope.templates.iter().enumerate() {
        PathTemplate::parse(t)
            .map_err(|e| ServiceError::invalid(format!("scope.templates[{i}]"), e.to_string()))?;
    }
    Ok(ExtractScope {
        targets,
        include: scope.include.clone(),
        exclude: scope.exclude.clone(),
        templates: scope.templates.clone(),
    })
}

fn pick(requested: u64, default: u64, max: u64) -> u64 {
    if requested == 0 { default } else { requested.min(max.max(1)) }
}

/// Limits: unset fields take the server defaults, others are clamped to its maximums.
pub fn extract_limits(request: Option<&pb::ExtractLimits>, server: &LimitsSection) -> ExtractLimits {
    let empty = pb::ExtractLimits::default();
    let r = request.unwrap_or(&empty);
    let as_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    ExtractLimits {
        listing_concurrency: as_usize(pick(
            r.listing_concurrency.into(),
            server.listing_concurrency.into(),
            server.max_listing_concurrency.into(),
        )),
        listing_split_after_pages: as_usize(server.listing_split_after_pages.into()).max(1),
        listing_page_size: None,
        inference_concurrency: as_usize(pick(
            r.inference_concurrency.into(),
            server.inference_concurrency.into(),
            server.max_inference_concurrency.into(),
        )),
        schema_files: as_usize(pick(
            r.schema_files.into(),
            server.schema_files.into(),
            server.max_schema_files.into(),
        )),
        schema_candidates: as_usize(pick(
            r.schema_candidates.into(),
            server.schema_candidates.into(),
            server.max_schema_files.into(),
        )),
        encryption_probes: match r.encryption_probes {
            None => server.encryption_probes as usize,
            Some(n) => n.min(server.max_encryption_probes) as usize,
        },
        inference: InferenceLimits {
            max_read_bytes: pick(r.max_read_bytes, server.max_read_bytes, server.max_read_bytes_limit)
                .max(1024),
            max_decompressed_bytes: pick(
                r.max_decompressed_bytes,
                server.max_decompressed_bytes,
                server.max_decompressed_bytes_limit,
            )
            .max(1024),
            max_records: as_usize(pick(
                r.max_records.into(),
                server.max_records.into(),
                server.max_records_limit.into(),
            )),
            ..InferenceLimits::default()
        },
    }
}

/// The limits as the contract reports them.
pub fn limits_message(l: &ExtractLimits) -> pb::ExtractLimits {
    let to_u32 = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    pb::ExtractLimits {
        listing_concurrency: to_u32(l.listing_concurrency),
        inference_concurrency: to_u32(l.inference_concurrency),
        schema_files: to_u32(l.schema_files),
        schema_candidates: to_u32(l.schema_candidates),
        encryption_probes: Some(to_u32(l.encryption_probes)),
        max_read_bytes: l.inference.max_read_bytes,
        max_decompressed_bytes: l.inference.max_decompressed_bytes,
        max_records: to_u32(l.inference.max_records),
    }
}

/// A policy setup from the request.
pub fn policy_setup(request: Option<&pb::PolicySetup>) -> Result<PolicySetup, ServiceError> {
    let Some(s) = request else {
        return Err(ServiceError::invalid("setup", "required"));
    };
    Ok(PolicySetup {
        partition: non_empty(&s.partition).unwrap_or_else(|| "aws".to_string()),
        account_id: s.account_id.clone(),
        region: s.region.clone(),
        connector_role_name: s.connector_role_name.clone(),
        trusted_principal: s.trusted_principal.clone(),
        external_id: s.external_id.clone(),
        source_buckets: s
            .source_buckets
            .iter()
            .map(|b| SourceBucket { name: b.name.clone(), kms_key_arn: non_empty(&b.kms_key_arn) })
            .collect(),
        inventory: s.inventory.as_ref().map(|i| InventorySetup {
            destination_bucket: i.destination_bucket.clone(),
            destination_prefix: i.destination_prefix.clone(),
            report_encryption: match non_empty(&i.report_kms_key_arn) {
                Some(key_arn) => ReportEncryption::SseKms { key_arn },
                None => ReportEncryption::SseS3,
            },
        }),
        forwarding_lambda: s.forwarding_lambda.as_ref().map(|l| LambdaSetup {
            role_name: l.role_name.clone(),
            function_name: non_empty(&l.function_name),
            destination_bucket: l.destination_bucket.clone(),
            destination_prefix: l.destination_prefix.clone(),
            destination_key_arn: non_empty(&l.destination_key_arn),
        }),
        sampling_principals: s.sampling_principals.clone(),
        sse_c_key_secrets: s.sse_c_key_secrets.clone(),
    })
}

/// Policy errors name the field inside `setup`. The proto flattens the report encryption into
/// `inventory.report_kms_key_arn`, so that path is translated.
pub fn from_policy_error(e: policy::PolicyError) -> ServiceError {
    let field = e
        .field()
        .replace("inventory.report_encryption.key_arn", "inventory.report_kms_key_arn")
        .replace("inventory.report_encryption", "inventory.report_kms_key_arn");
    ServiceError::invalid(format!("setup.{field}"), format!("{e} [{}]", e.code()))
}

/// A user identity from the request (`None` when absent), validated.
pub fn user_identity(
    request: Option<&pb::UserIdentity>,
    field: &str,
) -> Result<Option<crate::aws::identity::UserIdentity>, ServiceError> {
    use crate::aws::identity::{UserIdentity, WebIdentityToken};
    use pb::user_identity::Identity;
    let Some(identity) = request.and_then(|u| u.identity.as_ref()) else {
        return Ok(None);
    };
    let session = |s: &str| non_empty(s).unwrap_or_else(|| "s3-connector-sample".to_string());
    let identity = match identity {
        Identity::Role(r) => {
            validate_role_arn(&r.role_arn)
                .map_err(|e| ServiceError::invalid(format!("{field}.role.role_arn"), e.to_string()))?;
            if let Some(id) = non_empty(&r.external_id) {
                validate_external_id(&id)
                    .map_err(|e| ServiceError::invalid(format!("{field}.role.external_id"), e.to_string()))?;
            }
            UserIdentity::Role {
                role_arn: r.role_arn.clone(),
                external_id: non_empty(&r.external_id),
                session_name: session(&r.session_name),
            }
        }
        Identity::WebIdentity(w) => {
            validate_role_arn(&w.role_arn).map_err(|e| {
                ServiceError::invalid(format!("{field}.web_identity.role_arn"), e.to_string())
            })?;
            if w.token.trim().is_empty() {
                return Err(ServiceError::invalid(format!("{field}.web_identity.token"), "empty token"));
            }
            UserIdentity::WebIdentity {
                role_arn: w.role_arn.clone(),
                token: WebIdentityToken::new(w.token.clone()),
                session_name: session(&w.session_name),
            }
        }
    };
    Ok(Some(identity))
}

/// `s3://bucket/key` or `s3://bucket/prefix/` of a sample request.
pub fn sample_uri(uri: &str) -> Result<(String, String), ServiceError> {
    crate::extract::targets::split_s3_uri(uri)
        .map(|(bucket, key)| (bucket.to_string(), key.to_string()))
        .ok_or_else(|| {
            ServiceError::invalid(
                "uri",
                "expected s3://bucket/key or s3://bucket/prefix/ with a valid bucket name",
            )
        })
}

/// Sampling options of a request, within the server's row maximum.
pub fn sample_options(
    req: &pb::SampleRowsRequest,
    max_rows: u32,
) -> Result<crate::sample::SampleOptions, ServiceError> {
    use s3_connector_domain::sample::{SampleLimits, SampleMode};
    let mode = match req.mode.trim().to_ascii_uppercase().as_str() {
        "" | "HEAD" => SampleMode::Head,
        "RANDOM" => SampleMode::Random { seed: rand::random() },
        other => return Err(ServiceError::invalid("mode", format!("'{other}' is not HEAD or RANDOM"))),
    };
    if req.max_rows > max_rows {
        return Err(ServiceError::invalid(
            "max_rows",
            format!("at most {max_rows} rows (sampling.max_rows)"),
        ));
    }
    let rows = if req.max_rows == 0 { 100.min(max_rows) } else { req.max_rows };
    Ok(crate::sample::SampleOptions {
        columns: req.columns.clone(),
        mode,
        limits: SampleLimits {
            max_rows: rows as usize,
            max_value_bytes: if req.max_value_bytes == 0 { 1024 } else { req.max_value_bytes as usize },
        },
        ..crate::sample::SampleOptions::default()
    })
}

/// A sampling failure as the service's error (problem code, key ARN, principal).
pub fn from_sample_failure(
    failure: crate::sample::SampleFailure,
    bucket: &str,
    key: &str,
    principal: Option<&str>,
) -> ServiceError {
    use crate::sample::SampleFailure;
    let resource = format!("s3://{bucket}/{key}");
    match failure {
        SampleFailure::Denied(problem) => {
            let mut message = problem.message.clone();
            if let Some(fix) = problem.remediation.as_ref().and_then(|r| r.policy_statement.as_ref()) {
                message.push_str(&format!(" Statement the user needs: {fix}"));
            }
            ServiceError::Sample {
                code: problem.code,
                message,
                resource: problem.key.clone().map(|k| format!("s3://{bucket}/{k}")).unwrap_or(resource),
                kms_key_arn: problem.kms_key_arn.clone(),
                principal: problem.principal.clone().or(principal.map(str::to_string)),
            }
        }
        other => ServiceError::Sample {
            code: other.code(),
            message: other.to_string(),
            resource,
            kms_key_arn: None,
            principal: principal.map(str::to_string),
        },
    }
}

fn remediation_struct(text: &Option<String>) -> Option<pbjson_types::Struct> {
    text.as_deref()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        .and_then(|v| crate::output::records::json_to_struct(&v))
}

fn readiness_item(item: &crate::check::ReadinessItem) -> pb::ReadinessItem {
    pb::ReadinessItem { checked: item.checked, ready: item.ready, reasons: item.reasons.clone() }
}

/// The check report as the contract's response.
pub fn check_report(report: &crate::check::CheckReport) -> pb::CheckAccessResponse {
    pb::CheckAccessResponse {
        identity: report.identity.as_ref().map(|i| pb::CallerIdentity {
            account: i.account.clone(),
            arn: i.arn.clone(),
            user_id: i.user_id.clone(),
        }),
        probes: report
            .probes
            .iter()
            .map(|p| pb::ProbeResult {
                probe: p.probe.as_str().to_string(),
                resource: p.resource.clone(),
                status: p.status.as_str().to_string(),
                error_code: p.evidence.as_ref().and_then(|e| e.error_code.clone()).unwrap_or_default(),
                message: p.evidence.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
                kms_key_arn: p.key_arn.clone().unwrap_or_default(),
                details: p.details.clone().into_iter().collect(),
                problem_code: p.problem_code.clone().unwrap_or_default(),
                remediation: remediation_struct(&p.remediation),
                summary: p.summary.clone(),
                bucket: p.bucket.clone().unwrap_or_default(),
                http_status: p.evidence.as_ref().and_then(|e| e.http_status).map(u32::from).unwrap_or(0),
                remediation_summary: p.remediation_summary.clone().unwrap_or_default(),
            })
            .collect(),
        findings: report
            .findings
            .iter()
            .map(|f| pb::Finding {
                code: f.code.clone(),
                severity: match f.severity {
                    crate::check::FindingSeverity::Security => "SECURITY",
                    crate::check::FindingSeverity::Error => "ERROR",
                    crate::check::FindingSeverity::Warning => "WARNING",
                    crate::check::FindingSeverity::Info => "INFO",
                }
                .to_string(),
                resource: f.resource.clone(),
                message: f.message.clone(),
                remediation: remediation_struct(&f.remediation),
                buckets: f.buckets.clone(),
            })
            .collect(),
        readiness: Some(pb::Readiness {
            extraction: Some(readiness_item(&report.readiness.extraction)),
            incremental: Some(readiness_item(&report.readiness.incremental)),
            sampling: Some(readiness_item(&report.readiness.sampling)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ConnectionSection {
        ConnectionSection {
            endpoint_url: Some("http://127.0.0.1:4566".into()),
            allowed_endpoints: vec!["http://minio.internal:9000/".into()],
            ..ConnectionSection::default()
        }
    }

    fn field_of(e: ServiceError) -> String {
        match e {
            ServiceError::InvalidArgument { field, .. } => field,
            other => panic!("not an invalid argument: {other}"),
        }
    }

    #[test]
    fn empty_connection_takes_the_server_defaults() {
        let s = connection_settings(None, &defaults()).unwrap();
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(s.role_arn, None);
        assert_eq!(s.max_attempts, 5);
    }

    #[test]
    fn each_malformed_field_is_named() {
        let cases: Vec<(pb::ConnectionSettings, &str)> = vec![
            (
                pb::ConnectionSettings { role_arn: "arn:aws:s3:::bucket".into(), ..Default::default() },
                "connection.role_arn",
            ),
            (
                pb::ConnectionSettings {
                    role_arn: "arn:aws:iam::123456789012:role/r".into(),
                    external_id: "has space".into(),
                    ..Default::default()
                },
                "connection.external_id",
            ),
            (
                pb::ConnectionSettings { external_id: "abc".into(), ..Default::default() },
                "connection.external_id",
            ),
            (
                pb::ConnectionSettings {
                    role_arn: "arn:aws:iam::123456789012:role/r".into(),
                    session_duration_seconds: 60,
                    ..Default::default()
                },
                "connection.session_duration_seconds",
            ),
            (
                pb::ConnectionSettings { path_style: "sideways".into(), ..Default::default() },
                "connection.path_style",
            ),
            (pb::ConnectionSettings { region: "US EAST".into(), ..Default::default() }, "connection.region"),
        ];
        for (req, field) in cases {
            assert_eq!(field_of(connection_settings(Some(&req), &defaults()).unwrap_err()), field);
        }
    }

    #[test]
    fn only_allowed_endpoints_are_accepted() {
        let ok = pb::ConnectionSettings {
            endpoint_url: "http://MINIO.internal:9000".into(),
            ..Default::default()
        };
        assert!(connection_settings(Some(&ok), &defaults()).is_ok());
        let bad =
            pb::ConnectionSettings { endpoint_url: "http://attacker.example".into(), ..Default::default() };
        assert!(matches!(
            connection_settings(Some(&bad), &defaults()),
            Err(ServiceError::EndpointNotAllowed { .. })
        ));
    }

    #[test]
    fn scope_errors_name_the_index() {
        let scope = pb::ExtractScope {
            targets: vec!["good-bucket".into(), "Bad_Bucket".into()],
            ..Default::default()
        };
        assert_eq!(field_of(extract_scope(Some(&scope)).unwrap_err()), "scope.targets[1]");
        let scope = pb::ExtractScope {
            targets: vec!["good-bucket".into()],
            exclude: vec!["a/[".into()],
            ..Default::default()
        };
        assert_eq!(field_of(extract_scope(Some(&scope)).unwrap_err()), "scope.exclude[0]");
        assert_eq!(field_of(extract_scope(None).unwrap_err()), "scope");
        assert_eq!(field_of(extract_scope(Some(&pb::ExtractScope::default())).unwrap_err()), "scope.targets");
    }

    #[test]
    fn limits_default_and_clamp() {
        let server = LimitsSection::default();
        let l = extract_limits(None, &server);
        assert_eq!(l.listing_concurrency, 8);
        assert_eq!(l.encryption_probes, 1);
        let asked = pb::ExtractLimits {
            listing_concurrency: 10_000,
            encryption_probes: Some(0),
            ..Default::default()
        };
        let l = extract_limits(Some(&asked), &server);
        assert_eq!(l.listing_concurrency, 32);
        assert_eq!(l.encryption_probes, 0, "0 disables the survey when set explicitly");
    }

    #[test]
    fn policy_errors_point_into_the_setup() {
        let mut setup = pb::PolicySetup {
            account_id: "123".into(),
            region: "us-east-1".into(),
            connector_role_name: "catalog".into(),
            trusted_principal: "111122223333".into(),
            external_id: "ext-id-1234".into(),
            source_buckets: vec![pb::PolicySourceBucket {
                name: "data-bucket".into(),
                kms_key_arn: String::new(),
            }],
            ..Default::default()
        };
        let err = policy::generate(&policy_setup(Some(&setup)).unwrap()).unwrap_err();
        assert_eq!(field_of(from_policy_error(err)), "setup.account_id");
        setup.account_id = "123456789012".into();
        assert!(policy::generate(&policy_setup(Some(&setup)).unwrap()).is_ok());
        setup.sse_c_key_secrets = vec!["arn:aws:secretsmanager:us-east-1:123456789012:secret:k".into()];
        let docs = policy::generate(&policy_setup(Some(&setup)).unwrap()).unwrap();
        assert!(docs.connector_identity_policy.to_string().contains("secretsmanager:GetSecretValue"));
        setup.sse_c_key_secrets = vec!["not-an-arn".into()];
        let err = policy::generate(&policy_setup(Some(&setup)).unwrap()).unwrap_err();
        assert_eq!(field_of(from_policy_error(err)), "setup.sse_c_key_secrets[0]");
    }
}
