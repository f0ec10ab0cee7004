//! Interop tests against objects written by AWS's Python S3 Encryption Client (on moto) and
//! hand-built raw-keyring objects; see `testdata/README.md`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;

const FIXTURES: &[(&str, &str)] = &[
    ("v3_csv", include_str!("testdata/v3_csv.json")),
    ("v3_parquet", include_str!("testdata/v3_parquet.json")),
    ("v3_context_csv", include_str!("testdata/v3_context_csv.json")),
    ("v3_empty", include_str!("testdata/v3_empty.json")),
    ("v2_csv_context", include_str!("testdata/v2_csv_context.json")),
    ("v2_parquet", include_str!("testdata/v2_parquet.json")),
    ("v2_multipart", include_str!("testdata/v2_multipart.json")),
    ("v3_multipart", include_str!("testdata/v3_multipart.json")),
    ("v2_aes_gcm_wrap", include_str!("testdata/v2_aes_gcm_wrap.json")),
    ("v3_aes_gcm_wrap_instruction", include_str!("testdata/v3_aes_gcm_wrap_instruction.json")),
    ("v2_rsa_oaep", include_str!("testdata/v2_rsa_oaep.json")),
    ("v1_cbc_aes_legacy", include_str!("testdata/v1_cbc_aes_legacy.json")),
    ("v2_aeswrap_legacy", include_str!("testdata/v2_aeswrap_legacy.json")),
    ("v1_cbc_rsa_legacy", include_str!("testdata/v1_cbc_rsa_legacy.json")),
];

struct Fixture {
    name: &'static str,
    doc: serde_json::Value,
    meta: BTreeMap<String, String>,
    instruction: Option<Vec<u8>>,
    ciphertext: Vec<u8>,
    plaintext: Vec<u8>,
    data_key: DataKey,
}

fn b64_field(doc: &serde_json::Value, field: &str) -> Vec<u8> {
    B64.decode(doc[field].as_str().unwrap_or_else(|| panic!("{field}"))).expect("base64")
}

