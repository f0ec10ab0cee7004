//! Sampling through the real SDK against replayed AWS responses that no emulator produces: a
//! user without kms:Decrypt on the object's key gets a denial naming the key, the user and the
//! statement the user needs, and no rows.

use std::sync::Arc;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use s3_connector::aws::{RequestStats, SdkObjectStore};
use s3_connector::sample::{SampleFailure, SampleOptions, sample_object};

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const USER: &str = "arn:aws:sts::111122223333:assumed-role/analyst/s3-connector-sample";

fn store(events: Vec<ReplayEvent>) -> SdkObjectStore {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:1")
        .force_path_style(true)
        .http_client(StaticReplayClient::new(events))
        .build();
    SdkObjectStore::new(aws_sdk_s3::Client::from_conf(conf), Arc::new(RequestStats::default()))
}

fn event(status: u16, body: &str) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder()
            .uri("http://127.0.0.1:1/data/sales/part-0.csv")
            .body(SdkBody::empty())
            .unwrap(),
        http::Response::builder()
            .status(status)
            .header("content-type", "application/xml")
            .body(SdkBody::from(body.to_string()))
            .unwrap(),
    )
}

#[tokio::test]
async fn kms_decrypt_denied_names_the_key_the_user_and_the_fix() {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>User: {USER} is not authorized to perform: kms:Decrypt on resource: {KEY_ARN} because no identity-based policy allows the kms:Decrypt action</Message><RequestId>R1</RequestId></Error>"#
    );
    let s = store(vec![event(403, &body)]);
    let failure =
        sample_object(&s, "data", "sales/part-0.csv", Some(USER), "us-east-1", &SampleOptions::default())
            .await
            .expect_err("no rows for a user without kms:Decrypt");
    assert_eq!(failure.code(), "KMS_ACCESS_DENIED");
    let SampleFailure::Denied(problem) = failure else { panic!("a denial") };
    assert_eq!(problem.kms_key_arn.as_deref(), Some(KEY_ARN));
    assert_eq!(problem.principal.as_deref(), Some(USER));
    let statement =
        problem.remediation.as_ref().and_then(|r| r.policy_statement.as_ref()).expect("statement");
    assert!(statement["Action"].to_string().contains("kms:Decrypt"), "{statement}");
    assert!(statement["Resource"].to_string().contains(KEY_ARN), "{statement}");
}

#[tokio::test]
async fn a_plain_access_denied_is_not_blamed_on_kms() {
    let body = r#"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"#;
    let s = store(vec![event(403, body)]);
    let failure =
        sample_object(&s, "data", "sales/part-0.csv", Some(USER), "us-east-1", &SampleOptions::default())
            .await
            .expect_err("denied");
    assert_eq!(failure.code(), "ACCESS_DENIED", "{failure}");
}
