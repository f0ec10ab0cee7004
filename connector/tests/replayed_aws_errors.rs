//! Wire-level replays of AWS error responses that no emulator produces (from the error
//! catalogue in the project reference), through the real SDK client and the connector's S3
//! adapter: the classification a user's records depend on.

use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use s3_connector::aws::{AwsErrorKind, ByteRange, ObjectStore, RequestStats, SdkObjectStore};

fn request() -> http::Request<SdkBody> {
    http::Request::builder().uri("http://127.0.0.1:1/bucket/key").body(SdkBody::empty()).unwrap()
}

fn response(status: u16, body: &str) -> http::Response<SdkBody> {
    let mut builder = http::Response::builder().status(status);
    if !body.is_empty() {
        builder = builder.header("content-type", "application/xml");
    }
    builder.body(SdkBody::from(body.to_string())).unwrap()
}

fn store(events: Vec<ReplayEvent>) -> SdkObjectStore {
    let http = StaticReplayClient::new(events);
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:1")
        .force_path_style(true)
        .http_client(http)
        .build();
    SdkObjectStore::new(aws_sdk_s3::Client::from_conf(conf), Arc::new(RequestStats::default()))
}

#[tokio::test]
async fn kms_decrypt_denied_on_get_names_the_key_and_the_principal() {
    let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>User: arn:aws:sts::111122223333:assumed-role/catalog-reader/s3-connector is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:Decrypt action</Message><RequestId>R1</RequestId></Error>"#;
    let s = store(vec![ReplayEvent::new(request(), response(403, body))]);
    let err = s.get_range("bucket", "key", ByteRange::Head(16), 16).await.expect_err("denied");
    assert_eq!(err.kind, AwsErrorKind::KmsAccessDenied);
    assert_eq!(err.status, Some(403));
    assert_eq!(
        err.kms_key_arn_in_message().as_deref(),
        Some("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    );
    assert_eq!(
        err.principal_in_message().as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/catalog-reader/s3-connector")
    );
}

#[tokio::test]
async fn disabled_and_pending_deletion_keys_are_told_apart() {
    let disabled = r#"<Error><Code>KMS.DisabledException</Code><Message>arn:aws:kms:us-east-1:111122223333:key/k1 is disabled.</Message></Error>"#;
    let pending = r#"<Error><Code>KMS.KMSInvalidStateException</Code><Message>arn:aws:kms:us-east-1:111122223333:key/k2 is pending deletion.</Message></Error>"#;
    let s = store(vec![
        ReplayEvent::new(request(), response(400, disabled)),
        ReplayEvent::new(request(), response(400, pending)),
    ]);
    let e1 = s.get_range("bucket", "key", ByteRange::Head(16), 16).await.unwrap_err();
    assert_eq!(e1.kind, AwsErrorKind::KmsKeyDisabled);
    assert_eq!(e1.kms_key_arn_in_message().as_deref(), Some("arn:aws:kms:us-east-1:111122223333:key/k1"));
    let e2 = s.get_range("bucket", "key", ByteRange::Head(16), 16).await.unwrap_err();
    assert_eq!(e2.kind, AwsErrorKind::KmsKeyPendingDeletion);
}

#[tokio::test]
async fn sse_c_without_a_key_is_recognised_on_get_and_on_an_empty_bodied_head() {
    let get = r#"<Error><Code>InvalidRequest</Code><Message>The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.</Message></Error>"#;
    let s = store(vec![
        ReplayEvent::new(request(), response(400, get)),
        ReplayEvent::new(request(), response(400, "")),
    ]);
    let e = s.get_range("bucket", "key", ByteRange::Head(16), 16).await.unwrap_err();
    assert_eq!(e.kind, AwsErrorKind::SseCKeyRequired);
    let head = s.head("bucket", "key").await.unwrap_err();
    assert_eq!(head.status, Some(400));
    assert_eq!(head.code, None, "HEAD errors have no body");
}

#[tokio::test]
async fn a_missing_default_encryption_is_no_default_not_an_error() {
    let body = r#"<Error><Code>ServerSideEncryptionConfigurationNotFoundError</Code><Message>The server side encryption configuration was not found</Message></Error>"#;
    let s = store(vec![ReplayEvent::new(request(), response(404, body))]);
    assert_eq!(s.bucket_encryption("bucket").await.unwrap(), None);
}

#[tokio::test]
async fn a_range_the_server_ignores_is_still_capped() {
    let body = "x".repeat(10_000);
    let s = store(vec![ReplayEvent::new(
        request(),
        http::Response::builder()
            .status(200)
            .header("content-length", "10000")
            .body(SdkBody::from(body))
            .unwrap(),
    )]);
    let read = s.get_range("bucket", "key", ByteRange::Head(100), 100).await.unwrap();
    assert_eq!(read.bytes.len(), 100, "never more than the cap, even when the whole object comes back");
    assert_eq!(read.start, 0);
    assert_eq!(read.object_size, 10_000);
}
