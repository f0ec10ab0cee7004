//! Client-side decryption of objects written by the Amazon S3 Encryption Client (V1, V2, V3).
//!
//! Pure: the caller fetches the object (or a range), its user metadata, the instruction file when
//! [`envelope::locate`] asks for one, and calls KMS with [`keyring::kms_decrypt_request`]. Flow:
//! [`envelope::parse_envelope`] → data key (KMS or [`keyring::unwrap_data_key`]) →
//! [`content::decrypt_object`] or [`ranged::plan_range`] + [`ranged::decrypt_range`].
//!
//! Cryptography is RustCrypto's (`aes-gcm`, `ctr`, `cbc`, `hkdf`, `rsa`); nothing is hand-rolled.

pub mod content;
pub mod envelope;
pub mod keyring;
pub mod ranged;

#[cfg(test)]
mod fixture_tests;

pub use content::{ContentError, decrypt_object, verify_key_commitment};
pub use envelope::{
    ContentCipher, Envelope, EnvelopeError, EnvelopeLocation, FormatVersion, KeyWrapping, locate,
    parse_envelope,
};
pub use keyring::{
    DataKey, KeyringError, KmsDecryptRequest, MasterKey, kms_decrypt_request, unwrap_data_key,
};
pub use ranged::{RangePlan, RangedError, decrypt_range, gcm_plaintext_len, plan_range, plan_suffix};
