//! Full extraction of the seeded sample estate, on moto and on LocalStack: the records must
//! describe what the generator built.

use s3_connector_e2e::{Estate, Flavor, RunResult, strings, type_family, u64_field};
use serde_json::Value;

/// Every problem code inference can report for a broken file.
const INFERENCE_CODES: &[&str] = &[
    "FILE_TRUNCATED",
    "FILE_MALFORMED",
    "INVALID_UTF8",
    "LINE_TOO_LONG",
    "DECOMPRESSION_FAILED",
    "BINARY_CONTENT",
    "UNSUPPORTED_FORMAT",
    "PARQUET_ENCRYPTED_FOOTER",
    "EMPTY_FILE",
];

async fn extract_all(estate: &Estate) -> RunResult {
    extract_all_with(estate, &[]).await
}

async fn extract_all_with(estate: &Estate, options: &[&str]) -> RunResult {
    let mut args: Vec<&str> = estate.expected.buckets.iter().map(|b| b.name.as_str()).collect();
    args.extend_from_slice(options);
    let run = estate.extract(&args).await;
    assert_eq!(run.error, None, "the run failed");
    assert_eq!(run.exit_code, 0, "every estate bucket exists: exit code 0");
    run
}

fn check_buckets(estate: &Estate, run: &RunResult) {
    for expected in &estate.expected.buckets {
        let b =
            run.bucket(&expected.name).unwrap_or_else(|| panic!("no bucket record for {}", expected.name));
        let what = format!("[{:?}] bucket {}", estate.flavor, expected.name);
        assert_eq!(b["listed"], true, "{what}: listed");
        assert_eq!(u64_field(b, "objectCount"), expected.object_count, "{what}: objectCount");
        let junk: u64 =
            b["junk"].as_array().map(|j| j.iter().map(|x| u64_field(x, "count")).sum()).unwrap_or(0);
        assert_eq!(junk, expected.junk_count, "{what}: junk count ({})", b["junk"]);
        assert_eq!(u64_field(b, "datasetCount"), expected.dataset_count, "{what}: datasetCount");
        let default = &b["defaultEncryption"];
        assert_eq!(default["type"], expected.default_encryption.kind.as_str(), "{what}: default type");
        if let Some(arn) = &expected.default_encryption.kms_key_arn {
            assert_eq!(default["kmsKeyArn"], arn.as_str(), "{what}: default key normalised to its ARN");
        }
        assert_eq!(
            default["bucketKeyEnabled"].as_bool().unwrap_or(false),
            expected.default_encryption.bucket_key_enabled,
            "{what}: bucket key"
        );
    }
}

