//! `check` against replayed AWS responses for what no emulator enforces (kms:Decrypt denied on
//! GetObject, a key policy without the S3 Inventory statement, STS trust failures), and proof
//! that a user identity never falls back to the service identity.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use s3_connector::aws::control::{BucketControl, InventoryConfig, KeyDetails, KeyInspector, SdkKeyInspector};
use s3_connector::aws::identity::{
    AssumeRoleRequest, AssumedRole, CallerIdentity, SdkSecurityTokenService, SecurityTokenService, StsError,
    StsErrorKind, UserIdentity, WebIdentityToken,
};
use s3_connector::aws::{
    AwsContext, AwsError, AwsErrorKind, ByteRange, DefaultEncryptionRule, ListPage, ListRequest, ObjectHead,
    ObjectStore, RangeRead, RequestStats, ResponseEncryption, SdkObjectStore,
};
use s3_connector::check::{
    CheckOptions, CheckScope, CheckServices, ProbeKind, ProbeStatus, RoleProbe, run_check,
};
use s3_connector::extract::BucketTarget;
use s3_connector_domain::model::ObjectMeta;

const ACCOUNT: &str = "111122223333";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const BUCKET: &str = "sales-data";

fn request(uri: &str) -> http::Request<SdkBody> {
    http::Request::builder().uri(uri).body(SdkBody::empty()).unwrap()
}

fn response(status: u16, content_type: &str, body: &str) -> http::Response<SdkBody> {
    http::Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(SdkBody::from(body.to_string()))
        .unwrap()
}

fn sdk_config(http: StaticReplayClient) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            Credentials::for_tests(),
        ))
        .endpoint_url("http://127.0.0.1:1")
        .http_client(http)
        .build()
}

// ---- fakes for the seams a replay test does not exercise -------------------------------

struct FakeStore {
    objects: Vec<(String, Option<String>)>,
    get_error: Option<AwsError>,
}

#[async_trait]
impl ObjectStore for FakeStore {
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError> {
        let objects = if request.bucket == BUCKET {
            self.objects
                .iter()
                .map(|(k, _)| ObjectMeta {
                    key: k.clone(),
                    size: 10,
                    last_modified_ms: None,
                    etag: None,
                    storage_class: None,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(ListPage { objects, common_prefixes: Vec::new(), next: None })
    }
    async fn get_range(&self, _: &str, _: &str, _: ByteRange, _: u64) -> Result<RangeRead, AwsError> {
        match &self.get_error {
            Some(e) => Err(e.clone()),
            None => Ok(RangeRead {
                bytes: bytes::Bytes::from_static(b"x"),
                start: 0,
                object_size: 10,
                encryption: ResponseEncryption::default(),
            }),
        }
    }
    async fn head(&self, _: &str, key: &str) -> Result<ObjectHead, AwsError> {
        let kms = self.objects.iter().find(|(k, _)| k == key).and_then(|(_, kms)| kms.clone());
        Ok(ObjectHead {
            size: 10,
            encryption: ResponseEncryption {
                sse: Some(if kms.is_some() { "aws:kms" } else { "AES256" }.into()),
                kms_key_id: kms,
                ..Default::default()
            },
        })
    }
    async fn bucket_encryption(&self, _: &str) -> Result<Option<DefaultEncryptionRule>, AwsError> {
        Ok(Some(DefaultEncryptionRule {
            sse_algorithm: "aws:kms".into(),
            kms_master_key_id: Some(KEY.into()),
            bucket_key_enabled: true,
        }))
    }
}

struct FakeBuckets {
    inventory: Vec<InventoryConfig>,
    region: &'static str,
}

#[async_trait]
impl BucketControl for FakeBuckets {
    async fn bucket_region(&self, _: &str) -> Result<String, AwsError> {
        Ok(self.region.into())
    }
    async fn inventory_configurations(&self, _: &str) -> Result<Vec<InventoryConfig>, AwsError> {
        Ok(self.inventory.clone())
    }
    async fn inventory_configuration(&self, _: &str, id: &str) -> Result<Option<InventoryConfig>, AwsError> {
        Ok(self.inventory.iter().find(|c| c.id == id).cloned())
    }
    async fn bucket_policy(&self, _: &str) -> Result<Option<String>, AwsError> {
        Ok(None)
    }
}

struct FakeKeys;

#[async_trait]
impl KeyInspector for FakeKeys {
    async fn key_details(&self, key_id: &str) -> Result<KeyDetails, AwsError> {
        Ok(KeyDetails {
            arn: key_id.to_string(),
            state: "Enabled".into(),
            manager: "CUSTOMER".into(),
            key_spec: "SYMMETRIC_DEFAULT".into(),
            key_usage: "ENCRYPT_DECRYPT".into(),
            deletion_date: None,
        })
    }
    async fn key_policy(&self, _: &str) -> Result<String, AwsError> {
        Ok(r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"s3.amazonaws.com"},"Action":"kms:GenerateDataKey","Resource":"*","Condition":{"StringEquals":{"aws:SourceAccount":"111122223333"},"ArnLike":{"aws:SourceArn":"arn:aws:s3:::sales-data"}}}]}"#.into())
    }
}

