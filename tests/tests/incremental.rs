//! Incremental extraction end to end: the real `s3-connector incremental` binary against moto,
//! reading S3 Inventory reports this test writes (AWS layout: manifest.json, manifest.checksum,
//! gzipped CSV or Parquet data files, URL-encoded CSV keys, all-versions rows).
//!
//! Each test uses buckets of its own, so tests run in parallel on one moto server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use s3_connector_e2e::{binary_as, u64_field};
use serde_json::Value;

const SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, EncryptionStatus, BucketKeyStatus";

fn endpoint() -> String {
    std::env::var("S3C_MOTO_ENDPOINT")
        .expect("S3C_MOTO_ENDPOINT is not set: run the suite with scripts/test.sh")
}

async fn client() -> aws_sdk_s3::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "e2e"))
        .endpoint_url(endpoint())
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}

/// Fresh bucket names for one test: (destination, source).
fn buckets(test: &str) -> (String, String) {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    (format!("inc-dest-{test}-{pid}-{n}"), format!("inc-src-{test}-{pid}-{n}"))
}

/// One inventory row (all-versions report).
#[derive(Debug, Clone)]
struct Row {
    key: String,
    version: &'static str,
    latest: bool,
    delete_marker: bool,
    size: u64,
    modified: &'static str,
    etag: &'static str,
    encryption: &'static str,
}

fn row(key: &str, size: u64, modified: &'static str, etag: &'static str, encryption: &'static str) -> Row {
    Row {
        key: key.to_string(),
        version: "v2",
        latest: true,
        delete_marker: false,
        size,
        modified,
        etag,
        encryption,
    }
}