/// Same rule as `csv_rows` in generate.py.
fn csv_rows(n: usize) -> Vec<u8> {
    let mut out = b"id,value,name\n".to_vec();
    let mut i: u64 = 0;
    while out.len() < n {
        out.extend_from_slice(format!("{},{},name_{}\n", i, (i * 7919) % 100003, i).as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

fn load(name: &'static str, json: &str) -> Fixture {
    let doc: serde_json::Value = serde_json::from_str(json).expect("fixture json");
    let meta: BTreeMap<String, String> = serde_json::from_value(doc["metadata"].clone()).expect("metadata");
    let instruction = doc["instruction_file"].as_str().map(|s| s.as_bytes().to_vec());
    let data_key = DataKey::from_bytes(&b64_field(&doc, "data_key_b64")).expect("data key");
    let (ciphertext, plaintext) = if doc.get("plaintext_rule").is_some() {
        // Large objects: rebuild plaintext, re-derive ciphertext via the CTR keystream, check it
        // against the stored windows, then append the stored tag.
        let len = doc["plaintext_len"].as_u64().expect("len");
        let plaintext = csv_rows(len as usize);
        assert_eq!(
            Sha256::digest(&plaintext).iter().map(|b| format!("{b:02x}")).collect::<String>(),
            doc["plaintext_sha256"].as_str().expect("sha")
        );
        let env = parse_envelope(&meta, None).expect("envelope");
        let size = doc["content_length"].as_u64().expect("size");
        let plan = plan_range(size, 0, len - 1).expect("plan");
        let mut ct = decrypt_range(&env, &data_key, &plan, &plaintext).expect("ctr");
        for w in doc["ciphertext_windows"].as_array().expect("windows") {
            let off = w["offset"].as_u64().expect("offset") as usize;
            let bytes = b64_field(w, "ciphertext_b64");
            assert_eq!(ct.get(off..off + bytes.len()), Some(&bytes[..]), "{name} window at {off}");
        }
        ct.extend_from_slice(&b64_field(&doc, "tag_b64"));
        (ct, plaintext)
    } else {
        (b64_field(&doc, "ciphertext_b64"), b64_field(&doc, "plaintext_b64"))
    };
    assert_eq!(ciphertext.len() as u64, doc["content_length"].as_u64().expect("size"), "{name}");
    Fixture { name, doc, meta, instruction, ciphertext, plaintext, data_key }
}

fn fixtures() -> Vec<Fixture> {
    FIXTURES.iter().map(|(n, j)| load(n, j)).collect()
}

fn envelope(f: &Fixture) -> Envelope {
    parse_envelope(&f.meta, f.instruction.as_deref()).unwrap_or_else(|e| panic!("{}: {e}", f.name))
}

/// The data key as the connector would get it: KMS (simulated by the fixture) or a raw keyring.
fn data_key(f: &Fixture, env: &Envelope) -> DataKey {
    if let Some(req) = kms_decrypt_request(env) {
        // The request must carry the stored context verbatim, aws:x-amz-cek-alg included.
        let stored = f.meta.get("x-amz-t").or(f.meta.get("x-amz-matdesc")).expect("context");
        let stored: BTreeMap<String, String> = serde_json::from_str(stored).expect("context json");
        assert_eq!(req.encryption_context, stored, "{}", f.name);
        assert!(req.encryption_context.contains_key("aws:x-amz-cek-alg"), "{}", f.name);
        let edk = f.meta.get("x-amz-3").or(f.meta.get("x-amz-key-v2")).expect("edk");
        assert_eq!(req.ciphertext_blob, B64.decode(edk).expect("edk b64"), "{}", f.name);
        return f.data_key.clone();
    }
    let master = if let Some(pem) = f.doc["rsa_private_pem"].as_str() {
        MasterKey::rsa_pkcs8_pem(pem).expect("rsa")
    } else {
        MasterKey::aes(&b64_field(&f.doc, "wrap_key_b64")).expect("aes")
    };
    let key = unwrap_data_key(env, &master, true).unwrap_or_else(|e| panic!("{}: {e}", f.name));
    if matches!(env.wrapping, KeyWrapping::LegacyV1 | KeyWrapping::AesWrap) {
        let strict = unwrap_data_key(env, &master, false).map_err(|e| e.code());
        assert_eq!(strict, Err("cse_legacy_not_allowed"), "{}", f.name);
    }
    assert_eq!(key, f.data_key, "{}", f.name);
    key
}

fn is_gcm(env: &Envelope) -> bool {
    !env.content.is_legacy()
}

#[test]
fn every_fixture_decrypts_whole() {
    let all = fixtures();
    assert_eq!(all.len(), FIXTURES.len());
    for f in &all {
        let env = envelope(f);
        let key = data_key(f, &env);
        let legacy = !is_gcm(&env);
        let got =
            decrypt_object(&env, &key, &f.ciphertext, legacy).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert!(got == f.plaintext, "{}", f.name);
        if legacy {
            assert_eq!(
                decrypt_object(&env, &key, &f.ciphertext, false).map_err(|e| e.code()),
                Err("cse_legacy_not_allowed")
            );
        }
    }
}

#[test]
fn fixture_formats_are_detected() {
    let want = [
        ("v3_csv", FormatVersion::V3, "kms+context"),
        ("v2_csv_context", FormatVersion::V2, "kms+context"),
        ("v3_aes_gcm_wrap_instruction", FormatVersion::V3, "AES/GCM"),
        ("v2_rsa_oaep", FormatVersion::V2, "RSA-OAEP-SHA1"),
        ("v1_cbc_aes_legacy", FormatVersion::V1, "v1-legacy"),
        ("v2_aeswrap_legacy", FormatVersion::V2, "AESWrap"),
    ];
    let all = fixtures();
    for (name, format, wrapping) in want {
        let f = all.iter().find(|f| f.name == name).expect(name);
        let env = envelope(f);
        assert_eq!((env.format, env.wrapping.as_str()), (format, wrapping), "{name}");
    }
    let split = all.iter().find(|f| f.name == "v3_aes_gcm_wrap_instruction").expect("split");
    assert_eq!(locate(&split.meta), Ok(EnvelopeLocation::InstructionFile));
    assert_eq!(parse_envelope(&split.meta, None).map_err(|e| e.code()), Err("cse_instruction_file_required"));
}

fn ranges(len: u64) -> Vec<(u64, u64)> {
    let last = len.saturating_sub(1);
    let mut out = vec![(0, 0), (0, 15), (1, 16), (15, 17), (16, 31), (last, last), (0, last), (0, u64::MAX)];
    out.extend([(len / 2, len / 2 + 100), (len / 3, len / 3), (last.saturating_sub(40), last + 100)]);
    out.retain(|(a, _)| *a < len);
    out
}

#[test]
fn every_gcm_fixture_decrypts_by_ranges() {
    for f in fixtures() {
        let env = envelope(&f);
        if !is_gcm(&env) {
            continue;
        }
        let key = data_key(&f, &env);
        let size = f.ciphertext.len() as u64;
        for (a, b) in ranges(f.plaintext.len() as u64) {
            let plan = plan_range(size, a, b).expect("plan");
            let fetched = &f.ciphertext[plan.fetch_start as usize..=plan.fetch_end as usize];
            let got = decrypt_range(&env, &key, &plan, fetched).expect("range");
            let end = (b as usize).min(f.plaintext.len() - 1);
            assert!(got == f.plaintext[a as usize..=end], "{} {a}-{b}", f.name);
        }
        if f.plaintext.is_empty() {
            assert_eq!(plan_suffix(size, 8), Ok(None));
            assert_eq!(plan_range(size, 0, 0).map_err(|e| e.code()), Err("cse_range_unsatisfiable"));
        }
    }
}

#[test]
fn parquet_footer_by_suffix_range() {
    for f in fixtures().into_iter().filter(|f| f.name.ends_with("parquet")) {
        let env = envelope(&f);
        let key = data_key(&f, &env);
        let size = f.ciphertext.len() as u64;
        let fetch = |plan: RangePlan| {
            let bytes = &f.ciphertext[plan.fetch_start as usize..=plan.fetch_end as usize];
            decrypt_range(&env, &key, &plan, bytes).expect("range")
        };
        let tail = fetch(plan_suffix(size, 8).expect("plan").expect("some"));
        assert_eq!(&tail[4..], b"PAR1", "{}", f.name);
        let footer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
        let footer = fetch(plan_suffix(size, footer_len + 8).expect("plan").expect("some"));
        assert!(footer[..] == f.plaintext[f.plaintext.len() - footer.len()..]);
        let meta =
            parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&footer[..footer_len as usize])
                .expect("footer decodes");
        assert_eq!(meta.file_metadata().num_rows(), 400, "{}", f.name);
        assert_eq!(meta.file_metadata().schema_descr().num_columns(), 4);
    }
}

fn flip_b64(value: &str, byte: usize) -> String {
    let mut raw = B64.decode(value).expect("b64");
    raw[byte] ^= 0x01;
    B64.encode(raw)
}

#[test]
fn tampered_commitment_is_key_commitment_mismatch() {
    for f in fixtures().into_iter().filter(|f| f.meta.contains_key("x-amz-d")) {
        let mut meta = f.meta.clone();
        let d = meta["x-amz-d"].clone();
        meta.insert("x-amz-d".into(), flip_b64(&d, 27));
        let env = parse_envelope(&meta, f.instruction.as_deref()).expect("envelope");
        let err = decrypt_object(&env, &f.data_key, &f.ciphertext, false).expect_err(f.name);
        assert_eq!(err, ContentError::KeyCommitmentMismatch, "{}", f.name);
        if let Ok(plan) = plan_range(f.ciphertext.len() as u64, 0, 0) {
            let err = decrypt_range(&env, &f.data_key, &plan, &f.ciphertext[..1]).expect_err(f.name);
            assert_eq!(err.code(), "cse_key_commitment_mismatch");
        }
        // A different data key (as a wrong KMS key would give) also fails the commitment.
        let other = DataKey::from_bytes(&[0x42; 32]).expect("key");
        let env = envelope(&f);
        assert_eq!(
            decrypt_object(&env, &other, &f.ciphertext, false),
            Err(ContentError::KeyCommitmentMismatch)
        );
        // So does a tampered message id (the HKDF salt).
        let mut meta = f.meta.clone();
        let i = meta["x-amz-i"].clone();
        meta.insert("x-amz-i".into(), flip_b64(&i, 0));
        let env = parse_envelope(&meta, f.instruction.as_deref()).expect("envelope");
        assert_eq!(
            decrypt_object(&env, &f.data_key, &f.ciphertext, false),
            Err(ContentError::KeyCommitmentMismatch)
        );
    }
}

#[test]
fn tampered_ciphertext_is_authentication_failed() {
    for f in fixtures() {
        let env = envelope(&f);
        if !is_gcm(&env) {
            continue;
        }
        for pos in [0, f.ciphertext.len() / 2, f.ciphertext.len() - 1] {
            let mut body = f.ciphertext.clone();
            body[pos] ^= 0x80;
            assert_eq!(
                decrypt_object(&env, &f.data_key, &body, false),
                Err(ContentError::AuthenticationFailed),
                "{} at {pos}",
                f.name
            );
        }
        let truncated = &f.ciphertext[..f.ciphertext.len() - 1];
        assert!(decrypt_object(&env, &f.data_key, truncated, false).is_err(), "{}", f.name);
        if matches!(env.content, ContentCipher::AesGcm { .. }) {
            let other = DataKey::from_bytes(&[0x42; 32]).expect("key");
            assert_eq!(
                decrypt_object(&env, &other, &f.ciphertext, false),
                Err(ContentError::AuthenticationFailed)
            );
        }
    }
}

#[test]
fn tampered_wrapped_keys_fail_to_unwrap() {
    for f in fixtures() {
        let env = envelope(&f);
        if kms_decrypt_request(&env).is_some() {
            continue;
        }
        let mut bad = env.clone();
        let last = bad.encrypted_data_key.len() - 1;
        bad.encrypted_data_key[last] ^= 1;
        let master = if let Some(pem) = f.doc["rsa_private_pem"].as_str() {
            MasterKey::rsa_pkcs8_pem(pem).expect("rsa")
        } else {
            MasterKey::aes(&b64_field(&f.doc, "wrap_key_b64")).expect("aes")
        };
        assert_eq!(
            unwrap_data_key(&bad, &master, true).map_err(|e| e.code()),
            Err("cse_unwrap_failed"),
            "{}",
            f.name
        );
        // AES/GCM wrapping binds the content cipher name as AAD: claiming another suite fails.
        if env.wrapping == KeyWrapping::AesGcm && env.format == FormatVersion::V2 {
            let mut other = env.clone();
            other.content = ContentCipher::AesCbc { iv: [0; 16] };
            assert_eq!(
                unwrap_data_key(&other, &master, true).map_err(|e| e.code()),
                Err("cse_unwrap_failed")
            );
        }
        if env.wrapping == KeyWrapping::RsaOaepSha1 {
            let mut other = env.clone();
            other.content = ContentCipher::AesCbc { iv: [0; 16] };
            assert_eq!(
                unwrap_data_key(&other, &master, true).map_err(|e| e.code()),
                Err("cse_algorithm_downgrade")
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_ranges_equal_slices(which in 0usize..4, a in 0u64..20_000, len in 0u64..6_000) {
        let name = ["v3_csv", "v2_csv_context", "v3_parquet", "v2_aes_gcm_wrap"][which];
        let (_, json) = FIXTURES.iter().find(|(n, _)| *n == name).expect("fixture");
        let f = load(name, json);
        let env = envelope(&f);
        let n = f.plaintext.len() as u64;
        let a = a % n;
        let b = a.saturating_add(len);
        let plan = plan_range(f.ciphertext.len() as u64, a, b).expect("plan");
        prop_assert!(plan.fetch_end < f.ciphertext.len() as u64 - 16);
        prop_assert_eq!(plan.fetch_start % 16, 0);
        let fetched = &f.ciphertext[plan.fetch_start as usize..=plan.fetch_end as usize];
        let got = decrypt_range(&env, &f.data_key, &plan, fetched).expect("range");
        let end = b.min(n - 1) as usize;
        prop_assert_eq!(&got[..], &f.plaintext[a as usize..=end]);
    }

    #[test]
    fn random_suffixes_equal_tails(n in 0u64..20_000) {
        let (_, json) = FIXTURES[0];
        let f = load("v3_csv", json);
        let env = envelope(&f);
        match plan_suffix(f.ciphertext.len() as u64, n).expect("plan") {
            None => prop_assert_eq!(n, 0),
            Some(plan) => {
                let fetched = &f.ciphertext[plan.fetch_start as usize..=plan.fetch_end as usize];
                let got = decrypt_range(&env, &f.data_key, &plan, fetched).expect("range");
                let want = &f.plaintext[f.plaintext.len().saturating_sub(n as usize)..];
                prop_assert_eq!(&got[..], want);
            }
        }
    }
}