/// STS that answers AssumeRole from a script: `with` the ExternalId, and without it.
struct FakeSts {
    with_external_id: Result<(), StsErrorKind>,
    without_external_id: Result<(), StsErrorKind>,
    calls: Mutex<Vec<bool>>,
}

fn sts_error(kind: StsErrorKind, code: &str) -> StsError {
    StsError {
        role_arn: None,
        kind,
        error: AwsError {
            operation: "sts:AssumeRole",
            bucket: None,
            resource: None,
            kind: AwsErrorKind::AccessDenied,
            code: Some(code.into()),
            message: Some(
                "User: arn:aws:iam::444455556666:user/vendor is not authorized to perform: sts:AssumeRole"
                    .into(),
            ),
            status: Some(403),
        },
    }
}

#[async_trait]
impl SecurityTokenService for FakeSts {
    async fn caller_identity(&self) -> Result<CallerIdentity, StsError> {
        Ok(CallerIdentity {
            account: ACCOUNT.into(),
            arn: format!("arn:aws:sts::{ACCOUNT}:assumed-role/reader/s3-connector"),
            user_id: "AROA:s3-connector".into(),
        })
    }
    async fn assume_role(&self, request: &AssumeRoleRequest) -> Result<AssumedRole, StsError> {
        self.calls.lock().unwrap().push(request.external_id.is_some());
        let outcome =
            if request.external_id.is_some() { self.with_external_id } else { self.without_external_id };
        outcome
            .map(|_| AssumedRole {
                assumed_role_arn: "arn:aws:sts::1:assumed-role/reader/s".into(),
                expiration: None,
            })
            .map_err(|kind| sts_error(kind, "AccessDenied"))
    }
}

fn fake_sts(with: Result<(), StsErrorKind>, without: Result<(), StsErrorKind>) -> Arc<FakeSts> {
    Arc::new(FakeSts { with_external_id: with, without_external_id: without, calls: Mutex::new(Vec::new()) })
}

fn services(
    store: Arc<dyn ObjectStore>,
    keys: Arc<dyn KeyInspector>,
    inventory: Vec<InventoryConfig>,
) -> CheckServices {
    CheckServices {
        store,
        buckets: Arc::new(FakeBuckets { inventory, region: "us-east-1" }),
        keys,
        sts: fake_sts(Ok(()), Ok(())),
        base_sts: None,
        sampling: None,
        secrets: None,
        region: "us-east-1".into(),
    }
}

fn scope() -> CheckScope {
    CheckScope { targets: vec![BucketTarget { bucket: BUCKET.into(), prefixes: Vec::new() }] }
}

fn options() -> CheckOptions {
    CheckOptions { concurrency: 1, objects_per_bucket: 4, ..CheckOptions::default() }
}

fn inventory(key: &str) -> InventoryConfig {
    InventoryConfig {
        id: "daily".into(),
        enabled: true,
        destination_bucket: "inventory-reports".into(),
        destination_account: Some(ACCOUNT.into()),
        destination_prefix: Some("inv".into()),
        format: "CSV".into(),
        frequency: "Daily".into(),
        included_versions: "Current".into(),
        encryption: "SSE_KMS".into(),
        encryption_key_id: Some(key.into()),
        optional_fields: Vec::new(),
    }
}

