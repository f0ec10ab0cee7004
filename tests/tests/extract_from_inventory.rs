//! `extract --from-inventory` end to end: the real binary against moto. The test seeds a bucket
//! of its own (SSE-S3 and SSE-KMS objects, partitions, junk, awkward keys), writes an
//! AWS-layout inventory report of exactly that bucket's objects with the `inventory-gen`
//! library, and checks that the extraction from the report gives the datasets of a listing-based
//! extraction, with per-object encryption counts and no ListObjectsV2 request.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use inventory_gen::{ObjectState, ReportFormat, ReportSpec, Universe, VersionRow};
use s3_connector_e2e::{binary_as, u64_field};
use serde_json::Value;

const REPORT: &str = "2024-02-01T00-00Z";
const REPORT_MS: i64 = 1_706_745_600_000;

fn endpoint() -> String {
    std::env::var("S3C_MOTO_ENDPOINT")
        .expect("S3C_MOTO_ENDPOINT is not set: run the suite with scripts/test.sh")
}

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "e2e"))
        .endpoint_url(endpoint())
        .load()
        .await
}

async fn s3_client() -> aws_sdk_s3::Client {
    let config = sdk_config().await;
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build())
}

/// Fresh bucket names for one test: (destination, source).
fn buckets(test: &str) -> (String, String) {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    (format!("xinv-dest-{test}-{pid}-{n}"), format!("xinv-src-{test}-{pid}-{n}"))
}

/// How an object is written.
#[derive(Clone, Copy)]
enum Sse {
    S3,
    Kms { bucket_key: bool },
}

const CSV: &[u8] = b"id,amount,label\n1,2.5,a\n2,3.25,b\n3,4.0,c\n";
const JSONL: &[u8] = b"{\"user\":\"u1\",\"n\":1}\n{\"user\":\"u2\",\"n\":2}\n";

/// The source bucket's objects: (key, body, encryption).
fn objects() -> Vec<(&'static str, &'static [u8], Sse)> {
    vec![
        ("sales/dt=2024-01-01/part-0.csv", CSV, Sse::S3),
        ("sales/dt=2024-01-02/part-1.csv", CSV, Sse::Kms { bucket_key: false }),
        ("sales/dt=2024-01-02/part-2.csv", CSV, Sse::Kms { bucket_key: true }),
        ("sales/dt=2024-01-03/part-3.csv", CSV, Sse::Kms { bucket_key: true }),
        ("sales/_SUCCESS", b"", Sse::S3),
        ("events/2024/01/31/e-0.jsonl", JSONL, Sse::Kms { bucket_key: false }),
        ("events/2024/02/01/e-1.jsonl", JSONL, Sse::S3),
        ("odd names/a b+c%.csv", CSV, Sse::S3),
        ("odd names/\u{e9}t\u{e9}.csv", CSV, Sse::Kms { bucket_key: false }),
    ]
}

/// Creates the buckets and a KMS key, and writes the objects; returns the key's ARN.
async fn seed(dest: &str, src: &str) -> String {
    let s3 = s3_client().await;
    let kms = aws_sdk_kms::Client::new(&sdk_config().await);
    for bucket in [dest, src] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let key = kms.create_key().description("extract --from-inventory e2e").send().await.unwrap();
    let key_arn = key.key_metadata().unwrap().arn().unwrap().to_string();
    for (key, body, sse) in objects() {
        let put = s3.put_object().bucket(src).key(key).body(body.to_vec().into());
        let put = match sse {
            Sse::S3 => put.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256),
            Sse::Kms { bucket_key } => put
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(&key_arn)
                .bucket_key_enabled(bucket_key),
        };
        put.send().await.unwrap();
    }
    key_arn
}

