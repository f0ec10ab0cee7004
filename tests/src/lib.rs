//! Shared harness for the end-to-end tests.
//!
//! The emulators are started and seeded by `scripts/test.sh` (see `deploy/local/`), which
//! exports `S3C_<FLAVOR>_ENDPOINT` and `S3C_<FLAVOR>_EXPECTED` (the generator's description of
//! the estate it built). Tests run the same command-line code path a user runs, in process,
//! writing JSON Lines to a temporary file, and compare the records with the expected estate.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;
use serde::Deserialize;
use serde_json::Value;

/// Which emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// moto server.
    Moto,
    /// LocalStack community.
    LocalStack,
}

impl Flavor {
    fn env_name(self) -> &'static str {
        match self {
            Flavor::Moto => "MOTO",
            Flavor::LocalStack => "LOCALSTACK",
        }
    }
}

/// The generator's description of the estate.
#[derive(Debug, Deserialize)]
pub struct Expected {
    /// "moto" or "localstack".
    pub flavor: String,
    /// Account id of the emulator.
    pub account_id: String,
    /// KMS keys by letter.
    pub keys: BTreeMap<String, String>,
    /// Base64 of the SSE-C key the `ssec/` objects were written with (a throwaway test key).
    #[serde(default)]
    pub ssec_key_b64: Option<String>,
    /// Client-side encrypted objects and their plaintext (`seed_estate.py` `cse`).
    #[serde(default)]
    pub cse: Option<ExpectedCse>,
    /// Buckets.
    pub buckets: Vec<ExpectedBucket>,
    /// Datasets.
    pub datasets: Vec<ExpectedDataset>,
}

/// The client-side encrypted objects of the estate (all written by the Python S3 Encryption
/// Client under one KMS key).
#[derive(Debug, Deserialize)]
pub struct ExpectedCse {
    /// The KMS key that wraps every data key.
    pub kms_key_arn: String,
    /// The objects.
    pub objects: Vec<ExpectedCseObject>,
}

/// One client-side encrypted object and what it holds.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpectedCseObject {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// `v2` or `v3`.
    pub version: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows written.
    pub row_count: usize,
    /// The first rows, each value as text.
    pub first_rows: Vec<Vec<String>>,
    /// The columns a decrypted read infers.
    pub columns: Vec<ExpectedColumn>,
    /// Custom encryption context given to the writer (empty: none).
    #[serde(default)]
    pub encryption_context: BTreeMap<String, String>,
    /// Written by multipart upload.
    #[serde(default)]
    pub multipart: bool,
    /// Plaintext size, for the large objects.
    #[serde(default)]
    pub plaintext_size: Option<u64>,
    /// Parquet row groups.
    #[serde(default)]
    pub row_groups: Option<u64>,
    /// The metadata key rewritten after the upload (`x-amz-d`), if any.
    #[serde(default)]
    pub tampered: Option<String>,
}

impl ExpectedCse {
    /// The objects matching a predicate (panics when none: the estate must hold them).
    pub fn find(&self, what: &str, pred: impl Fn(&ExpectedCseObject) -> bool) -> Vec<ExpectedCseObject> {
        let found: Vec<_> = self.objects.iter().filter(|o| pred(o)).cloned().collect();
        assert!(!found.is_empty(), "the estate has no client-side encrypted object that is {what}");
        found
    }
}

/// An expected bucket.
#[derive(Debug, Deserialize)]
pub struct ExpectedBucket {
    /// Name.
    pub name: String,
    /// Default encryption.
    pub default_encryption: ExpectedDefault,
    /// All objects.
    pub object_count: u64,
    /// Junk objects.
    pub junk_count: u64,
    /// Datasets.
    pub dataset_count: u64,
}