fn probe(
    report: &s3_connector::check::CheckReport,
    kind: ProbeKind,
) -> Vec<&s3_connector::check::ProbeResult> {
    report.probes.iter().filter(|p| p.probe == kind).collect()
}

// ---- the replays ------------------------------------------------------------------------

#[tokio::test]
async fn kms_decrypt_denied_on_get_object_fails_the_decrypt_probe_with_the_statement() {
    // The recorded AWS answer to a GetObject whose caller lacks kms:Decrypt (reference §3.6).
    let denied = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::111122223333:assumed-role/reader/s3-connector is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:Decrypt action</Message><RequestId>R1</RequestId></Error>"#;
    let http = StaticReplayClient::new(vec![ReplayEvent::new(
        request("http://127.0.0.1:1/sales-data/orders/part-0.csv"),
        response(403, "application/xml", denied),
    )]);
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config(http.clone())).force_path_style(true).build();
    let replayed =
        SdkObjectStore::new(aws_sdk_s3::Client::from_conf(conf), Arc::new(RequestStats::default()));
    // Listing and HEAD come from the fake; the GET goes over the wire and is denied.
    struct Split(FakeStore, SdkObjectStore);
    #[async_trait]
    impl ObjectStore for Split {
        async fn list_page(&self, r: &ListRequest) -> Result<ListPage, AwsError> {
            self.0.list_page(r).await
        }
        async fn get_range(&self, b: &str, k: &str, r: ByteRange, m: u64) -> Result<RangeRead, AwsError> {
            self.1.get_range(b, k, r, m).await
        }
        async fn head(&self, b: &str, k: &str) -> Result<ObjectHead, AwsError> {
            self.0.head(b, k).await
        }
        async fn bucket_encryption(&self, b: &str) -> Result<Option<DefaultEncryptionRule>, AwsError> {
            self.0.bucket_encryption(b).await
        }
    }
    let store = Split(
        FakeStore { objects: vec![("orders/part-0.csv".into(), Some(KEY.into()))], get_error: None },
        replayed,
    );
    let report =
        run_check(&services(Arc::new(store), Arc::new(FakeKeys), vec![inventory(KEY)]), &scope(), &options())
            .await
            .unwrap();

    let decrypt = probe(&report, ProbeKind::Decrypt);
    assert_eq!(decrypt.len(), 1, "one decrypt probe per distinct key");
    let d = decrypt[0];
    assert_eq!(d.status, ProbeStatus::Fail);
    assert_eq!(d.problem_code.as_deref(), Some("KMS_ACCESS_DENIED"));
    assert_eq!(d.key_arn.as_deref(), Some(KEY));
    assert_eq!(d.evidence.as_ref().and_then(|e| e.error_code.as_deref()), Some("AccessDenied"));
    let statement: serde_json::Value =
        serde_json::from_str(d.remediation.as_deref().expect("statement")).unwrap();
    assert_eq!(statement["Action"][0], "kms:Decrypt");
    assert_eq!(statement["Resource"], KEY);
    assert_eq!(statement["Condition"]["StringEquals"]["kms:ViaService"], "s3.us-east-1.amazonaws.com");
    assert!(!report.readiness.extraction.ready);
    assert!(
        report.readiness.extraction.reasons.iter().any(|r| r.starts_with("DECRYPT")),
        "{:?}",
        report.readiness
    );
    assert_eq!(http.actual_requests().count(), 1, "exactly the 1-byte GET went over the wire");
    let range = http.actual_requests().next().and_then(|r| r.headers().get("range").map(str::to_string));
    assert_eq!(range.as_deref(), Some("bytes=0-0"));
}