/// Inventory rows of the source bucket as it is: keys, sizes, dates, ETags from a listing (made
/// by the test, not by the connector), encryption from the way each object was written.
async fn inventory_rows(src: &str) -> Vec<VersionRow> {
    let s3 = s3_client().await;
    let listed = s3.list_objects_v2().bucket(src).send().await.unwrap();
    let written: BTreeMap<&str, Sse> = objects().into_iter().map(|(k, _, sse)| (k, sse)).collect();
    listed
        .contents()
        .iter()
        .map(|o| {
            let key = o.key().unwrap().to_string();
            let (status, bucket_key) = match written[key.as_str()] {
                Sse::S3 => ("SSE-S3", "DISABLED"),
                Sse::Kms { bucket_key: true } => ("SSE-KMS", "ENABLED"),
                Sse::Kms { bucket_key: false } => ("SSE-KMS", "DISABLED"),
            };
            VersionRow {
                state: ObjectState {
                    key,
                    version_id: "null".into(),
                    size: o.size().unwrap() as u64,
                    etag: o.e_tag().unwrap().trim_matches('"').to_string(),
                    last_modified_ms: o.last_modified().unwrap().to_millis().unwrap(),
                    storage_class: "STANDARD",
                    encryption_status: status,
                    bucket_key_status: bucket_key,
                },
                is_latest: true,
                is_delete_marker: false,
            }
        })
        .collect()
}

fn spec(dest: &str, src: &str, format: ReportFormat, all_versions: bool) -> ReportSpec {
    ReportSpec {
        universe: Universe { seed: 1, objects: 0, delta: Default::default(), source_bucket: src.to_string() },
        format,
        files: 2,
        all_versions,
        destination_bucket: dest.to_string(),
        prefix: "inv".into(),
        configuration_id: "daily".into(),
        rows_per_group: 3,
    }
}

/// The report's files, by key.
fn write_report(spec: &ReportSpec, stamp: &str, rows: &[VersionRow]) -> BTreeMap<String, Vec<u8>> {
    let files = Mutex::new(BTreeMap::new());
    spec.write_rows(stamp, REPORT_MS, rows, &|key, bytes| {
        files.lock().unwrap().insert(key.to_string(), bytes);
        Ok(())
    })
    .unwrap();
    files.into_inner().unwrap()
}

async fn upload(bucket: &str, files: &BTreeMap<String, Vec<u8>>) {
    let s3 = s3_client().await;
    for (key, bytes) in files {
        s3.put_object().bucket(bucket).key(key).body(bytes.clone().into()).send().await.unwrap();
    }
}

/// A finished CLI run.
struct Run {
    code: i32,
    records: Vec<Value>,
    stderr: String,
}

