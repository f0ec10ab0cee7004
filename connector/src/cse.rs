//! Client-side decryption on the read path: objects written by the Amazon S3 Encryption Client
//! (V2, V3, legacy V1 by opt-in) are read as plaintext through [`DecryptingStore`], an
//! [`ObjectStore`] that wraps the reader's own store.
//!
//! ```text
//! get_range(plaintext range) ─► inner GET (a ciphertext superset of the range)
//!   no S3EC metadata ─► the bytes, trimmed to the range (plain objects pay nothing more)
//!   S3EC metadata ─► envelope (metadata, or GET <key>.instruction)
//!                ─► data key: KMS Decrypt (the stored context, exactly) or a raw master key
//!                ─► V3: key commitment checked (constant time) before anything is decrypted
//!                ─► small object (≤ full_decrypt_max_bytes): whole GET, authenticated decrypt
//!                   large GCM object: ranged GET + CTR decryption (unauthenticated)
//! ```
//!
//! Ranged reads are **unauthenticated**: the GCM tag covers the whole object and is not checked
//! when only a window is read (that is what makes a Parquet footer readable without fetching
//! the object). They serve schema inference and samples, never as proof of integrity; the
//! read's [`ClientSideRead::authenticated`] says which. The V3 key commitment is still verified
//! first, so an object whose commitment was tampered with is refused either way.
//!
//! Keys: KMS unwrapping uses the KMS client of the identity that reads the object (the user's
//! for sampling, the connector's for extraction). Raw master keys are configured per
//! bucket/prefix from an environment variable or a file and never appear in Debug output,
//! errors or logs. Failures become [`AwsError`]s of kind [`AwsErrorKind::ClientSide`], which
//! `extract::problems::object_problem` turns into the `CSE_*` problem codes.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use s3_connector_domain::cse::{
    self as core, ContentCipher, DataKey, Envelope, EnvelopeLocation, FormatVersion, KeyWrapping,
    KeyringError, KmsDecryptRequest, MasterKey,
};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::aws::{
    AwsError, AwsErrorKind, ByteRange, DefaultEncryptionRule, ListPage, ListRequest, ObjectHead, ObjectStore,
    RangeRead, RequestStats, ResponseEncryption,
};

/// Default: objects up to this size are fetched whole and decrypted with authentication.
pub const DEFAULT_FULL_DECRYPT_MAX_BYTES: u64 = 1024 * 1024;
/// Instruction files are small JSON documents; more than this is not one.
const MAX_INSTRUCTION_FILE_BYTES: u64 = 64 * 1024;
/// Objects whose data key is kept at once (a run reads each object a few times in a row).
const MAX_OPEN_OBJECTS: usize = 256;
const BLOCK: u64 = 16;

/// Why a client-side encrypted object cannot be read as plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CseFailure {
    /// KMS refused `kms:Decrypt` of the wrapped data key to the reading identity.
    KmsDecryptDenied,
    /// KMS could not decrypt the wrapped key with the stored context (tampered key or context).
    KmsInvalidCiphertext,
    /// No way to unwrap the data key is configured (KMS off, or no master key for the object).
    NoKey,
    /// The V3 key commitment does not match: tampered metadata or a wrong data key.
    KeyCommitmentMismatch,
    /// Legacy V1 / unauthenticated formats are not enabled.
    LegacyDisabled,
    /// The configured master key did not unwrap the data key (wrong key or tampered wrapped key).
    UnwrapFailed,
    /// The content did not authenticate (GCM tag) or decrypt.
    AuthenticationFailed,
    /// The S3EC metadata (or instruction file) is malformed, mixed or inconsistent.
    InvalidEnvelope,
    /// The metadata points at `<key>.instruction` and there is none.
    InstructionFileMissing,
    /// A format, wrapping or size the connector does not decrypt.
    Unsupported,
}

impl CseFailure {
    /// Stable problem code (docs/problems.md).
    pub fn code(self) -> &'static str {
        match self {
            CseFailure::KmsDecryptDenied => "CSE_KMS_DECRYPT_DENIED",
            CseFailure::KmsInvalidCiphertext => "CSE_KMS_INVALID_CIPHERTEXT",
            CseFailure::NoKey => "CSE_NO_KEY",
            CseFailure::KeyCommitmentMismatch => "CSE_KEY_COMMITMENT_MISMATCH",
            CseFailure::LegacyDisabled => "CSE_LEGACY_V1_DISABLED",
            CseFailure::UnwrapFailed => "CSE_UNWRAP_FAILED",
            CseFailure::AuthenticationFailed => "CSE_AUTHENTICATION_FAILED",
            CseFailure::InvalidEnvelope => "CSE_INVALID_ENVELOPE",
            CseFailure::InstructionFileMissing => "CSE_INSTRUCTION_FILE_MISSING",
            CseFailure::Unsupported => "CSE_UNSUPPORTED",
        }
    }
}