#[tokio::test]
async fn a_key_policy_without_the_s3_statement_fails_the_inventory_key_probe() {
    let describe = r#"{"KeyMetadata":{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","Arn":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","AWSAccountId":"111122223333","Enabled":true,"KeyState":"Enabled","KeyManager":"CUSTOMER","KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","CreationDate":1.7E9}}"#;
    // The default key policy: the account root only, no statement for s3.amazonaws.com.
    let policy = serde_json::json!({"Policy": serde_json::json!({"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":"kms:*","Resource":"*"}]}).to_string(), "PolicyName": "default"}).to_string();
    let http = StaticReplayClient::new(vec![
        ReplayEvent::new(
            request("http://127.0.0.1:1/"),
            response(200, "application/x-amz-json-1.1", describe),
        ),
        ReplayEvent::new(
            request("http://127.0.0.1:1/"),
            response(200, "application/x-amz-json-1.1", &policy),
        ),
    ]);
    let keys = SdkKeyInspector::new(
        aws_sdk_kms::Client::new(&sdk_config(http.clone())),
        Arc::new(RequestStats::default()),
    );
    let store = FakeStore { objects: Vec::new(), get_error: None };
    let report =
        run_check(&services(Arc::new(store), Arc::new(keys), vec![inventory(KEY)]), &scope(), &options())
            .await
            .unwrap();

    let describe = probe(&report, ProbeKind::DescribeKey);
    assert_eq!(describe.len(), 1);
    assert_eq!(describe[0].status, ProbeStatus::Pass, "{:?}", describe[0]);
    assert_eq!(describe[0].details.get("manager").map(String::as_str), Some("CUSTOMER"));
    let kp = probe(&report, ProbeKind::InventoryKeyPolicy);
    assert_eq!(kp.len(), 1);
    assert_eq!(kp[0].status, ProbeStatus::Fail);
    assert_eq!(kp[0].problem_code.as_deref(), Some("INVENTORY_KEY_POLICY_MISSING_S3"));
    let statement: serde_json::Value =
        serde_json::from_str(kp[0].remediation.as_deref().expect("statement")).unwrap();
    assert_eq!(statement["Principal"]["Service"], "s3.amazonaws.com");
    assert_eq!(statement["Action"], "kms:GenerateDataKey");
    assert_eq!(statement["Condition"]["StringEquals"]["aws:SourceAccount"], ACCOUNT);
    assert_eq!(statement["Condition"]["ArnLike"]["aws:SourceArn"], "arn:aws:s3:::sales-data");
    assert!(!report.readiness.incremental.ready);
    assert!(report.readiness.extraction.ready, "{:?}", report.readiness.extraction);
}

#[tokio::test]
async fn sts_errors_are_classified_from_recorded_bodies() {
    let body = |code: &str, message: &str| {
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
        )
    };
    let cases = [
        (
            403,
            "AccessDenied",
            "User: arn:aws:iam::444455556666:user/vendor is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/reader",
            StsErrorKind::NotTrusted,
        ),
        (
            403,
            "RegionDisabledException",
            "STS is not activated in this region for account:111122223333.",
            StsErrorKind::RegionDisabled,
        ),
        (
            400,
            "MalformedPolicyDocument",
            "The policy is not in the valid JSON format.",
            StsErrorKind::MalformedPolicy,
        ),
        (
            400,
            "PackedPolicyTooLarge",
            "Packed policy consumes 130% of allotted space",
            StsErrorKind::MalformedPolicy,
        ),
        (
            400,
            "ExpiredToken",
            "The security token included in the request is expired",
            StsErrorKind::ExpiredToken,
        ),
    ];
    let http = StaticReplayClient::new(
        cases
            .iter()
            .map(|(status, code, message, _)| {
                ReplayEvent::new(
                    request("http://127.0.0.1:1/"),
                    response(*status, "text/xml", &body(code, message)),
                )
            })
            .collect(),
    );
    let sts = SdkSecurityTokenService::new(
        aws_sdk_sts::Client::new(&sdk_config(http)),
        Arc::new(RequestStats::default()),
    );
    for (_, code, _, want) in cases {
        let err = sts
            .assume_role(&AssumeRoleRequest {
                role_arn: "arn:aws:iam::111122223333:role/reader".into(),
                external_id: Some("wrong-id".into()),
                session_name: "s3-connector".into(),
                duration: std::time::Duration::from_secs(900),
            })
            .await
            .expect_err(code);
        assert_eq!(err.kind, want, "{code}");
        assert_eq!(err.role_arn.as_deref(), Some("arn:aws:iam::111122223333:role/reader"));
        assert!(!err.to_string().contains("wrong-id"), "the ExternalId stays out of errors: {err}");
    }
}

