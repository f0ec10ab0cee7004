//! The handler, called with S3 / SQS / SNS event fixtures, against real emulators.
//!
//! `scripts/test.sh` starts LocalStack and moto and exports `S3C_LOCALSTACK_ENDPOINT` and
//! `S3C_MOTO_ENDPOINT`; without them these tests fail (they never pass silently). Every test
//! uses its own buckets and keys, so they run in parallel. LocalStack enforces KMS key state
//! (a disabled key fails the copy), which moto does not; moto covers the plain forwarding path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use lambda_runtime::Diagnostic;
use s3_connector_domain::inventory::md5_reader::md5_hex;
use s3_connector_lambda::{
    AwsErrorKind, Config, ForwardError, Forwarder, InvocationReport, LatestPointer, Outcome, PointerUpdate,
    handle, response, run_invocation,
};
use serde_json::Value;

const PREFIX: &str = "inv reports/";
const CONFIG_ID: &str = "daily+full";
const DEST_PREFIX: &str = "forwarded/acme";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flavor {
    LocalStack,
    Moto,
}

fn endpoint(flavor: Flavor) -> String {
    let name = match flavor {
        Flavor::LocalStack => "S3C_LOCALSTACK_ENDPOINT",
        Flavor::Moto => "S3C_MOTO_ENDPOINT",
    };
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test.sh"))
}