/// How a client-side encrypted read was served (set on [`ResponseEncryption::client_side_read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSideRead {
    /// `v1`, `v2` or `v3`.
    pub format: &'static str,
    /// Key wrapping, e.g. `kms+context`, `AES/GCM`, `RSA-OAEP-SHA1`.
    pub wrapping: &'static str,
    /// Content cipher: `AES/GCM/NoPadding`, `115` (V3) or `AES/CBC/PKCS5Padding`.
    pub content_cipher: &'static str,
    /// True when the whole object was decrypted and authenticated; false for ranged
    /// (unauthenticated) reads.
    pub authenticated: bool,
    /// The KMS key that unwrapped the data key, when KMS did.
    pub kms_key_arn: Option<String>,
}

// ---------------------------------------------------------------------------------- config

/// Kind of a configured master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeyKind {
    /// AES key (16, 24 or 32 bytes), base64 text.
    Aes,
    /// RSA private key, PKCS#8 (PEM, or DER).
    Rsa,
}

/// Where a master key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// An environment variable (base64 AES key).
    Env(String),
    /// A file (base64 AES key, or RSA PKCS#8 PEM/DER).
    File(PathBuf),
}

/// A master key rule: objects of `bucket` under `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRule {
    /// Bucket.
    pub bucket: String,
    /// Key prefix (empty: the whole bucket).
    pub prefix: String,
    /// AES or RSA.
    pub kind: MasterKeyKind,
    /// Where the key comes from.
    pub source: MasterKeySource,
}

/// Client-side decryption configuration errors; they name the rule or source, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CseConfigError {
    /// A rule does not parse.
    #[error(
        "invalid client-side master key rule '{rule}': expected BUCKET[/PREFIX]=aes:env:VARIABLE, BUCKET[/PREFIX]=aes:file:PATH or BUCKET[/PREFIX]=rsa:file:PATH"
    )]
    Rule {
        /// The rule as given.
        rule: String,
    },
    /// The key cannot be read or is not a valid key.
    #[error("client-side master key for s3://{bucket}/{prefix} from {source_name}: {reason}")]
    Key {
        /// Bucket.
        bucket: String,
        /// Prefix.
        prefix: String,
        /// `$VARIABLE` or the file path.
        source_name: String,
        /// Why (never key material).
        reason: String,
    },
}

/// Parses `BUCKET[/PREFIX]=aes:env:VAR`, `=aes:file:PATH` or `=rsa:file:PATH`.
pub fn parse_master_key_rule(text: &str) -> Result<MasterKeyRule, CseConfigError> {
    let bad = || CseConfigError::Rule { rule: text.to_string() };
    let (target, source) = text.split_once('=').ok_or_else(bad)?;
    let target = target.strip_prefix("s3://").unwrap_or(target);
    let (bucket, prefix) = target.split_once('/').unwrap_or((target, ""));
    if !crate::extract::targets::is_valid_bucket_name(bucket) {
        return Err(bad());
    }
    let (kind, source) = if let Some(rest) = source.strip_prefix("aes:") {
        (MasterKeyKind::Aes, rest)
    } else if let Some(rest) = source.strip_prefix("rsa:") {
        (MasterKeyKind::Rsa, rest)
    } else {
        return Err(bad());
    };
    let source = match (kind, source.split_once(':')) {
        (MasterKeyKind::Aes, Some(("env", var))) if !var.is_empty() => MasterKeySource::Env(var.into()),
        (_, Some(("file", path))) if !path.is_empty() => MasterKeySource::File(PathBuf::from(path)),
        _ => return Err(bad()),
    };
    Ok(MasterKeyRule { bucket: bucket.to_string(), prefix: prefix.to_string(), kind, source })
}

/// What the operator configured (CLI flags or serve config keys), before keys are loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CseSettings {
    /// Unwrap KMS-wrapped data keys with `kms:Decrypt` as the reading identity.
    pub kms: bool,
    /// Master key rules (`BUCKET[/PREFIX]=aes:env:VAR|aes:file:PATH|rsa:file:PATH`).
    pub master_keys: Vec<String>,
    /// Decrypt legacy V1 objects (AES-CBC content, unauthenticated) and legacy key wrappings.
    pub allow_v1: bool,
    /// Objects up to this size are decrypted whole (authenticated); `None`: the default.
    pub full_decrypt_max_bytes: Option<u64>,
}

