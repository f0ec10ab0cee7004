//! Harness shared by the emulator tests: endpoints from `scripts/test.sh`, clients, unique
//! buckets and keys, inventory reports and the event fixtures with their names filled in.
#![allow(dead_code)] // each test crate uses its own subset

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use s3_connector_domain::inventory::md5_reader::md5_hex;
use s3_connector_lambda::{Config, Forwarder, LatestPointer};
use serde_json::Value;

pub const PREFIX: &str = "inv reports/";
pub const CONFIG_ID: &str = "daily+full";
pub const DEST_PREFIX: &str = "forwarded/acme";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    LocalStack,
    Moto,
}

pub fn endpoint(flavor: Flavor) -> String {
    let name = match flavor {
        Flavor::LocalStack => "S3C_LOCALSTACK_ENDPOINT",
        Flavor::Moto => "S3C_MOTO_ENDPOINT",
    };
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite with scripts/test.sh"))
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A bucket name no other test (or earlier run against the same emulator) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!(
        "lam-{tag}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    )
}

/// One test's world: an inventory bucket with reports, a destination bucket, a destination key.
pub struct World {
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub inventory_bucket: String,
    pub dest_bucket: String,
    pub source_bucket: String,
    pub dest_key_arn: String,
    pub forwarder: Forwarder,
}

impl World {
    pub async fn new(flavor: Flavor, tag: &str) -> World {
        World::with_encryption(flavor, tag, None).await
    }

    /// `sse`: `Some("AES256")` for an SSE-S3 destination; `None` for SSE-KMS under a new key.
    pub async fn with_encryption(flavor: Flavor, tag: &str, sse: Option<&str>) -> World {
        let sdk = sdk_config(&endpoint(flavor)).await;
        let s3 = s3_client(&sdk);
        let kms = aws_sdk_kms::Client::new(&sdk);
        let inventory_bucket = unique(&format!("{tag}-inv"));
        let dest_bucket = unique(&format!("{tag}-dst"));
        for bucket in [&inventory_bucket, &dest_bucket] {
            s3.create_bucket().bucket(bucket).send().await.expect("create bucket");
        }
        let dest_key_arn = new_key(&kms, "destination key B").await;
        let mut vars =
            HashMap::from([("DEST_BUCKET", dest_bucket.clone()), ("DEST_PREFIX", DEST_PREFIX.to_string())]);
        match sse {
            Some(sse) => vars.insert("DEST_SSE", sse.to_string()),
            None => vars.insert("DEST_KMS_KEY_ARN", dest_key_arn.clone()),
        };
        let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("valid config");
        let forwarder = Forwarder::new(s3.clone(), config);
        World {
            s3,
            kms,
            inventory_bucket,
            dest_bucket,
            source_bucket: unique(&format!("{tag}-src")),
            dest_key_arn,
            forwarder,
        }
    }

    pub fn folder(&self, stamp: &str) -> String {
        format!("{PREFIX}{}/{CONFIG_ID}/{stamp}/", self.source_bucket)
    }

    pub fn dest_folder(&self, stamp: &str) -> String {
        format!("{DEST_PREFIX}/{}/{CONFIG_ID}/{stamp}/", self.source_bucket)
    }

    pub fn pointer_key(&self) -> String {
        format!("{DEST_PREFIX}/{}/{CONFIG_ID}/latest.json", self.source_bucket)
    }

    pub fn manifest(&self, creation_ms: i64) -> String {
        format!(
            r#"{{"sourceBucket":"{src}","destinationBucket":"arn:aws:s3:::{inv}","version":"2016-11-30",
"creationTimestamp":"{creation_ms}","fileFormat":"CSV",
"fileSchema":"Bucket, Key, Size, LastModifiedDate, EncryptionStatus",
"files":[{{"key":"{PREFIX}{src}/{CONFIG_ID}/data/0b1c.csv.gz","size":1234,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}}]}}"#,
            src = self.source_bucket,
            inv = self.inventory_bucket,
        )
    }

    /// Writes a report's two files (the checksum as S3 writes it: hex and a newline); returns
    /// the manifest's MD5. `report_key`: SSE-KMS key of the report itself, if any.
    pub async fn put_report(
        &self,
        stamp: &str,
        manifest: &str,
        checksum: Option<&str>,
        report_key: Option<&str>,
    ) -> String {
        let md5 = md5_hex(manifest.as_bytes());
        let checksum_text = checksum.map(str::to_string).unwrap_or_else(|| format!("{md5}\n"));
        let folder = self.folder(stamp);
        for (name, body) in [("manifest.json", manifest.to_string()), ("manifest.checksum", checksum_text)] {
            let mut put = self
                .s3
                .put_object()
                .bucket(&self.inventory_bucket)
                .key(format!("{folder}{name}"))
                .body(ByteStream::from(body.into_bytes()));
            if let Some(key) = report_key {
                put = put.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(key);
            }
            put.send().await.expect("put report file");
        }
        md5
    }

    /// A fixture with this world's names substituted.
    pub fn fixture(&self, name: &str, stamp: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let text = text
            .replace("{{INVENTORY_BUCKET}}", &self.inventory_bucket)
            .replace("{{SOURCE_BUCKET}}", &self.source_bucket)
            .replace("{{TIMESTAMP}}", stamp);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The direct S3 event fixture keeping only the records at `keep` (0: checksum, 1: manifest).
    pub fn s3_event(&self, stamp: &str, keep: &[usize]) -> Value {
        let mut event = self.fixture("s3-event-encoded-keys.json", stamp);
        let records: Vec<Value> = event["Records"]
            .as_array()
            .expect("Records")
            .iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, r)| r.clone())
            .collect();
        event["Records"] = Value::Array(records);
        event
    }

    pub async fn head(&self, key: &str) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
        self.s3
            .head_object()
            .bucket(&self.dest_bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"))
    }

    pub async fn dest_keys(&self) -> Vec<String> {
        let listing =
            self.s3.list_objects_v2().bucket(&self.dest_bucket).send().await.expect("list destination");
        let mut keys: Vec<String> =
            listing.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
        keys.sort();
        keys
    }

    pub async fn pointer(&self) -> (LatestPointer, String) {
        let output = self
            .s3
            .get_object()
            .bucket(&self.dest_bucket)
            .key(self.pointer_key())
            .send()
            .await
            .expect("pointer exists");
        let etag = output.e_tag().unwrap_or_default().to_string();
        let bytes = output.body.collect().await.expect("pointer body").into_bytes();
        (serde_json::from_slice(&bytes).expect("pointer parses"), etag)
    }
}

pub async fn new_key(kms: &aws_sdk_kms::Client, description: &str) -> String {
    let key = kms.create_key().description(description).send().await.expect("create key");
    key.key_metadata().map(|m| m.arn().unwrap_or_default().to_string()).expect("key metadata")
}