#[tokio::test]
async fn a_wrong_external_id_is_a_trust_problem_and_stops_the_other_probes() {
    let mut services = services(
        Arc::new(FakeStore { objects: Vec::new(), get_error: None }),
        Arc::new(FakeKeys),
        Vec::new(),
    );
    let base = fake_sts(Err(StsErrorKind::NotTrusted), Err(StsErrorKind::NotTrusted));
    services.base_sts = Some(base.clone());
    let options = CheckOptions {
        role: Some(RoleProbe {
            role_arn: format!("arn:aws:iam::{ACCOUNT}:role/reader"),
            external_id: Some("customer-42".into()),
            session_name: "s3-connector".into(),
        }),
        ..options()
    };
    let report = run_check(&services, &scope(), &options).await.unwrap();
    let role = probe(&report, ProbeKind::RoleAssumption)[0];
    assert_eq!(role.status, ProbeStatus::Fail);
    assert_eq!(role.problem_code.as_deref(), Some("ROLE_NOT_TRUSTED"));
    let statement: serde_json::Value = serde_json::from_str(role.remediation.as_deref().unwrap()).unwrap();
    assert_eq!(statement["Condition"]["StringEquals"]["sts:ExternalId"], "customer-42");
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert_eq!(
        probe(&report, ProbeKind::ConfusedDeputy)[0].status,
        ProbeStatus::Pass,
        "refused without the id too"
    );
    assert_eq!(probe(&report, ProbeKind::ListBucket)[0].status, ProbeStatus::Skipped);
    assert!(!report.readiness.extraction.ready);
    assert_eq!(*base.calls.lock().unwrap(), vec![true, false], "with the ExternalId, then without");
}

#[tokio::test]
async fn a_role_assumable_without_the_external_id_is_a_security_finding() {
    let mut services = services(
        Arc::new(FakeStore { objects: Vec::new(), get_error: None }),
        Arc::new(FakeKeys),
        vec![inventory(KEY)],
    );
    services.base_sts = Some(fake_sts(Ok(()), Ok(())));
    let options = CheckOptions {
        role: Some(RoleProbe {
            role_arn: format!("arn:aws:iam::{ACCOUNT}:role/reader"),
            external_id: Some("customer-42".into()),
            session_name: "s3-connector".into(),
        }),
        ..options()
    };
    let report = run_check(&services, &scope(), &options).await.unwrap();
    let deputy = probe(&report, ProbeKind::ConfusedDeputy)[0];
    assert_eq!(deputy.status, ProbeStatus::Fail);
    let finding = report.findings.iter().find(|f| f.code == "CONFUSED_DEPUTY").expect("finding");
    let statement: serde_json::Value = serde_json::from_str(finding.remediation.as_deref().unwrap()).unwrap();
    assert_eq!(statement["Condition"]["StringEquals"]["sts:ExternalId"], "customer-42");
    assert_eq!(s3_connector::check::render::exit_code(&report), 10 + 8, "security bit only");
}

// ---- user identity: no fallback --------------------------------------------------------

/// The service identity as `AwsContext::load` builds it (time source, sleep, retry), with
/// static test credentials and the replay client.
async fn service_context(http: StaticReplayClient) -> AwsContext {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:1")
        .http_client(http)
        .load()
        .await;
    AwsContext { sdk, force_path_style: true }
}