/// An expected default encryption.
#[derive(Debug, Deserialize)]
pub struct ExpectedDefault {
    /// NONE, SSE_S3, SSE_KMS.
    #[serde(rename = "type")]
    pub kind: String,
    /// Key ARN.
    pub kms_key_arn: Option<String>,
    /// Bucket key.
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

/// An expected dataset.
#[derive(Debug, Deserialize)]
pub struct ExpectedDataset {
    /// Bucket.
    pub bucket: String,
    /// Prefix.
    pub prefix: String,
    /// Format.
    pub format: String,
    /// Partition keys in path order.
    #[serde(default)]
    pub partition_keys: Vec<String>,
    /// Decoded partition values by key.
    #[serde(default)]
    pub partition_values: BTreeMap<String, Vec<String>>,
    /// Data files.
    pub file_count: u64,
    /// Bytes of the data files.
    pub total_bytes: u64,
    /// Whether a schema is expected.
    pub schema_available: bool,
    /// Expected columns.
    pub columns: Option<Vec<ExpectedColumn>>,
    /// Expected encryption.
    pub encryption: ExpectedEncryption,
    /// Problem codes expected on the dataset.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Only broken files.
    #[serde(default)]
    pub broken: bool,
}

/// An expected column.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpectedColumn {
    /// Name.
    pub name: String,
    /// Canonical type (for CSV/JSON decimals only the family `decimal`).
    #[serde(rename = "type")]
    pub kind: String,
}

/// Expected encryption of a dataset.
#[derive(Debug, Deserialize)]
pub struct ExpectedEncryption {
    /// Types seen.
    pub types: Vec<String>,
    /// Key ARNs seen.
    #[serde(default)]
    pub kms_key_arns: Vec<String>,
    /// Mixed flag.
    #[serde(default)]
    pub mixed: bool,
}

/// A seeded emulator.
pub struct Estate {
    /// Which emulator.
    pub flavor: Flavor,
    /// Its endpoint.
    pub endpoint: String,
    /// What the generator built.
    pub expected: Expected,
}

impl Estate {
    /// The seeded estate on `flavor`; panics with instructions when the test script did not
    /// start it (these tests must not silently pass without their emulator).
    pub fn get(flavor: Flavor) -> Estate {
        let name = flavor.env_name();
        let endpoint = std::env::var(format!("S3C_{name}_ENDPOINT"))
            .unwrap_or_else(|_| panic!("S3C_{name}_ENDPOINT is not set: run the suite with scripts/test.sh"));
        let expected_path = std::env::var(format!("S3C_{name}_EXPECTED"))
            .unwrap_or_else(|_| panic!("S3C_{name}_EXPECTED is not set: run the suite with scripts/test.sh"));
        let text = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("reading {expected_path}: {e}"));
        let expected: Expected =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {expected_path}: {e}"));
        Estate { flavor, endpoint, expected }
    }

    /// Runs `s3-connector extract <args>` against this emulator.
    pub async fn extract(&self, args: &[&str]) -> RunResult {
        let dir = tempfile::tempdir().expect("temp dir");
        let out: PathBuf = dir.path().join("out.jsonl");
        let mut argv: Vec<String> = vec!["s3-connector".into(), "extract".into()];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.extend(["--endpoint-url".into(), self.endpoint.clone(), "--region".into(), "us-east-1".into()]);
        argv.extend(["--no-progress".into(), "--quiet".into(), "-o".into(), out.display().to_string()]);
        let cli = s3_connector::cli::Cli::try_parse_from(&argv).expect("arguments parse");
        let exit_code = match s3_connector::cli::run(cli).await {
            Ok(code) => code,
            Err(e) => {
                return RunResult { exit_code: 1, error: Some(format!("{e:#}")), records: Vec::new() };
            }
        };
        let text = std::fs::read_to_string(&out).expect("output file written");
        let records = text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
        RunResult { exit_code, error: None, records }
    }
}

/// What a run gave.
#[derive(Debug)]
pub struct RunResult {
    /// Exit code (1 for a fatal error).
    pub exit_code: i32,
    /// The fatal error, if any.
    pub error: Option<String>,
    /// Records, in order.
    pub records: Vec<Value>,
}

