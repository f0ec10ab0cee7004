//! Unwrapping the data key: what to ask KMS, and the raw AES/RSA keyrings done locally.

use std::collections::BTreeMap;
use std::fmt;

use aes::cipher::{BlockCipherDecrypt, KeyInit as _};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use cbc::cipher::block_padding::{Padding, Pkcs7};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPrivateKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::envelope::{Envelope, FormatVersion, KeyWrapping};

/// Length of every S3EC data key (AES-256).
pub const DATA_KEY_LEN: usize = 32;
/// V1 rule: an EDK longer than this is RSA-wrapped, otherwise AES-wrapped.
const V1_AES_EDK_MAX: usize = 48;
const GCM_IV_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;

/// A plaintext 256-bit data key. Zeroized on drop; Debug prints nothing secret.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct DataKey([u8; DATA_KEY_LEN]);

impl DataKey {
    /// Wraps the `Plaintext` KMS Decrypt returned (must be 32 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyringError> {
        <[u8; DATA_KEY_LEN]>::try_from(bytes)
            .map(DataKey)
            .map_err(|_| KeyringError::BadDataKeyLength { actual: bytes.len() })
    }

    pub(crate) fn as_bytes(&self) -> &[u8; DATA_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A customer master key for the raw keyrings. Debug prints its kind and size only.
pub struct MasterKey(MasterKeyInner);

enum MasterKeyInner {
    Aes(Zeroizing<Vec<u8>>),
    // RsaPrivateKey zeroizes itself on drop.
    Rsa(Box<RsaPrivateKey>),
}

impl MasterKey {
    /// An AES master key of 16, 24 or 32 bytes (AES/GCM wrapping needs 16 or 32).
    pub fn aes(bytes: &[u8]) -> Result<Self, KeyringError> {
        if ![16, 24, 32].contains(&bytes.len()) {
            return Err(KeyringError::BadMasterKey { reason: format!("AES key of {} bytes", bytes.len()) });
        }
        Ok(MasterKey(MasterKeyInner::Aes(Zeroizing::new(bytes.to_vec()))))
    }

    /// An RSA private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn rsa_pkcs8_pem(pem: &str) -> Result<Self, KeyringError> {
        RsaPrivateKey::from_pkcs8_pem(pem)
            .map(|k| MasterKey(MasterKeyInner::Rsa(Box::new(k))))
            .map_err(|e| KeyringError::BadMasterKey { reason: format!("RSA PKCS#8 PEM: {e}") })
    }

    /// An RSA private key from PKCS#8 DER.
    pub fn rsa_pkcs8_der(der: &[u8]) -> Result<Self, KeyringError> {
        RsaPrivateKey::from_pkcs8_der(der)
            .map(|k| MasterKey(MasterKeyInner::Rsa(Box::new(k))))
            .map_err(|e| KeyringError::BadMasterKey { reason: format!("RSA PKCS#8 DER: {e}") })
    }

    fn kind(&self) -> &'static str {
        match self.0 {
            MasterKeyInner::Aes(_) => "AES",
            MasterKeyInner::Rsa(_) => "RSA",
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            MasterKeyInner::Aes(k) => write!(f, "MasterKey::Aes({} bits, <redacted>)", k.len() * 8),
            MasterKeyInner::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                write!(f, "MasterKey::Rsa({} bits, <redacted>)", k.size() * 8)
            }
        }
    }
}

/// The KMS `Decrypt` call the connector must make for a KMS-wrapped data key.
#[derive(Clone, PartialEq, Eq)]
pub struct KmsDecryptRequest {
    /// `CiphertextBlob`: the encrypted data key.
    pub ciphertext_blob: Vec<u8>,
    /// `EncryptionContext`: exactly as stored, including `aws:x-amz-cek-alg`.
    pub encryption_context: BTreeMap<String, String>,
    /// `KeyId`, when the metadata names one (`kms_cmk_id` of legacy KmsV1 objects).
    pub key_id_hint: Option<String>,
    /// True for the legacy `kms` (KmsV1) wrapping, which the S3EC only reads with legacy modes on.
    pub legacy: bool,
}

