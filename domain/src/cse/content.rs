//! Whole-object content decryption: AES-256-GCM (V2), suite 115 (V3), legacy AES-CBC (V1).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use cbc::cipher::BlockModeDecrypt;
use cbc::cipher::KeyIvInit;
use cbc::cipher::block_padding::Pkcs7;
use hkdf::Hkdf;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::envelope::{ContentCipher, Envelope};
use super::keyring::DataKey;

/// GCM tag length appended to every GCM body.
pub const TAG_LEN: usize = 16;
/// Suite 115 IV: twelve 0x01 bytes (the derived key is unique per message).
pub(crate) const IV_115: [u8; 12] = [0x01; 12];
/// Suite 115 id, used as GCM AAD and as the HKDF info prefix.
const SUITE_ID_115: [u8; 2] = [0x00, 0x73];

/// Why content cannot be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The key commitment derived from the data key does not match `x-amz-d`.
    #[error("key commitment does not match x-amz-d: wrong data key or tampered metadata")]
    KeyCommitmentMismatch,
    /// The GCM tag did not verify: wrong key, tampered ciphertext or truncated body.
    #[error("content authentication failed (GCM tag mismatch)")]
    AuthenticationFailed,
    /// Legacy unauthenticated content (AES-CBC) and legacy modes are off.
    #[error("legacy unauthenticated content cipher {cipher} is not allowed")]
    LegacyNotAllowed {
        /// The content cipher name.
        cipher: &'static str,
    },
    /// The body is shorter than the tag.
    #[error("encrypted body has {actual} bytes, shorter than the {TAG_LEN}-byte tag")]
    Truncated {
        /// Body length.
        actual: usize,
    },
    /// CBC body length or padding is wrong (wrong key, tampered or truncated body).
    #[error("CBC content has bad length or padding")]
    BadPadding,
    /// The plaintext length differs from `x-amz-unencrypted-content-length`.
    #[error("plaintext has {actual} bytes, metadata says {expected}")]
    LengthMismatch {
        /// From the metadata.
        expected: u64,
        /// Decrypted.
        actual: u64,
    },
}

impl ContentError {
    /// Stable code used when the error becomes a record.
    pub fn code(&self) -> &'static str {
        match self {
            ContentError::KeyCommitmentMismatch => "cse_key_commitment_mismatch",
            ContentError::AuthenticationFailed => "cse_authentication_failed",
            ContentError::LegacyNotAllowed { .. } => "cse_legacy_not_allowed",
            ContentError::Truncated { .. } => "cse_truncated",
            ContentError::BadPadding => "cse_bad_padding",
            ContentError::LengthMismatch { .. } => "cse_length_mismatch",
        }
    }
}

/// The AES-256 key and 12-byte IV that drive the GCM (or CTR) keystream of one object.
pub(crate) struct GcmParams {
    pub(crate) key: Zeroizing<[u8; 32]>,
    pub(crate) iv: [u8; 12],
    pub(crate) aad: &'static [u8],
}

fn hkdf_expand<const N: usize>(hk: &Hkdf<Sha512>, label: &[u8]) -> Zeroizing<[u8; N]> {
    let mut info = Vec::with_capacity(SUITE_ID_115.len() + label.len());
    info.extend_from_slice(&SUITE_ID_115);
    info.extend_from_slice(label);
    let mut out = Zeroizing::new([0u8; N]);
    // N is 28 or 32, far below HKDF-SHA512's 255·64-byte limit, so expand cannot fail.
    let _ = hk.expand(&info, out.as_mut_slice());
    out
}

/// GCM parameters for a GCM-based content cipher; for suite 115 this verifies the key
/// commitment (in constant time) before the encryption key is derived. `None` for CBC.
pub(crate) fn gcm_params(content: &ContentCipher, key: &DataKey) -> Result<Option<GcmParams>, ContentError> {
    match content {
        ContentCipher::AesGcm { iv } => {
            Ok(Some(GcmParams { key: Zeroizing::new(*key.as_bytes()), iv: *iv, aad: b"" }))
        }
        ContentCipher::Committing115 { message_id, commitment } => {
            let hk = Hkdf::<Sha512>::new(Some(message_id), key.as_bytes());
            let derived: Zeroizing<[u8; 28]> = hkdf_expand(&hk, b"COMMITKEY");
            if !bool::from(derived.as_slice().ct_eq(commitment.as_slice())) {
                return Err(ContentError::KeyCommitmentMismatch);
            }
            let key: Zeroizing<[u8; 32]> = hkdf_expand(&hk, b"DERIVEKEY");
            Ok(Some(GcmParams { key, iv: IV_115, aad: &SUITE_ID_115 }))
        }
        ContentCipher::AesCbc { .. } => Ok(None),
    }
}