async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A bucket name no other test (or earlier run against the same emulator) uses.
fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!(
        "lam-{tag}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// One test's world: an inventory bucket with reports, a destination bucket, a destination key.
struct World {
    s3: aws_sdk_s3::Client,
    kms: aws_sdk_kms::Client,
    inventory_bucket: String,
    dest_bucket: String,
    source_bucket: String,
    dest_key_arn: String,
    forwarder: Forwarder,
}

impl World {
    async fn new(flavor: Flavor, tag: &str) -> World {
        World::with_encryption(flavor, tag, None).await
    }

    /// `sse`: `Some("AES256")` for an SSE-S3 destination; `None` for SSE-KMS under a new key.
    async fn with_encryption(flavor: Flavor, tag: &str, sse: Option<&str>) -> World {
        let sdk = sdk_config(&endpoint(flavor)).await;
        let s3 = s3_client(&sdk);
        let kms = aws_sdk_kms::Client::new(&sdk);
        let inventory_bucket = unique(&format!("{tag}-inv"));
        let dest_bucket = unique(&format!("{tag}-dst"));
        for bucket in [&inventory_bucket, &dest_bucket] {
            s3.create_bucket().bucket(bucket).send().await.expect("create bucket");
        }
        let dest_key_arn = new_key(&kms, "destination key B").await;
        let mut vars =
            HashMap::from([("DEST_BUCKET", dest_bucket.clone()), ("DEST_PREFIX", DEST_PREFIX.to_string())]);
        match sse {
            Some(sse) => vars.insert("DEST_SSE", sse.to_string()),
            None => vars.insert("DEST_KMS_KEY_ARN", dest_key_arn.clone()),
        };
        let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("valid config");
        let forwarder = Forwarder::new(s3.clone(), config);
        World {
            s3,
            kms,
            inventory_bucket,
            dest_bucket,
            source_bucket: unique(&format!("{tag}-src")),
            dest_key_arn,
            forwarder,
        }
    }

    fn folder(&self, stamp: &str) -> String {
        format!("{PREFIX}{}/{CONFIG_ID}/{stamp}/", self.source_bucket)
    }

    fn dest_folder(&self, stamp: &str) -> String {
        format!("{DEST_PREFIX}/{}/{CONFIG_ID}/{stamp}/", self.source_bucket)
    }

    fn pointer_key(&self) -> String {
        format!("{DEST_PREFIX}/{}/{CONFIG_ID}/latest.json", self.source_bucket)
    }

    fn manifest(&self, creation_ms: i64) -> String {
        format!(
            r#"{{"sourceBucket":"{src}","destinationBucket":"arn:aws:s3:::{inv}","version":"2016-11-30",
"creationTimestamp":"{creation_ms}","fileFormat":"CSV",
"fileSchema":"Bucket, Key, Size, LastModifiedDate, EncryptionStatus",
"files":[{{"key":"{PREFIX}{src}/{CONFIG_ID}/data/0b1c.csv.gz","size":1234,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}}]}}"#,
            src = self.source_bucket,
            inv = self.inventory_bucket,
        )
    }

    /// Writes a report's two files (the checksum as S3 writes it: hex and a newline); returns
    /// the manifest's MD5. `report_key`: SSE-KMS key of the report itself, if any.
    async fn put_report(
        &self,
        stamp: &str,
        manifest: &str,
        checksum: Option<&str>,
        report_key: Option<&str>,
    ) -> String {
        let md5 = md5_hex(manifest.as_bytes());
        let checksum_text = checksum.map(str::to_string).unwrap_or_else(|| format!("{md5}\n"));
        let folder = self.folder(stamp);
        for (name, body) in [("manifest.json", manifest.to_string()), ("manifest.checksum", checksum_text)] {
            let mut put = self
                .s3
                .put_object()
                .bucket(&self.inventory_bucket)
                .key(format!("{folder}{name}"))
                .body(ByteStream::from(body.into_bytes()));
            if let Some(key) = report_key {
                put = put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(key);
            }
            put.send().await.expect("put report file");
        }
        md5
    }

    /// A fixture with this world's names substituted.
    fn fixture(&self, name: &str, stamp: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let text = text
            .replace("{{INVENTORY_BUCKET}}", &self.inventory_bucket)
            .replace("{{SOURCE_BUCKET}}", &self.source_bucket)
            .replace("{{TIMESTAMP}}", stamp);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The direct S3 event fixture keeping only the records at `keep` (0: checksum, 1: manifest).
    fn s3_event(&self, stamp: &str, keep: &[usize]) -> Value {
        let mut event = self.fixture("s3-event-encoded-keys.json", stamp);
        let records: Vec<Value> = event["Records"]
            .as_array()
            .expect("Records")
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        event["Records"] = Value::Array(records);
        event
    }

    async fn head(&self, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.s3
            .head_object()
            .bucket(&self.dest_bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"))
    }

    async fn dest_keys(&self) -> Vec<String> {
        let listing =
            self.s3.list_objects_v2().bucket(&self.dest_bucket).send().await.expect("list destination");
        let mut keys: Vec<String> =
            listing.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
        keys.sort();
        keys
    }

    async fn pointer(&self) -> (LatestPointer, String) {
        let output = self
            .s3
            .get_object()
            .bucket(&self.dest_bucket)
            .key(self.pointer_key())
            .send()
            .await
            .expect("pointer exists");
        let etag = output.e_tag().unwrap_or_default().to_string();
        let bytes = output.body.collect().await.expect("pointer body").into_bytes();
        (serde_json::from_slice(&bytes).expect("pointer parses"), etag)
    }
}

async fn new_key(kms: &aws_sdk_kms::Client, description: &str) -> String {
    let key = kms.create_key().description(description).send().await.expect("create key");
    key.key_metadata().map(|m| m.arn().unwrap_or_default().to_string()).expect("key metadata")
}

/// The single record result of a report (panics when there are several).
fn outcomes(report: &InvocationReport) -> Vec<Result<&Outcome, &ForwardError>> {
    report.records().map(|r| r.result.as_ref()).collect()
}

fn only(report: &InvocationReport) -> Result<&Outcome, &ForwardError> {
    let all = outcomes(report);
    assert_eq!(all.len(), 1, "{report:?}");
    all[0]
}

async fn forwards_encoded_keys_and_redelivery_is_a_no_op(flavor: Flavor) {
    let world = World::new(flavor, "fwd").await;
    let stamp = "2024-01-08T00-00Z";
    let report_key = new_key(&world.kms, "inventory report key C").await;
    let md5 = world.put_report(stamp, &world.manifest(1_704_672_000_000), None, Some(&report_key)).await;

    // Both records of the fixture (checksum Put, manifest CompleteMultipartUpload) name the
    // same report: both succeed, exactly one creates the pointer.
    let event = world.s3_event(stamp, &[0, 1]);
    let report = run_invocation(&world.forwarder, &event).await;
    let results = outcomes(&report);
    assert_eq!(results.len(), 2);
    let mut latest: Vec<&str> = Vec::new();
    for result in &results {
        let outcome = result.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(outcome, Outcome::Forwarded { .. } | Outcome::AlreadyPresent { .. }), "{outcome:?}");
        latest.push(outcome.latest().expect("pointer handled").name());
    }
    latest.sort();
    assert_eq!(latest, vec!["created", "unchanged"]);
    // Keys were decoded: the copies keep the layout with its space and plus sign.
    let dest = world.dest_folder(stamp);
    assert!(dest.contains("/daily+full/"), "{dest}");
    assert_eq!(
        world.dest_keys().await,
        vec![format!("{dest}manifest.checksum"), format!("{dest}manifest.json"), world.pointer_key()]
    );
    let mut before = Vec::new();
    for name in ["manifest.json", "manifest.checksum"] {
        let head = world.head(&format!("{dest}{name}")).await;
        assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::AwsKms), "{name}");
        let key_id = head.ssekms_key_id().unwrap_or_default();
        assert_eq!(key_id, world.dest_key_arn, "{name} is under key B");
        if flavor == Flavor::LocalStack {
            assert_eq!(head.bucket_key_enabled(), Some(true), "{name}");
        }
        assert_eq!(head.metadata().and_then(|m| m.get("inventory-manifest-md5")), Some(&md5), "{name}");
        before.push((head.e_tag().map(str::to_string), head.last_modified().copied()));
    }
    let copied = world
        .s3
        .get_object()
        .bucket(&world.dest_bucket)
        .key(format!("{dest}manifest.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        copied.body.collect().await.unwrap().into_bytes().as_ref(),
        world.manifest(1_704_672_000_000).as_bytes()
    );
    let (pointer, pointer_etag) = world.pointer().await;
    assert_eq!(pointer.report_timestamp, stamp);
    assert_eq!(pointer.manifest_key, format!("{dest}manifest.json"));
    assert_eq!(pointer.manifest_md5, md5);
    assert_eq!(pointer.source_bucket, world.source_bucket);
    assert_eq!(pointer.config_id, CONFIG_ID);
    let pointer_head = world.head(&world.pointer_key()).await;
    assert_eq!(pointer_head.ssekms_key_id(), Some(world.dest_key_arn.as_str()));

    // Redelivery of the checksum event: nothing is written.
    let again = run_invocation(&world.forwarder, &world.s3_event(stamp, &[0])).await;
    match only(&again) {
        Ok(Outcome::AlreadyPresent { latest: PointerUpdate::Unchanged, destination }) => {
            assert_eq!(destination, &dest)
        }
        other => panic!("expected already_present, got {other:?}"),
    }
    for (name, (etag, modified)) in ["manifest.json", "manifest.checksum"].iter().zip(&before) {
        let head = world.head(&format!("{dest}{name}")).await;
        assert_eq!(
            (head.e_tag().map(str::to_string), head.last_modified().copied()),
            (etag.clone(), *modified),
            "{name}"
        );
    }
    assert_eq!(world.pointer().await.1, pointer_etag);
    // The function's own response for a direct invocation: success, records listed.
    let body = handle(&world.forwarder, world.s3_event(stamp, &[0])).await.expect("acknowledged");
    assert_eq!(body["records"][0]["outcome"], "already_present");
    assert_eq!(body["records"][0]["latest"], "unchanged");
}

