//! The S3 Encryption Client envelope: which data key, wrapped how, protects which content cipher.
//!
//! Input is what a reader has: the object's user metadata (names with or without `x-amz-meta-`,
//! any case) and, when the metadata points at one, the body of the `<key>.instruction` file.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// S3EC message format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatVersion {
    /// `x-amz-key` (SDK v1 "EncryptionOnly").
    V1,
    /// `x-amz-key-v2`.
    V2,
    /// `x-amz-3`/`x-amz-c`/`x-amz-d`/`x-amz-i` (key-committing suite 115).
    V3,
}

impl FormatVersion {
    /// Stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FormatVersion::V1 => "v1",
            FormatVersion::V2 => "v2",
            FormatVersion::V3 => "v3",
        }
    }
}

/// How the data key is wrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyWrapping {
    /// `kms+context` (V2) or `12` (V3): KMS Decrypt with this context, exactly as stored.
    KmsContext {
        /// The stored encryption context, including `aws:x-amz-cek-alg`.
        context: BTreeMap<String, String>,
    },
    /// `kms` (legacy KmsV1): KMS Decrypt with the material description as context.
    KmsV1 {
        /// The material description, normally `{"kms_cmk_id": "..."}`.
        matdesc: BTreeMap<String, String>,
    },
    /// `AES/GCM` (V2) or `02` (V3): raw AES keyring.
    AesGcm,
    /// `AESWrap` (legacy RFC 3394 key wrap).
    AesWrap,
    /// `RSA-OAEP-SHA1` (V2) or `22` (V3): raw RSA keyring.
    RsaOaepSha1,
    /// `RSA/ECB/OAEPWithSHA-256AndMGF1Padding` (legacy).
    RsaOaepSha256,
    /// V1 without `x-amz-wrap-alg`: an EDK longer than 48 bytes is RSA, otherwise AES.
    LegacyV1,
}

impl KeyWrapping {
    /// Stable name used in records and errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyWrapping::KmsContext { .. } => "kms+context",
            KeyWrapping::KmsV1 { .. } => "kms",
            KeyWrapping::AesGcm => "AES/GCM",
            KeyWrapping::AesWrap => "AESWrap",
            KeyWrapping::RsaOaepSha1 => "RSA-OAEP-SHA1",
            KeyWrapping::RsaOaepSha256 => "RSA/ECB/OAEPWithSHA-256AndMGF1Padding",
            KeyWrapping::LegacyV1 => "v1-legacy",
        }
    }
}

/// Content cipher and its per-object parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentCipher {
    /// `AES/GCM/NoPadding` (suite 0x0072): body = ciphertext ‖ tag16, no AAD.
    AesGcm {
        /// The 12-byte IV from `x-amz-iv`.
        iv: [u8; 12],
    },
    /// `AES/CBC/PKCS5Padding` (suite 0x0070, legacy, unauthenticated).
    AesCbc {
        /// The 16-byte IV from `x-amz-iv`.
        iv: [u8; 16],
    },
    /// Suite 115 (0x0073): HKDF-SHA512 key derivation with key commitment.
    Committing115 {
        /// `x-amz-i`, the HKDF salt.
        message_id: [u8; 28],
        /// `x-amz-d`, the expected key commitment.
        commitment: [u8; 28],
    },
}

impl ContentCipher {
    /// The cipher name the writers bind into the wrapped key (AAD of AES/GCM wrapping, suffix of
    /// the RSA plaintext, `aws:x-amz-cek-alg` of the KMS context).
    pub fn cipher_name(&self) -> &'static str {
        match self {
            ContentCipher::AesGcm { .. } => GCM_NAME,
            ContentCipher::AesCbc { .. } => CBC_NAME,
            ContentCipher::Committing115 { .. } => SUITE_115,
        }
    }

    /// True for the content ciphers that the S3EC only reads in legacy unauthenticated mode.
    pub fn is_legacy(&self) -> bool {
        matches!(self, ContentCipher::AesCbc { .. })
    }
}

/// Everything needed to unwrap the data key and decrypt the content of one object.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Message format version.
    pub format: FormatVersion,
    /// How the data key is wrapped.
    pub wrapping: KeyWrapping,
    /// How the content is encrypted.
    pub content: ContentCipher,
    /// The encrypted data key (not secret, but long: Debug prints its length only).
    pub encrypted_data_key: Vec<u8>,
    /// Material description (`x-amz-matdesc`, or `x-amz-m` in V3); `{}` when absent.
    pub material_description: BTreeMap<String, String>,
    /// `x-amz-unencrypted-content-length`, when stored.
    pub unencrypted_length: Option<u64>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("format", &self.format)
            .field("wrapping", &self.wrapping)
            .field("content", &self.content)
            .field("encrypted_data_key_len", &self.encrypted_data_key.len())
            .field("material_description", &self.material_description)
            .field("unencrypted_length", &self.unencrypted_length)
            .finish()
    }
}