#[tokio::test]
async fn a_user_role_that_cannot_be_assumed_never_falls_back_to_the_service_identity() {
    let denied = r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: arn:aws:sts::111122223333:assumed-role/reader/s3-connector is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/alice</Message></Error></ErrorResponse>"#;
    // Every request gets the STS denial: an S3 request signed with the service credentials
    // would show up in actual_requests() with the S3 path.
    let http = StaticReplayClient::new(
        (0..4)
            .map(|_| ReplayEvent::new(request("http://127.0.0.1:1/"), response(403, "text/xml", denied)))
            .collect(),
    );
    let user = UserIdentity::Role {
        role_arn: "arn:aws:iam::111122223333:role/alice".into(),
        external_id: Some("platform-ext".into()),
        session_name: "alice".into(),
    }
    .load(&service_context(http.clone()).await)
    .await
    .unwrap();
    let store = SdkObjectStore::new(user.s3_client(), Arc::new(RequestStats::default()));
    let err = store.get_range(BUCKET, "orders/part-0.csv", ByteRange::Head(1), 1).await.unwrap_err();
    assert_eq!(err.kind, AwsErrorKind::Credentials, "{err}");
    let sts = SdkSecurityTokenService::new(user.sts_client(), Arc::new(RequestStats::default()));
    let sts_err = sts.caller_identity().await.unwrap_err();
    assert_eq!(sts_err.kind, StsErrorKind::NotTrusted, "{sts_err}");
    let bodies: Vec<String> = http
        .actual_requests()
        .map(|r| r.body().bytes().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default())
        .collect();
    assert!(!bodies.is_empty());
    assert!(
        bodies.iter().all(|b| b.contains("Action=AssumeRole")),
        "only AssumeRole calls went out, never the S3 GET or GetCallerIdentity: {bodies:?}"
    );
}

#[tokio::test]
async fn a_rejected_web_identity_token_is_classified_and_nothing_is_signed_by_the_service() {
    let invalid = r#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>Couldn't retrieve verification key from your identity provider</Message></Error></ErrorResponse>"#;
    let http = StaticReplayClient::new(
        (0..4)
            .map(|_| ReplayEvent::new(request("http://127.0.0.1:1/"), response(400, "text/xml", invalid)))
            .collect(),
    );
    let user = UserIdentity::WebIdentity {
        role_arn: "arn:aws:iam::111122223333:role/alice".into(),
        token: WebIdentityToken::new("header.payload.signature"),
        session_name: "alice".into(),
    }
    .load(&service_context(http.clone()).await)
    .await
    .unwrap();
    let sts = SdkSecurityTokenService::new(user.sts_client(), Arc::new(RequestStats::default()));
    let err = sts.caller_identity().await.unwrap_err();
    assert_eq!(err.kind, StsErrorKind::InvalidIdentityToken, "{err}");
    assert!(!format!("{err} {err:?}").contains("header.payload.signature"), "the token stays out of errors");
    let requests: Vec<_> = http.actual_requests().collect();
    assert!(!requests.is_empty());
    for r in &requests {
        let body = r.body().bytes().map(|b| String::from_utf8_lossy(b).to_string()).unwrap_or_default();
        assert!(body.contains("Action=AssumeRoleWithWebIdentity"), "{body}");
        assert!(
            r.headers().get("authorization").is_none(),
            "AssumeRoleWithWebIdentity is unsigned: no service credentials used"
        );
    }
}

/// DescribeKey denied as moto and AWS deny it: a 403 whose body the SDK may not parse.
struct DeniedKeys;

#[async_trait]
impl KeyInspector for DeniedKeys {
    async fn key_details(&self, key_id: &str) -> Result<KeyDetails, AwsError> {
        Err(AwsError {
            operation: "kms:DescribeKey",
            bucket: None,
            resource: Some(key_id.into()),
            kind: AwsErrorKind::AccessDenied,
            code: None,
            message: None,
            status: Some(403),
        })
    }
    async fn key_policy(&self, key_id: &str) -> Result<String, AwsError> {
        self.key_details(key_id).await.map(|_| String::new())
    }
}

#[tokio::test]
async fn a_key_in_another_region_than_its_bucket_is_a_finding() {
    let mut services = services(
        Arc::new(FakeStore { objects: Vec::new(), get_error: None }),
        Arc::new(FakeKeys),
        Vec::new(),
    );
    services.buckets = Arc::new(FakeBuckets { inventory: Vec::new(), region: "eu-west-1" });
    let report = run_check(&services, &scope(), &options()).await.unwrap();
    let finding =
        report.findings.iter().find(|f| f.code == "KMS_KEY_REGION_MISMATCH").expect("region finding");
    assert_eq!(finding.buckets, vec![BUCKET.to_string()]);
    assert_eq!(finding.resource, KEY);
    assert!(
        finding.message.contains("eu-west-1") && finding.message.contains("us-east-1"),
        "{}",
        finding.message
    );
}