#[tokio::test]
async fn localstack_forwards_encoded_keys_and_redelivery_is_a_no_op() {
    forwards_encoded_keys_and_redelivery_is_a_no_op(Flavor::LocalStack).await;
}

#[tokio::test]
async fn moto_forwards_encoded_keys_and_redelivery_is_a_no_op() {
    forwards_encoded_keys_and_redelivery_is_a_no_op(Flavor::Moto).await;
}

#[tokio::test]
async fn an_older_report_does_not_move_latest() {
    let world = World::new(Flavor::LocalStack, "order").await;
    let (older, newer, newest) = ("2024-01-01T00-00Z", "2024-01-08T00-00Z", "2024-01-15T00-00Z");
    for (stamp, ms) in [(older, 1_704_067_200_000), (newer, 1_704_672_000_000), (newest, 1_705_276_800_000)] {
        world.put_report(stamp, &world.manifest(ms), None, None).await;
    }
    // Deliveries arrive out of order: newer, then older, then newest.
    let first = run_invocation(&world.forwarder, &world.s3_event(newer, &[0])).await;
    assert!(
        matches!(only(&first), Ok(Outcome::Forwarded { latest: PointerUpdate::Created, .. })),
        "{first:?}"
    );

    let late = run_invocation(&world.forwarder, &world.s3_event(older, &[0])).await;
    match only(&late) {
        Ok(Outcome::Forwarded { latest: PointerUpdate::KeptNewer { current }, .. }) => {
            assert_eq!(current, newer)
        }
        other => panic!("expected kept_newer, got {other:?}"),
    }
    let (pointer, _) = world.pointer().await;
    assert_eq!(pointer.report_timestamp, newer, "the older report must not move latest");
    // The older report is still forwarded (incremental extraction may want it).
    world.head(&format!("{}manifest.json", world.dest_folder(older))).await;

    let next = run_invocation(&world.forwarder, &world.s3_event(newest, &[0])).await;
    match only(&next) {
        Ok(Outcome::Forwarded { latest: PointerUpdate::Advanced { previous }, .. }) => {
            assert_eq!(previous, newer)
        }
        other => panic!("expected advanced, got {other:?}"),
    }
    assert_eq!(world.pointer().await.0.report_timestamp, newest);
}