/// Where the envelope of an object lives, judged from its user metadata alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeLocation {
    /// No S3EC metadata: not client-side encrypted (as far as the metadata says).
    NotClientSide,
    /// The whole envelope is in the object metadata.
    Metadata,
    /// (Part of) the envelope is in `<key>.instruction`: fetch it and call [`parse_envelope`].
    InstructionFile,
}

/// Why an envelope cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// No S3EC keys in the metadata (nor in the instruction file).
    #[error("object has no S3 Encryption Client metadata")]
    NotClientSide,
    /// The metadata points at an instruction file that the caller did not supply.
    #[error("the envelope is in an instruction file that was not supplied")]
    InstructionFileRequired,
    /// Keys of two format versions appear together.
    #[error("metadata mixes S3EC format versions: {formats}")]
    MixedFormats {
        /// The versions seen, e.g. `v2+v3`.
        formats: String,
    },
    /// A required key is missing.
    #[error("S3EC {format} metadata is missing {key}")]
    MissingKey {
        /// The format version being parsed.
        format: &'static str,
        /// The metadata key (without `x-amz-meta-`).
        key: &'static str,
    },
    /// A value is not valid base64.
    #[error("S3EC metadata {key} is not valid base64")]
    InvalidBase64 {
        /// The metadata key.
        key: &'static str,
    },
    /// A decoded value has the wrong length.
    #[error("S3EC metadata {key} has {actual} bytes, expected {expected}")]
    InvalidLength {
        /// The metadata key.
        key: &'static str,
        /// Expected length in bytes.
        expected: usize,
        /// Actual length in bytes.
        actual: usize,
    },
    /// A JSON value (material description, context, instruction file) is not an object of strings.
    #[error("S3EC metadata {key} is not a JSON object of strings: {reason}")]
    InvalidJson {
        /// The metadata key, or `instruction-file`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An RFC 2047 encoded word could not be decoded.
    #[error("S3EC metadata {key} has an invalid RFC 2047 encoded word")]
    InvalidEncodedWord {
        /// The metadata key.
        key: &'static str,
    },
    /// A value outside the known set (tag length, content length, ...).
    #[error("S3EC metadata {key} has an unsupported value {value:?}")]
    InvalidValue {
        /// The metadata key.
        key: &'static str,
        /// The value (never a key or secret).
        value: String,
    },
    /// Unknown key-wrapping algorithm.
    #[error("unknown S3EC key wrapping algorithm {value:?}")]
    UnknownWrapAlgorithm {
        /// The stored value.
        value: String,
    },
    /// Unknown content algorithm.
    #[error("unknown S3EC content algorithm {value:?}")]
    UnknownContentAlgorithm {
        /// The stored value.
        value: String,
    },
    /// The KMS context's `aws:x-amz-cek-alg` does not match the content algorithm (downgrade).
    #[error("encryption context says aws:x-amz-cek-alg={stored:?} but content algorithm is {declared:?}")]
    ContentAlgorithmMismatch {
        /// The value in the stored context (`None` when absent).
        stored: Option<String>,
        /// The content algorithm from the metadata.
        declared: String,
    },
    /// The same key appears twice (after case folding, or in metadata and instruction file)
    /// with different values.
    #[error("S3EC metadata {key} appears twice with different values")]
    ConflictingValue {
        /// The metadata key.
        key: String,
    },
}

impl EnvelopeError {
    /// Stable code used when the error becomes a record.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::NotClientSide => "cse_not_encrypted",
            EnvelopeError::InstructionFileRequired => "cse_instruction_file_required",
            EnvelopeError::MixedFormats { .. } => "cse_mixed_formats",
            EnvelopeError::MissingKey { .. } => "cse_missing_metadata",
            EnvelopeError::InvalidBase64 { .. }
            | EnvelopeError::InvalidLength { .. }
            | EnvelopeError::InvalidJson { .. }
            | EnvelopeError::InvalidEncodedWord { .. }
            | EnvelopeError::InvalidValue { .. }
            | EnvelopeError::ConflictingValue { .. } => "cse_invalid_metadata",
            EnvelopeError::UnknownWrapAlgorithm { .. } => "cse_unknown_wrap_algorithm",
            EnvelopeError::UnknownContentAlgorithm { .. } => "cse_unknown_content_algorithm",
            EnvelopeError::ContentAlgorithmMismatch { .. } => "cse_algorithm_downgrade",
        }
    }
}