impl fmt::Debug for KmsDecryptRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsDecryptRequest")
            .field("ciphertext_blob_len", &self.ciphertext_blob.len())
            .field("encryption_context", &self.encryption_context)
            .field("key_id_hint", &self.key_id_hint)
            .field("legacy", &self.legacy)
            .finish()
    }
}

/// The KMS Decrypt request for a KMS-wrapped envelope; `None` for raw keyrings.
pub fn kms_decrypt_request(envelope: &Envelope) -> Option<KmsDecryptRequest> {
    match &envelope.wrapping {
        KeyWrapping::KmsContext { context } => Some(KmsDecryptRequest {
            ciphertext_blob: envelope.encrypted_data_key.clone(),
            encryption_context: context.clone(),
            key_id_hint: context.get("kms_cmk_id").cloned(),
            legacy: false,
        }),
        KeyWrapping::KmsV1 { matdesc } => Some(KmsDecryptRequest {
            ciphertext_blob: envelope.encrypted_data_key.clone(),
            encryption_context: matdesc.clone(),
            key_id_hint: matdesc.get("kms_cmk_id").cloned(),
            legacy: true,
        }),
        _ => None,
    }
}

/// Why a data key cannot be unwrapped locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The key is KMS-wrapped: use [`kms_decrypt_request`].
    #[error("data key is wrapped with KMS ({wrapping}); call KMS Decrypt")]
    NeedsKms {
        /// The wrapping algorithm.
        wrapping: &'static str,
    },
    /// The wrapping is legacy and legacy modes are off.
    #[error("legacy key wrapping {wrapping} is not allowed")]
    LegacyNotAllowed {
        /// The wrapping algorithm.
        wrapping: &'static str,
    },
    /// The master key is of the wrong kind for this wrapping.
    #[error("key wrapping {wrapping} needs a different master key than {have}")]
    WrongMasterKeyType {
        /// The wrapping algorithm.
        wrapping: &'static str,
        /// The kind of master key supplied.
        have: &'static str,
    },
    /// The wrapping is known but not implemented here.
    #[error("key wrapping {wrapping} is not supported")]
    Unsupported {
        /// The wrapping algorithm.
        wrapping: &'static str,
    },
    /// The master key could not be loaded (the reason never includes key material).
    #[error("invalid master key: {reason}")]
    BadMasterKey {
        /// What is wrong.
        reason: String,
    },
    /// The wrapped key did not authenticate or decrypt: wrong master key or tampered EDK.
    #[error("could not unwrap the data key with {wrapping}: wrong master key or tampered key")]
    UnwrapFailed {
        /// The wrapping algorithm.
        wrapping: &'static str,
    },
    /// The wrapped key names another content cipher than the metadata (downgrade).
    #[error("wrapped key is bound to content cipher {bound:?}, metadata says {declared:?}")]
    CipherMismatch {
        /// The cipher name inside the wrapped key.
        bound: String,
        /// The content cipher from the metadata.
        declared: &'static str,
    },
    /// The unwrapped (or KMS-returned) key is not 32 bytes.
    #[error("data key has {actual} bytes, expected 32")]
    BadDataKeyLength {
        /// Actual length.
        actual: usize,
    },
}

impl KeyringError {
    /// Stable code used when the error becomes a record.
    pub fn code(&self) -> &'static str {
        match self {
            KeyringError::NeedsKms { .. } => "cse_needs_kms",
            KeyringError::LegacyNotAllowed { .. } => "cse_legacy_not_allowed",
            KeyringError::WrongMasterKeyType { .. } => "cse_wrong_master_key",
            KeyringError::Unsupported { .. } => "cse_unsupported_wrapping",
            KeyringError::BadMasterKey { .. } => "cse_bad_master_key",
            KeyringError::UnwrapFailed { .. } => "cse_unwrap_failed",
            KeyringError::CipherMismatch { .. } => "cse_algorithm_downgrade",
            KeyringError::BadDataKeyLength { .. } => "cse_bad_data_key",
        }
    }
}