impl Run {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter_map(|r| r.get(kind)).collect()
    }

    /// Dataset records by prefix.
    fn datasets(&self) -> BTreeMap<String, Value> {
        self.of_kind("dataset")
            .into_iter()
            .map(|d| (format!("{}|{}", d["prefix"].as_str().unwrap_or(""), d["format"]), d.clone()))
            .collect()
    }

    /// Requests of the summary, by operation.
    fn requests(&self) -> BTreeMap<String, u64> {
        let summary = self.of_kind("summary");
        assert_eq!(summary.len(), 1, "one summary: {}", self.stderr);
        summary[0]["requests"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| (r["operation"].as_str().unwrap().to_string(), u64_field(r, "count")))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn extract(args: &[&str]) -> Run {
    let out = binary_as("test", "test")
        .arg("extract")
        .args(args)
        .args(["--endpoint-url", &endpoint(), "--region", "us-east-1", "--no-progress", "--quiet"])
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8(out.stdout).unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        records: stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn from_inventory(dest: &str, src: &str, extra: &[&str]) -> Run {
    let destination = format!("s3://{dest}/inv/");
    let mut args =
        vec!["--from-inventory", &destination, "--source-bucket", src, "--configuration-id", "daily"];
    args.extend(extra);
    extract(&args)
}

/// A record without the fields that are expected to differ.
fn without(mut v: Value, path: &[&str]) -> Value {
    let mut at = &mut v;
    for p in &path[..path.len() - 1] {
        at = &mut at[*p];
    }
    if let Some(o) = at.as_object_mut() {
        o.remove(path[path.len() - 1]);
    }
    v
}

/// Inventory encryption counts of a dataset record: (type → count, enabled, disabled).
fn inventory_counts(d: &Value) -> (BTreeMap<String, u64>, u64, u64) {
    let inv = &d["encryption"]["inventory"];
    let counts = inv["counts"]
        .as_array()
        .map(|a| a.iter().map(|c| (c["type"].as_str().unwrap().to_string(), u64_field(c, "count"))).collect())
        .unwrap_or_default();
    (counts, u64_field(inv, "bucketKeyEnabledCount"), u64_field(inv, "bucketKeyDisabledCount"))
}

fn counts(list: &[(&str, u64)]) -> BTreeMap<String, u64> {
    list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_from_an_inventory_report_gives_the_datasets_of_a_listing_without_listing() {
    let (dest, src) = buckets("same");
    let key_arn = seed(&dest, &src).await;
    let rows = inventory_rows(&src).await;
    assert_eq!(rows.len(), objects().len());
    upload(&dest, &write_report(&spec(&dest, &src, ReportFormat::Csv, false), REPORT, &rows)).await;

    let listed = extract(&[&src]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let inv = from_inventory(&dest, &src, &["--report", REPORT]);
    assert_eq!(inv.code, 0, "{}", inv.stderr);

    // The same datasets, record for record, apart from the inventory's own counts.
    let (a, b) = (listed.datasets(), inv.datasets());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    assert_eq!(a.len(), 3, "{:?}", a.keys());
    for (name, listed) in &a {
        let from_report = &b[name];
        assert_eq!(listed["encryption"].get("inventory"), None, "a listing has no per-object counts");
        assert_eq!(
            &without(from_report.clone(), &["encryption", "inventory"]),
            listed,
            "dataset {name}: names, formats, columns, partitions, counts, bytes, key ARNs"
        );
        assert_eq!(
            u64_field(&from_report["encryption"]["inventory"], "objectCount"),
            u64_field(listed, "fileCount"),
            "{name}: every file counted"
        );
    }
    let sales = &b["sales/|\"csv\""];
    assert_eq!(sales["schema"]["available"], true, "{sales}");
    assert_eq!(sales["partitioning"]["style"], "HIVE");
    assert_eq!(u64_field(sales, "fileCount"), 4);
    assert!(
        sales["encryption"]["kmsKeyArns"].as_array().unwrap().iter().any(|k| k == key_arn.as_str()),
        "key ARNs come from the objects read and probed: {sales}"
    );
    // Encryption counts straight from the inventory rows.
    assert_eq!(inventory_counts(sales), (counts(&[("SSE_KMS", 3), ("SSE_S3", 1)]), 2, 2));
    assert_eq!(inventory_counts(&b["events/|\"jsonl\""]), (counts(&[("SSE_KMS", 1), ("SSE_S3", 1)]), 0, 2));
    assert_eq!(inventory_counts(&b["odd names/|\"csv\""]), (counts(&[("SSE_KMS", 1), ("SSE_S3", 1)]), 0, 2));

    // The bucket record: same counts and junk; the report instead of listing shards.
    let bucket = |run: &Run| run.of_kind("bucket")[0].clone();
    let inv_bucket = bucket(&inv);
    assert_eq!(
        inv_bucket["inventoryReport"],
        format!("s3://{dest}/inv/{src}/daily/{REPORT}/manifest.json").as_str()
    );
    assert_eq!(
        without(without(bucket(&listed), &["listingShards"]), &["inventoryReport"]),
        without(without(inv_bucket, &["listingShards"]), &["inventoryReport"])
    );
    assert_eq!(u64_field(&bucket(&inv), "objectCount"), objects().len() as u64);

    // The listing lists; the report replaces it entirely.
    assert!(listed.requests().get("ListObjectsV2").copied().unwrap_or(0) > 0);
    let requests = inv.requests();
    assert_eq!(requests.get("ListObjectsV2"), None, "no LIST at all: {requests:?}");
    assert!(requests["GetObject"] >= 4, "the report's files and the schema reads: {requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_all_versions_reports_and_the_newest_report_give_the_same_datasets() {
    let (dest, src) = buckets("versions");
    seed(&dest, &src).await;
    let mut rows = inventory_rows(&src).await;
    // History that must not count: an old version of a current object, a deleted object.
    let mut old = rows[0].clone();
    (old.is_latest, old.state.version_id, old.state.size) = (false, "v0".into(), 3);
    let mut marker = rows[0].clone();
    (marker.state.key, marker.is_delete_marker) = ("sales/dt=2024-01-09/gone.csv".into(), true);
    let mut gone = marker.clone();
    (gone.is_latest, gone.is_delete_marker, gone.state.version_id) = (false, false, "v1".into());
    rows.extend([old, marker, gone]);
    let parquet = spec(&dest, &src, ReportFormat::Parquet, true);
    upload(&dest, &write_report(&parquet, REPORT, &rows)).await;

    let listed = extract(&[&src]);
    // No --report: the newest complete report (the only one).
    let inv = from_inventory(&dest, &src, &[]);
    assert_eq!(inv.code, 0, "{}", inv.stderr);
    let (a, b) = (listed.datasets(), inv.datasets());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, d) in &a {
        assert_eq!(&without(b[name].clone(), &["encryption", "inventory"]), d, "{name}");
    }
    assert_eq!(inventory_counts(&b["sales/|\"csv\""]).0, counts(&[("SSE_KMS", 3), ("SSE_S3", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_report_fails_with_the_incremental_engines_typed_error() {
    let (dest, src) = buckets("bad");
    seed(&dest, &src).await;
    let rows = inventory_rows(&src).await;
    let mut files = write_report(&spec(&dest, &src, ReportFormat::Csv, false), REPORT, &rows);
    // Another valid gzip stream of the same rows: only the MD5 can tell.
    let data = files.keys().find(|k| k.contains("/data/")).unwrap().clone();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::copy(&mut flate2::read::GzDecoder::new(&files[&data][..]), &mut gz).unwrap();
    files.insert(data, gz.finish().unwrap());
    upload(&dest, &files).await;
    let run = from_inventory(&dest, &src, &["--report", REPORT]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("[INVENTORY_CHECKSUM_MISMATCH]"), "{}", run.stderr);
    assert!(run.of_kind("dataset").is_empty() && run.of_kind("summary").is_empty());

    let missing = from_inventory(&dest, &src, &["--report", "2024-03-01T00-00Z"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("[INVENTORY_REPORT_INCOMPLETE]"), "{}", missing.stderr);
    let other =
        extract(&["--from-inventory", &format!("s3://{dest}/inv/"), "--source-bucket", &src, "estate-plain"]);
    assert_eq!(other.code, 1, "only the source bucket may be named: {}", other.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_metadata_reads_an_inventory_report_over_grpc() {
    use futures::StreamExt;
    use s3_connector_e2e::grpc::{ServerProcess, config_for};
    use s3_connector_proto::v1 as pb;

    let (dest, src) = buckets("grpc");
    seed(&dest, &src).await;
    let rows = inventory_rows(&src).await;
    upload(&dest, &write_report(&spec(&dest, &src, ReportFormat::Csv, false), REPORT, &rows)).await;
    let cli = from_inventory(&dest, &src, &["--report", REPORT]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);

    let server = ServerProcess::start(&config_for(&endpoint(), ""));
    let mut client = server.client().await;
    let request = pb::ExtractMetadataRequest {
        inventory: Some(pb::InventoryLocation {
            destination_bucket: dest.clone(),
            destination_prefix: "inv".into(),
            source_bucket: src.clone(),
            configuration_id: "daily".into(),
            report_timestamp: REPORT.into(),
        }),
        ..Default::default()
    };
    let mut stream = client.extract_metadata(request.clone()).await.expect("stream starts").into_inner();
    let mut records = Vec::new();
    while let Some(item) = stream.next().await {
        records.push(serde_json::to_value(item.expect("no error mid-stream")).unwrap());
    }
    let grpc = Run { code: 0, records, stderr: String::new() };
    assert_eq!(grpc.datasets(), cli.datasets(), "the CLI's dataset records");
    assert_eq!(grpc.requests().get("ListObjectsV2"), None);

    // Another bucket in the scope is refused, naming the field.
    let wrong = pb::ExtractMetadataRequest {
        scope: Some(pb::ExtractScope { targets: vec!["estate-plain".into()], ..Default::default() }),
        ..request
    };
    let status = client.extract_metadata(wrong).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("scope.targets"), "{}", status.message());
}