/// S3 Inventory's CSV key encoding (form URL encoding: `+` is a space).
fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn csv_gz(bucket: &str, rows: &[Row]) -> Vec<u8> {
    let mut text = String::new();
    for r in rows {
        let (size, etag, enc) = if r.delete_marker {
            (String::new(), "", "")
        } else {
            (r.size.to_string(), r.etag, r.encryption)
        };
        text.push_str(&format!(
            "\"{bucket}\",\"{}\",\"{}\",\"{}\",\"{}\",\"{size}\",\"{}\",\"{etag}\",\"STANDARD\",\"{enc}\",\"DISABLED\"\n",
            encode_key(&r.key),
            r.version,
            r.latest,
            r.delete_marker,
            r.modified,
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    s3_connector_domain::inventory::md5_reader::md5_hex(bytes)
}

/// Parquet with the schema AWS documents (snake_case columns, keys not encoded).
fn parquet_file(bucket: &str, rows: &[Row]) -> Vec<u8> {
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let schema = "message s3.inventory {
        required binary bucket (UTF8);
        required binary key (UTF8);
        optional binary version_id (UTF8);
        optional boolean is_latest;
        optional boolean is_delete_marker;
        optional int64 size;
        optional int64 last_modified_date (TIMESTAMP_MILLIS);
        optional binary e_tag (UTF8);
        optional binary storage_class (UTF8);
        optional binary encryption_status (UTF8);
        optional binary bucket_key_status (UTF8);
    }";
    let schema = Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
    let props =
        Arc::new(WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build());
    let mut buf = Vec::new();
    let mut writer = SerializedFileWriter::new(&mut buf, schema, props).unwrap();
    let mut rg = writer.next_row_group().unwrap();
    let mut index = 0;
    while let Some(mut col) = rg.next_column().unwrap() {
        let strings = |values: Vec<Option<String>>| {
            let defs: Vec<i16> = values.iter().map(|v| i16::from(v.is_some())).collect();
            let v: Vec<ByteArray> =
                values.into_iter().flatten().map(|s| ByteArray::from(s.as_str())).collect();
            (v, defs)
        };
        let live = |r: &Row, v: String| (!r.delete_marker).then_some(v);
        match index {
            0 | 1 => {
                let (v, _) = strings(
                    rows.iter()
                        .map(|r| Some(if index == 0 { bucket.to_string() } else { r.key.to_string() }))
                        .collect(),
                );
                col.typed::<ByteArrayType>().write_batch(&v, None, None).unwrap();
            }
            2 | 7 | 8 | 9 | 10 => {
                let (v, d) = strings(
                    rows.iter()
                        .map(|r| match index {
                            2 => Some(r.version.to_string()),
                            7 => live(r, r.etag.to_string()),
                            8 => live(r, "STANDARD".into()),
                            9 => live(r, r.encryption.to_string()),
                            _ => Some("DISABLED".into()),
                        })
                        .collect(),
                );
                col.typed::<ByteArrayType>().write_batch(&v, Some(&d), None).unwrap();
            }
            3 | 4 => {
                let v: Vec<bool> =
                    rows.iter().map(|r| if index == 3 { r.latest } else { r.delete_marker }).collect();
                col.typed::<BoolType>().write_batch(&v, Some(&vec![1; v.len()]), None).unwrap();
            }
            _ => {
                let vals: Vec<Option<i64>> = rows
                    .iter()
                    .map(|r| {
                        if index == 5 {
                            (!r.delete_marker).then_some(r.size as i64)
                        } else {
                            Some(chrono_millis(r.modified))
                        }
                    })
                    .collect();
                let d: Vec<i16> = vals.iter().map(|v| i16::from(v.is_some())).collect();
                let v: Vec<i64> = vals.into_iter().flatten().collect();
                col.typed::<Int64Type>().write_batch(&v, Some(&d), None).unwrap();
            }
        }
        col.close().unwrap();
        index += 1;
    }
    rg.close().unwrap();
    writer.close().unwrap();
    buf
}

/// `2024-01-01T00:00:00.000Z` → epoch milliseconds (fixtures use whole days and hours only).
fn chrono_millis(s: &str) -> i64 {
    let days_from_civil = |y: i64, m: i64, d: i64| {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    };
    let n = |a: usize, b: usize| s[a..b].parse::<i64>().unwrap();
    (days_from_civil(n(0, 4), n(5, 7), n(8, 10)) * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60) * 1000
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Parquet,
}

/// A report's files, keyed by destination key.
struct Report {
    files: BTreeMap<String, Vec<u8>>,
}

/// The report of `rows` for `stamp` (`2024-01-01T00-00Z`), split over `parts` data files.
fn report(dest: &str, src: &str, stamp: &str, rows: &[Row], format: Format, parts: usize) -> Report {
    let folder = format!("inv/{src}/daily/");
    let mut files = BTreeMap::new();
    let mut entries = Vec::new();
    let chunk = rows.len().div_ceil(parts.max(1)).max(1);
    for (i, part) in rows.chunks(chunk).enumerate() {
        let (bytes, ext) = match format {
            Format::Csv => (csv_gz(src, part), "csv.gz"),
            Format::Parquet => (parquet_file(src, part), "parquet"),
        };
        let key = format!("{folder}data/{stamp}-{i}.{ext}");
        entries.push(format!(
            r#"{{"key":"{key}","size":{},"MD5checksum":"{}"}}"#,
            bytes.len(),
            md5_hex(&bytes)
        ));
        files.insert(key, bytes);
    }
    let iso = format!("{}T{}:{}:00.000Z", &stamp[..10], &stamp[11..13], &stamp[14..16]);
    let (format_name, schema) = match format {
        Format::Csv => ("CSV", SCHEMA.to_string()),
        Format::Parquet => (
            "Parquet",
            "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8); optional binary encryption_status (UTF8); optional binary bucket_key_status (UTF8);}".to_string(),
        ),
    };
    let manifest = format!(
        r#"{{"sourceBucket":"{src}","destinationBucket":"arn:aws:s3:::{dest}","version":"2016-11-30","creationTimestamp":"{}","fileFormat":"{format_name}","fileSchema":"{schema}","files":[{}]}}"#,
        chrono_millis(&iso),
        entries.join(",")
    );
    let checksum = format!("{}\n", md5_hex(manifest.as_bytes()));
    files.insert(format!("{folder}{stamp}/manifest.json"), manifest.into_bytes());
    files.insert(format!("{folder}{stamp}/manifest.checksum"), checksum.into_bytes());
    Report { files }
}

async fn create_buckets(s3: &aws_sdk_s3::Client, names: &[&str]) {
    for name in names {
        s3.create_bucket().bucket(*name).send().await.unwrap();
    }
}

async fn upload(s3: &aws_sdk_s3::Client, bucket: &str, report: &Report) {
    for (key, bytes) in &report.files {
        put(s3, bucket, key, bytes.clone()).await;
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, bytes: Vec<u8>) {
    s3.put_object().bucket(bucket).key(key).body(bytes.into()).send().await.unwrap();
}

/// Day 1: every awkward key kind; junk; an old version and a delete marker in the history.
fn day1() -> Vec<Row> {
    vec![
        row("sales/dt=2024-01-01/part 1.csv", 100, "2024-01-01T00:00:00.000Z", "s1", "SSE-S3"),
        row("sales/dt=2024-01-01/a+b.csv", 50, "2024-01-01T00:00:00.000Z", "ab1", "SSE-S3"),
        row("logs/100%/x.json", 10, "2024-01-01T00:00:00.000Z", "x1", "NOT-SSE"),
        row("\u{fc}n\u{ef}code/\u{65e5}\u{672c}/f.parquet", 20, "2024-01-01T00:00:00.000Z", "u1", "SSE-KMS"),
        row("gone/old.csv", 5, "2024-01-01T00:00:00.000Z", "g1", "SSE-S3"),
        row("reenc/k.csv", 7, "2024-01-01T00:00:00.000Z", "k1", "SSE-S3"),
        row("sales/_SUCCESS", 0, "2024-01-01T00:00:00.000Z", "z", "SSE-S3"),
        // History: an old version of a current object, and a deleted object.
        Row {
            version: "v1",
            latest: false,
            ..row("reenc/k.csv", 3, "2023-12-01T00:00:00.000Z", "k0", "NOT-SSE")
        },
        Row {
            latest: true,
            delete_marker: true,
            ..row("deleted long ago.csv", 0, "2023-12-02T00:00:00.000Z", "", "")
        },
        Row {
            version: "v1",
            latest: false,
            ..row("deleted long ago.csv", 9, "2023-12-01T00:00:00.000Z", "d0", "SSE-S3")
        },
    ]
}

/// Day 2: one added, one removed (delete marker), one re-encrypted, one rewritten.
fn day2() -> Vec<Row> {
    let mut rows: Vec<Row> = day1()
        .into_iter()
        .filter(|r| {
            !matches!(r.key.as_str(), "gone/old.csv" | "reenc/k.csv" | "sales/dt=2024-01-01/a+b.csv")
                || !r.latest
        })
        .map(|r| if r.key == "reenc/k.csv" { Row { version: "v1", ..r } } else { r })
        .collect();
    rows.extend([
        row("sales/dt=2024-01-02/part 2.csv", 200, "2024-01-02T00:00:00.000Z", "s2", "SSE-S3"),
        Row {
            latest: true,
            delete_marker: true,
            ..row("gone/old.csv", 0, "2024-01-02T00:00:00.000Z", "", "")
        },
        Row {
            version: "v1",
            latest: false,
            ..row("gone/old.csv", 5, "2024-01-01T00:00:00.000Z", "g1", "SSE-S3")
        },
        // Re-encrypted in place (copy onto itself with SSE-KMS): same size, new ETag, new date.
        Row { version: "v3", ..row("reenc/k.csv", 7, "2024-01-02T00:00:00.000Z", "k2", "SSE-KMS") },
        Row {
            version: "v2",
            latest: false,
            ..row("reenc/k.csv", 7, "2024-01-01T00:00:00.000Z", "k1", "SSE-S3")
        },
        Row {
            version: "v3",
            ..row("sales/dt=2024-01-01/a+b.csv", 60, "2024-01-02T00:00:00.000Z", "ab2", "SSE-S3")
        },
    ]);
    rows
}

/// A finished (or failed) CLI run.
struct Run {
    code: i32,
    records: Vec<Value>,
    stderr: String,
}

impl Run {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter_map(|r| r.get(kind)).collect()
    }

    fn objects(&self, kind: &str) -> BTreeSet<String> {
        self.of_kind("object")
            .into_iter()
            .filter(|o| o["kind"] == kind)
            .map(|o| o["key"].as_str().unwrap().to_string())
            .collect()
    }

    fn summary(&self) -> &Value {
        let s = self.of_kind("summary");
        assert_eq!(s.len(), 1, "one summary: {}", self.stderr);
        s[0]
    }
}

fn command(dest: &str, src: &str, state: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = binary_as("test", "test");
    cmd.args([
        "incremental",
        &format!("s3://{dest}/inv/"),
        "--source-bucket",
        src,
        "--configuration-id",
        "daily",
    ])
    .arg("--state-dir")
    .arg(state)
    .args(["--endpoint-url", &endpoint(), "--region", "us-east-1"])
    .args(extra);
    cmd
}

fn run(dest: &str, src: &str, state: &Path, extra: &[&str]) -> Run {
    let out = command(dest, src, state, extra).output().expect("run the binary");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let records = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        records,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The state directory's files, with their bytes.
fn state_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&path).unwrap(),
                );
            }
        }
    }
    out
}