/// Unwraps the data key with a raw (non-KMS) master key.
///
/// Legacy wrappings (V1 without `x-amz-wrap-alg`) need `allow_legacy`.
pub fn unwrap_data_key(
    envelope: &Envelope,
    master: &MasterKey,
    allow_legacy: bool,
) -> Result<DataKey, KeyringError> {
    let wrapping = envelope.wrapping.as_str();
    let wrong = || KeyringError::WrongMasterKeyType { wrapping, have: master.kind() };
    match (&envelope.wrapping, &master.0) {
        (KeyWrapping::KmsContext { .. } | KeyWrapping::KmsV1 { .. }, _) => {
            Err(KeyringError::NeedsKms { wrapping })
        }
        (KeyWrapping::AesGcm, MasterKeyInner::Aes(key)) => unwrap_aes_gcm(envelope, key),
        (KeyWrapping::RsaOaepSha1, MasterKeyInner::Rsa(key)) => unwrap_rsa_oaep_sha1(envelope, key),
        (KeyWrapping::LegacyV1, inner) => {
            if !allow_legacy {
                return Err(KeyringError::LegacyNotAllowed { wrapping });
            }
            let edk = &envelope.encrypted_data_key;
            match inner {
                MasterKeyInner::Rsa(key) if edk.len() > V1_AES_EDK_MAX => {
                    let plain = Zeroizing::new(
                        key.decrypt(Pkcs1v15Encrypt, edk)
                            .map_err(|_| KeyringError::UnwrapFailed { wrapping })?,
                    );
                    DataKey::from_bytes(&plain)
                }
                MasterKeyInner::Aes(key) if edk.len() <= V1_AES_EDK_MAX => unwrap_aes_ecb(edk, key, wrapping),
                _ => Err(wrong()),
            }
        }
        (KeyWrapping::AesWrap, MasterKeyInner::Aes(key)) => {
            if !allow_legacy {
                return Err(KeyringError::LegacyNotAllowed { wrapping });
            }
            unwrap_aes_kw(&envelope.encrypted_data_key, key, wrapping)
        }
        (KeyWrapping::RsaOaepSha256, _) => Err(KeyringError::Unsupported { wrapping }),
        (KeyWrapping::AesGcm | KeyWrapping::RsaOaepSha1 | KeyWrapping::AesWrap, _) => Err(wrong()),
    }
}

/// EDK = IV(12) ‖ ciphertext ‖ tag(16); AAD = the content cipher name ("115" for V3).
fn unwrap_aes_gcm(envelope: &Envelope, key: &[u8]) -> Result<DataKey, KeyringError> {
    let wrapping = envelope.wrapping.as_str();
    let failed = || KeyringError::UnwrapFailed { wrapping };
    let edk = &envelope.encrypted_data_key;
    if edk.len() < GCM_IV_LEN + GCM_TAG_LEN {
        return Err(failed());
    }
    let (iv, ct) = edk.split_at(GCM_IV_LEN);
    let nonce = aes_gcm::Nonce::try_from(iv).map_err(|_| failed())?;
    let payload = Payload { msg: ct, aad: envelope.content.cipher_name().as_bytes() };
    let plain = Zeroizing::new(
        match key.len() {
            32 => Aes256Gcm::new_from_slice(key).map_err(|_| failed())?.decrypt(&nonce, payload),
            16 => Aes128Gcm::new_from_slice(key).map_err(|_| failed())?.decrypt(&nonce, payload),
            _ => return Err(KeyringError::Unsupported { wrapping }),
        }
        .map_err(|_| failed())?,
    );
    DataKey::from_bytes(&plain)
}