#[tokio::test]
async fn denied_describe_key_and_key_policy_give_a_statement_and_leave_delivery_unverified() {
    let services = services(
        Arc::new(FakeStore { objects: Vec::new(), get_error: None }),
        Arc::new(DeniedKeys),
        vec![inventory(KEY)],
    );
    let report = run_check(&services, &scope(), &options()).await.unwrap();
    let describe = probe(&report, ProbeKind::DescribeKey);
    assert_eq!(describe.len(), 1);
    assert_eq!(describe[0].status, ProbeStatus::Fail);
    assert_eq!(describe[0].problem_code.as_deref(), Some("KMS_DESCRIBE_KEY_DENIED"));
    let statement: serde_json::Value =
        serde_json::from_str(describe[0].remediation.as_deref().unwrap()).unwrap();
    assert_eq!(statement["Action"][0], "kms:DescribeKey");
    assert_eq!(statement["Resource"], KEY);
    let kp = probe(&report, ProbeKind::InventoryKeyPolicy);
    assert_eq!(kp[0].status, ProbeStatus::Skipped, "not permitted to read: unverified, not failed");
    assert!(
        kp[0].remediation.as_deref().unwrap_or("").contains("s3.amazonaws.com"),
        "the statement S3 needs is still given"
    );
    assert!(report.readiness.incremental.ready, "{:?}", report.readiness.incremental);
}

/// Secrets Manager with one readable secret; anything else is AccessDenied.
struct FakeSecrets;

#[async_trait]
impl s3_connector::aws::ssec::SecretSource for FakeSecrets {
    async fn secret_value(&self, secret_id: &str) -> Result<s3_connector::aws::ssec::SecretValue, String> {
        if secret_id == "team/sse-c" {
            Ok(s3_connector::aws::ssec::SecretValue::Text(zeroize::Zeroizing::new(
                "c2VjcmV0LWtleS12YWx1ZQ==".into(),
            )))
        } else {
            Err(format!("GetSecretValue failed: AccessDeniedException: not authorized to read {secret_id}"))
        }
    }
}

#[tokio::test]
async fn sse_c_key_secrets_are_probed_as_the_connector_and_a_denial_names_the_statement() {
    let mut services = services(
        Arc::new(FakeStore { objects: Vec::new(), get_error: None }),
        Arc::new(FakeKeys),
        Vec::new(),
    );
    services.secrets = Some(Arc::new(FakeSecrets));
    let options = CheckOptions {
        sse_c_key_secrets: vec!["team/sse-c".into(), "other/sse-c".into(), "team/sse-c".into()],
        ..options()
    };
    let report = run_check(&services, &scope(), &options).await.unwrap();
    let found = probe(&report, ProbeKind::SseCKeySecret);
    assert_eq!(found.len(), 2, "each secret once");
    assert_eq!((found[0].resource.as_str(), found[0].status), ("team/sse-c", ProbeStatus::Pass));
    let denied = found[1];
    assert_eq!(denied.status, ProbeStatus::Fail);
    assert_eq!(denied.problem_code.as_deref(), Some("SSE_C_KEY_SECRET_UNREADABLE"));
    assert_eq!(denied.evidence.as_ref().and_then(|e| e.error_code.as_deref()), Some("AccessDeniedException"));
    let statement: serde_json::Value = serde_json::from_str(denied.remediation.as_deref().unwrap()).unwrap();
    assert_eq!(statement["Action"], serde_json::json!(["secretsmanager:GetSecretValue"]));
    let resource = statement["Resource"].as_str().unwrap();
    assert!(
        resource.starts_with("arn:aws:secretsmanager:us-east-1:")
            && resource.ends_with(":secret:other/sse-c-??????"),
        "{resource}"
    );
    // SSE-C keys matter to sampling, not to extraction.
    assert!(!report.readiness.extraction.reasons.iter().any(|r| r.contains("SSE_C_KEY_SECRET")));
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("c2VjcmV0LWtleS12YWx1ZQ=="), "secret values never reported");
}