impl CseSettings {
    /// True when no decryption is configured (client-side objects stay CLIENT_SIDE_ENCRYPTED).
    pub fn is_off(&self) -> bool {
        !self.kms && self.master_keys.is_empty()
    }
}

/// Loaded client-side decryption configuration.
pub struct ClientSideDecryption {
    kms: bool,
    master_keys: Vec<(String, String, Arc<MasterKey>)>,
    allow_legacy: bool,
    full_decrypt_max_bytes: u64,
}

impl fmt::Debug for ClientSideDecryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> =
            self.master_keys.iter().map(|(b, p, k)| format!("s3://{b}/{p} => {k:?}")).collect();
        f.debug_struct("ClientSideDecryption")
            .field("kms", &self.kms)
            .field("master_keys", &keys)
            .field("allow_legacy", &self.allow_legacy)
            .field("full_decrypt_max_bytes", &self.full_decrypt_max_bytes)
            .finish()
    }
}

impl ClientSideDecryption {
    /// Reads every master key now (a missing or malformed key fails at start-up); `None` when
    /// nothing is configured.
    pub fn load(settings: &CseSettings) -> Result<Option<ClientSideDecryption>, CseConfigError> {
        if settings.is_off() {
            return Ok(None);
        }
        let mut master_keys = Vec::new();
        for text in &settings.master_keys {
            let rule = parse_master_key_rule(text)?;
            let key = load_master_key(&rule)?;
            master_keys.push((rule.bucket, rule.prefix, Arc::new(key)));
        }
        Ok(Some(ClientSideDecryption {
            kms: settings.kms,
            master_keys,
            allow_legacy: settings.allow_v1,
            full_decrypt_max_bytes: settings.full_decrypt_max_bytes.unwrap_or(DEFAULT_FULL_DECRYPT_MAX_BYTES),
        }))
    }

    /// True when KMS-wrapped data keys are unwrapped.
    pub fn kms_enabled(&self) -> bool {
        self.kms
    }

    /// True when legacy V1 objects are decrypted too.
    pub fn allows_v1(&self) -> bool {
        self.allow_legacy
    }

    /// The master key of the most specific rule covering `bucket`/`key`.
    fn master_key_for(&self, bucket: &str, key: &str) -> Option<&Arc<MasterKey>> {
        self.master_keys
            .iter()
            .filter(|(b, p, _)| b == bucket && key.starts_with(p.as_str()))
            .max_by_key(|(_, p, _)| p.len())
            .map(|(_, _, k)| k)
    }
}

fn load_master_key(rule: &MasterKeyRule) -> Result<MasterKey, CseConfigError> {
    let (raw, source_name) = match &rule.source {
        MasterKeySource::Env(var) => (std::env::var(var).ok().map(String::into_bytes), format!("${var}")),
        MasterKeySource::File(path) => (std::fs::read(path).ok(), path.display().to_string()),
    };
    let err = |reason: String| CseConfigError::Key {
        bucket: rule.bucket.clone(),
        prefix: rule.prefix.clone(),
        source_name: source_name.clone(),
        reason,
    };
    let raw = Zeroizing::new(raw.ok_or_else(|| err("not set or not readable".into()))?);
    match rule.kind {
        MasterKeyKind::Aes => {
            let text = std::str::from_utf8(&raw).map_err(|_| err("not base64 text".into()))?;
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .map_err(|_| err("not valid base64".into()))?,
            );
            MasterKey::aes(&bytes).map_err(|e| err(e.to_string()))
        }
        MasterKeyKind::Rsa => match std::str::from_utf8(&raw) {
            Ok(pem) if pem.contains("-----BEGIN") => MasterKey::rsa_pkcs8_pem(pem),
            _ => MasterKey::rsa_pkcs8_der(&raw),
        }
        .map_err(|e| err(e.to_string())),
    }
}

// ---------------------------------------------------------------------------------- KMS seam

/// A data key KMS returned, with the key that unwrapped it.
pub struct UnwrappedKey {
    /// The plaintext data key.
    pub key: DataKey,
    /// `KeyId` of the Decrypt response (the key ARN).
    pub key_arn: Option<String>,
}

/// The KMS call client-side decryption needs.
#[async_trait]
pub trait DataKeyDecryptor: Send + Sync {
    /// `kms:Decrypt` of the wrapped data key with the stored encryption context.
    async fn decrypt(&self, request: &KmsDecryptRequest) -> Result<UnwrappedKey, AwsError>;
}