fn check_columns(what: &str, record: &Value, expected: &[s3_connector_e2e::ExpectedColumn]) {
    let fields = record["schema"]["fields"].as_array().cloned().unwrap_or_default();
    let got: Vec<(String, String)> = fields
        .iter()
        .map(|f| (f["name"].as_str().unwrap_or("").to_string(), f["type"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        "{what}: column names"
    );
    for ((name, got_type), want) in got.iter().zip(expected) {
        // The generator gives only the family for inferred decimals (precision depends on data).
        let same =
            if want.kind == "decimal" { type_family(got_type) == "decimal" } else { *got_type == want.kind };
        assert!(same, "{what}: column {name} has type {got_type}, expected {}", want.kind);
    }
}

fn check_datasets(estate: &Estate, run: &RunResult) {
    for expected in &estate.expected.datasets {
        let what = format!(
            "[{:?}] s3://{}/{} ({})",
            estate.flavor, expected.bucket, expected.prefix, expected.format
        );
        let d = run
            .dataset(&expected.bucket, &expected.prefix, &expected.format)
            .unwrap_or_else(|| panic!("{what}: no dataset record; datasets: {:?}", dataset_names(run)));
        assert_eq!(u64_field(d, "fileCount"), expected.file_count, "{what}: fileCount");
        assert_eq!(u64_field(d, "totalBytes"), expected.total_bytes, "{what}: totalBytes");
        let keys: Vec<String> = d["partitioning"]["keys"]
            .as_array()
            .map(|k| k.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        assert_eq!(keys, expected.partition_keys, "{what}: partition keys");
        for (key, values) in &expected.partition_values {
            let stats = d["partitioning"]["keys"]
                .as_array()
                .and_then(|k| k.iter().find(|p| p["name"] == key.as_str()))
                .unwrap_or_else(|| panic!("{what}: partition key {key} missing"));
            assert_eq!(
                u64_field(stats, "distinctValues"),
                values.len() as u64,
                "{what}: distinct values of {key}"
            );
            assert_eq!(
                stats["minValue"],
                values.first().map(String::as_str).unwrap_or(""),
                "{what}: min of {key}"
            );
            assert_eq!(
                stats["maxValue"],
                values.last().map(String::as_str).unwrap_or(""),
                "{what}: max of {key}"
            );
        }

        let available = d["schema"]["available"].as_bool().unwrap_or(false);
        assert_eq!(
            available,
            expected.schema_available,
            "{what}: schema available (problems: {:?})",
            run.problem_codes(&expected.bucket, &expected.prefix)
        );
        if !available {
            assert!(
                d["schema"]["fields"].as_array().is_none_or(|f| f.is_empty()),
                "{what}: no garbage schema"
            );
        }
        if let Some(columns) = &expected.columns {
            check_columns(&what, d, columns);
        }

        let enc = &d["encryption"];
        let mut types: Vec<String> = enc["counts"]
            .as_array()
            .map(|c| c.iter().filter_map(|x| x["type"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        types.sort();
        let mut want_types = expected.encryption.types.clone();
        want_types.sort();
        assert_eq!(types, want_types, "{what}: encryption types ({enc})");
        let mut arns = strings(&enc["kmsKeyArns"]);
        arns.sort();
        let mut want_arns = expected.encryption.kms_key_arns.clone();
        want_arns.sort();
        assert_eq!(arns, want_arns, "{what}: KMS key ARNs");
        let mixed =
            enc["mixedTypes"].as_bool().unwrap_or(false) || enc["mixedKeys"].as_bool().unwrap_or(false);
        assert_eq!(mixed, expected.encryption.mixed, "{what}: mixed flag ({enc})");

        let codes = run.problem_codes(&expected.bucket, &expected.prefix);
        for code in &expected.problems {
            assert!(codes.contains(code), "{what}: expected problem {code}, got {codes:?}");
        }
        if expected.broken {
            assert!(!codes.is_empty(), "{what}: a broken dataset reports why");
            for code in &codes {
                assert!(INFERENCE_CODES.contains(&code.as_str()), "{what}: unexpected problem {code}");
            }
        }
    }
    // Nothing more than what the generator intended.
    let expected_count: usize = estate.expected.datasets.len();
    assert_eq!(
        run.of_kind("dataset").len(),
        expected_count,
        "[{:?}] dataset count: {:?}",
        estate.flavor,
        dataset_names(run)
    );
}

fn dataset_names(run: &RunResult) -> Vec<String> {
    run.of_kind("dataset")
        .iter()
        .map(|d| {
            format!(
                "{}/{}:{}",
                d["bucket"].as_str().unwrap_or(""),
                d["prefix"].as_str().unwrap_or(""),
                d["format"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn check_summary(run: &RunResult) {
    let summaries = run.of_kind("summary");
    assert_eq!(summaries.len(), 1, "exactly one summary");
    assert!(run.records.last().and_then(|r| r.get("summary")).is_some(), "the summary is the last record");
    assert_eq!(summaries[0]["completed"], true);
    for r in &run.records {
        assert_eq!(r["schemaVersion"], "catalog.s3.v1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_estate_is_catalogued_as_intended() {
    let estate = Estate::get(Flavor::Moto);
    let run = extract_all(&estate).await;
    check_buckets(&estate, &run);
    check_datasets(&estate, &run);
    check_summary(&run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_estate_is_catalogued_as_intended() {
    let estate = Estate::get(Flavor::LocalStack);
    let run = extract_all(&estate).await;
    check_buckets(&estate, &run);
    check_datasets(&estate, &run);
    check_summary(&run);
}

/// Pages of 3 keys, split after 2 pages: every bucket of the estate is listed by a sequential
/// start, a delimiter listing after its last key (`StartAfter` with a delimiter) and parallel
/// shards, through the emulator's own pagination. The records must be the same as ever.
async fn split_listing_catalogues_the_estate_as_intended(flavor: Flavor) {
    let estate = Estate::get(flavor);
    let options =
        ["--listing-page-size", "3", "--listing-split-after-pages", "2", "--listing-concurrency", "3"];
    let run = extract_all_with(&estate, &options).await;
    check_buckets(&estate, &run);
    check_datasets(&estate, &run);
    check_summary(&run);
    let split = run.of_kind("bucket").iter().filter(|b| u64_field(b, "listingShards") > 1).count();
    assert!(split > 0, "[{flavor:?}] no bucket listing was split");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_estate_listed_in_split_pages_is_catalogued_as_intended() {
    split_listing_catalogues_the_estate_as_intended(Flavor::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstack_estate_listed_in_split_pages_is_catalogued_as_intended() {
    split_listing_catalogues_the_estate_as_intended(Flavor::LocalStack).await;
}