pub(crate) const GCM_NAME: &str = "AES/GCM/NoPadding";
pub(crate) const CBC_NAME: &str = "AES/CBC/PKCS5Padding";
pub(crate) const SUITE_115: &str = "115";
/// The reserved context key writers add to every KMS context.
pub const CEK_ALG_CONTEXT_KEY: &str = "aws:x-amz-cek-alg";

const K_KEY_V1: &str = "x-amz-key";
const K_KEY_V2: &str = "x-amz-key-v2";
const K_IV: &str = "x-amz-iv";
const K_MATDESC: &str = "x-amz-matdesc";
const K_WRAP: &str = "x-amz-wrap-alg";
const K_CEK: &str = "x-amz-cek-alg";
const K_TAG_LEN: &str = "x-amz-tag-len";
const K_LEN: &str = "x-amz-unencrypted-content-length";
const K_INSTR: &str = "x-amz-crypto-instr-file";
const K3_EDK: &str = "x-amz-3";
const K3_SUITE: &str = "x-amz-c";
const K3_COMMIT: &str = "x-amz-d";
const K3_MSG_ID: &str = "x-amz-i";
const K3_WRAP: &str = "x-amz-w";
const K3_MATDESC: &str = "x-amz-m";
const K3_CONTEXT: &str = "x-amz-t";

/// Keys that only V1/V2 write (`x-amz-key`/`x-amz-key-v2` decide between the two).
const V12_KEYS: [&str; 5] = [K_IV, K_MATDESC, K_WRAP, K_CEK, K_TAG_LEN];
const V3_KEYS: [&str; 7] = [K3_EDK, K3_SUITE, K3_COMMIT, K3_MSG_ID, K3_WRAP, K3_MATDESC, K3_CONTEXT];

type Meta = BTreeMap<String, String>;

/// Lowercases names, strips `x-amz-meta-`, and rejects a name that appears twice with two values.
fn normalize<I, K, V>(user_metadata: I) -> Result<Meta, EnvelopeError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = Meta::new();
    for (k, v) in user_metadata {
        let lower = k.as_ref().trim().to_ascii_lowercase();
        let name = lower.strip_prefix("x-amz-meta-").unwrap_or(&lower).to_string();
        insert_once(&mut out, name, v.as_ref().to_string())?;
    }
    Ok(out)
}

fn insert_once(map: &mut Meta, key: String, value: String) -> Result<(), EnvelopeError> {
    match map.get(&key) {
        Some(old) if *old != value => Err(EnvelopeError::ConflictingValue { key }),
        Some(_) => Ok(()),
        None => {
            map.insert(key, value);
            Ok(())
        }
    }
}

fn families(meta: &Meta) -> (bool, bool, bool) {
    let v3 = V3_KEYS.iter().any(|k| meta.contains_key(*k));
    let v1 = meta.contains_key(K_KEY_V1);
    let v2 = meta.contains_key(K_KEY_V2);
    (v1, v2, v3)
}

fn check_mixed(meta: &Meta) -> Result<(), EnvelopeError> {
    let (v1, v2, v3) = families(meta);
    let v12_only = V12_KEYS.iter().any(|k| meta.contains_key(*k));
    let mut seen = Vec::new();
    if v1 {
        seen.push("v1");
    }
    if v2 {
        seen.push("v2");
    }
    if v3 {
        seen.push("v3");
    }
    // V1/V2 companions (iv, matdesc, wrap-alg, ...) next to V3 keys are a mix too.
    if v3 && v12_only && !v1 && !v2 {
        seen.insert(0, "v1/v2");
    }
    if seen.len() > 1 {
        return Err(EnvelopeError::MixedFormats { formats: seen.join("+") });
    }
    Ok(())
}

/// Judges from user metadata alone whether the object is client-side encrypted and where its
/// envelope lives.
pub fn locate<I, K, V>(user_metadata: I) -> Result<EnvelopeLocation, EnvelopeError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let meta = normalize(user_metadata)?;
    check_mixed(&meta)?;
    let (v1, v2, v3) = families(&meta);
    if v1 || v2 || (v3 && meta.contains_key(K3_EDK)) {
        return Ok(EnvelopeLocation::Metadata);
    }
    // V3 keeps c/d/i on the object and moves the wrapped key to the instruction file.
    if v3 || meta.contains_key(K_INSTR) {
        return Ok(EnvelopeLocation::InstructionFile);
    }
    Ok(EnvelopeLocation::NotClientSide)
}