/// [`DataKeyDecryptor`] over the AWS SDK, as the identity of `client`.
pub struct SdkDataKeyDecryptor {
    client: aws_sdk_kms::Client,
    stats: Arc<RequestStats>,
}

impl SdkDataKeyDecryptor {
    /// Wraps a client; calls are counted in `stats`.
    pub fn new(client: aws_sdk_kms::Client, stats: Arc<RequestStats>) -> Self {
        SdkDataKeyDecryptor { client, stats }
    }
}

#[async_trait]
impl DataKeyDecryptor for SdkDataKeyDecryptor {
    async fn decrypt(&self, request: &KmsDecryptRequest) -> Result<UnwrappedKey, AwsError> {
        self.stats.count("kms:Decrypt");
        let context: HashMap<String, String> =
            request.encryption_context.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(aws_smithy_types::Blob::new(request.ciphertext_blob.clone()))
            .set_encryption_context(Some(context))
            .set_key_id(request.key_id_hint.clone())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("kms:Decrypt", None, request.key_id_hint.as_deref(), &e))?;
        let plaintext = out.plaintext().map(|b| Zeroizing::new(b.as_ref().to_vec())).unwrap_or_default();
        let key = DataKey::from_bytes(&plaintext).map_err(|e| AwsError {
            operation: "kms:Decrypt",
            bucket: None,
            resource: out.key_id().map(str::to_string),
            kind: AwsErrorKind::ClientSide(CseFailure::UnwrapFailed),
            code: None,
            message: Some(e.to_string()),
            status: None,
        })?;
        Ok(UnwrappedKey { key, key_arn: out.key_id().map(str::to_string) })
    }
}

// ---------------------------------------------------------------------------------- store

/// An opened client-side encrypted object: its envelope and data key (zeroized on drop).
struct Opened {
    envelope: Envelope,
    key: DataKey,
    ciphertext_size: u64,
    plaintext_size: u64,
    /// The whole authenticated plaintext, for objects decrypted whole.
    plaintext: Option<Bytes>,
    encryption: ResponseEncryption,
    info: ClientSideRead,
}

type Slot = Arc<OnceCell<Arc<Opened>>>;

/// An [`ObjectStore`] that serves client-side encrypted objects as plaintext (see the module
/// docs). Listing, HEAD and bucket calls pass through unchanged, so HEAD probes still report the
/// objects as client-side encrypted.
pub struct DecryptingStore {
    inner: Arc<dyn ObjectStore>,
    config: Arc<ClientSideDecryption>,
    kms: Option<Arc<dyn DataKeyDecryptor>>,
    open: Mutex<HashMap<(String, String), Slot>>,
}

