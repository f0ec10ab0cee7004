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

#[test]
fn avro_and_json_array_datasets_are_sampled_with_typed_values() {
    let moto = Estate::get(Flavor::Moto);
    // Avro (deflate codec, written by fastavro): rows from the blocks of one head read.
    let (code, json, stderr) = sample(
        &moto.endpoint,
        &[
            "s3://estate-kms-a/customers/",
            "--rows",
            "50",
            "--columns",
            "id,created,address,email",
            "--as-service",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(json["sourceKeys"][0].as_str().is_some_and(|k| k.ends_with(".avro")), "{json}");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 50, "{json}");
    let names: Vec<&str> =
        json["schema"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["id", "created", "address", "email"]);
    let first = &rows[0]["values"];
    assert_eq!(first[0]["value"].as_f64(), Some(1.0), "{first}");
    let created = first[1]["value"].as_str().expect("dates are strings");
    assert!(created.len() == 10 && created.starts_with("20"), "{created}");
    assert!(first[2]["value"]["city"].is_string(), "{first}");
    assert_eq!(json["encryption"], "SSE_KMS");

    // Random mode over the same dataset: same columns, other rows, reproducible with a seed.
    let args = ["s3://estate-kms-a/customers/customers-0001.avro", "--rows", "5", "--columns", "id"];
    let random = [&args[..], &["--mode", "random", "--seed", "9", "--as-service"]].concat();
    let (code, a, stderr) = sample(&moto.endpoint, &random);
    assert_eq!(code, 0, "{stderr}");
    let (_, b, _) = sample(&moto.endpoint, &random);
    assert_eq!(a["rows"], b["rows"]);
    assert_eq!(a["rows"].as_array().map(Vec::len), Some(5));

    // A JSON array document: elements are rows.
    let (code, json, stderr) =
        sample(&moto.endpoint, &["s3://estate-kms-b/docs/", "--rows", "3", "--as-service"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(json["sourceKeys"][0].as_str().is_some_and(|k| k.ends_with(".json")), "{json}");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3);
    assert!(rows[0]["values"][0]["value"].is_number(), "{json}");
    assert!(rows[0]["values"][1]["value"]["c"].is_string(), "{json}");
}

#[test]
fn sse_c_keys_come_from_secrets_manager_and_failures_name_the_secret_not_the_value() {
    // moto holds the estate's SSE-C key as secrets (deploy/local/seed_estate.py). moto ignores
    // SSE-C on reads, so this proves the source (real GetSecretValue, parsing, errors); the
    // SSE-C reads themselves are proven on LocalStack above.
    let moto = Estate::get(Flavor::Moto);
    let key = moto.expected.ssec_key_b64.clone().expect("the estate records its SSE-C key");
    let run = |rule: &str| {
        sample(
            &moto.endpoint,
            &[
                "s3://estate-sse-s3/raw/",
                "--rows",
                "2",
                "--as-service",
                "--allow-sse-c-over-loopback-http",
                "--sse-c-key",
                rule,
            ],
        )
    };
    for rule in [
        "estate-sse-s3/raw/=secretsmanager:estate/ssec-key",
        "estate-sse-s3=secretsmanager:estate/ssec-key-json#sse_c",
    ] {
        let (code, json, stderr) = run(rule);
        assert_eq!(code, 0, "{rule}: {stderr}");
        assert_eq!(json["rows"].as_array().map(Vec::len), Some(2), "{rule}");
    }
    let (code, _, stderr) = run("estate-sse-s3=secretsmanager:estate/no-such-secret");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("secret estate/no-such-secret") && stderr.contains("ResourceNotFound"),
        "{stderr}"
    );
    let (code, _, stderr) = run("estate-sse-s3=secretsmanager:estate/ssec-key-json#wrong");
    assert_eq!(code, 1);
    assert!(stderr.contains("JSON field"), "{stderr}");
    assert!(!stderr.contains(&key), "the key is never printed: {stderr}");
}
