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

/// Values of one column of a sample, as JSON.
fn column(json: &Value, index: usize) -> Vec<Value> {
    json["rows"].as_array().expect("rows").iter().map(|r| r["values"][index]["value"].clone()).collect()
}

fn stats(stderr: &str) -> Value {
    let line = stderr.lines().find(|l| l.starts_with(r#"{"sampleStats""#)).expect("a stats line");
    serde_json::from_str::<Value>(line).expect("stats JSON")["sampleStats"].take()
}

#[test]
fn orc_datasets_are_sampled_with_typed_values() {
    // logs/*.orc: zlib-compressed ORC written by pyarrow (Apache ORC C++), SSE-KMS.
    let moto = Estate::get(Flavor::Moto);
    let args = ["s3://estate-kms-b/logs/", "--rows", "30", "--columns", "code,ts,level,msg"];
    let (code, json, stderr) = sample(&moto.endpoint, &[&args[..], &["--as-service", "--stats"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(json["sourceKeys"][0].as_str().is_some_and(|k| k.ends_with(".orc")), "{json}");
    let names: Vec<&str> =
        json["schema"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["code", "ts", "level", "msg"]);
    assert_eq!(json["rows"].as_array().map(Vec::len), Some(30), "{json}");
    let codes = column(&json, 0);
    assert!(
        codes.iter().all(|c| c.as_f64().is_some_and(|n| [200., 201., 204., 301., 404., 500.].contains(&n))),
        "{codes:?}"
    );
    let ts = column(&json, 1);
    assert!(ts.iter().all(|t| t.as_str().is_some_and(|t| t.starts_with("2024-01-31T"))), "{ts:?}");
    let levels = column(&json, 2);
    assert!(
        levels.iter().all(|l| l.as_str().is_some_and(|l| !l.is_empty() && l.to_uppercase() == l)),
        "{levels:?}"
    );
    assert!(column(&json, 3).iter().any(|m| m.as_str().is_some_and(|m| m.contains(": request "))));
    assert_eq!(json["encryption"], "SSE_KMS");
    // A file of a few KiB: the tail probe holds all of it, so one GET.
    let s = stats(&stderr);
    assert_eq!(s["requests"]["GetObject"], 1, "{s}");

    // Random mode: reproducible with a seed, other rows than the head.
    let one = ["s3://estate-kms-b/logs/logs-0000.orc", "--rows", "5", "--columns", "ts", "--as-service"];
    let random =
        |seed: &str| sample(&moto.endpoint, &[&one[..], &["--mode", "random", "--seed", seed]].concat());
    let (code, a, stderr) = random("4");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(a["rows"], random("4").1["rows"]);
    let (_, head, _) = sample(&moto.endpoint, &one);
    assert!((0..8).any(|s| random(&s.to_string()).1["rows"] != head["rows"]));
}

/// An ORC file of `stripes` stripes of `rows` rows (zstd): id, name ("n<id>"), pad (320
/// pseudo-random hex digits per row).
fn orc_file(stripes: usize, rows: usize) -> Vec<u8> {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("pad", DataType::Utf8, false),
    ]));
    let mut out = Vec::new();
    let mut writer = orc_rust::ArrowWriterBuilder::new(&mut out, schema.clone())
        .with_compression(orc_rust::compression::CompressionType::Zstd)
        .try_build()
        .unwrap();
    for s in 0..stripes {
        let ids: Vec<i64> = (0..rows).map(|r| (s * rows + r) as i64).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let pads: Vec<String> = ids
            .iter()
            .map(|&i| {
                (0..10u128)
                    .map(|k| {
                        format!(
                            "{:032x}",
                            (i as u128 * 64 + k + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
                        )
                    })
                    .collect()
            })
            .collect();
        let columns: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(pads)),
        ];
        writer.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
        writer.flush_stripe().unwrap();
    }
    writer.close().unwrap();
    out
}

#[test]
fn orc_samples_fetch_only_the_tail_a_stripe_footer_and_the_projected_streams() {
    let moto = Estate::get(Flavor::Moto);
    let bucket = format!("sample-orc-{}", std::process::id());
    let bytes = orc_file(8, 5000);
    let size = bytes.len() as u64;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "e2e"))
            .endpoint_url(&moto.endpoint)
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
        );
        s3.create_bucket().bucket(&bucket).send().await.unwrap();
        let cut = bytes[..bytes.len() - 100].to_vec();
        s3.put_object().bucket(&bucket).key("t/part-0.orc").body(bytes.into()).send().await.unwrap();
        s3.put_object().bucket(&bucket).key("t/cut.orc").body(cut.into()).send().await.unwrap();
    });
    let uri = format!("s3://{bucket}/t/part-0.orc");
    let (code, json, stderr) =
        sample(&moto.endpoint, &[&uri, "--rows", "100", "--columns", "name", "--as-service", "--stats"]);
    assert_eq!(code, 0, "{stderr}");
    let names = column(&json, 0);
    assert_eq!(names.len(), 100);
    assert_eq!(names[0], "n0");
    assert_eq!(names[99], "n99");
    assert_eq!(json["moreRows"], true, "{json}");
    let s = stats(&stderr);
    // Tail, the first stripe's footer, its `name` streams: the pad column and the seven other
    // stripes are never fetched.
    let requests = s["requests"]["GetObject"].as_u64().expect("GetObject count");
    let fetched = s["bytesFetched"].as_u64().expect("bytes");
    assert!(requests <= 3, "{s}");
    assert!(fetched * 20 < size, "{fetched} of {size} bytes: {s}");
    eprintln!("ORC head sample of 100 rows x 1 column: {requests} GETs, {fetched} of {size} bytes");

    // Random stripes: other rows, same bounded cost.
    let (code, json, stderr) = sample(
        &moto.endpoint,
        &[
            &uri,
            "--rows",
            "20",
            "--columns",
            "id",
            "--mode",
            "random",
            "--seed",
            "11",
            "--as-service",
            "--stats",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let ids: Vec<f64> = column(&json, 0).iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(ids.len(), 20);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let s = stats(&stderr);
    assert!(s["bytesFetched"].as_u64().unwrap() * 20 < size, "{s}");

    // A truncated copy and an unknown column: typed problems, exit 3, no rows.
    let cut = format!("s3://{bucket}/t/cut.orc");
    let (code, json, stderr) = sample(&moto.endpoint, &[&cut, "--as-service"]);
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(json, Value::Null);
    assert!(stderr.contains("FILE_TRUNCATED") || stderr.contains("FILE_MALFORMED"), "{stderr}");
    let (code, _, stderr) = sample(&moto.endpoint, &[&uri, "--columns", "nope", "--as-service"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("SAMPLE_UNKNOWN_COLUMN") && stderr.contains("id, name, pad"), "{stderr}");
}

#[test]
fn sse_c_objects_are_sampled_on_localstack_with_a_key_read_from_secrets_manager() {
    let localstack = Estate::get(Flavor::LocalStack);
    let key = localstack.expected.ssec_key_b64.clone().expect("the estate records its SSE-C key");
    let run = |rule: &str| {
        sample(
            &localstack.endpoint,
            &[
                "s3://estate-secure/ssec/",
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
        "estate-secure/ssec/=secretsmanager:estate/ssec-key",
        "estate-secure=secretsmanager:estate/ssec-key-json#sse_c",
    ] {
        let (code, json, stderr) = run(rule);
        assert_eq!(code, 0, "{rule}: {stderr}");
        assert_eq!(json["rows"].as_array().map(Vec::len), Some(2), "{rule}");
        // LocalStack enforces SSE-C: these rows were decrypted by S3 with the secret's key.
        assert_eq!(json["encryption"], "SSE_C", "{rule}");
        assert!(!stderr.contains(&key), "the key is never printed");
    }
    let (code, _, stderr) = run("estate-secure=secretsmanager:estate/no-such-secret");
    assert_eq!(code, 1);
    assert!(
        stderr.contains("secret estate/no-such-secret") && stderr.contains("ResourceNotFound"),
        "{stderr}"
    );
}