impl DecryptingStore {
    /// Wraps `inner`; `kms` unwraps KMS-wrapped keys (as the same identity as `inner`), and is
    /// only used when the configuration enables KMS.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        config: Arc<ClientSideDecryption>,
        kms: Option<Arc<dyn DataKeyDecryptor>>,
    ) -> Self {
        DecryptingStore { inner, config, kms, open: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, bucket: &str, key: &str) -> Slot {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= MAX_OPEN_OBJECTS && !open.contains_key(&(bucket.to_string(), key.to_string())) {
            open.clear();
        }
        open.entry((bucket.to_string(), key.to_string())).or_default().clone()
    }

    fn opened(&self, bucket: &str, key: &str) -> Option<Arc<Opened>> {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&(bucket.to_string(), key.to_string())).and_then(|s| s.get().cloned())
    }

    /// Envelope, data key and (for small objects) the authenticated plaintext.
    async fn open_object(&self, bucket: &str, key: &str, first: &RangeRead) -> Result<Opened, AwsError> {
        let fail = |kind: CseFailure, message: String| cse_error("s3:GetObject", bucket, key, kind, message);
        let metadata = &first.encryption.crypto_metadata;
        let location =
            core::locate(metadata).map_err(|e| fail(CseFailure::InvalidEnvelope, e.to_string()))?;
        let instruction = match location {
            EnvelopeLocation::InstructionFile => {
                let instruction_key = format!("{key}.instruction");
                let read = self
                    .inner
                    .get_range(
                        bucket,
                        &instruction_key,
                        ByteRange::Head(MAX_INSTRUCTION_FILE_BYTES),
                        MAX_INSTRUCTION_FILE_BYTES,
                    )
                    .await
                    .map_err(|e| match e.kind {
                        AwsErrorKind::NotFound => fail(
                            CseFailure::InstructionFileMissing,
                            format!(
                                "the envelope is in s3://{bucket}/{instruction_key}, which does not exist"
                            ),
                        ),
                        _ => e,
                    })?;
                Some(read.bytes)
            }
            _ => None,
        };
        let envelope = core::parse_envelope(metadata, instruction.as_deref())
            .map_err(|e| fail(CseFailure::InvalidEnvelope, e.to_string()))?;
        let legacy = envelope.format == FormatVersion::V1
            || envelope.content.is_legacy()
            || matches!(
                envelope.wrapping,
                KeyWrapping::KmsV1 { .. } | KeyWrapping::AesWrap | KeyWrapping::LegacyV1
            );
        if legacy && !self.config.allow_legacy {
            return Err(fail(
                CseFailure::LegacyDisabled,
                format!(
                    "legacy S3 Encryption Client format ({} content, {} wrapping) is not decrypted unless enabled",
                    envelope.content.cipher_name(),
                    envelope.wrapping.as_str()
                ),
            ));
        }
        let (data_key, kms_key_arn) = self.data_key(bucket, key, &envelope).await?;
        // V3: refuse a tampered commitment before any byte is decrypted (ranged or whole).
        core::verify_key_commitment(&envelope, &data_key)
            .map_err(|e| fail(CseFailure::KeyCommitmentMismatch, e.to_string()))?;

        let ciphertext_size = first.object_size;
        let gcm = !matches!(envelope.content, ContentCipher::AesCbc { .. });
        let info = ClientSideRead {
            format: envelope.format.as_str(),
            wrapping: envelope.wrapping.as_str(),
            content_cipher: envelope.content.cipher_name(),
            authenticated: false,
            kms_key_arn,
        };
        let mut opened = Opened {
            plaintext_size: if gcm {
                core::gcm_plaintext_len(ciphertext_size)
                    .map_err(|e| fail(CseFailure::AuthenticationFailed, e.to_string()))?
            } else {
                0
            },
            envelope,
            key: data_key,
            ciphertext_size,
            plaintext: None,
            encryption: first.encryption.clone(),
            info,
        };
        if ciphertext_size <= self.config.full_decrypt_max_bytes || !gcm {
            if !gcm && ciphertext_size > self.config.full_decrypt_max_bytes {
                return Err(fail(
                    CseFailure::Unsupported,
                    format!(
                        "legacy AES-CBC content cannot be read by ranges and the object ({ciphertext_size} bytes) is larger than the whole-object limit ({} bytes)",
                        self.config.full_decrypt_max_bytes
                    ),
                ));
            }
            let body = if first.start == 0 && first.bytes.len() as u64 == ciphertext_size {
                first.bytes.clone()
            } else {
                self.inner
                    .get_range(bucket, key, ByteRange::Head(ciphertext_size.max(1)), ciphertext_size)
                    .await?
                    .bytes
            };
            let envelope = opened.envelope.clone();
            let data_key = opened.key.clone();
            let allow_legacy = self.config.allow_legacy;
            let plaintext = tokio::task::spawn_blocking(move || {
                core::decrypt_object(&envelope, &data_key, &body, allow_legacy)
            })
            .await
            .map_err(|e| fail(CseFailure::AuthenticationFailed, format!("decryption task failed: {e}")))?
            .map_err(|e| {
                let kind = match e {
                    core::ContentError::KeyCommitmentMismatch => CseFailure::KeyCommitmentMismatch,
                    core::ContentError::LegacyNotAllowed { .. } => CseFailure::LegacyDisabled,
                    _ => CseFailure::AuthenticationFailed,
                };
                fail(kind, e.to_string())
            })?;
            opened.plaintext_size = plaintext.len() as u64;
            opened.plaintext = Some(Bytes::from(plaintext));
            opened.info.authenticated = true;
        }
        Ok(opened)
    }

    async fn data_key(
        &self,
        bucket: &str,
        key: &str,
        envelope: &Envelope,
    ) -> Result<(DataKey, Option<String>), AwsError> {
        let fail = |kind: CseFailure, message: String| cse_error("s3:GetObject", bucket, key, kind, message);
        if let Some(request) = core::kms_decrypt_request(envelope) {
            let kms = match (&self.kms, self.config.kms) {
                (Some(kms), true) => kms,
                _ => {
                    return Err(fail(
                        CseFailure::NoKey,
                        format!(
                            "the data key is wrapped with KMS ({}) and KMS unwrapping is not enabled",
                            envelope.wrapping.as_str()
                        ),
                    ));
                }
            };
            let unwrapped = kms.decrypt(&request).await.map_err(|mut e| {
                e.bucket = Some(bucket.to_string());
                e.resource = Some(key.to_string());
                match e.kind {
                    AwsErrorKind::KmsAccessDenied | AwsErrorKind::AccessDenied => {
                        e.kind = AwsErrorKind::ClientSide(CseFailure::KmsDecryptDenied);
                    }
                    _ if e.code.as_deref().is_some_and(|c| c.ends_with("InvalidCiphertextException")) => {
                        e.kind = AwsErrorKind::ClientSide(CseFailure::KmsInvalidCiphertext);
                    }
                    _ => {}
                }
                e
            })?;
            return Ok((unwrapped.key, unwrapped.key_arn));
        }
        let Some(master) = self.config.master_key_for(bucket, key) else {
            return Err(fail(
                CseFailure::NoKey,
                format!(
                    "the data key is wrapped with a raw {} master key and none is configured for this bucket/prefix",
                    envelope.wrapping.as_str()
                ),
            ));
        };
        let master = master.clone();
        let envelope = envelope.clone();
        let allow_legacy = self.config.allow_legacy;
        // RSA unwrapping is CPU work.
        let unwrapped =
            tokio::task::spawn_blocking(move || core::unwrap_data_key(&envelope, &master, allow_legacy))
                .await
                .map_err(|e| fail(CseFailure::UnwrapFailed, format!("unwrap task failed: {e}")))?;
        unwrapped.map(|k| (k, None)).map_err(|e| {
            let kind = match e {
                KeyringError::LegacyNotAllowed { .. } => CseFailure::LegacyDisabled,
                KeyringError::WrongMasterKeyType { .. } => CseFailure::NoKey,
                KeyringError::Unsupported { .. } => CseFailure::Unsupported,
                KeyringError::CipherMismatch { .. } => CseFailure::InvalidEnvelope,
                _ => CseFailure::UnwrapFailed,
            };
            fail(kind, e.to_string())
        })
    }

    /// Serves a plaintext range of an opened object, reusing `first` when it covers the
    /// ciphertext the range needs.
    async fn serve(
        &self,
        bucket: &str,
        key: &str,
        opened: &Opened,
        range: ByteRange,
        max_bytes: u64,
        first: Option<&RangeRead>,
    ) -> Result<RangeRead, AwsError> {
        let size = opened.plaintext_size;
        let mut encryption = opened.encryption.clone();
        encryption.client_side_read = Some(opened.info.clone());
        let (first_byte, count) = match range {
            ByteRange::Head(n) => (0, n),
            ByteRange::Suffix(n) => (size.saturating_sub(n), n.min(size)),
            ByteRange::Span { start, len } => (start, len.max(1)),
        };
        let count = count.min(max_bytes).min(size.saturating_sub(first_byte));
        if count == 0 {
            if first_byte > 0 && first_byte >= size {
                return Err(AwsError {
                    operation: "s3:GetObject",
                    bucket: Some(bucket.to_string()),
                    resource: Some(key.to_string()),
                    kind: AwsErrorKind::InvalidRange,
                    code: Some("InvalidRange".into()),
                    message: Some(format!("plaintext range starts at {first_byte}, past its {size} bytes")),
                    status: Some(416),
                });
            }
            return Ok(RangeRead { bytes: Bytes::new(), start: first_byte, object_size: size, encryption });
        }
        let last = first_byte + count - 1;
        if let Some(plaintext) = &opened.plaintext {
            let bytes = plaintext.slice(first_byte as usize..=last as usize);
            return Ok(RangeRead { bytes, start: first_byte, object_size: size, encryption });
        }
        let fail = |kind: CseFailure, message: String| cse_error("s3:GetObject", bucket, key, kind, message);
        let plan = core::plan_range(opened.ciphertext_size, first_byte, last)
            .map_err(|e| fail(CseFailure::Unsupported, e.to_string()))?;
        let covered = first.and_then(|read| {
            let end = read.start + read.bytes.len() as u64;
            (read.start <= plan.fetch_start && end > plan.fetch_end).then(|| {
                read.bytes
                    .slice((plan.fetch_start - read.start) as usize..=(plan.fetch_end - read.start) as usize)
            })
        });
        let fetched = match covered {
            Some(bytes) => bytes,
            None => {
                let len = plan.fetch_len();
                let read = self
                    .inner
                    .get_range(bucket, key, ByteRange::Span { start: plan.fetch_start, len }, len)
                    .await?;
                if read.start != plan.fetch_start
                    && read.start == 0
                    && read.bytes.len() as u64 > plan.fetch_end
                {
                    // A server that ignored the range sent the object from byte 0.
                    read.bytes.slice(plan.fetch_start as usize..=plan.fetch_end as usize)
                } else {
                    read.bytes
                }
            }
        };
        let envelope = opened.envelope.clone();
        let data_key = opened.key.clone();
        let plaintext =
            tokio::task::spawn_blocking(move || core::decrypt_range(&envelope, &data_key, &plan, &fetched))
                .await
                .map_err(|e| fail(CseFailure::AuthenticationFailed, format!("decryption task failed: {e}")))?
                .map_err(|e| {
                    let kind = match e {
                        core::RangedError::Content(core::ContentError::KeyCommitmentMismatch) => {
                            CseFailure::KeyCommitmentMismatch
                        }
                        core::RangedError::WrongFetchLength { .. } => CseFailure::AuthenticationFailed,
                        _ => CseFailure::Unsupported,
                    };
                    fail(kind, e.to_string())
                })?;
        Ok(RangeRead { bytes: Bytes::from(plaintext), start: first_byte, object_size: size, encryption })
    }
}

