//! Client-side decryption end to end: the real binary samples and extracts objects that AWS's
//! own Python S3 Encryption Client wrote into the emulators (V3 default, V2, multipart, custom
//! encryption context, a 2 MiB Parquet file, a tampered key commitment). See `seed_estate.py`
//! (`build_cse_extras`) for what the estate holds.

use s3_connector_e2e::{
    Estate, ExpectedCseObject, Flavor, binary_as, extract_as, strings, type_family, u64_field,
};
use serde_json::Value;

struct Sampled {
    code: i32,
    json: Value,
    stderr: String,
}

impl Sampled {
    /// The `{"sampleStats":...}` line the binary prints with `--stats`.
    fn stats(&self) -> Value {
        let line = self.stderr.lines().find(|l| l.starts_with(r#"{"sampleStats""#)).expect("a stats line");
        let mut line: Value = serde_json::from_str(line).expect("stats JSON");
        line["sampleStats"].take()
    }

    fn rows_as_text(&self) -> Vec<Vec<String>> {
        self.json["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        r["values"]
                            .as_array()
                            .map(|vs| {
                                vs.iter()
                                    .map(|v| match &v["value"] {
                                        Value::String(s) => s.clone(),
                                        // proto3 JSON numbers are doubles: 7.0 is the int64 7.
                                        Value::Number(n) => match n.as_f64() {
                                            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
                                                format!("{}", f as i64)
                                            }
                                            _ => n.to_string(),
                                        },
                                        other => other.to_string(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn column_names(&self) -> Vec<String> {
        self.json["schema"]
            .as_array()
            .map(|s| s.iter().filter_map(|f| f["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
}

fn sample(estate: &Estate, uri: &str, extra: &[&str]) -> Sampled {
    let out = binary_as("test", "test")
        .arg("sample")
        .arg(uri)
        .args(["--as-service", "--stats"])
        .args(extra)
        .args(["--endpoint-url", &estate.endpoint, "--region", "us-east-1"])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json =
        if stdout.trim().is_empty() { Value::Null } else { serde_json::from_str(&stdout).expect("JSON") };
    Sampled {
        code: out.status.code().unwrap_or(-1),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn objects(estate: &Estate, what: &str, pred: impl Fn(&ExpectedCseObject) -> bool) -> Vec<ExpectedCseObject> {
    estate.expected.cse.as_ref().expect("the estate records its client-side objects").find(what, pred)
}

fn is_text(o: &ExpectedCseObject) -> bool {
    o.tampered.is_none() && !o.key.ends_with(".parquet")
}

#[test]
fn v3_v2_multipart_and_custom_context_objects_sample_as_their_plaintext() {
    for flavor in [Flavor::Moto, Flavor::LocalStack] {
        let estate = Estate::get(flavor);
        let all = objects(&estate, "a readable text object", is_text);
        // The brief's cases are all in the estate.
        assert!(all.iter().any(|o| o.version == "v3" && o.encryption_context.is_empty()));
        assert!(all.iter().any(|o| o.version == "v2"));
        assert!(all.iter().any(|o| o.multipart));
        assert!(all.iter().any(|o| o.version == "v2" && !o.encryption_context.is_empty()));
        assert!(all.iter().any(|o| o.version == "v3" && !o.encryption_context.is_empty()));
        for o in all {
            let uri = format!("s3://{}/{}", o.bucket, o.key);
            let s = sample(&estate, &uri, &["--rows", "3", "--cse-kms"]);
            assert_eq!(s.code, 0, "{flavor:?} {uri}: {}", s.stderr);
            assert_eq!(s.json["encryption"], "CLIENT_SIDE", "{uri}");
            assert_eq!(s.column_names(), o.header, "{uri}");
            assert_eq!(s.rows_as_text(), o.first_rows, "{flavor:?} {uri}");
            let stats = s.stats();
            assert_eq!(stats["requests"]["kms:Decrypt"], 1, "{uri}: one unwrap per object: {stats}");
            if o.multipart {
                // A 5.5 MiB object: the CSV head is read by range, not downloaded whole.
                let size = o.plaintext_size.expect("size");
                let fetched = stats["bytesFetched"].as_u64().expect("bytes");
                assert!(fetched * 4 < size, "{uri}: fetched {fetched} of {size} bytes");
            }
        }
    }
}

#[test]
fn without_decryption_configured_the_objects_stay_client_side_encrypted() {
    let estate = Estate::get(Flavor::Moto);
    let o = &objects(&estate, "a V3 object", |o| is_text(o) && o.version == "v3")[0];
    let uri = format!("s3://{}/{}", o.bucket, o.key);
    let s = sample(&estate, &uri, &["--rows", "3"]);
    assert_eq!(s.code, 3, "{}", s.stderr);
    assert!(s.stderr.contains("CLIENT_SIDE_ENCRYPTED"), "{}", s.stderr);

    // Decryption on, but only a master key for another prefix: the KMS-wrapped key is not
    // unwrapped, and the problem says why.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let rule = format!("{}/elsewhere/=aes:file:{}", o.bucket, path.display());
    let s = sample(&estate, &uri, &["--cse-master-key", &rule]);
    assert_eq!(s.code, 3, "{}", s.stderr);
    assert!(s.stderr.contains("CSE_NO_KEY"), "{}", s.stderr);
    assert!(!s.stderr.contains("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="), "keys never printed");
}

#[test]
fn a_tampered_key_commitment_is_refused() {
    for flavor in [Flavor::Moto, Flavor::LocalStack] {
        let estate = Estate::get(flavor);
        for o in objects(&estate, "tampered", |o| o.tampered.is_some()) {
            let uri = format!("s3://{}/{}", o.bucket, o.key);
            let s = sample(&estate, &uri, &["--rows", "3", "--cse-kms"]);
            assert_eq!(s.code, 3, "{flavor:?} {uri}: {}", s.stderr);
            assert_eq!(s.json, Value::Null, "no rows");
            assert!(s.stderr.contains("CSE_KEY_COMMITMENT_MISMATCH"), "{}", s.stderr);
            // Ranged path too (the object is below the whole-object budget by default).
            let s = sample(&estate, &uri, &["--cse-kms", "--cse-full-decrypt-max-bytes", "0"]);
            assert_eq!(s.code, 3, "{}", s.stderr);
            assert!(s.stderr.contains("CSE_KEY_COMMITMENT_MISMATCH"), "{}", s.stderr);
        }
    }
}

#[test]
fn client_side_encrypted_parquet_is_sampled_with_ranged_reads() {
    let estate = Estate::get(Flavor::Moto);
    let o = &objects(&estate, "Parquet", |o| o.key.ends_with(".parquet") && o.tampered.is_none())[0];
    let size = o.plaintext_size.expect("size");
    assert!(size > 1024 * 1024, "big enough that ranged reads matter: {size}");
    let uri = format!("s3://{}/{}", o.bucket, o.key);
    let s = sample(&estate, &uri, &["--rows", "3", "--columns", "id,code", "--cse-kms"]);
    assert_eq!(s.code, 0, "{}", s.stderr);
    assert_eq!(s.column_names(), ["id", "code"]);
    let want: Vec<Vec<String>> = o.first_rows.iter().map(|r| r[..2].to_vec()).collect();
    assert_eq!(s.rows_as_text(), want);
    let stats = s.stats();
    let fetched = stats["bytesFetched"].as_u64().expect("bytes");
    // Footer + the id/code chunks of one row group: a fraction of the object.
    assert!(fetched * 4 < size, "fetched {fetched} of {size} bytes: {stats}");
    assert!(stats["requests"]["GetObject"].as_u64().unwrap_or(0) >= 2, "footer then chunks: {stats}");
    println!("cse parquet: {fetched} bytes fetched of {size} ({stats})");
}

#[test]
fn extract_with_cse_kms_gives_the_client_side_datasets_real_schemas() {
    let estate = Estate::get(Flavor::Moto);
    let cse = estate.expected.cse.as_ref().expect("cse");
    let bucket = cse.objects[0].bucket.clone();
    let run = extract_as(&estate.endpoint, "test", "test", &[&bucket, "--cse-kms"]);
    assert_eq!(run.exit_code, 0, "{:?}", run.error);
    let mut prefixes: Vec<(String, &ExpectedCseObject)> = Vec::new();
    for o in &cse.objects {
        let prefix = format!("{}/", o.key.rsplit_once('/').expect("in a folder").0);
        if !prefixes.iter().any(|(p, _)| *p == prefix) {
            prefixes.push((prefix, o));
        }
    }
    for (prefix, o) in prefixes {
        let format = if o.key.ends_with(".parquet") {
            "parquet"
        } else if o.key.ends_with(".jsonl") {
            "jsonl"
        } else {
            "csv"
        };
        let ds = run.dataset(&bucket, &prefix, format).unwrap_or_else(|| panic!("dataset {prefix}"));
        assert_eq!(ds["encryption"]["counts"][0]["type"], "CLIENT_SIDE", "{prefix}: {ds}");
        let codes = run.problem_codes(&bucket, &prefix);
        assert!(!codes.contains(&"CLIENT_SIDE_ENCRYPTED".to_string()), "{prefix}: {codes:?}");
        if o.tampered.is_some() {
            // proto3 JSON omits false.
            assert!(!ds["schema"]["available"].as_bool().unwrap_or(false), "{prefix}: {ds}");
            assert!(codes.contains(&"CSE_KEY_COMMITMENT_MISMATCH".to_string()), "{prefix}: {codes:?}");
            continue;
        }
        assert_eq!(ds["schema"]["available"], Value::Bool(true), "{prefix}: {ds}");
        // The KMS key that wraps the data keys (named by kms:Decrypt) is a key of the dataset,
        // next to the SSE layer's keys (none here: the bucket default is SSE-S3).
        assert_eq!(strings(&ds["encryption"]["kmsKeyArns"]), [cse.kms_key_arn.as_str()], "{prefix}: {ds}");
        let got: Vec<(String, String)> = ds["schema"]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| (f["name"].as_str().unwrap().to_string(), f["type"].as_str().unwrap_or("").to_string()))
            .collect();
        let want: Vec<(String, String)> =
            o.columns.iter().map(|c| (c.name.clone(), c.kind.clone())).collect();
        assert_eq!(
            got.iter().map(|(n, t)| (n.as_str(), type_family(t))).collect::<Vec<_>>(),
            want.iter().map(|(n, t)| (n.as_str(), type_family(t))).collect::<Vec<_>>(),
            "{prefix}"
        );
        if o.multipart {
            // The schema came from a ranged head read, not the whole object.
            let source = &ds["schema"]["sources"][0];
            assert!(u64_field(source, "bytesRead") < o.plaintext_size.unwrap(), "{source}");
        }
    }
}