/// The pointer file's content (the only thing that moves state forward).
fn pointer(dir: &Path) -> Option<Value> {
    state_files(dir)
        .into_iter()
        .find(|(name, _)| name.ends_with("current.json"))
        .map(|(_, bytes)| serde_json::from_slice(&bytes).unwrap())
}

fn keys(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_day_report_pair_yields_exactly_the_expected_changes() {
    let s3 = client().await;
    let (dest, src) = buckets("pair");
    create_buckets(&s3, &[&dest, &src]).await;
    let state = tempfile::tempdir().unwrap();
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1(), Format::Csv, 2)).await;

    let first = run(&dest, &src, state.path(), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let current = keys(&[
        "sales/dt=2024-01-01/part 1.csv",
        "sales/dt=2024-01-01/a+b.csv",
        "logs/100%/x.json",
        "\u{fc}n\u{ef}code/\u{65e5}\u{672c}/f.parquet",
        "gone/old.csv",
        "reenc/k.csv",
        "sales/_SUCCESS",
    ]);
    assert_eq!(first.objects("ADDED"), current, "first run: every current object is ADDED");
    assert!(first.objects("REMOVED").is_empty() && first.objects("CHANGED").is_empty());
    let s = first.summary();
    assert_eq!(u64_field(s, "objectCount"), 7);
    assert_eq!(s["stateAdvanced"], true);
    assert_eq!(s["reportTimestamp"], "2024-01-01T00-00Z");
    assert_eq!(u64_field(s, "filesRead"), 2);
    assert_eq!(u64_field(s, "rowsRead"), 10);
    let sales = first
        .of_kind("dataset")
        .into_iter()
        .find(|d| d["prefix"] == "sales/")
        .expect("sales dataset")
        .clone();
    assert_eq!(sales["kind"], "ADDED");
    assert_eq!(u64_field(&sales, "objectsAdded"), 2, "junk (_SUCCESS) is not part of the dataset");
    let junk = first.of_kind("object").into_iter().find(|o| o["key"] == "sales/_SUCCESS").unwrap().clone();
    assert_eq!(junk.get("datasetPrefix"), None, "junk belongs to no dataset");

    upload(&s3, &dest, &report(&dest, &src, "2024-01-02T00-00Z", &day2(), Format::Csv, 3)).await;
    // The objects themselves, for the re-inference of the changed datasets' schemas.
    for key in
        ["sales/dt=2024-01-01/part 1.csv", "sales/dt=2024-01-01/a+b.csv", "sales/dt=2024-01-02/part 2.csv"]
    {
        put(&s3, &src, key, b"id,amount\n1,2.5\n2,3.25\n".to_vec()).await;
    }
    // As large as the inventory says (7 bytes): inference trusts the listed size.
    put(&s3, &src, "reenc/k.csv", b"v\n1\n22\n".to_vec()).await;
    let second = run(&dest, &src, state.path(), &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.objects("ADDED"), keys(&["sales/dt=2024-01-02/part 2.csv"]));
    assert_eq!(second.objects("REMOVED"), keys(&["gone/old.csv"]));
    assert_eq!(second.objects("CHANGED"), keys(&["reenc/k.csv", "sales/dt=2024-01-01/a+b.csv"]));
    let objects = second.of_kind("object");
    let reenc = objects.iter().find(|o| o["key"] == "reenc/k.csv").unwrap();
    assert_eq!(reenc["encryptionStatus"], "SSE-KMS");
    assert_eq!(reenc["changedFields"], serde_json::json!(["ETAG", "LAST_MODIFIED", "ENCRYPTION_STATUS"]));
    assert_eq!(reenc["datasetPrefix"], "reenc/");
    let rewritten = objects.iter().find(|o| o["key"] == "sales/dt=2024-01-01/a+b.csv").unwrap();
    assert_eq!(rewritten["changedFields"], serde_json::json!(["SIZE", "ETAG", "LAST_MODIFIED"]));
    assert_eq!(u64_field(rewritten, "size"), 60);
    let datasets: BTreeMap<String, Value> = second
        .of_kind("dataset")
        .into_iter()
        .map(|d| (d["prefix"].as_str().unwrap().to_string(), d.clone()))
        .collect();
    assert_eq!(datasets.keys().cloned().collect::<Vec<_>>(), vec!["gone/", "reenc/", "sales/"]);
    assert_eq!(datasets["gone/"]["kind"], "REMOVED");
    assert_eq!(datasets["gone/"].get("dataset"), None);
    assert_eq!(datasets["reenc/"]["changedAspects"], serde_json::json!(["ENCRYPTION"]));
    assert_eq!(datasets["sales/"]["kind"], "CHANGED");
    assert_eq!(datasets["sales/"]["bytesDelta"], "210", "+200 added, +10 rewritten");
    assert_eq!(u64_field(&datasets["sales/"]["dataset"], "fileCount"), 3);
    // Re-inferred with extract's code: the schema of the files as they are now.
    let schema = &datasets["sales/"]["dataset"]["schema"];
    assert_eq!(schema["available"], true, "{schema}");
    let columns: Vec<&str> =
        schema["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(columns, vec!["id", "amount"]);
    assert_eq!(datasets["sales/"]["dataset"]["partitioning"]["style"], "HIVE");
    assert_eq!(
        datasets["reenc/"]["dataset"]["schema"]["available"],
        true,
        "{} {:?}",
        datasets["reenc/"],
        second.of_kind("problem")
    );
    assert_eq!(datasets["gone/"].get("dataset"), None, "a removed dataset is not inferred");
    assert!(second.of_kind("problem").is_empty(), "{:?}", second.of_kind("problem"));
    let s = second.summary();
    assert_eq!(
        (u64_field(s, "objectsAdded"), u64_field(s, "objectsRemoved"), u64_field(s, "objectsChanged")),
        (1, 1, 2)
    );
    assert_eq!(s["previousReportTimestamp"], "2024-01-01T00-00Z");
    assert_eq!(s["previousSnapshotId"], first.summary()["snapshotId"]);
    assert!(
        second.records.iter().all(|r| r["runId"] == s["snapshotId"]),
        "every record carries the snapshot id"
    );

    // The same report again: nothing but a summary saying so; the state is unchanged.
    let before = state_files(state.path());
    let again = run(&dest, &src, state.path(), &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.records.len(), 1, "only the summary");
    assert_eq!(again.summary()["alreadyProcessed"], true);
    assert_eq!(again.summary()["snapshotId"], s["snapshotId"]);
    assert_eq!(state_files(state.path()), before);

    // An older report, asked for explicitly, is refused with a clear message.
    let older = run(&dest, &src, state.path(), &["--report", "2024-01-01T00-00Z"]);
    assert_eq!(older.code, 1);
    assert!(
        older.stderr.contains("STATE_OLDER_REPORT") && older.stderr.contains("older than"),
        "{}",
        older.stderr
    );
    assert_eq!(state_files(state.path()), before);
}

/// Uploads day 1, processes it, then day 2 with `tamper` applied to its files (CSV reports).
async fn day2_fails_with(test: &str, tamper: impl FnOnce(&mut Report, &str), code: &str) {
    day2_in_format_fails_with(test, Format::Csv, tamper, code).await;
}

/// [`day2_fails_with`] on reports in `format`.
async fn day2_in_format_fails_with(
    test: &str,
    format: Format,
    tamper: impl FnOnce(&mut Report, &str),
    code: &str,
) {
    let s3 = client().await;
    let (dest, src) = buckets(test);
    create_buckets(&s3, &[&dest, &src]).await;
    let state = tempfile::tempdir().unwrap();
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1(), format, 1)).await;
    assert_eq!(run(&dest, &src, state.path(), &[]).code, 0);
    let before = state_files(state.path());
    let mut day2 = report(&dest, &src, "2024-01-02T00-00Z", &day2(), format, 2);
    tamper(&mut day2, &src);
    upload(&s3, &dest, &day2).await;
    let failed = run(&dest, &src, state.path(), &[]);
    assert_eq!(failed.code, 1, "{test}: {}", failed.stderr);
    assert!(failed.stderr.contains(&format!("[{code}]")), "{test}: expected {code}: {}", failed.stderr);
    assert!(failed.of_kind("object").is_empty(), "{test}: the run stops before the diff");
    assert!(failed.of_kind("summary").is_empty(), "{test}: a failed run has no summary");
    assert_eq!(state_files(state.path()), before, "{test}: the state is untouched");
    assert!(pointer(state.path()).is_some());
}