/// OAEP(SHA-1, MGF1-SHA-1); plaintext = len(1) ‖ data key ‖ content cipher name.
fn unwrap_rsa_oaep_sha1(envelope: &Envelope, key: &RsaPrivateKey) -> Result<DataKey, KeyringError> {
    let wrapping = envelope.wrapping.as_str();
    let plain = Zeroizing::new(
        key.decrypt(Oaep::new::<sha1::Sha1>(), &envelope.encrypted_data_key)
            .map_err(|_| KeyringError::UnwrapFailed { wrapping })?,
    );
    let (&len, rest) = plain.split_first().ok_or(KeyringError::BadDataKeyLength { actual: 0 })?;
    let len = usize::from(len);
    let (data_key, name) =
        rest.split_at_checked(len).ok_or(KeyringError::BadDataKeyLength { actual: rest.len() })?;
    let declared = envelope.content.cipher_name();
    // UNVERIFIED which name V3 RSA writers bind (suite id or GCM name): accept both for V3.
    let bound_ok = name == declared.as_bytes()
        || (envelope.format == FormatVersion::V3 && name == super::envelope::GCM_NAME.as_bytes());
    if !bound_ok {
        return Err(KeyringError::CipherMismatch {
            bound: String::from_utf8_lossy(name).into_owned(),
            declared,
        });
    }
    DataKey::from_bytes(data_key)
}

/// Legacy `AESWrap`: RFC 3394 key wrap of the raw data key (40-byte EDK).
fn unwrap_aes_kw(edk: &[u8], key: &[u8], wrapping: &'static str) -> Result<DataKey, KeyringError> {
    use aes_kw::{KeyInit as _, KwAes128, KwAes192, KwAes256};
    let failed = || KeyringError::UnwrapFailed { wrapping };
    let mut buf = Zeroizing::new([0u8; DATA_KEY_LEN]);
    let plain = match key.len() {
        16 => KwAes128::new_from_slice(key).map_err(|_| failed())?.unwrap_key(edk, buf.as_mut_slice()),
        24 => KwAes192::new_from_slice(key).map_err(|_| failed())?.unwrap_key(edk, buf.as_mut_slice()),
        32 => KwAes256::new_from_slice(key).map_err(|_| failed())?.unwrap_key(edk, buf.as_mut_slice()),
        _ => return Err(failed()),
    }
    .map_err(|_| failed())?;
    DataKey::from_bytes(plain)
}

