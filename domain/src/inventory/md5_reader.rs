//! MD5 verification while streaming: inventory data files are checked against the manifest's
//! `MD5checksum` (never against the ETag, which is not an MD5 for SSE-KMS or multipart objects).

use std::io::{self, Read};

use md5::{Digest, Md5};

/// The bytes of a file do not hash to the MD5 the manifest lists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MD5 mismatch for {file}: expected {expected}, computed {actual}")]
pub struct ChecksumMismatch {
    /// The file (key) that was read.
    pub file: String,
    /// The expected MD5 as given (trimmed, lowercase).
    pub expected: String,
    /// The MD5 computed over the bytes read, lowercase hex.
    pub actual: String,
}

impl ChecksumMismatch {
    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        "INVENTORY_CHECKSUM_MISMATCH"
    }

    /// The mismatch carried by an `io::Error` from an [`Md5Reader`] (possibly through layers
    /// such as a gzip decoder that pass inner errors on), if that is what it is.
    pub fn from_io(error: &io::Error) -> Option<&ChecksumMismatch> {
        error.get_ref().and_then(|inner| inner.downcast_ref::<ChecksumMismatch>())
    }
}

/// Lowercase hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex(&Md5::digest(bytes))
}

/// Lowercase hex digits. Every changed object's ETag is written this way: a table lookup per
/// digit, where `write!("{b:02x}")` went through the formatting machinery for each byte.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A [`Read`] adapter that hashes everything it passes on and, at end of stream, fails with an
/// `io::Error` (kind `InvalidData`) wrapping a [`ChecksumMismatch`] when the MD5 differs.
///
/// The error is returned instead of the final `Ok(0)`, and again on every later read, so a
/// consumer that reads to the end cannot miss it.
pub struct Md5Reader<R> {
    inner: R,
    hasher: Md5,
    file: String,
    expected: String,
    outcome: Option<Result<(), ChecksumMismatch>>,
}

impl<R> std::fmt::Debug for Md5Reader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Md5Reader").field("file", &self.file).field("expected", &self.expected).finish()
    }
}

impl<R: Read> Md5Reader<R> {
    /// Wraps `inner`; `expected_hex` is compared case-insensitively after trimming whitespace.
    pub fn new(inner: R, file: impl Into<String>, expected_hex: &str) -> Self {
        Md5Reader {
            inner,
            hasher: Md5::new(),
            file: file.into(),
            expected: expected_hex.trim().to_ascii_lowercase(),
            outcome: None,
        }
    }

    /// The verification result once end of stream was reached, `None` before.
    pub fn outcome(&self) -> Option<&Result<(), ChecksumMismatch>> {
        self.outcome.as_ref()
    }

    fn finish(&mut self) -> io::Result<usize> {
        let outcome = self.outcome.get_or_insert_with(|| {
            let actual = hex(&std::mem::take(&mut self.hasher).finalize());
            if actual == self.expected {
                Ok(())
            } else {
                Err(ChecksumMismatch { file: self.file.clone(), expected: self.expected.clone(), actual })
            }
        });
        match outcome {
            Ok(()) => Ok(0),
            Err(mismatch) => Err(io::Error::new(io::ErrorKind::InvalidData, mismatch.clone())),
        }
    }
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.outcome.is_some() {
            return self.finish();
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return self.finish();
        }
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "d41d8cd98f00b204e9800998ecf8427e"),
            (b"The quick brown fox jumps over the lazy dog", "9e107d9d372bb6826bd81d3542a419d6"),
        ];
        for (input, want) in cases {
            assert_eq!(md5_hex(input), *want);
        }
    }

    #[test]
    fn verifies_while_streaming() {
        let data = vec![7u8; 100_000];
        let good = md5_hex(&data);
        let cases: &[(&str, bool)] = &[
            (&good, true),
            (&format!("  {}\n", good.to_uppercase()), true),
            ("d41d8cd98f00b204e9800998ecf8427e", false),
            ("not hex", false),
        ];
        for (expected, ok) in cases {
            let mut reader = Md5Reader::new(&data[..], "data/x.csv.gz", expected);
            let mut out = Vec::new();
            let result = reader.read_to_end(&mut out);
            assert_eq!(result.is_ok(), *ok, "{expected}");
            if let Err(e) = result {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                let mismatch = ChecksumMismatch::from_io(&e).unwrap();
                assert_eq!(mismatch.file, "data/x.csv.gz");
                assert_eq!(mismatch.actual, good);
                assert_eq!(mismatch.code(), "INVENTORY_CHECKSUM_MISMATCH");
                // Sticky: a second read fails too.
                assert!(reader.read(&mut [0u8; 8]).is_err());
            } else {
                assert_eq!(out, data);
                assert_eq!(reader.outcome(), Some(&Ok(())));
                assert_eq!(reader.read(&mut [0u8; 8]).unwrap(), 0);
            }
        }
    }

    #[test]
    fn mismatch_survives_gzip_decoder() {
        use flate2::{Compression, read::MultiGzDecoder, write::GzEncoder};
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(b"a,b\n").unwrap();
        let gz = enc.finish().unwrap();
        let mut out = Vec::new();
        let err = MultiGzDecoder::new(Md5Reader::new(&gz[..], "f", "00000000000000000000000000000000"))
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(ChecksumMismatch::from_io(&err).is_some(), "{err:?}");
        let mut out = Vec::new();
        MultiGzDecoder::new(Md5Reader::new(&gz[..], "f", &md5_hex(&gz))).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"a,b\n");
    }
}