/// Checks the key commitment of suite-115 (V3) content in constant time; `Ok` for the other
/// content ciphers, which have none. Needs only the data key and the metadata, so a reader can
/// refuse a tampered object before any (unauthenticated) ranged decryption.
pub fn verify_key_commitment(envelope: &Envelope, key: &DataKey) -> Result<(), ContentError> {
    gcm_params(&envelope.content, key).map(|_| ())
}

/// Decrypts a whole object body.
///
/// GCM bodies are `ciphertext ‖ tag16` and are authenticated; AES-CBC (legacy, unauthenticated)
/// needs `allow_legacy`. When the metadata stores the plaintext length, it is checked.
pub fn decrypt_object(
    envelope: &Envelope,
    key: &DataKey,
    body: &[u8],
    allow_legacy: bool,
) -> Result<Vec<u8>, ContentError> {
    let plaintext = match gcm_params(&envelope.content, key)? {
        Some(params) => {
            if body.len() < TAG_LEN {
                return Err(ContentError::Truncated { actual: body.len() });
            }
            let cipher = Aes256Gcm::new_from_slice(params.key.as_slice())
                .map_err(|_| ContentError::AuthenticationFailed)?;
            let nonce = aes_gcm::Nonce::from(params.iv);
            cipher
                .decrypt(&nonce, Payload { msg: body, aad: params.aad })
                .map_err(|_| ContentError::AuthenticationFailed)?
        }
        None => {
            let ContentCipher::AesCbc { iv } = &envelope.content else {
                return Err(ContentError::AuthenticationFailed);
            };
            if !allow_legacy {
                return Err(ContentError::LegacyNotAllowed { cipher: envelope.content.cipher_name() });
            }
            let mut buf = body.to_vec();
            let len = cbc::Decryptor::<aes::Aes256>::new_from_slices(key.as_bytes(), iv)
                .map_err(|_| ContentError::BadPadding)?
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(|_| ContentError::BadPadding)?
                .len();
            buf.truncate(len);
            buf
        }
    };
    if let Some(expected) = envelope.unencrypted_length {
        let actual = plaintext.len() as u64;
        if actual != expected {
            return Err(ContentError::LengthMismatch { expected, actual });
        }
    }
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cse::envelope::{FormatVersion, KeyWrapping};
    use std::collections::BTreeMap;

    fn env(content: ContentCipher) -> Envelope {
        Envelope {
            format: FormatVersion::V3,
            wrapping: KeyWrapping::AesGcm,
            content,
            encrypted_data_key: vec![],
            material_description: BTreeMap::new(),
            unencrypted_length: None,
        }
    }

    #[test]
    fn error_table() {
        let key = DataKey::from_bytes(&[9; 32]).expect("key");
        let gcm = env(ContentCipher::AesGcm { iv: [0; 12] });
        let cbc = env(ContentCipher::AesCbc { iv: [0; 16] });
        let kc = env(ContentCipher::Committing115 { message_id: [0; 28], commitment: [0; 28] });
        let cases: Vec<(&str, &Envelope, &[u8], bool, &str)> = vec![
            ("gcm short", &gcm, &[0; 15], false, "cse_truncated"),
            ("gcm garbage", &gcm, &[0; 40], false, "cse_authentication_failed"),
            ("cbc not allowed", &cbc, &[0; 32], false, "cse_legacy_not_allowed"),
            ("cbc bad length", &cbc, &[0; 33], true, "cse_bad_padding"),
            ("115 wrong commitment", &kc, &[0; 40], false, "cse_key_commitment_mismatch"),
        ];
        for (name, e, body, legacy, code) in cases {
            assert_eq!(decrypt_object(e, &key, body, legacy).map_err(|e| e.code()), Err(code), "{name}");
        }
        assert_eq!(verify_key_commitment(&kc, &key), Err(ContentError::KeyCommitmentMismatch));
        assert_eq!(verify_key_commitment(&gcm, &key), Ok(()));
        assert_eq!(verify_key_commitment(&cbc, &key), Ok(()));
    }
}