/// Legacy V1 symmetric wrapping: AES/ECB/PKCS5Padding of the data key.
fn unwrap_aes_ecb(edk: &[u8], key: &[u8], wrapping: &'static str) -> Result<DataKey, KeyringError> {
    let failed = || KeyringError::UnwrapFailed { wrapping };
    if edk.is_empty() || !edk.len().is_multiple_of(16) {
        return Err(failed());
    }
    let mut blocks: Vec<aes::Block> =
        edk.chunks_exact(16).map(aes::Block::try_from).collect::<Result<_, _>>().map_err(|_| failed())?;
    match key.len() {
        16 => aes::Aes128::new_from_slice(key).map_err(|_| failed())?.decrypt_blocks(&mut blocks),
        24 => aes::Aes192::new_from_slice(key).map_err(|_| failed())?.decrypt_blocks(&mut blocks),
        32 => aes::Aes256::new_from_slice(key).map_err(|_| failed())?.decrypt_blocks(&mut blocks),
        _ => return Err(failed()),
    }
    let result = Pkcs7::unpad_blocks(&blocks).map_err(|_| failed()).and_then(DataKey::from_bytes);
    blocks.iter_mut().for_each(|b| b.as_mut_slice().zeroize());
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cse::envelope::parse_envelope;

    fn v2(wrap: &str, edk: &str) -> Envelope {
        parse_envelope(
            [
                ("x-amz-key-v2", edk),
                ("x-amz-iv", "AAAAAAAAAAAAAAAA"),
                ("x-amz-matdesc", r#"{"aws:x-amz-cek-alg":"AES/GCM/NoPadding","team":"a"}"#),
                ("x-amz-wrap-alg", wrap),
                ("x-amz-cek-alg", "AES/GCM/NoPadding"),
            ],
            None,
        )
        .expect("envelope")
    }

    #[test]
    fn kms_request_carries_context_verbatim() {
        let env = v2("kms+context", "AAECAw==");
        let req = kms_decrypt_request(&env).expect("kms");
        assert_eq!(req.ciphertext_blob, vec![0, 1, 2, 3]);
        let want: BTreeMap<String, String> = [("aws:x-amz-cek-alg", "AES/GCM/NoPadding"), ("team", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(req.encryption_context, want);
        assert!(!req.legacy);
        let legacy = parse_envelope(
            [
                ("x-amz-key-v2", "AAECAw=="),
                ("x-amz-iv", "AAAAAAAAAAAAAAAAAAAAAA=="),
                ("x-amz-matdesc", r#"{"kms_cmk_id":"alias/x"}"#),
                ("x-amz-wrap-alg", "kms"),
            ],
            None,
        )
        .expect("kms v1");
        let req = kms_decrypt_request(&legacy).expect("kms");
        assert!(req.legacy);
        assert_eq!(req.key_id_hint.as_deref(), Some("alias/x"));
        assert_eq!(kms_decrypt_request(&v2("AES/GCM", "AAECAw==")), None);
    }

    #[test]
    fn unwrap_error_table() {
        let aes = MasterKey::aes(&[7; 32]).expect("aes");
        let cases: Vec<(&str, Envelope, &MasterKey, bool, &str)> = vec![
            ("kms", v2("kms+context", "AAECAw=="), &aes, true, "cse_needs_kms"),
            ("short edk", v2("AES/GCM", "AAECAw=="), &aes, true, "cse_unwrap_failed"),
            ("garbage edk", v2("AES/GCM", &"A".repeat(80)), &aes, true, "cse_unwrap_failed"),
            ("rsa with aes key", v2("RSA-OAEP-SHA1", "AAECAw=="), &aes, true, "cse_wrong_master_key"),
            ("aeswrap garbage", v2("AESWrap", "AAECAw=="), &aes, true, "cse_unwrap_failed"),
            ("aeswrap not allowed", v2("AESWrap", "AAECAw=="), &aes, false, "cse_legacy_not_allowed"),
            (
                "rsa-oaep-sha256",
                v2("RSA/ECB/OAEPWithSHA-256AndMGF1Padding", "AAECAw=="),
                &aes,
                true,
                "cse_unsupported_wrapping",
            ),
        ];
        for (name, env, key, legacy, code) in cases {
            assert_eq!(unwrap_data_key(&env, key, legacy).map_err(|e| e.code()), Err(code), "{name}");
        }
        let v1 = parse_envelope([("x-amz-key", "AAECAw=="), ("x-amz-iv", "AAAAAAAAAAAAAAAAAAAAAA==")], None)
            .expect("v1");
        assert_eq!(unwrap_data_key(&v1, &aes, false).map_err(|e| e.code()), Err("cse_legacy_not_allowed"));
        assert_eq!(unwrap_data_key(&v1, &aes, true).map_err(|e| e.code()), Err("cse_unwrap_failed"));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let key = MasterKey::aes(&[0xAB; 32]).expect("aes");
        assert_eq!(format!("{key:?}"), "MasterKey::Aes(256 bits, <redacted>)");
        let dk = DataKey::from_bytes(&[0xCD; 32]).expect("dk");
        assert_eq!(format!("{dk:?}"), "DataKey(<redacted>)");
        assert_eq!(MasterKey::aes(&[1; 5]).map_err(|e| e.code()).err(), Some("cse_bad_master_key"));
        assert_eq!(DataKey::from_bytes(&[1; 31]).map_err(|e| e.code()).err(), Some("cse_bad_data_key"));
        let pem_err =
            MasterKey::rsa_pkcs8_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        assert_eq!(pem_err.map_err(|e| e.code()).err(), Some("cse_bad_master_key"));
    }
}