/// Parses the envelope from user metadata and, when supplied, the instruction file body.
///
/// For V1/V2 the instruction file holds all keys; for V3 it holds `x-amz-3`, `x-amz-w`,
/// `x-amz-m` and `x-amz-t` while `x-amz-c`, `x-amz-d`, `x-amz-i` stay on the object.
pub fn parse_envelope<I, K, V>(
    user_metadata: I,
    instruction_file: Option<&[u8]>,
) -> Result<Envelope, EnvelopeError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut meta = normalize(user_metadata)?;
    if let Some(body) = instruction_file {
        for (k, v) in parse_instruction_file(body)? {
            insert_once(&mut meta, k, v)?;
        }
    }
    check_mixed(&meta)?;
    let (v1, v2, v3) = families(&meta);
    if v3 {
        if !meta.contains_key(K3_EDK) && instruction_file.is_none() {
            return Err(EnvelopeError::InstructionFileRequired);
        }
        return parse_v3(&meta);
    }
    if v1 || v2 {
        return parse_v12(&meta, if v2 { FormatVersion::V2 } else { FormatVersion::V1 });
    }
    if meta.contains_key(K_INSTR) && instruction_file.is_none() {
        return Err(EnvelopeError::InstructionFileRequired);
    }
    Err(EnvelopeError::NotClientSide)
}

/// An instruction file is one JSON object; values are strings (numbers are accepted as text).
fn parse_instruction_file(body: &[u8]) -> Result<Meta, EnvelopeError> {
    let bad = |reason: String| EnvelopeError::InvalidJson { key: "instruction-file", reason };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(obj) = value else {
        return Err(bad("not a JSON object".into()));
    };
    let mut out = Meta::new();
    for (k, v) in obj {
        let text = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(bad(format!("value of {k} is not a string"))),
        };
        let lower = k.to_ascii_lowercase();
        let name = lower.strip_prefix("x-amz-meta-").unwrap_or(&lower).to_string();
        insert_once(&mut out, name, text)?;
    }
    Ok(out)
}

fn required<'m>(meta: &'m Meta, format: FormatVersion, key: &'static str) -> Result<&'m str, EnvelopeError> {
    meta.get(key).map(String::as_str).ok_or(EnvelopeError::MissingKey { format: format.as_str(), key })
}

fn base64_field(meta: &Meta, format: FormatVersion, key: &'static str) -> Result<Vec<u8>, EnvelopeError> {
    B64.decode(required(meta, format, key)?.trim()).map_err(|_| EnvelopeError::InvalidBase64 { key })
}

fn fixed<const N: usize>(bytes: &[u8], key: &'static str) -> Result<[u8; N], EnvelopeError> {
    <[u8; N]>::try_from(bytes).map_err(|_| EnvelopeError::InvalidLength {
        key,
        expected: N,
        actual: bytes.len(),
    })
}

/// Parses a JSON object of strings, after RFC 2047 decoding; absent means `{}`.
fn json_map(meta: &Meta, key: &'static str) -> Result<BTreeMap<String, String>, EnvelopeError> {
    let Some(raw) = meta.get(key) else {
        return Ok(BTreeMap::new());
    };
    let text = decode_rfc2047(raw).ok_or(EnvelopeError::InvalidEncodedWord { key })?;
    let bad = |reason: String| EnvelopeError::InvalidJson { key, reason };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(obj) = value else {
        return Err(bad("not a JSON object".into()));
    };
    obj.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(bad(format!("value of {k} is not a string"))),
        })
        .collect()
}

fn unencrypted_length(meta: &Meta) -> Result<Option<u64>, EnvelopeError> {
    meta.get(K_LEN)
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| EnvelopeError::InvalidValue { key: K_LEN, value: v.clone() })
        })
        .transpose()
}

/// The downgrade check: the context the key was wrapped under must name the content algorithm.
fn check_cek_alg(context: &BTreeMap<String, String>, content: &ContentCipher) -> Result<(), EnvelopeError> {
    let stored = context.get(CEK_ALG_CONTEXT_KEY);
    if stored.map(String::as_str) != Some(content.cipher_name()) {
        return Err(EnvelopeError::ContentAlgorithmMismatch {
            stored: stored.cloned(),
            declared: content.cipher_name().to_string(),
        });
    }
    Ok(())
}