impl RunResult {
    /// Records of one kind (`bucket`, `dataset`, `problem`, `summary`), unwrapped.
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter_map(|r| r.get(kind)).collect()
    }

    /// The dataset record for (bucket, prefix, format).
    pub fn dataset(&self, bucket: &str, prefix: &str, format: &str) -> Option<&Value> {
        self.of_kind("dataset").into_iter().find(|d| {
            d["bucket"] == bucket && d["prefix"].as_str().unwrap_or("") == prefix && d["format"] == format
        })
    }

    /// The bucket record.
    pub fn bucket(&self, name: &str) -> Option<&Value> {
        self.of_kind("bucket").into_iter().find(|b| b["name"] == name)
    }

    /// Problem codes recorded on a dataset.
    pub fn problem_codes(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.of_kind("problem")
            .into_iter()
            .filter(|p| p["bucket"] == bucket && p["datasetPrefix"].as_str().unwrap_or("") == prefix)
            .filter_map(|p| p["code"].as_str().map(str::to_string))
            .collect()
    }
}

/// proto3 JSON writes 64-bit integers as strings; absent means 0.
pub fn u64_field(v: &Value, name: &str) -> u64 {
    match &v[name] {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("{name} is not a number: {s}")),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        Value::Null => 0,
        other => panic!("{name} has an unexpected JSON type: {other}"),
    }
}

/// A string array field (absent means empty).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The type family: `decimal(10,2)` → `decimal`, `struct<..>` → `struct`.
pub fn type_family(t: &str) -> &str {
    t.split(['(', '<']).next().unwrap_or(t)
}

/// The IAM-enforcing moto and the credentials of a user that lacks `s3:ListBucket`
/// (`deploy/local/seed_iam.py`).
pub struct LockedEstate {
    /// Endpoint of the IAM-enforcing moto.
    pub endpoint: String,
    /// Bucket the user may not list.
    pub bucket: String,
    /// The user's access key id.
    pub access_key_id: String,
    /// The user's secret (a throwaway key of a local emulator).
    pub secret_access_key: String,
    /// The user's ARN.
    pub user_arn: String,
}

impl LockedEstate {
    /// Reads what the test script set up; panics with instructions when it did not.
    pub fn get() -> LockedEstate {
        let endpoint = std::env::var("S3C_MOTO_IAM_ENDPOINT").unwrap_or_else(|_| {
            panic!("S3C_MOTO_IAM_ENDPOINT is not set: run the suite with scripts/test.sh")
        });
        let path = std::env::var("S3C_MOTO_IAM_USER")
            .unwrap_or_else(|_| panic!("S3C_MOTO_IAM_USER is not set: run the suite with scripts/test.sh"));
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("user file")).expect("user JSON");
        let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} missing in {path}")).to_string();
        LockedEstate {
            endpoint,
            bucket: s("bucket"),
            access_key_id: s("access_key_id"),
            secret_access_key: s("secret_access_key"),
            user_arn: s("user_arn"),
        }
    }
}

