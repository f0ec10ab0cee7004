//! `s3-connector sample` as users run it: the real binary against the seeded emulators.

use s3_connector_e2e::{Estate, Flavor, binary_as};
use serde_json::Value;

fn sample(endpoint: &str, args: &[&str]) -> (i32, Value, String) {
    sample_with_env(endpoint, args, &[])
}

fn sample_with_env(endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let out = binary_as("test", "test")
        .arg("sample")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1"])
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json =
        if stdout.trim().is_empty() { Value::Null } else { serde_json::from_str(&stdout).expect("JSON") };
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn rows_come_back_as_the_contract_json_and_denials_exit_3_with_the_code() {
    let moto = Estate::get(Flavor::Moto);
    let (code, json, stderr) = sample(
        &moto.endpoint,
        &["s3://estate-sse-s3/raw/", "--rows", "4", "--columns", "id,name", "--as-service"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["schema"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(4));
    assert_eq!(json["encryption"], "SSE_S3");

    // Without a user identity (and without --as-service) nothing is read.
    let (code, _, stderr) = sample(&moto.endpoint, &["s3://estate-sse-s3/raw/"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--user-role-arn"), "{stderr}");

    let localstack = Estate::get(Flavor::LocalStack);
    let key = &localstack.expected.keys["D"];
    let (code, json, stderr) =
        sample(&localstack.endpoint, &["s3://estate-kms-broken/disabled/", "--as-service"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(json, Value::Null, "no rows on stdout");
    assert!(stderr.contains("KMS_KEY_DISABLED") && stderr.contains(key.as_str()), "{stderr}");
}

#[test]
fn sse_c_objects_are_sampled_with_the_right_key_and_a_wrong_key_is_named() {
    let localstack = Estate::get(Flavor::LocalStack);
    let key = localstack.expected.ssec_key_b64.clone().expect("the estate records its SSE-C key");
    let rule = "estate-secure/ssec/=env:S3C_SSEC_KEY";
    let args = ["s3://estate-secure/ssec/", "--rows", "2", "--as-service", "--sse-c-key", rule];
    let loopback = [&args[..], &["--allow-sse-c-over-loopback-http"]].concat();

    let (code, json, stderr) = sample_with_env(&localstack.endpoint, &loopback, &[("S3C_SSEC_KEY", &key)]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(json["encryption"], "SSE_C");

    // Another valid 32-byte key: S3 refuses it, and the problem says so.
    let wrong = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let (code, _, stderr) = sample_with_env(&localstack.endpoint, &loopback, &[("S3C_SSEC_KEY", wrong)]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("SSE_C_KEY_MISMATCH"), "{stderr}");
    assert!(!stderr.contains(wrong) && !stderr.contains(&key), "keys never printed: {stderr}");

    // Without a key: the precise problem, not a generic 403.
    let (code, _, stderr) = sample(&localstack.endpoint, &["s3://estate-secure/ssec/", "--as-service"]);
    assert_eq!(code, 3);
    assert!(stderr.contains("SSE_C_KEY_REQUIRED"), "{stderr}");

    // Plain HTTP without the explicit loopback setting: refused before any request.
    let (code, _, stderr) = sample_with_env(&localstack.endpoint, &args, &[("S3C_SSEC_KEY", &key)]);
    assert_eq!(code, 1);
    assert!(stderr.contains("plain HTTP"), "{stderr}");
}
