//! Ranged (unauthenticated) decryption of GCM content through its CTR keystream.
//!
//! GCM encrypts block `n` of the plaintext with counter `IV ‖ BE32(2 + n)`, so any 16-byte
//! aligned window of ciphertext can be decrypted with AES-CTR alone. The tag is not checked:
//! callers must treat the bytes as unauthenticated (fine for reading a footer's schema).

use aes::cipher::{KeyIvInit, StreamCipher};

use super::content::{ContentError, TAG_LEN, gcm_params};
use super::envelope::Envelope;
use super::keyring::DataKey;

type Aes256Ctr32 = ctr::Ctr32BE<aes::Aes256>;
const BLOCK: u64 = 16;

/// Which ciphertext bytes to fetch for a plaintext range, and how to trim the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePlan {
    /// First ciphertext byte to fetch (a multiple of 16).
    pub fetch_start: u64,
    /// Last ciphertext byte to fetch, inclusive (never inside the tag).
    pub fetch_end: u64,
    /// First plaintext byte returned.
    pub plaintext_start: u64,
    /// Last plaintext byte returned, inclusive.
    pub plaintext_end: u64,
}

impl RangePlan {
    /// The HTTP `Range` header value for the fetch.
    pub fn http_range(&self) -> String {
        format!("bytes={}-{}", self.fetch_start, self.fetch_end)
    }

    /// Number of ciphertext bytes the fetch must return (0 for an inconsistent plan).
    pub fn fetch_len(&self) -> u64 {
        self.fetch_end.checked_sub(self.fetch_start).map_or(0, |d| d.saturating_add(1))
    }

    /// True when the plan is one [`plan_range`] could have produced.
    fn is_consistent(&self) -> bool {
        self.fetch_start.is_multiple_of(BLOCK)
            && self.fetch_start <= self.plaintext_start
            && self.plaintext_start - self.fetch_start < BLOCK
            && self.plaintext_start <= self.plaintext_end
            && self.plaintext_end == self.fetch_end
    }
}

/// Why a range cannot be planned or decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangedError {
    /// The object is smaller than a GCM tag.
    #[error("object of {object_size} bytes is shorter than the GCM tag")]
    TooShort {
        /// Object size in bytes.
        object_size: u64,
    },
    /// `first > last`, or `first` is past the end of the plaintext.
    #[error("plaintext range {first}-{last} is not satisfiable for {plaintext_len} bytes")]
    Unsatisfiable {
        /// Requested first byte.
        first: u64,
        /// Requested last byte.
        last: u64,
        /// Plaintext length.
        plaintext_len: u64,
    },
    /// Ranged reads are only possible for GCM-based content.
    #[error("ranged decryption is only supported for GCM content, not {cipher}")]
    NotGcm {
        /// The content cipher name.
        cipher: &'static str,
    },
    /// The fetched bytes do not match the plan.
    #[error("fetched {actual} bytes, the plan needs {expected}")]
    WrongFetchLength {
        /// Bytes the plan needs.
        expected: u64,
        /// Bytes supplied.
        actual: u64,
    },
    /// A hand-made plan that [`plan_range`] would not produce.
    #[error("inconsistent range plan")]
    InvalidPlan,
    /// The range is beyond GCM's 2^32-2 block limit.
    #[error("range is beyond the GCM counter limit")]
    CounterOverflow,
    /// Deriving the content key failed (suite 115 commitment mismatch).
    #[error(transparent)]
    Content(#[from] ContentError),
}

impl RangedError {
    /// Stable code used when the error becomes a record.
    pub fn code(&self) -> &'static str {
        match self {
            RangedError::TooShort { .. } => "cse_truncated",
            RangedError::Unsatisfiable { .. } => "cse_range_unsatisfiable",
            RangedError::NotGcm { .. } => "cse_range_not_gcm",
            RangedError::WrongFetchLength { .. } => "cse_range_wrong_length",
            RangedError::CounterOverflow => "cse_range_counter_overflow",
            RangedError::InvalidPlan => "cse_range_invalid_plan",
            RangedError::Content(e) => e.code(),
        }
    }
}

/// Plaintext length of a GCM object of `object_size` bytes.
pub fn gcm_plaintext_len(object_size: u64) -> Result<u64, RangedError> {
    object_size.checked_sub(TAG_LEN as u64).ok_or(RangedError::TooShort { object_size })
}

