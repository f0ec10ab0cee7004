//! The handler, called with S3 / SQS / SNS event fixtures, against real emulators.
//!
//! `scripts/test.sh` starts LocalStack and moto and exports `S3C_LOCALSTACK_ENDPOINT` and
//! `S3C_MOTO_ENDPOINT`; without them these tests fail (they never pass silently). Every test
//! uses its own buckets and keys, so they run in parallel. LocalStack enforces KMS key state
//! (a disabled key fails the copy), which moto does not; moto covers the plain forwarding path.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use common::{CONFIG_ID, Flavor, World, new_key, sdk_config};
use lambda_runtime::Diagnostic;
use s3_connector_lambda::{
    AwsErrorKind, Config, ForwardError, Forwarder, InvocationReport, Outcome, PointerUpdate, handle,
    response, run_invocation,
};

mod common;

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