fn cse_error(
    operation: &'static str,
    bucket: &str,
    key: &str,
    kind: CseFailure,
    message: String,
) -> AwsError {
    AwsError {
        operation,
        bucket: Some(bucket.to_string()),
        resource: Some(key.to_string()),
        kind: AwsErrorKind::ClientSide(kind),
        code: None,
        message: Some(message),
        status: None,
    }
}

/// The ciphertext range to ask for on a first read: a superset of what the plaintext range
/// needs if the object turns out to be GCM-encrypted (aligned to the 16-byte block, and for
/// suffixes past the 16-byte tag), and how many leading bytes to drop when it is not.
fn probe_range(range: ByteRange) -> (ByteRange, u64) {
    match range {
        ByteRange::Head(n) => (ByteRange::Head(n), n),
        // The plaintext's last n bytes sit before the tag, from a block boundary.
        ByteRange::Suffix(n) => (ByteRange::Suffix(n + 2 * BLOCK - 1), n + 2 * BLOCK - 1),
        ByteRange::Span { start, len } => {
            let aligned = start - start % BLOCK;
            let len = len.max(1) + (start - aligned);
            (ByteRange::Span { start: aligned, len }, len)
        }
    }
}

/// A first read of a plain object, cut back to the range the caller asked for.
fn trim(mut read: RangeRead, range: ByteRange, max_bytes: u64) -> RangeRead {
    let wanted_start = match range {
        ByteRange::Head(_) => 0,
        ByteRange::Suffix(n) => read.object_size.saturating_sub(n),
        ByteRange::Span { start, .. } => start,
    };
    if read.start < wanted_start {
        let skip = ((wanted_start - read.start) as usize).min(read.bytes.len());
        read.bytes = read.bytes.slice(skip..);
        read.start += skip as u64;
    }
    let keep = (read.bytes.len() as u64).min(max_bytes.min(range.byte_count())) as usize;
    read.bytes.truncate(keep);
    read
}