/// Plans plaintext bytes `[first, last]` (inclusive; `last` is clamped to the plaintext end).
pub fn plan_range(object_size: u64, first: u64, last: u64) -> Result<RangePlan, RangedError> {
    let plaintext_len = gcm_plaintext_len(object_size)?;
    if first > last || first >= plaintext_len {
        return Err(RangedError::Unsatisfiable { first, last, plaintext_len });
    }
    let plaintext_end = last.min(plaintext_len - 1);
    Ok(RangePlan {
        fetch_start: first - first % BLOCK,
        fetch_end: plaintext_end,
        plaintext_start: first,
        plaintext_end,
    })
}

/// Plans the last `n` plaintext bytes (a footer); `None` when the plaintext is empty or `n == 0`.
pub fn plan_suffix(object_size: u64, n: u64) -> Result<Option<RangePlan>, RangedError> {
    let plaintext_len = gcm_plaintext_len(object_size)?;
    if n == 0 || plaintext_len == 0 {
        return Ok(None);
    }
    let first = plaintext_len.saturating_sub(n);
    plan_range(object_size, first, plaintext_len - 1).map(Some)
}

/// Decrypts the bytes fetched for `plan` (unauthenticated) and returns the planned plaintext.
///
/// For suite 115 the key commitment is still verified before the key is derived.
pub fn decrypt_range(
    envelope: &Envelope,
    key: &DataKey,
    plan: &RangePlan,
    fetched: &[u8],
) -> Result<Vec<u8>, RangedError> {
    let Some(params) = gcm_params(&envelope.content, key)? else {
        return Err(RangedError::NotGcm { cipher: envelope.content.cipher_name() });
    };
    if !plan.is_consistent() {
        return Err(RangedError::InvalidPlan);
    }
    let expected = plan.fetch_len();
    if fetched.len() as u64 != expected {
        return Err(RangedError::WrongFetchLength { expected, actual: fetched.len() as u64 });
    }
    let first_block = plan.fetch_start / BLOCK;
    let blocks = expected.div_ceil(BLOCK);
    // Counter of block n is 2 + n; the whole window must fit in the 32-bit counter.
    let counter = u32::try_from(first_block + 2).map_err(|_| RangedError::CounterOverflow)?;
    if u64::from(counter) + blocks > u64::from(u32::MAX) + 1 {
        return Err(RangedError::CounterOverflow);
    }
    let mut iv = [0u8; 16];
    iv[..12].copy_from_slice(&params.iv);
    iv[12..].copy_from_slice(&counter.to_be_bytes());
    let mut cipher = Aes256Ctr32::new(&(*params.key).into(), &iv.into());
    let mut out = fetched.to_vec();
    cipher.try_apply_keystream(&mut out).map_err(|_| RangedError::CounterOverflow)?;
    let skip =
        usize::try_from(plan.plaintext_start - plan.fetch_start).map_err(|_| RangedError::InvalidPlan)?;
    out.drain(..skip.min(out.len()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cse::envelope::{ContentCipher, Envelope, FormatVersion, KeyWrapping};

    fn env(content: ContentCipher) -> Envelope {
        Envelope {
            format: FormatVersion::V2,
            wrapping: KeyWrapping::AesGcm,
            content,
            encrypted_data_key: vec![],
            material_description: Default::default(),
            unencrypted_length: None,
        }
    }

    #[test]
    fn decrypt_error_table() {
        let key = DataKey::from_bytes(&[3; 32]).expect("key");
        let gcm = env(ContentCipher::AesGcm { iv: [0; 12] });
        let cbc = env(ContentCipher::AesCbc { iv: [0; 16] });
        let plan = plan_range(116, 17, 40).expect("plan");
        let far = RangePlan {
            fetch_start: 1 << 36,
            fetch_end: 1 << 36,
            plaintext_start: 1 << 36,
            plaintext_end: 1 << 36,
        };
        let edge = (u64::from(u32::MAX) - 2) * 16;
        let last_blocks = RangePlan {
            fetch_start: edge,
            fetch_end: edge + 31,
            plaintext_start: edge,
            plaintext_end: edge + 31,
        };
        let cases: Vec<(&str, &Envelope, RangePlan, usize, &str)> = vec![
            ("cbc", &cbc, plan, 25, "cse_range_not_gcm"),
            ("short fetch", &gcm, plan, 24, "cse_range_wrong_length"),
            ("long fetch", &gcm, plan, 26, "cse_range_wrong_length"),
            ("counter past 2^32", &gcm, far, 1, "cse_range_counter_overflow"),
            ("window crosses 2^32", &gcm, last_blocks, 32, "cse_range_counter_overflow"),
            ("unaligned", &gcm, RangePlan { fetch_start: 1, ..plan }, 40, "cse_range_invalid_plan"),
            (
                "end before start",
                &gcm,
                RangePlan { fetch_end: 3, plaintext_end: 3, ..plan },
                0,
                "cse_range_invalid_plan",
            ),
            ("skip a block", &gcm, RangePlan { plaintext_start: 33, ..plan }, 25, "cse_range_invalid_plan"),
        ];
        for (name, e, p, n, code) in cases {
            assert_eq!(decrypt_range(e, &key, &p, &vec![0; n]).map_err(|e| e.code()), Err(code), "{name}");
        }
        // The last block GCM allows (counter 2^32-1) still decrypts.
        let ok = RangePlan {
            fetch_start: edge,
            fetch_end: edge + 15,
            plaintext_start: edge + 3,
            plaintext_end: edge + 15,
        };
        assert_eq!(decrypt_range(&gcm, &key, &ok, &[0; 16]).map(|v| v.len()), Ok(13));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_plans_never_panic(fs in 0u64..1 << 40, fe in 0u64..1 << 40, ps in 0u64..1 << 40, pe in 0u64..1 << 40, n in 0usize..64) {
            let key = DataKey::from_bytes(&[3; 32]).expect("key");
            let plan = RangePlan { fetch_start: fs, fetch_end: fe, plaintext_start: ps, plaintext_end: pe };
            let _ = plan.fetch_len();
            let _ = decrypt_range(&env(ContentCipher::AesGcm { iv: [0; 12] }), &key, &plan, &vec![0; n]);
        }

        #[test]
        fn plans_stay_out_of_the_tag(size in 0u64..1 << 40, a in 0u64..1 << 40, len in 0u64..1 << 20) {
            if let Ok(p) = plan_range(size, a, a.saturating_add(len)) {
                proptest::prop_assert!(p.fetch_end + 16 < size);
                proptest::prop_assert!(p.is_consistent());
                proptest::prop_assert_eq!(p.plaintext_start, a);
            }
        }
    }

    #[test]
    fn plan_table() {
        // (object size, first, last) -> (fetch start, fetch end, plaintext start, plaintext end)
        let cases = [
            ((116, 0, 0), (0, 0, 0, 0)),
            ((116, 17, 40), (16, 40, 17, 40)),
            ((116, 32, 1000), (32, 99, 32, 99)),
            ((116, 99, 99), (96, 99, 99, 99)),
            ((17, 0, 5), (0, 0, 0, 0)),
        ];
        for ((size, a, b), (fs, fe, ps, pe)) in cases {
            let p = plan_range(size, a, b).expect("plan");
            assert_eq!((p.fetch_start, p.fetch_end, p.plaintext_start, p.plaintext_end), (fs, fe, ps, pe));
        }
        assert_eq!(plan_range(116, 0, 0).expect("plan").http_range(), "bytes=0-0");
        for (size, a, b, code) in [
            (15, 0, 0, "cse_truncated"),
            (16, 0, 0, "cse_range_unsatisfiable"),
            (116, 100, 200, "cse_range_unsatisfiable"),
            (116, 5, 4, "cse_range_unsatisfiable"),
        ] {
            assert_eq!(plan_range(size, a, b).map_err(|e| e.code()), Err(code), "{size} {a} {b}");
        }
        assert_eq!(plan_suffix(16, 8), Ok(None));
        assert_eq!(plan_suffix(116, 0), Ok(None));
        let p = plan_suffix(116, 8).expect("plan").expect("some");
        assert_eq!((p.fetch_start, p.fetch_end, p.plaintext_start), (80, 99, 92));
        let p = plan_suffix(116, 1000).expect("plan").expect("some");
        assert_eq!((p.fetch_start, p.plaintext_start), (0, 0));
    }
}