#[tokio::test]
async fn a_checksum_mismatch_is_not_copied_and_not_retryable() {
    let world = World::new(Flavor::LocalStack, "sum").await;
    let stamp = "2024-01-08T00-00Z";
    world.put_report(stamp, &world.manifest(1), Some("d41d8cd98f00b204e9800998ecf8427e\n"), None).await;
    let event = world.s3_event(stamp, &[0]);
    let report = run_invocation(&world.forwarder, &event).await;
    let err = only(&report).expect_err("mismatch");
    assert_eq!(err.code(), "MANIFEST_CHECKSUM_MISMATCH");
    assert!(!err.is_retryable());
    assert!(world.dest_keys().await.is_empty(), "nothing is copied");
    // Direct invocation: logged and acknowledged (a retry would fail the same way).
    let body = handle(&world.forwarder, event).await.expect("non-retryable failures are acknowledged");
    assert_eq!(body["records"][0]["error"], "MANIFEST_CHECKSUM_MISMATCH");
    assert_eq!(body["records"][0]["retryable"], false);

    // A manifest that matches its checksum but is not a manifest is refused the same way.
    let stamp = "2024-01-09T00-00Z";
    world.put_report(stamp, r#"{"sourceBucket":"x"}"#, None, None).await;
    let report = run_invocation(&world.forwarder, &world.s3_event(stamp, &[0])).await;
    let err = only(&report).expect_err("malformed");
    assert_eq!((err.code(), err.is_retryable()), ("MANIFEST_MISSING_FIELD", false));
    assert!(world.dest_keys().await.is_empty());
}

#[tokio::test]
async fn a_disabled_destination_key_is_reported_as_such() {
    let world = World::new(Flavor::LocalStack, "dis").await;
    let stamp = "2024-01-08T00-00Z";
    world.put_report(stamp, &world.manifest(1), None, None).await;
    world.kms.disable_key().key_id(&world.dest_key_arn).send().await.expect("disable key");
    let report = run_invocation(&world.forwarder, &world.s3_event(stamp, &[0])).await;
    let err = only(&report).expect_err("disabled key");
    let aws = err.aws().expect("an AWS failure");
    assert_eq!(aws.kind, AwsErrorKind::KmsKeyDisabled);
    assert_eq!(aws.code.as_deref(), Some("KMS.DisabledException"));
    assert_eq!(aws.kms_key_arn.as_deref(), Some(world.dest_key_arn.as_str()));
    assert!(!err.is_retryable());
    assert_eq!(err.code(), "KMS_KEY_DISABLED");
    assert!(err.to_string().contains("is disabled"), "{err}");
    assert!(world.dest_keys().await.is_empty());
}

#[tokio::test]
async fn sqs_batch_with_sns_wrapped_and_test_messages() {
    let world = World::new(Flavor::LocalStack, "sqs").await;
    let stamp = "2024-01-08T00-00Z";
    world.put_report(stamp, &world.manifest(1), None, None).await;
    let batch = world.fixture("sqs-batch.json", stamp);
    let report = run_invocation(&world.forwarder, &batch).await;
    let by_id: HashMap<&str, Vec<Result<&str, &str>>> = report
        .messages
        .iter()
        .map(|m| {
            let results = m
                .records
                .iter()
                .map(|r| r.result.as_ref().map(Outcome::name).map_err(ForwardError::code))
                .collect();
            (m.message_id.as_deref().unwrap_or_default(), results)
        })
        .collect();
    assert_eq!(by_id["msg-test"], vec![], "TestEvent acknowledged, no records");
    assert_eq!(by_id["msg-garbage"], vec![Err("EVENT_MALFORMED")]);
    assert_eq!(by_id.len(), 4);
    // Both messages name the same report and run concurrently: each either copies or finds the
    // copy present, and exactly one creates the pointer.
    let mut latest = Vec::new();
    for id in ["msg-checksum", "msg-sns-wrapped"] {
        let message = report.messages.iter().find(|m| m.message_id.as_deref() == Some(id)).expect(id);
        let [record] = message.records.as_slice() else { panic!("{id}: {message:?}") };
        let outcome = record.result.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(matches!(outcome, Outcome::Forwarded { .. } | Outcome::AlreadyPresent { .. }), "{outcome:?}");
        latest.push(outcome.latest().map(PointerUpdate::name));
    }
    latest.sort();
    assert_eq!(latest, vec![Some("created"), Some("unchanged")]);
    // Nothing retryable failed: no message goes back to the queue (the garbage one would
    // fail identically forever).
    assert_eq!(response(&report).unwrap(), serde_json::json!({ "batchItemFailures": [] }));
    assert_eq!(world.pointer().await.0.report_timestamp, stamp);
}

#[tokio::test]
async fn retryable_failures_go_back_to_lambda() {
    // A client whose endpoint refuses connections: every S3 call fails retryably.
    let world = World::new(Flavor::LocalStack, "net").await;
    let stamp = "2024-01-08T00-00Z";
    let unreachable = {
        let sdk = sdk_config("http://127.0.0.1:9").await;
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        let vars = HashMap::from([
            ("DEST_BUCKET", world.dest_bucket.clone()),
            ("DEST_KMS_KEY_ARN", world.dest_key_arn.clone()),
        ]);
        Forwarder::new(
            aws_sdk_s3::Client::from_conf(config),
            Config::from_lookup(|n| vars.get(n).cloned()).unwrap(),
        )
    };
    // SQS: only the messages that failed retryably are returned.
    let report = run_invocation(&unreachable, &world.fixture("sqs-batch.json", stamp)).await;
    let err = report
        .records()
        .find_map(|r| r.result.as_ref().err().filter(|e| e.is_retryable()))
        .expect("network error");
    assert_eq!(err.aws().map(|a| a.kind), Some(AwsErrorKind::Network));
    let mut ids: Vec<String> = response(&report).unwrap()["batchItemFailures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["msg-checksum", "msg-sns-wrapped"]);
    // Direct S3 and SNS invocations: an error Lambda retries, typed Retryable.
    for event in [world.s3_event(stamp, &[0]), world.fixture("sns-event.json", stamp)] {
        let err = handle(&unreachable, event).await.expect_err("retryable");
        let diagnostic = Diagnostic::from(err);
        assert_eq!(diagnostic.error_type, "Retryable");
        assert!(diagnostic.error_message.contains("NETWORK"), "{}", diagnostic.error_message);
    }
}

#[tokio::test]
async fn sns_event_test_event_and_sse_s3_destination() {
    let world = World::with_encryption(Flavor::LocalStack, "sns", Some("AES256")).await;
    let stamp = "2024-01-08T00-00Z";
    let report_key = new_key(&world.kms, "inventory report key C").await;
    world.put_report(stamp, &world.manifest(1), None, Some(&report_key)).await;
    let report = run_invocation(&world.forwarder, &world.fixture("sns-event.json", stamp)).await;
    assert!(
        matches!(only(&report), Ok(Outcome::Forwarded { latest: PointerUpdate::Created, .. })),
        "{report:?}"
    );
    let head = world.head(&format!("{}manifest.json", world.dest_folder(stamp))).await;
    assert_eq!(head.server_side_encryption(), Some(&ServerSideEncryption::Aes256));
    assert_eq!(head.ssekms_key_id(), None);

    let body =
        handle(&world.forwarder, world.fixture("s3-test-event.json", stamp)).await.expect("test event");
    assert_eq!(body, serde_json::json!({ "records": [] }));
}

#[tokio::test]
async fn a_manifest_event_before_its_checksum_waits() {
    let world = World::new(Flavor::LocalStack, "wait").await;
    let stamp = "2024-01-08T00-00Z";
    let key = format!("{}manifest.json", world.folder(stamp));
    world
        .s3
        .put_object()
        .bucket(&world.inventory_bucket)
        .key(key)
        .body(ByteStream::from(world.manifest(1).into_bytes()))
        .send()
        .await
        .unwrap();
    let report = run_invocation(&world.forwarder, &world.s3_event(stamp, &[1])).await;
    assert_eq!(only(&report).map(Outcome::name).map_err(ForwardError::code), Ok("waiting_for_checksum"));
    // The checksum event, had the checksum been deleted, is an error (not a silent success).
    let report = run_invocation(&world.forwarder, &world.s3_event(stamp, &[0])).await;
    let err = only(&report).expect_err("no checksum");
    assert_eq!((err.code(), err.is_retryable()), ("NOT_FOUND", false));
    assert!(world.dest_keys().await.is_empty());
}