#[async_trait]
impl ObjectStore for DecryptingStore {
    async fn list_page(&self, request: &ListRequest) -> Result<ListPage, AwsError> {
        self.inner.list_page(request).await
    }

    async fn get_range(
        &self,
        bucket: &str,
        key: &str,
        range: ByteRange,
        max_bytes: u64,
    ) -> Result<RangeRead, AwsError> {
        if let Some(opened) = self.opened(bucket, key) {
            return self.serve(bucket, key, &opened, range, max_bytes, None).await;
        }
        let (probe, probe_max) = probe_range(range);
        let extra = probe_max - range.byte_count();
        let first = self.inner.get_range(bucket, key, probe, max_bytes.saturating_add(extra)).await?;
        if first.encryption.crypto_metadata.is_empty() {
            return Ok(trim(first, range, max_bytes));
        }
        let slot = self.slot(bucket, key);
        let opened = slot
            .get_or_try_init(|| async { self.open_object(bucket, key, &first).await.map(Arc::new) })
            .await?;
        self.serve(bucket, key, opened, range, max_bytes, Some(&first)).await
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError> {
        self.inner.head(bucket, key).await
    }

    async fn bucket_encryption(&self, bucket: &str) -> Result<Option<DefaultEncryptionRule>, AwsError> {
        self.inner.bucket_encryption(bucket).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AES_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn master_key_rules_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_master_key_rule("data/secure/=aes:env:K").unwrap(),
            MasterKeyRule {
                bucket: "data".into(),
                prefix: "secure/".into(),
                kind: MasterKeyKind::Aes,
                source: MasterKeySource::Env("K".into())
            }
        );
        assert_eq!(parse_master_key_rule("s3://data=rsa:file:/k.pem").unwrap().kind, MasterKeyKind::Rsa);
        for bad in [
            "data",
            "data=env:K",
            "data=rsa:env:K",
            "Bad_Bucket=aes:env:K",
            "data=aes:file:",
            "data=des:file:x",
        ] {
            let err = parse_master_key_rule(bad).expect_err(bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn keys_load_pick_the_most_specific_prefix_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{AES_KEY}\n")).unwrap();
        let settings = CseSettings {
            kms: false,
            master_keys: vec![
                format!("data=aes:file:{}", path.display()),
                format!("data/a/=aes:file:{}", path.display()),
            ],
            allow_v1: false,
            full_decrypt_max_bytes: None,
        };
        let config = ClientSideDecryption::load(&settings).unwrap().expect("configured");
        assert!(config.master_key_for("data", "a/x").is_some());
        assert!(config.master_key_for("other", "a/x").is_none());
        let debug = format!("{config:?}");
        assert!(!debug.contains(AES_KEY) && debug.contains("redacted"), "{debug}");
        assert_eq!(config.full_decrypt_max_bytes, DEFAULT_FULL_DECRYPT_MAX_BYTES);

        assert!(ClientSideDecryption::load(&CseSettings::default()).unwrap().is_none(), "off by default");
        let unset = CseSettings {
            master_keys: vec!["data=aes:env:S3C_TEST_SURELY_UNSET_CSE_KEY".into()],
            ..CseSettings::default()
        };
        let err = ClientSideDecryption::load(&unset).unwrap_err();
        assert!(err.to_string().contains("$S3C_TEST_SURELY_UNSET_CSE_KEY"), "{err}");
        std::fs::write(&path, "c2hvcnQ=").unwrap();
        let short = CseSettings { master_keys: vec![format!("data=aes:file:{}", path.display())], ..unset };
        let err = ClientSideDecryption::load(&short).unwrap_err();
        assert!(err.to_string().contains("AES key of 5 bytes"), "{err}");
    }

    fn read(start: u64, len: usize, size: u64) -> RangeRead {
        RangeRead {
            bytes: Bytes::from((start..start + len as u64).map(|b| b as u8).collect::<Vec<u8>>()),
            start,
            object_size: size,
            encryption: ResponseEncryption::default(),
        }
    }

    #[test]
    fn probes_cover_the_ciphertext_and_plain_objects_get_exactly_their_range() {
        // (range, object size) -> what a plain object must return: (start, len)
        let cases = [
            (ByteRange::Head(10), 100, (0, 10)),
            (ByteRange::Suffix(10), 100, (90, 10)),
            (ByteRange::Suffix(10), 20, (10, 10)),
            (ByteRange::Suffix(500), 100, (0, 100)),
            (ByteRange::Span { start: 37, len: 5 }, 100, (37, 5)),
            (ByteRange::Span { start: 96, len: 50 }, 100, (96, 4)),
        ];
        for (range, size, (want_start, want_len)) in cases {
            let (probe, max) = probe_range(range);
            assert!(max >= range.byte_count());
            // What S3 answers for the probe.
            let (start, len) = match probe {
                ByteRange::Head(n) => (0, n.min(size)),
                ByteRange::Suffix(n) => (size.saturating_sub(n), n.min(size)),
                ByteRange::Span { start, len } => (start, len.min(size - start)),
            };
            let got = trim(read(start, len as usize, size), range, range.byte_count());
            assert_eq!((got.start, got.bytes.len() as u64), (want_start, want_len), "{range:?}");
            assert_eq!(got.bytes.first().copied(), Some(want_start as u8), "{range:?}");
            // For a GCM object (size = plaintext + 16), the probe holds what the plan needs.
            if size > 16 {
                let plaintext = size - 16;
                let (a, n) = match range {
                    ByteRange::Head(n) => (0, n),
                    ByteRange::Suffix(n) => (plaintext.saturating_sub(n), n.min(plaintext)),
                    ByteRange::Span { start, len } => (start, len),
                };
                if a < plaintext {
                    let plan = core::plan_range(size, a, a + n - 1).unwrap();
                    assert!(start <= plan.fetch_start && start + len > plan.fetch_end, "{range:?}: {plan:?}");
                }
            }
        }
    }

    #[test]
    fn failure_codes_are_stable() {
        assert_eq!(CseFailure::KmsDecryptDenied.code(), "CSE_KMS_DECRYPT_DENIED");
        assert_eq!(CseFailure::KeyCommitmentMismatch.code(), "CSE_KEY_COMMITMENT_MISMATCH");
        assert_eq!(CseFailure::LegacyDisabled.code(), "CSE_LEGACY_V1_DISABLED");
        assert_eq!(CseFailure::NoKey.code(), "CSE_NO_KEY");
    }
}
