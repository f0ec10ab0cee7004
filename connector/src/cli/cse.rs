//! Client-side decryption flags shared by `extract` and `sample`.

use clap::Args;

use crate::cse::{CseSettings, DEFAULT_FULL_DECRYPT_MAX_BYTES};

/// Client-side decryption (S3 Encryption Client V2/V3; V1 by opt-in). Off by default:
/// client-side encrypted objects are then reported as CLIENT_SIDE_ENCRYPTED.
#[derive(Debug, Clone, Args)]
pub struct CseArgs {
    /// Decrypt client-side encrypted objects whose data key is wrapped with KMS, calling
    /// kms:Decrypt (with the stored encryption context) as the identity that reads the object.
    #[arg(long)]
    pub cse_kms: bool,
    /// Raw master key for client-side encrypted objects under a bucket/prefix:
    /// `BUCKET[/PREFIX]=aes:env:VARIABLE`, `=aes:file:PATH` (base64 AES key) or `=rsa:file:PATH`
    /// (RSA private key, PKCS#8 PEM or DER). Repeatable; the most specific prefix wins.
    #[arg(long = "cse-master-key", value_name = "RULE")]
    pub cse_master_keys: Vec<String>,
    /// Also decrypt legacy V1 objects (AES-CBC content: unauthenticated) and legacy key
    /// wrappings (KMS v1, AESWrap).
    #[arg(long)]
    pub cse_allow_v1: bool,
    /// Client-side encrypted objects up to this size are fetched whole and decrypted with
    /// authentication; larger ones are read by ranges (CTR, unauthenticated).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_FULL_DECRYPT_MAX_BYTES)]
    pub cse_full_decrypt_max_bytes: u64,
}

impl CseArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> CseSettings {
        CseSettings {
            kms: self.cse_kms,
            master_keys: self.cse_master_keys.clone(),
            allow_v1: self.cse_allow_v1,
            full_decrypt_max_bytes: Some(self.cse_full_decrypt_max_bytes),
        }
    }
}