fn parse_v12(meta: &Meta, format: FormatVersion) -> Result<Envelope, EnvelopeError> {
    let edk_key = if format == FormatVersion::V2 { K_KEY_V2 } else { K_KEY_V1 };
    let encrypted_data_key = base64_field(meta, format, edk_key)?;
    let iv = base64_field(meta, format, K_IV)?;
    // A missing x-amz-cek-alg means CBC (V1 never writes it).
    let content = match meta.get(K_CEK).map(|s| s.trim()) {
        None | Some(CBC_NAME) => ContentCipher::AesCbc { iv: fixed(&iv, K_IV)? },
        Some(GCM_NAME) => ContentCipher::AesGcm { iv: fixed(&iv, K_IV)? },
        Some(other) => return Err(EnvelopeError::UnknownContentAlgorithm { value: other.to_string() }),
    };
    if let Some(tag) = meta.get(K_TAG_LEN) {
        let ok = matches!(content, ContentCipher::AesGcm { .. }) && tag.trim() == "128";
        if !ok {
            return Err(EnvelopeError::InvalidValue { key: K_TAG_LEN, value: tag.clone() });
        }
    }
    let material_description = json_map(meta, K_MATDESC)?;
    let wrapping = match meta.get(K_WRAP).map(|s| s.trim()) {
        None if format == FormatVersion::V1 => KeyWrapping::LegacyV1,
        None => return Err(EnvelopeError::MissingKey { format: format.as_str(), key: K_WRAP }),
        Some("kms+context") => {
            check_cek_alg(&material_description, &content)?;
            KeyWrapping::KmsContext { context: material_description.clone() }
        }
        Some("kms") => KeyWrapping::KmsV1 { matdesc: material_description.clone() },
        Some("AES/GCM") => KeyWrapping::AesGcm,
        Some("AESWrap") => KeyWrapping::AesWrap,
        Some("RSA-OAEP-SHA1") => KeyWrapping::RsaOaepSha1,
        Some("RSA/ECB/OAEPWithSHA-256AndMGF1Padding") => KeyWrapping::RsaOaepSha256,
        Some(other) => return Err(EnvelopeError::UnknownWrapAlgorithm { value: other.to_string() }),
    };
    Ok(Envelope {
        format,
        wrapping,
        content,
        encrypted_data_key,
        material_description,
        unencrypted_length: unencrypted_length(meta)?,
    })
}

fn parse_v3(meta: &Meta) -> Result<Envelope, EnvelopeError> {
    let format = FormatVersion::V3;
    let suite = required(meta, format, K3_SUITE)?.trim();
    if suite != SUITE_115 {
        return Err(EnvelopeError::UnknownContentAlgorithm { value: suite.to_string() });
    }
    let commitment = fixed(&base64_field(meta, format, K3_COMMIT)?, K3_COMMIT)?;
    let message_id = fixed(&base64_field(meta, format, K3_MSG_ID)?, K3_MSG_ID)?;
    let content = ContentCipher::Committing115 { message_id, commitment };
    let encrypted_data_key = base64_field(meta, format, K3_EDK)?;
    let material_description = json_map(meta, K3_MATDESC)?;
    let wrapping = match required(meta, format, K3_WRAP)?.trim() {
        "12" => {
            let context = json_map(meta, K3_CONTEXT)?;
            check_cek_alg(&context, &content)?;
            KeyWrapping::KmsContext { context }
        }
        "02" => KeyWrapping::AesGcm,
        "22" => KeyWrapping::RsaOaepSha1,
        other => return Err(EnvelopeError::UnknownWrapAlgorithm { value: other.to_string() }),
    };
    Ok(Envelope {
        format,
        wrapping,
        content,
        encrypted_data_key,
        material_description,
        unencrypted_length: unencrypted_length(meta)?,
    })
}

/// Decodes RFC 2047 encoded words (`=?UTF-8?B?...?=`, `=?UTF-8?Q?...?=`) in a metadata value.
///
/// Text outside encoded words is kept; whitespace between two adjacent encoded words is dropped
/// (RFC 2047 §6.2). Returns `None` for a malformed word or a charset other than UTF-8/US-ASCII.
pub fn decode_rfc2047(value: &str) -> Option<String> {
    if !value.contains("=?") {
        return Some(value.to_string());
    }
    let mut out: Vec<u8> = Vec::with_capacity(value.len());
    let mut rest = value;
    let mut last_was_word = false;
    while !rest.is_empty() {
        match rest.find("=?") {
            Some(start) => {
                let (before, at) = rest.split_at(start);
                let Some((word, after)) = parse_word(at) else {
                    // Not an encoded word after all: keep "=?" literally and go on.
                    flush_text(&mut out, before);
                    out.extend_from_slice(b"=?");
                    rest = at.get(2..).unwrap_or("");
                    last_was_word = false;
                    continue;
                };
                if last_was_word && before.chars().all(char::is_whitespace) {
                    // Whitespace between adjacent encoded words is not part of the text.
                } else {
                    flush_text(&mut out, before);
                }
                out.extend_from_slice(&word?);
                last_was_word = true;
                rest = after;
            }
            None => {
                flush_text(&mut out, rest);
                rest = "";
            }
        }
    }
    String::from_utf8(out).ok()
}

fn flush_text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
}