fn data_key(report: &Report, index: usize) -> String {
    report.files.keys().filter(|k| k.contains("/data/")).nth(index).unwrap().clone()
}

fn rewrite_manifest(report: &mut Report, edit: impl FnOnce(String) -> String) {
    let key = report.files.keys().find(|k| k.ends_with("manifest.json")).unwrap().clone();
    let text = edit(String::from_utf8(report.files[&key].clone()).unwrap());
    let checksum = format!("{}\n", md5_hex(text.as_bytes()));
    let checksum_key = key.replace("manifest.json", "manifest.checksum");
    report.files.insert(key, text.into_bytes());
    report.files.insert(checksum_key, checksum.into_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_file_checksum_mismatch_is_typed_and_leaves_the_state() {
    day2_fails_with(
        "md5",
        |r, _| {
            let key = data_key(r, 1);
            let mut bytes = r.files[&key].clone();
            // Another valid gzip stream: only the MD5 can tell.
            bytes = {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                let mut d = flate2::read::GzDecoder::new(&bytes[..]);
                std::io::copy(&mut d, &mut gz).unwrap();
                gz.finish().unwrap()
            };
            r.files.insert(key, bytes);
        },
        "INVENTORY_CHECKSUM_MISMATCH",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_file_checksum_mismatch_is_typed_and_leaves_the_state() {
    // Parquet files are hashed on the MD5 thread while they decode: a file that decodes well
    // (the other part's bytes) but is not the one the manifest lists fails on its MD5.
    day2_in_format_fails_with(
        "md5-parquet",
        Format::Parquet,
        |r, _| {
            let (first, second) = (data_key(r, 0), data_key(r, 1));
            let other = r.files[&second].clone();
            r.files.insert(first, other);
        },
        "INVENTORY_CHECKSUM_MISMATCH",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_parquet_file_is_a_checksum_mismatch_not_a_decoding_error() {
    // The decoder may fail on the damage before the MD5 thread is done with the file: the
    // mismatch is still the file's error.
    day2_in_format_fails_with(
        "damaged-parquet",
        Format::Parquet,
        |r, _| {
            let key = data_key(r, 1);
            let mut bytes = r.files[&key].clone();
            let middle = bytes.len() / 2;
            bytes[middle..].iter_mut().for_each(|b| *b = !*b);
            r.files.insert(key, bytes);
        },
        "INVENTORY_CHECKSUM_MISMATCH",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_checksum_mismatch_is_typed_and_leaves_the_state() {
    day2_fails_with(
        "manifest",
        |r, _| {
            let key = r.files.keys().find(|k| k.ends_with("manifest.checksum")).unwrap().clone();
            r.files.insert(key, b"00000000000000000000000000000000\n".to_vec());
        },
        "MANIFEST_CHECKSUM_MISMATCH",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_gzip_file_is_typed_and_leaves_the_state() {
    day2_fails_with(
        "truncated",
        |r, _| {
            let key = data_key(r, 0);
            let mut bytes = r.files[&key].clone();
            bytes.truncate(bytes.len() - 12);
            // The manifest lists the truncated file's own MD5: only the gzip stream is short.
            let old =
                format!("\"size\":{},\"MD5checksum\":\"{}\"", r.files[&key].len(), md5_hex(&r.files[&key]));
            let new = format!("\"size\":{},\"MD5checksum\":\"{}\"", bytes.len(), md5_hex(&bytes));
            r.files.insert(key, bytes);
            rewrite_manifest(r, |m| m.replace(&old, &new));
        },
        "INVENTORY_DECOMPRESSION_FAILED",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_listing_a_missing_file_is_typed_and_leaves_the_state() {
    day2_fails_with(
        "missing",
        |r, _| {
            let key = data_key(r, 1);
            r.files.remove(&key);
        },
        "INVENTORY_FILE_MISSING",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_file_format_is_typed_and_leaves_the_state() {
    day2_fails_with(
        "format",
        |r, _| rewrite_manifest(r, |m| m.replace("\"CSV\"", "\"Avro\"")),
        "MANIFEST_UNKNOWN_FILE_FORMAT",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_file_that_is_not_the_declared_orc_is_typed_and_leaves_the_state() {
    // The manifest says ORC; the files are gzip CSV: the ORC reader rejects each file.
    day2_fails_with(
        "orc",
        |r, _| {
            rewrite_manifest(r, |m| {
                m.replace("\"CSV\"", "\"ORC\"").replace(
                    SCHEMA,
                    "struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,size:bigint>",
                )
            })
        },
        "INVENTORY_UNREADABLE_FILE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_row_is_typed_and_leaves_the_state() {
    day2_fails_with(
        "row",
        |r, src| {
            let key = data_key(r, 1);
            let mut rows = day2();
            rows.truncate(2);
            let mut bytes = csv_gz(src, &rows);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(format!("\"{src}\",\"bad\",\"v1\",\"maybe\",\"false\",\"12\",\"2024-01-02T00:00:00.000Z\",\"e\",\"STANDARD\",\"SSE-S3\",\"DISABLED\"\n").as_bytes()).unwrap();
            bytes.extend(gz.finish().unwrap());
            let old = format!("\"size\":{},\"MD5checksum\":\"{}\"", r.files[&key].len(), md5_hex(&r.files[&key]));
            let new = format!("\"size\":{},\"MD5checksum\":\"{}\"", bytes.len(), md5_hex(&bytes));
            r.files.insert(key, bytes);
            rewrite_manifest(r, |m| m.replace(&old, &new));
        },
        "INVENTORY_INVALID_VALUE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_data_file_read_aborts_before_the_diff() {
    // A data file that is not where the manifest says (another bucket that does not exist)
    // must fail the run, never read as "every object removed".
    day2_fails_with(
        "denied",
        |r, _| {
            rewrite_manifest(r, |m| {
                m.replace(
                    "\"destinationBucket\":\"arn:aws:s3:::",
                    "\"destinationBucket\":\"arn:aws:s3:::nosuch-",
                )
            })
        },
        "BUCKET_NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_process_mid_run_then_rerunning_gives_the_same_changes_and_state() {
    let s3 = client().await;
    let (dest, src) = buckets("kill");
    create_buckets(&s3, &[&dest, &src]).await;
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1(), Format::Csv, 1)).await;
    let mut big = day2();
    for i in 0..5000 {
        big.push(row(&format!("bulk/part {i:05}+x.csv"), 10 + i, "2024-01-02T00:00:00.000Z", "b", "SSE-KMS"));
    }
    upload(&s3, &dest, &report(&dest, &src, "2024-01-02T00-00Z", &big, Format::Csv, 3)).await;
    let killed_state = tempfile::tempdir().unwrap();
    let clean_state = tempfile::tempdir().unwrap();
    for dir in [&killed_state, &clean_state] {
        assert_eq!(run(&dest, &src, dir.path(), &["--report", "2024-01-01T00-00Z"]).code, 0);
    }
    let before = pointer(killed_state.path());

    // Kill the process as soon as its first change record is out (no sleeps: the pipe says
    // when). Day 2 adds thousands of objects, far more output than a pipe buffers, so the
    // process is blocked writing (before its commit) until we read on: it cannot finish first.
    let mut child = command(&dest, &src, killed_state.path(), &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let first: Value = serde_json::from_str(&first).expect("a first record");
    // The process cannot have committed: its output (far more than a pipe holds) is not read.
    assert!(first.get("object").is_some(), "the first record is a change: {first}");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdout);
    assert_eq!(pointer(killed_state.path()), before, "killed before its commit: the old state");

    let rerun = run(&dest, &src, killed_state.path(), &[]);
    let clean = run(&dest, &src, clean_state.path(), &[]);
    assert_eq!(clean.code, 0, "{}", clean.stderr);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(pointer(killed_state.path()), pointer(clean_state.path()), "same final state");
    assert_eq!(rerun.records, clean.records, "the rerun emits exactly the changes of an uninterrupted run");
    assert_eq!(first, clean.records[0], "and the record seen before the kill is the same, run id included");
    assert_eq!(u64_field(rerun.summary(), "objectsAdded"), 5001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_dealt_into_the_previous_snapshots_key_ranges_builds_what_a_first_run_builds() {
    // More objects than one splitter stride: day 1's snapshot carries a splitter, and day 2's
    // rows are dealt into the two key ranges it makes.
    let s3 = client().await;
    let (dest, src) = buckets("ranges");
    create_buckets(&s3, &[&dest, &src]).await;
    let n = s3_connector_domain::inventory::snapshot::SPLITTER_STRIDE + 4_000;
    let key = |i: u64| format!("bulk/{:06} p\u{e9}+%{}.csv", (i * 7919) % n, i % 3);
    let day1: Vec<Row> = (0..n).map(|i| row(&key(i), i, "2024-01-01T00:00:00.000Z", "a", "SSE-S3")).collect();
    let mut day2 = Vec::new();
    let (mut removed, mut changed) = (0, 0);
    for (i, r) in day1.iter().enumerate() {
        match i % 50 {
            0 => removed += 1,
            1 => {
                changed += 1;
                day2.push(Row { size: r.size + 1, ..r.clone() });
            }
            2 => {
                changed += 1;
                day2.push(Row { encryption: "SSE-KMS", ..r.clone() });
            }
            _ => day2.push(r.clone()),
        }
    }
    let added = ["0 first.csv", "bulk/000000 new.csv", "zz/last.csv"];
    for k in added {
        day2.push(row(k, 1, "2024-01-02T00:00:00.000Z", "b", "NOT-SSE"));
    }
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1, Format::Csv, 3)).await;
    upload(&s3, &dest, &report(&dest, &src, "2024-01-02T00-00Z", &day2, Format::Csv, 3)).await;

    let (dealt, first) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(run(&dest, &src, dealt.path(), &["--report", "2024-01-01T00-00Z"]).code, 0);
    let day1_snapshot =
        state_files(dealt.path()).into_keys().find(|name| name.ends_with(".snap")).expect("day 1's snapshot");
    let splitters =
        s3_connector_domain::inventory::snapshot::read_splitters(&dealt.path().join(day1_snapshot)).unwrap();
    assert_eq!(splitters.len(), 1);

    let logs = ["--log", "s3_connector::incremental=debug", "--log-format", "json"];
    let day2_run = run(&dest, &src, dealt.path(), &logs);
    assert_eq!(day2_run.code, 0, "{}", day2_run.stderr);
    let dealt_into = day2_run.stderr.lines().find(|l| l.contains("key ranges")).expect("the rows were dealt");
    assert!(dealt_into.contains(r#""ranges":2"#), "{dealt_into}");
    let summary = day2_run.summary();
    assert_eq!(u64_field(summary, "objectsAdded"), added.len() as u64);
    assert_eq!(u64_field(summary, "objectsRemoved"), removed);
    assert_eq!(u64_field(summary, "objectsChanged"), changed);

    // Day 2 as a first report: no previous snapshot, rows sorted in runs.
    let first_run = run(&dest, &src, first.path(), &[]);
    assert_eq!(first_run.code, 0, "{}", first_run.stderr);
    assert_eq!(state_files(dealt.path()), state_files(first.path()), "byte-identical state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_parquet_reports_of_the_same_objects_give_identical_snapshots() {
    let s3 = client().await;
    let (dest_csv, src) = buckets("fmt");
    let dest_parquet = format!("{dest_csv}-pq");
    create_buckets(&s3, &[&dest_csv, &dest_parquet, &src]).await;
    upload(&s3, &dest_csv, &report(&dest_csv, &src, "2024-01-02T00-00Z", &day2(), Format::Csv, 2)).await;
    upload(
        &s3,
        &dest_parquet,
        &report(&dest_parquet, &src, "2024-01-02T00-00Z", &day2(), Format::Parquet, 2),
    )
    .await;
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let csv = run(&dest_csv, &src, a.path(), &[]);
    let parquet = run(&dest_parquet, &src, b.path(), &[]);
    // A memory budget smaller than one file: the two files are read one after the other, and
    // nothing is lost or stuck.
    let one_at_a_time = run(&dest_parquet, &src, c.path(), &["--columnar-memory-bytes", "1"]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    assert_eq!(parquet.code, 0, "{}", parquet.stderr);
    assert_eq!(one_at_a_time.code, 0, "{}", one_at_a_time.stderr);
    assert_eq!(state_files(a.path()), state_files(b.path()), "byte-identical state (pointer and snapshot)");
    assert_eq!(state_files(b.path()), state_files(c.path()));
    assert_eq!(csv.records, parquet.records);
    assert_eq!(parquet.records, one_at_a_time.records);
    assert_eq!(u64_field(csv.summary(), "objectCount"), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_complete_report_is_found_and_the_lambda_pointer_is_followed() {
    let s3 = client().await;
    let (dest, src) = buckets("find");
    create_buckets(&s3, &[&dest, &src]).await;
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1(), Format::Csv, 1)).await;
    // Day 2 still in delivery: no checksum yet.
    let mut pending = report(&dest, &src, "2024-01-02T00-00Z", &day2(), Format::Csv, 1);
    pending.files.retain(|k, _| !k.ends_with("manifest.checksum"));
    upload(&s3, &dest, &pending).await;
    let state = tempfile::tempdir().unwrap();
    let run1 = run(&dest, &src, state.path(), &["--dry-run"]);
    assert_eq!(run1.code, 0, "{}", run1.stderr);
    assert_eq!(run1.summary()["reportTimestamp"], "2024-01-01T00-00Z", "the incomplete report is skipped");
    assert_eq!(run1.summary().get("stateAdvanced"), None, "dry run: false is omitted");
    assert_eq!(pointer(state.path()), None, "a dry run leaves no state");

    // The Lambda's pointer names the report to use.
    let manifest_key = format!("inv/{src}/daily/2024-01-01T00-00Z/manifest.json");
    let pointer_doc = format!(
        r#"{{"version":1,"sourceBucket":"{src}","configId":"daily","reportTimestamp":"2024-01-01T00-00Z","creationTimestamp":1704067200000,"manifestKey":"{manifest_key}","checksumKey":"x","manifestMd5":"y"}}"#
    );
    put(&s3, &dest, &format!("inv/{src}/daily/latest.json"), pointer_doc.into_bytes()).await;
    let complete = report(&dest, &src, "2024-01-02T00-00Z", &day2(), Format::Csv, 1);
    upload(&s3, &dest, &complete).await;
    let run2 = run(&dest, &src, state.path(), &[]);
    assert_eq!(run2.code, 0, "{}", run2.stderr);
    assert_eq!(run2.summary()["reportTimestamp"], "2024-01-01T00-00Z", "the pointer wins over the listing");
    s3.delete_object().bucket(&dest).key(format!("inv/{src}/daily/latest.json")).send().await.unwrap();
    let run3 = run(&dest, &src, state.path(), &[]);
    assert_eq!(
        run3.summary()["reportTimestamp"],
        "2024-01-02T00-00Z",
        "without pointer: the newest complete report"
    );
    assert_eq!(run3.summary()["stateAdvanced"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_incremental_streams_the_cli_records_and_dry_runs_leave_the_state() {
    use futures::StreamExt;
    use s3_connector_e2e::grpc::{ServerProcess, config_for};
    use s3_connector_proto::v1 as pb;

    let s3 = client().await;
    let (dest, src) = buckets("grpc");
    create_buckets(&s3, &[&dest, &src]).await;
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1(), Format::Csv, 1)).await;
    upload(&s3, &dest, &report(&dest, &src, "2024-01-02T00-00Z", &day2(), Format::Parquet, 2)).await;
    let cli_state = tempfile::tempdir().unwrap();
    assert_eq!(run(&dest, &src, cli_state.path(), &["--report", "2024-01-01T00-00Z"]).code, 0);
    let cli = run(&dest, &src, cli_state.path(), &[]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);

    let grpc_state = tempfile::tempdir().unwrap();
    let extra = format!("\n[incremental]\nstate_dir = {:?}\n", grpc_state.path().display().to_string());
    let server = ServerProcess::start(&config_for(&endpoint(), &extra));
    let mut client = server.client().await;
    let request = |report: &str, dry_run: bool| pb::ExtractIncrementalRequest {
        inventory: Some(pb::InventoryLocation {
            destination_bucket: dest.clone(),
            destination_prefix: "inv".into(),
            source_bucket: src.clone(),
            configuration_id: "daily".into(),
            report_timestamp: report.into(),
        }),
        dry_run,
        ..Default::default()
    };
    let mut collect = async |req: pb::ExtractIncrementalRequest| -> Vec<Value> {
        let mut stream = client.extract_incremental(req).await.expect("stream starts").into_inner();
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            out.push(serde_json::to_value(item.expect("no error mid-stream")).unwrap());
        }
        out
    };
    let first = collect(request("2024-01-01T00-00Z", false)).await;
    assert_eq!(first.last().unwrap()["summary"]["stateAdvanced"], true);
    let before = pointer(grpc_state.path());

    let dry = collect(request("", true)).await;
    assert_eq!(dry[..dry.len() - 1], cli.records[..cli.records.len() - 1], "the same change records");
    assert_eq!(dry.last().unwrap()["summary"].get("stateAdvanced"), None);
    assert_eq!(pointer(grpc_state.path()), before, "a dry run leaves the state");

    let real = collect(request("", false)).await;
    assert_eq!(real, cli.records, "exactly the CLI's records, summary included");
    assert_eq!(pointer(grpc_state.path()), pointer(cli_state.path()));

    // An older report is refused with FAILED_PRECONDITION and the engine's code.
    let mut stream =
        client.extract_incremental(request("2024-01-01T00-00Z", false)).await.unwrap().into_inner();
    let status = match stream.next().await {
        Some(Ok(record)) => panic!("no record expected: {record:?}"),
        Some(Err(status)) => status,
        None => panic!("the stream must fail"),
    };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    use tonic_types::StatusExt;
    assert_eq!(status.get_error_details().error_info().unwrap().reason, "STATE_OLDER_REPORT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_incremental_stream_leaves_the_state_and_the_retry_streams_the_same_records() {
    use futures::StreamExt;
    use s3_connector_e2e::grpc::{ServerProcess, config_for};
    use s3_connector_proto::v1 as pb;

    let s3 = client().await;
    let (dest, src) = buckets("cancel");
    create_buckets(&s3, &[&dest, &src]).await;
    let mut big = day1();
    for i in 0..3000 {
        big.push(row(&format!("bulk/{i:05}.csv"), 1 + i, "2024-01-01T00:00:00.000Z", "b", "SSE-S3"));
    }
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &big, Format::Csv, 2)).await;
    let state = tempfile::tempdir().unwrap();
    let extra =
        format!("stream_buffer = 4\n\n[incremental]\nstate_dir = {:?}\n", state.path().display().to_string());
    let server = ServerProcess::start(&config_for(&endpoint(), &extra));
    let mut client = server.client().await;
    let request = pb::ExtractIncrementalRequest {
        inventory: Some(pb::InventoryLocation {
            destination_bucket: dest.clone(),
            destination_prefix: "inv/".into(),
            source_bucket: src.clone(),
            configuration_id: "daily".into(),
            report_timestamp: String::new(),
        }),
        ..Default::default()
    };
    let mut stream = client.extract_incremental(request.clone()).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    // Gone after one record: the commit can never be answered (the stream holds 4 records and
    // thousands follow), so the state cannot have moved, now or later.
    drop(stream);
    assert_eq!(pointer(state.path()), None);

    let mut stream = client.extract_incremental(request).await.unwrap().into_inner();
    let mut records = Vec::new();
    while let Some(item) = stream.next().await {
        records.push(item.expect("no error"));
    }
    assert_eq!(records[0], first, "the retry starts with the same record, run id included");
    let summary = match &records.last().unwrap().record {
        Some(pb::change_record::Record::Summary(s)) => s.clone(),
        other => panic!("the last record is the summary: {other:?}"),
    };
    assert!(summary.state_advanced);
    assert_eq!(summary.objects_added, 3007);
    assert_eq!(pointer(state.path()).unwrap()["snapshot_id"], summary.snapshot_id);
}

/// Runs `incremental` with its state in S3 (`--state-url`, `--state-kms-key-id`).
fn run_with_s3_state(dest: &str, src: &str, state_url: &str, kms_key: &str, extra: &[&str]) -> Run {
    let mut cmd = binary_as("test", "test");
    cmd.args([
        "incremental",
        &format!("s3://{dest}/inv/"),
        "--source-bucket",
        src,
        "--configuration-id",
        "daily",
    ])
    .args(["--state-url", state_url, "--state-kms-key-id", kms_key, "--no-schema-inference"])
    .args(["--endpoint-url", &endpoint(), "--region", "us-east-1"])
    .args(extra);
    let out = cmd.output().expect("run the binary");
    let stdout = String::from_utf8(out.stdout).unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        records: stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The state objects under `prefix`: key → (ETag, SSE, KMS key id) from HEAD.
async fn state_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> BTreeMap<String, (String, String, String)> {
    let listed = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_string();
        let head = s3.head_object().bucket(bucket).key(&key).send().await.unwrap();
        out.insert(
            key,
            (
                head.e_tag().unwrap_or_default().to_string(),
                head.server_side_encryption().map(|s| s.as_str().to_string()).unwrap_or_default(),
                head.ssekms_key_id().unwrap_or_default().to_string(),
            ),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_state_is_written_under_the_named_kms_key_and_superseded_snapshots_are_deleted() {
    let s3 = client().await;
    let (dest, src) = buckets("s3state");
    let state_bucket = format!("{dest}-state");
    create_buckets(&s3, &[&dest, &src, &state_bucket]).await;
    let kms_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "e2e"))
        .endpoint_url(endpoint())
        .load()
        .await;
    let key = aws_sdk_kms::Client::new(&kms_config).create_key().send().await.unwrap();
    let key = key.key_metadata().unwrap();
    let (key_id, key_arn) = (key.key_id().to_string(), key.arn().unwrap().to_string());
    upload(&s3, &dest, &report(&dest, &src, "2024-01-01T00-00Z", &day1(), Format::Csv, 1)).await;
    upload(&s3, &dest, &report(&dest, &src, "2024-01-02T00-00Z", &day2(), Format::Csv, 2)).await;
    let state_url = format!("s3://{state_bucket}/state/");
    let folder = format!("state/{src}/daily/");

    let first = run_with_s3_state(&dest, &src, &state_url, &key_arn, &["--report", "2024-01-01T00-00Z"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.objects("ADDED").len(), 7);
    assert_eq!(first.summary()["stateAdvanced"], true);
    let stored = state_objects(&s3, &state_bucket, &folder).await;
    assert_eq!(
        stored.keys().cloned().collect::<Vec<_>>(),
        vec![format!("{folder}current.json"), format!("{folder}snapshot-1704067200000.snap")]
    );
    for (object, (_, sse, kms)) in &stored {
        assert_eq!(sse, "aws:kms", "{object} is stored with SSE-KMS");
        assert!(kms.ends_with(&key_id), "{object} is under the named key: {kms}");
    }

    // Day 2 (the newest report) from a fresh mirror of the S3 state: the right changes.
    let second = run_with_s3_state(&dest, &src, &state_url, &key_arn, &[]);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.objects("ADDED"), keys(&["sales/dt=2024-01-02/part 2.csv"]));
    assert_eq!(second.objects("REMOVED"), keys(&["gone/old.csv"]));
    assert_eq!(second.objects("CHANGED"), keys(&["reenc/k.csv", "sales/dt=2024-01-01/a+b.csv"]));
    assert_eq!(second.summary()["previousSnapshotId"], first.summary()["snapshotId"]);
    // The pointer names the new snapshot; the superseded one is deleted.
    let stored = state_objects(&s3, &state_bucket, &folder).await;
    assert_eq!(
        stored.keys().cloned().collect::<Vec<_>>(),
        vec![format!("{folder}current.json"), format!("{folder}snapshot-1704153600000.snap")]
    );
    assert!(stored.values().all(|(_, sse, kms)| sse == "aws:kms" && kms.ends_with(&key_id)), "{stored:?}");

    // The same report again: a no-op, the state objects untouched.
    let again = run_with_s3_state(&dest, &src, &state_url, &key_arn, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.records.len(), 1, "only the summary");
    assert_eq!(again.summary()["alreadyProcessed"], true);
    assert_eq!(again.summary()["snapshotId"], second.summary()["snapshotId"]);
    assert_eq!(state_objects(&s3, &state_bucket, &folder).await, stored);
}
