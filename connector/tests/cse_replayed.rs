//! Client-side decryption through the real sampling path, over the S3 Encryption Client
//! objects of `domain/src/cse/testdata` served by an in-memory store, with KMS answered by the
//! real SDK against replayed responses (a kms:Decrypt denial is a behaviour no emulator has).
//! The emulator tests (`tests/tests/cse_sample.rs`) cover objects the Python client writes live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use s3_connector::aws::{
    AwsError, AwsErrorKind, ByteRange, DefaultEncryptionRule, ListPage, ListRequest, ObjectHead, ObjectStore,
    RangeRead, RequestStats, ResponseEncryption,
};
use s3_connector::cse::{
    ClientSideDecryption, CseSettings, DataKeyDecryptor, DecryptingStore, SdkDataKeyDecryptor,
};
use s3_connector::sample::{SampleFailure, SampleOptions, sample_object};
use serde_json::Value;

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/cd22d68a-0bc2-43d0-9a21-0f0ea65d92ab";
const USER: &str = "arn:aws:sts::111122223333:assumed-role/analyst/s3-connector-sample";
const BUCKET: &str = "data";

fn fixture(name: &str) -> Value {
    let path = format!("{}/../domain/src/cse/testdata/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

fn b64(doc: &Value, field: &str) -> Vec<u8> {
    B64.decode(doc[field].as_str().unwrap_or_else(|| panic!("{field}"))).expect("base64")
}

/// An in-memory S3: objects with their user metadata; counts bytes served.
#[derive(Default)]
struct MemoryStore {
    objects: HashMap<String, (Bytes, HashMap<String, String>)>,
    bytes_served: Mutex<u64>,
}

impl MemoryStore {
    fn put(&mut self, key: &str, body: Vec<u8>, metadata: &Value) {
        let meta = metadata
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        self.objects.insert(key.to_string(), (Bytes::from(body), meta));
    }

    /// Stores a fixture object (and its instruction file) under `key`.
    fn put_fixture(&mut self, key: &str, doc: &Value) {
        self.put(key, b64(doc, "ciphertext_b64"), &doc["metadata"]);
        if let Some(text) = doc["instruction_file"].as_str() {
            self.put(&format!("{key}.instruction"), text.as_bytes().to_vec(), &Value::Null);
        }
    }

    fn served(&self) -> u64 {
        *self.bytes_served.lock().unwrap()
    }
}

fn not_found(key: &str) -> AwsError {
    AwsError {
        operation: "s3:GetObject",
        bucket: Some(BUCKET.into()),
        resource: Some(key.into()),
        kind: AwsErrorKind::NotFound,
        code: Some("NoSuchKey".into()),
        message: None,
        status: Some(404),
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn list_page(&self, _: &ListRequest) -> Result<ListPage, AwsError> {
        Ok(ListPage::default())
    }
    async fn get_range(&self, _: &str, key: &str, range: ByteRange, max: u64) -> Result<RangeRead, AwsError> {
        let (body, meta) = self.objects.get(key).ok_or_else(|| not_found(key))?;
        let size = body.len() as u64;
        let (start, len) = match range {
            ByteRange::Head(n) => (0, n),
            ByteRange::Suffix(n) => (size.saturating_sub(n), n),
            ByteRange::Span { start, len } => (start, len),
        };
        let start = start.min(size);
        let end = (start + len.min(max)).min(size);
        *self.bytes_served.lock().unwrap() += end - start;
        let crypto_metadata = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(RangeRead {
            bytes: body.slice(start as usize..end as usize),
            start,
            object_size: size,
            encryption: ResponseEncryption { crypto_metadata, ..Default::default() },
        })
    }
    async fn head(&self, _: &str, key: &str) -> Result<ObjectHead, AwsError> {
        let (body, _) = self.objects.get(key).ok_or_else(|| not_found(key))?;
        Ok(ObjectHead { size: body.len() as u64, encryption: ResponseEncryption::default() })
    }
    async fn bucket_encryption(&self, _: &str) -> Result<Option<DefaultEncryptionRule>, AwsError> {
        Ok(None)
    }
}

fn kms(events: Vec<ReplayEvent>) -> (Arc<dyn DataKeyDecryptor>, StaticReplayClient) {
    let http = StaticReplayClient::new(events);
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url("http://127.0.0.1:1")
        .http_client(http.clone())
        .build();
    let client = aws_sdk_kms::Client::from_conf(conf);
    (Arc::new(SdkDataKeyDecryptor::new(client, Arc::new(RequestStats::default()))), http)
}

fn kms_event(status: u16, body: String) -> ReplayEvent {
    ReplayEvent::new(
        http::Request::builder().uri("http://127.0.0.1:1/").body(SdkBody::empty()).unwrap(),
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .body(SdkBody::from(body))
            .unwrap(),
    )
}

fn kms_ok(data_key_b64: &str) -> ReplayEvent {
    kms_event(
        200,
        serde_json::json!({"KeyId": KEY_ARN, "Plaintext": data_key_b64, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
            .to_string(),
    )
}

fn config(settings: CseSettings) -> Arc<ClientSideDecryption> {
    Arc::new(ClientSideDecryption::load(&settings).expect("config").expect("configured"))
}

fn kms_settings() -> CseSettings {
    CseSettings { kms: true, ..CseSettings::default() }
}

async fn sample(store: &dyn ObjectStore, key: &str, rows: usize) -> Result<Vec<Vec<String>>, SampleFailure> {
    let mut options = SampleOptions::default();
    options.limits.max_rows = rows;
    let s = sample_object(store, BUCKET, key, Some(USER), "us-east-1", &options).await?;
    assert_eq!(s.encryption, s3_connector_domain::model::EncryptionType::ClientSide);
    Ok(s.sample
        .rows
        .iter()
        .map(|r| r.iter().map(|v| v.value.to_string().trim_matches('"').to_string()).collect())
        .collect())
}

/// The first `n` CSV data rows of a plaintext, split on commas.
fn csv_rows(plaintext: &[u8], n: usize) -> Vec<Vec<String>> {
    String::from_utf8_lossy(plaintext)
        .lines()
        .skip(1)
        .take(n)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn kms_wrapped_objects_decrypt_with_the_stored_context_passed_exactly() {
    for name in ["v3_csv", "v2_csv_context", "v3_context_csv"] {
        let doc = fixture(name);
        let mut mem = MemoryStore::default();
        mem.put_fixture("t/object.csv", &doc);
        let (kms, http) = kms(vec![kms_ok(doc["data_key_b64"].as_str().unwrap())]);
        let store = DecryptingStore::new(Arc::new(mem), config(kms_settings()), Some(kms));
        let rows = sample(&store, "t/object.csv", 3).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rows, csv_rows(&b64(&doc, "plaintext_b64"), 3), "{name}");

        // The Decrypt request carried the stored context, exactly (including aws:x-amz-cek-alg).
        let bodies: Vec<Vec<u8>> =
            http.actual_requests().map(|r| r.body().bytes().expect("body").to_vec()).collect();
        assert_eq!(bodies.len(), 1, "{name}: one kms:Decrypt per object");
        let sent: Value = serde_json::from_slice(&bodies[0]).expect("JSON");
        let meta = &doc["metadata"];
        let stored =
            meta.get("x-amz-t").or_else(|| meta.get("x-amz-matdesc")).and_then(Value::as_str).unwrap();
        let stored: Value = serde_json::from_str(stored).unwrap();
        assert_eq!(sent["EncryptionContext"], stored, "{name}");
        assert_eq!(
            sent["CiphertextBlob"].as_str(),
            meta.get("x-amz-3").or(meta.get("x-amz-key-v2")).and_then(Value::as_str)
        );
    }
}

#[tokio::test]
async fn a_user_without_kms_decrypt_gets_the_key_arn_the_principal_and_the_statement() {
    let doc = fixture("v3_csv");
    let mut mem = MemoryStore::default();
    mem.put_fixture("t/object.csv", &doc);
    let denial = serde_json::json!({
        "__type": "AccessDeniedException",
        "message": format!("User: {USER} is not authorized to perform: kms:Decrypt on resource: {KEY_ARN} because no identity-based policy allows the kms:Decrypt action"),
    });
    let (kms, _) = kms(vec![kms_event(400, denial.to_string())]);
    let store = DecryptingStore::new(Arc::new(mem), config(kms_settings()), Some(kms));
    let failure = sample(&store, "t/object.csv", 3).await.expect_err("no rows without kms:Decrypt");
    assert_eq!(failure.code(), "CSE_KMS_DECRYPT_DENIED", "{failure}");
    let SampleFailure::Denied(problem) = failure else { panic!("a denial") };
    assert_eq!(problem.kms_key_arn.as_deref(), Some(KEY_ARN));
    assert_eq!(problem.principal.as_deref(), Some(USER));
    assert_eq!(problem.operation.as_deref(), Some("kms:Decrypt"));
    let statement =
        problem.remediation.as_ref().and_then(|r| r.policy_statement.as_ref()).expect("statement");
    assert_eq!(statement["Action"], serde_json::json!(["kms:Decrypt"]));
    assert_eq!(statement["Resource"], KEY_ARN);
    assert!(statement.get("Condition").is_none(), "the S3EC calls KMS directly: {statement}");
    assert_eq!(s3_connector::serve::status::sample_grpc_code(problem.code), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn raw_master_keys_unwrap_aes_gcm_rsa_oaep_and_instruction_files() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [("v2_aes_gcm_wrap", "aes"), ("v3_aes_gcm_wrap_instruction", "aes"), ("v2_rsa_oaep", "rsa")];
    for (name, kind) in cases {
        let doc = fixture(name);
        let path = dir.path().join(name);
        match kind {
            "aes" => std::fs::write(&path, doc["wrap_key_b64"].as_str().unwrap()).unwrap(),
            _ => std::fs::write(&path, doc["rsa_private_pem"].as_str().unwrap()).unwrap(),
        }
        let mut mem = MemoryStore::default();
        mem.put_fixture("raw/object.csv", &doc);
        let rule = format!("{BUCKET}/raw/={kind}:file:{}", path.display());
        let settings = CseSettings { master_keys: vec![rule], ..CseSettings::default() };
        let store = DecryptingStore::new(Arc::new(mem), config(settings), None);
        let rows = sample(&store, "raw/object.csv", 2).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rows, csv_rows(&b64(&doc, "plaintext_b64"), 2), "{name}");

        // Another bucket/prefix has no key: CSE_NO_KEY, and the key never shows in the message.
        let mut mem = MemoryStore::default();
        mem.put_fixture("other/object.csv", &doc);
        let rule = format!("{BUCKET}/raw/={kind}:file:{}", path.display());
        let settings = CseSettings { master_keys: vec![rule], ..CseSettings::default() };
        let store = DecryptingStore::new(Arc::new(mem), config(settings), None);
        let failure = sample(&store, "other/object.csv", 2).await.expect_err("no key for the prefix");
        assert_eq!(failure.code(), "CSE_NO_KEY", "{name}: {failure}");
        if let Some(k) = doc["wrap_key_b64"].as_str() {
            assert!(!failure.to_string().contains(k));
        }
    }

    // A missing instruction file is named.
    let doc = fixture("v3_aes_gcm_wrap_instruction");
    let mut mem = MemoryStore::default();
    mem.put("raw/lonely.csv", b64(&doc, "ciphertext_b64"), &doc["metadata"]);
    let path = dir.path().join("v3_aes_gcm_wrap_instruction");
    let settings = CseSettings {
        master_keys: vec![format!("{BUCKET}=aes:file:{}", path.display())],
        ..CseSettings::default()
    };
    let store = DecryptingStore::new(Arc::new(mem), config(settings), None);
    let failure = sample(&store, "raw/lonely.csv", 2).await.expect_err("no instruction file");
    assert_eq!(failure.code(), "CSE_INSTRUCTION_FILE_MISSING", "{failure}");
    assert!(failure.to_string().contains("raw/lonely.csv.instruction"), "{failure}");
}

#[tokio::test]
async fn legacy_v1_needs_the_explicit_opt_in() {
    let doc = fixture("v1_cbc_aes_legacy");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    std::fs::write(&path, doc["wrap_key_b64"].as_str().unwrap()).unwrap();
    let rule = format!("{BUCKET}=aes:file:{}", path.display());
    for allow_v1 in [false, true] {
        let mut mem = MemoryStore::default();
        mem.put_fixture("v1/object.csv", &doc);
        let settings = CseSettings { master_keys: vec![rule.clone()], allow_v1, ..CseSettings::default() };
        let store = DecryptingStore::new(Arc::new(mem), config(settings), None);
        let result = sample(&store, "v1/object.csv", 2).await;
        if allow_v1 {
            assert_eq!(result.expect("decrypted"), csv_rows(&b64(&doc, "plaintext_b64"), 2));
        } else {
            assert_eq!(result.expect_err("refused").code(), "CSE_LEGACY_V1_DISABLED");
        }
    }
}

#[tokio::test]
async fn a_tampered_commitment_is_refused_before_anything_is_decrypted() {
    let mut doc = fixture("v3_csv");
    let d = doc["metadata"]["x-amz-d"].as_str().unwrap().to_string();
    let mut raw = B64.decode(d).unwrap();
    raw[0] ^= 1;
    doc["metadata"]["x-amz-d"] = Value::String(B64.encode(raw));
    // Both paths: whole-object (authenticated) and ranged (a 0-byte whole-object budget).
    for full in [None, Some(0)] {
        let mut mem = MemoryStore::default();
        mem.put_fixture("t/object.csv", &doc);
        let (kms, _) = kms(vec![kms_ok(doc["data_key_b64"].as_str().unwrap())]);
        let settings = CseSettings { full_decrypt_max_bytes: full, ..kms_settings() };
        let store = DecryptingStore::new(Arc::new(mem), config(settings), Some(kms));
        let failure = sample(&store, "t/object.csv", 2).await.expect_err("tampered");
        assert_eq!(failure.code(), "CSE_KEY_COMMITMENT_MISMATCH", "{failure}");
    }
}

#[tokio::test]
async fn parquet_footer_and_chunks_are_read_by_ranges() {
    let doc = fixture("v3_parquet");
    let ciphertext = b64(&doc, "ciphertext_b64");
    let mut mem = MemoryStore::default();
    mem.put_fixture("pq/part-0.parquet", &doc);
    let mem = Arc::new(mem);
    let (kms, _) = kms(vec![kms_ok(doc["data_key_b64"].as_str().unwrap())]);
    // Below the object size: ranged (unauthenticated) reads.
    let settings = CseSettings { full_decrypt_max_bytes: Some(1024), ..kms_settings() };
    let store = DecryptingStore::new(mem.clone(), config(settings), Some(kms));
    let mut options = SampleOptions { columns: vec!["id".into()], ..SampleOptions::default() };
    options.limits.max_rows = 5;
    let s =
        sample_object(&store, BUCKET, "pq/part-0.parquet", None, "us-east-1", &options).await.expect("rows");
    assert_eq!(s.sample.rows.len(), 5);
    assert_eq!(s.sample.columns.len(), 1);
    let plaintext = b64(&doc, "plaintext_b64");
    let plaintext_copy = plaintext.clone();
    assert_eq!(s.encryption, s3_connector_domain::model::EncryptionType::ClientSide);
    // Same rows as the plaintext file sampled directly.
    let mut plain = MemoryStore::default();
    plain.put("pq/part-0.parquet", plaintext, &Value::Null);
    let direct =
        sample_object(&plain, BUCKET, "pq/part-0.parquet", None, "us-east-1", &options).await.unwrap();
    assert_eq!(
        s.sample.rows.iter().map(|r| r[0].value.to_string()).collect::<Vec<_>>(),
        direct.sample.rows.iter().map(|r| r[0].value.to_string()).collect::<Vec<_>>()
    );
    // The reads were ranged (the object is above the 1 KiB whole-object budget): unauthenticated,
    // and any window decrypts to the plaintext's bytes.
    let before = mem.served();
    let window = store
        .get_range(BUCKET, "pq/part-0.parquet", ByteRange::Span { start: 1000, len: 77 }, 77)
        .await
        .expect("window");
    assert_eq!(&window.bytes[..], &plaintext_copy[1000..1077]);
    assert_eq!(window.object_size, ciphertext.len() as u64 - 16);
    let read = window.encryption.client_side_read.expect("decrypted");
    assert!(!read.authenticated);
    assert_eq!((read.format, read.kms_key_arn.as_deref()), ("v3", Some(KEY_ARN)));
    assert!(mem.served() - before < 100, "one aligned block window, not the object");
}