/// Parses one `=?charset?enc?text?=` at the start of `s`. Outer `None`: not a word at all;
/// inner `None`: a word we cannot decode.
fn parse_word(s: &str) -> Option<(Option<Vec<u8>>, &str)> {
    let body = s.strip_prefix("=?")?;
    let (charset, body) = body.split_once('?')?;
    let (encoding, body) = body.split_once('?')?;
    let (text, after) = body.split_once("?=")?;
    if charset.is_empty() || encoding.len() != 1 || text.contains(char::is_whitespace) {
        return None;
    }
    // RFC 2231 allows a language suffix: UTF-8*en.
    let charset = charset.split('*').next().unwrap_or(charset);
    if !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("us-ascii")) {
        return Some((None, after));
    }
    let decoded = match encoding {
        "B" | "b" => B64.decode(text).ok(),
        "Q" | "q" => decode_q(text),
        _ => None,
    };
    Some((decoded, after))
}

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Pairs = Vec<(&'static str, &'static str)>;

    fn v2_kms() -> Pairs {
        vec![
            ("x-amz-meta-x-amz-key-v2", "PsuclPnlo2O0MQoov6kL1TBlaZG6oyNwWuAqmAgq7g8b9ZeeORi3VTMg624FU9jx"),
            ("x-amz-meta-x-amz-iv", "dqqlq2dRVSQ5hFRb"),
            ("x-amz-meta-x-amz-matdesc", r#"{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}"#),
            ("x-amz-meta-x-amz-wrap-alg", "kms+context"),
            ("x-amz-meta-x-amz-cek-alg", "AES/GCM/NoPadding"),
        ]
    }

    const D28: &str = "EYanygxVdrOeX2JYkhZ6/abrRIl1DF0Ve08GzQ==";

    fn v3_object() -> Pairs {
        vec![("x-amz-c", "115"), ("x-amz-d", D28), ("x-amz-i", D28)]
    }

    fn with(mut base: Pairs, extra: &[(&'static str, &'static str)]) -> Pairs {
        base.extend_from_slice(extra);
        base
    }

    fn without(base: Pairs, key: &str) -> Pairs {
        base.into_iter().filter(|(k, _)| !k.ends_with(key)).collect()
    }

    #[test]
    fn go_v2_example_parses() {
        let env = parse_envelope(v2_kms(), None).expect("parses");
        assert_eq!(env.format, FormatVersion::V2);
        assert!(matches!(env.content, ContentCipher::AesGcm { .. }));
        let KeyWrapping::KmsContext { context } = &env.wrapping else { panic!("{:?}", env.wrapping) };
        assert_eq!(context.get(CEK_ALG_CONTEXT_KEY).map(String::as_str), Some(GCM_NAME));
        assert_eq!(env.encrypted_data_key.len(), 48);
    }

    #[test]
    fn metadata_names_are_case_insensitive() {
        let upper: Vec<(String, &str)> =
            v2_kms().into_iter().map(|(k, v)| (k.to_ascii_uppercase(), v)).collect();
        assert_eq!(parse_envelope(upper, None), parse_envelope(v2_kms(), None));
    }

    #[test]
    fn error_table() {
        let v3_full = with(
            v3_object(),
            &[("x-amz-3", "AAAA"), ("x-amz-w", "12"), ("x-amz-t", r#"{"aws:x-amz-cek-alg":"115"}"#)],
        );
        let cases: Vec<(&str, Pairs, &str)> = vec![
            ("empty", vec![], "cse_not_encrypted"),
            ("only marker", vec![("x-amz-crypto-instr-file", "")], "cse_instruction_file_required"),
            ("v3 without edk", v3_object(), "cse_instruction_file_required"),
            ("v1+v2", with(v2_kms(), &[("x-amz-key", "AAAA")]), "cse_mixed_formats"),
            ("v2+v3", with(v2_kms(), &[("x-amz-c", "115")]), "cse_mixed_formats"),
            ("v3+iv", with(v3_full.clone(), &[("x-amz-iv", "AAAA")]), "cse_mixed_formats"),
            ("no iv", without(v2_kms(), "x-amz-iv"), "cse_missing_metadata"),
            ("no wrap v2", without(v2_kms(), "wrap-alg"), "cse_missing_metadata"),
            (
                "bad cek",
                with(without(v2_kms(), "cek-alg"), &[("x-amz-cek-alg", "AES/CTR")]),
                "cse_unknown_content_algorithm",
            ),
            (
                "bad wrap",
                with(without(v2_kms(), "wrap-alg"), &[("x-amz-wrap-alg", "rot13")]),
                "cse_unknown_wrap_algorithm",
            ),
            ("bad tag len", with(v2_kms(), &[("x-amz-tag-len", "96")]), "cse_invalid_metadata"),
            (
                "bad length",
                with(v2_kms(), &[("x-amz-unencrypted-content-length", "-1")]),
                "cse_invalid_metadata",
            ),
            ("bad base64", with(without(v2_kms(), "iv"), &[("x-amz-iv", "!!")]), "cse_invalid_metadata"),
            ("short iv", with(without(v2_kms(), "iv"), &[("x-amz-iv", "AAAA")]), "cse_invalid_metadata"),
            (
                "matdesc not json",
                with(without(v2_kms(), "matdesc"), &[("x-amz-matdesc", "{")]),
                "cse_invalid_metadata",
            ),
            (
                "matdesc non-string",
                with(without(v2_kms(), "matdesc"), &[("x-amz-matdesc", r#"{"a":1}"#)]),
                "cse_invalid_metadata",
            ),
            // Downgrade: the context names GCM but the content claims CBC (and vice versa).
            (
                "downgrade to cbc",
                with(
                    without(without(v2_kms(), "cek-alg"), "iv"),
                    &[("x-amz-iv", "AAAAAAAAAAAAAAAAAAAAAA==")],
                ),
                "cse_algorithm_downgrade",
            ),
            (
                "context without cek-alg",
                with(without(v2_kms(), "matdesc"), &[("x-amz-matdesc", "{}")]),
                "cse_algorithm_downgrade",
            ),
            (
                "v3 context says gcm",
                with(
                    v3_object(),
                    &[
                        ("x-amz-3", "AAAA"),
                        ("x-amz-w", "12"),
                        ("x-amz-t", r#"{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}"#),
                    ],
                ),
                "cse_algorithm_downgrade",
            ),
            (
                "v3 suite 114",
                with(without(v3_full.clone(), "amz-c"), &[("x-amz-c", "114")]),
                "cse_unknown_content_algorithm",
            ),
            (
                "v3 wrap 99",
                with(without(v3_full.clone(), "amz-w"), &[("x-amz-w", "99")]),
                "cse_unknown_wrap_algorithm",
            ),
            (
                "v3 short commitment",
                with(without(v3_full.clone(), "amz-d"), &[("x-amz-d", "AAAA")]),
                "cse_invalid_metadata",
            ),
            ("conflicting case", with(v2_kms(), &[("X-AMZ-META-X-AMZ-IV", "AAAA")]), "cse_invalid_metadata"),
        ];
        for (name, meta, code) in cases {
            let err = parse_envelope(meta, None).expect_err(name);
            assert_eq!(err.code(), code, "{name}: {err}");
        }
        assert!(parse_envelope(v3_full, None).is_ok());
    }

    #[test]
    fn locate_table() {
        let cases: Vec<(&str, Pairs, EnvelopeLocation)> = vec![
            ("plain", vec![("owner", "x")], EnvelopeLocation::NotClientSide),
            ("v2", v2_kms(), EnvelopeLocation::Metadata),
            ("v3 split", v3_object(), EnvelopeLocation::InstructionFile),
            ("v1 instr", vec![("x-amz-meta-x-amz-crypto-instr-file", "")], EnvelopeLocation::InstructionFile),
        ];
        for (name, meta, want) in cases {
            assert_eq!(locate(meta).expect(name), want, "{name}");
        }
    }

    #[test]
    fn v3_instruction_file_split() {
        let instr = br#"{"x-amz-3":"AAAA","x-amz-w":"02","x-amz-m":"{\"purpose\":\"test\"}"}"#;
        let env = parse_envelope(v3_object(), Some(instr)).expect("parses");
        assert_eq!(env.format, FormatVersion::V3);
        assert_eq!(env.wrapping, KeyWrapping::AesGcm);
        assert_eq!(env.material_description.get("purpose").map(String::as_str), Some("test"));
        // KMS-wrapped V3: the context travels in the instruction file too.
        let kms =
            br#"{"x-amz-3":"AAAA","x-amz-w":"12","x-amz-t":"{\"aws:x-amz-cek-alg\":\"115\",\"t\":\"x\"}"}"#;
        let env = parse_envelope(v3_object(), Some(kms)).expect("kms instr");
        let KeyWrapping::KmsContext { context } = env.wrapping else { panic!("kms") };
        assert_eq!(context.len(), 2);
        // An instruction file that contradicts the object metadata is rejected.
        let clash = br#"{"x-amz-3":"AAAA","x-amz-w":"02","x-amz-c":"114"}"#;
        assert_eq!(
            parse_envelope(v3_object(), Some(clash)).map_err(|e| e.code()),
            Err("cse_invalid_metadata")
        );
        // V2 with everything in the instruction file.
        let v2: BTreeMap<&str, &str> =
            v2_kms().into_iter().map(|(k, v)| (k.trim_start_matches("x-amz-meta-"), v)).collect();
        let body = serde_json::to_vec(&v2).expect("json");
        let env = parse_envelope([("x-amz-crypto-instr-file", "")], Some(&body)).expect("v2 instr");
        assert_eq!(env.format, FormatVersion::V2);
        for bad in [&b"[1]"[..], b"{", br#"{"x-amz-iv":true}"#] {
            assert_eq!(
                parse_envelope(v3_object(), Some(bad)).map_err(|e| e.code()),
                Err("cse_invalid_metadata")
            );
        }
    }

    #[test]
    fn v1_legacy_parses() {
        let meta = [("x-amz-key", "AAAA"), ("x-amz-iv", "AAAAAAAAAAAAAAAAAAAAAA=="), ("x-amz-matdesc", "{}")];
        let env = parse_envelope(meta, None).expect("v1");
        assert_eq!(env.format, FormatVersion::V1);
        assert_eq!(env.wrapping, KeyWrapping::LegacyV1);
        assert!(env.content.is_legacy());
    }

    #[test]
    fn rfc2047_table() {
        let cases = [
            ("plain {}", Some("plain {}")),
            ("=?UTF-8?B?eyJrIjoiw6kifQ==?=", Some("{\"k\":\"é\"}")),
            ("=?utf-8?Q?=7B=22k=22:=22=C3=A9=22=7D?=", Some("{\"k\":\"é\"}")),
            ("=?UTF-8?Q?a_b?= =?UTF-8?Q?c?=", Some("a bc")),
            ("x =?UTF-8?B?w6k=?= y", Some("x é y")),
            ("=?UTF-8?B?!!?=", None),
            ("=?ISO-8859-1?Q?=E9?=", None),
            ("=?UTF-8?Q?=E?=", None),
            ("a=?b", Some("a=?b")),
        ];
        for (input, want) in cases {
            assert_eq!(decode_rfc2047(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn encoded_matdesc_and_context() {
        let meta = with(
            without(v2_kms(), "matdesc"),
            &[(
                "x-amz-matdesc",
                "=?UTF-8?B?eyJhd3M6eC1hbXotY2VrLWFsZyI6IkFFUy9HQ00vTm9QYWRkaW5nIiwiY2l0eSI6Ik3DvG5jaGVuIn0=?=",
            )],
        );
        let env = parse_envelope(meta, None).expect("parses");
        let KeyWrapping::KmsContext { context } = env.wrapping else { panic!("kms") };
        assert_eq!(context.get("city").map(String::as_str), Some("München"));
    }

    #[test]
    fn debug_hides_edk_bytes() {
        let env = parse_envelope(v2_kms(), None).expect("parses");
        let dbg = format!("{env:?}");
        assert!(dbg.contains("encrypted_data_key_len: 48"));
        assert!(!dbg.contains("62, 203"));
    }

    fn meta_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
        let known: Vec<&'static str> = V3_KEYS
            .iter()
            .chain(V12_KEYS.iter())
            .chain([K_KEY_V1, K_KEY_V2, K_LEN, K_INSTR].iter())
            .copied()
            .collect();
        let name = prop_oneof![
            proptest::sample::select(known).prop_map(|s| s.to_string()),
            proptest::sample::select(vec!["x-amz-meta-x-amz-iv", "X-AMZ-KEY-V2", "other"])
                .prop_map(String::from),
            "\\PC{0,12}",
        ];
        let value = prop_oneof![
            proptest::sample::select(vec![
                "115",
                "12",
                "02",
                "22",
                "kms+context",
                "kms",
                "AES/GCM",
                "AES/GCM/NoPadding",
                "128",
                "",
                D28,
                "AAAAAAAAAAAAAAAA",
                "{}",
                r#"{"aws:x-amz-cek-alg":"115"}"#,
                "=?UTF-8?B?e30=?=",
                "=?UTF-8?Q?=?=",
            ])
            .prop_map(String::from),
            "\\PC{0,40}",
        ];
        proptest::collection::vec((name, value), 0..10)
    }

    proptest! {
        #[test]
        fn parse_never_panics(meta in meta_strategy(), instr in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))) {
            let _ = locate(meta.clone());
            let _ = parse_envelope(meta, instr.as_deref());
        }

        #[test]
        fn rfc2047_never_panics_and_roundtrips(s in "\\PC{0,40}") {
            let _ = decode_rfc2047(&s);
            let b = format!("=?UTF-8?B?{}?=", B64.encode(s.as_bytes()));
            prop_assert_eq!(decode_rfc2047(&b), Some(s.clone()));
        }
    }
}