/// Path of the `s3-connector` binary (built by the test script; `S3C_BIN` overrides).
pub fn connector_binary() -> PathBuf {
    if let Ok(p) = std::env::var("S3C_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/s3-connector
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("s3-connector")
}

/// The real binary as a separate process: a clean environment (PATH only) with these
/// credentials and no instance-metadata lookups.
pub fn binary_as(access_key_id: &str, secret: &str) -> std::process::Command {
    let binary = connector_binary();
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build --bin s3-connector`",
        binary.display()
    );
    let mut cmd = std::process::Command::new(&binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    cmd
}

/// Runs the real binary as a separate process with the given credentials.
pub fn extract_as(endpoint: &str, access_key_id: &str, secret: &str, args: &[&str]) -> RunResult {
    let out = binary_as(access_key_id, secret)
        .arg("extract")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1", "--no-progress", "--quiet"])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let records = stdout.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    RunResult {
        exit_code: out.status.code().unwrap_or(-1),
        error: (!out.status.success()).then_some(stderr),
        records,
    }
}

/// The `check` scenario seeded on the IAM-enforcing moto (`seed_iam.py`, key `check`): a
/// bucket with an SSE-KMS default, an object, an inventory configuration and a bucket policy;
/// a vendor user that may only assume roles; roles `catalog-reader` (complete, ExternalId
/// required), `catalog-no-list-role` (no s3:ListBucket), `catalog-open` (no ExternalId
/// condition) and `catalog-sampler` (a sampling user's role).
#[derive(Debug, Deserialize)]
pub struct CheckEstate {
    /// Source bucket.
    pub bucket: String,
    /// Inventory destination bucket.
    pub inventory_bucket: String,
    /// The KMS key of the bucket and its reports.
    pub key_arn: String,
    /// ExternalId the connector roles' trust policies require.
    pub external_id: String,
    /// ExternalId the sampling role requires.
    pub sampling_external_id: String,
    /// The vendor user's access key id.
    pub vendor_access_key_id: String,
    /// Its secret (a throwaway key of a local emulator).
    pub vendor_secret_access_key: String,
    /// The vendor user's ARN.
    pub vendor_arn: String,
    /// Role ARNs by name.
    pub roles: BTreeMap<String, String>,
    /// Endpoint of the IAM-enforcing moto (filled in by [`CheckEstate::get`]).
    #[serde(skip)]
    pub endpoint: String,
}

impl CheckEstate {
    /// Reads what the test script set up; panics with instructions when it did not.
    pub fn get() -> CheckEstate {
        let locked = LockedEstate::get();
        let path = std::env::var("S3C_MOTO_IAM_USER").expect("checked by LockedEstate::get");
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("user file")).expect("user JSON");
        let mut estate: CheckEstate = serde_json::from_value(v["check"].clone())
            .unwrap_or_else(|e| panic!("no `check` scenario in {path} (re-seed with seed_iam.py): {e}"));
        estate.endpoint = locked.endpoint;
        estate
    }

    /// A role's ARN by name.
    pub fn role(&self, name: &str) -> &str {
        self.roles.get(name).unwrap_or_else(|| panic!("role {name} was not seeded"))
    }

    /// Runs `s3-connector check --json <args>` as the vendor user.
    pub fn check(&self, args: &[&str]) -> CheckRun {
        check_as(&self.endpoint, &self.vendor_access_key_id, &self.vendor_secret_access_key, args)
    }
}

/// What `check --json` gave.
#[derive(Debug)]
pub struct CheckRun {
    /// Exit code.
    pub exit_code: i32,
    /// The report (`Null` when the command failed before printing one).
    pub report: Value,
    /// Standard error.
    pub stderr: String,
}

impl CheckRun {
    /// Probe results of one kind.
    pub fn probes(&self, kind: &str) -> Vec<&Value> {
        self.report["probes"]
            .as_array()
            .map(|a| a.iter().filter(|p| p["probe"] == kind).collect())
            .unwrap_or_default()
    }

    /// The only probe of a kind; panics if there is not exactly one.
    pub fn probe(&self, kind: &str) -> &Value {
        let found = self.probes(kind);
        assert_eq!(found.len(), 1, "expected one {kind} probe in {:#}", self.report);
        found[0]
    }

    /// Finding codes.
    pub fn finding_codes(&self) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["code"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
}

/// Runs `s3-connector check --json` as a separate process with the given credentials.
pub fn check_as(endpoint: &str, access_key_id: &str, secret: &str, args: &[&str]) -> CheckRun {
    let out = binary_as(access_key_id, secret)
        .arg("check")
        .arg("--json")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "us-east-1", "--max-attempts", "1"])
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    CheckRun {
        exit_code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}
pub mod grpc;
