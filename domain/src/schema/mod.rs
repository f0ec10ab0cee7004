//! Schema inference from bounded byte ranges.
//!
//! The caller plans a first read with [`plan_first_read`], fetches those bytes, and calls
//! [`infer`]. Footer-based formats (Parquet, ORC) may answer [`InferenceStep::NeedSuffix`] once
//! when the footer is larger than the first read; text formats are sampled from a head read and
//! never need more. Everything is synchronous and bounded by [`InferenceLimits`]; nothing here
//! panics on untrusted input (third-party decoders are additionally guarded).

pub(crate) mod avro;
pub(crate) mod decode;
mod delimited;
mod error;
mod json;
mod merge;
pub(crate) mod orc;
mod parquet;
pub(crate) mod scalar;

use std::panic::{AssertUnwindSafe, catch_unwind};

pub use error::InferenceError;
pub use merge::{ColumnDrift, MergedSchema, merge_schemas, widen};

use crate::format::{DetectedFormat, compression_from_magic, container_from_magic, sniff_text};
use crate::model::{Compression, FileFormat, Schema};

/// Largest Parquet/ORC footer we ask the caller to fetch (64 MiB).
pub const MAX_FOOTER_BYTES: u64 = 64 * 1024 * 1024;

/// Checks a footer length read from a file's tail, for the footer-based formats.
///
/// `needed` is how many tail bytes hold the footer, `header` how many leading bytes must fit in
/// front of it. `Ok(Some(NeedSuffix))` when the fetched tail is too short, `Ok(None)` when it
/// holds the footer.
pub(crate) fn check_footer_length(
    format: FileFormat,
    footer_len: u64,
    needed: u64,
    header: u64,
    object_size: u64,
    fetched: usize,
) -> Result<Option<InferenceStep>, InferenceError> {
    if needed.saturating_add(header) > object_size {
        return Err(InferenceError::truncated(
            format,
            object_size,
            format!("footer length {footer_len} does not fit in a {object_size}-byte file"),
        ));
    }
    if needed > MAX_FOOTER_BYTES {
        // Real footers stay far below this; a larger length is corruption, and asking the
        // caller to fetch gigabytes for a schema would be worse than failing.
        return Err(InferenceError::malformed(
            format,
            object_size.saturating_sub(needed),
            format!("footer of {needed} bytes exceeds the {MAX_FOOTER_BYTES} byte limit"),
        ));
    }
    Ok((needed > fetched as u64).then_some(InferenceStep::NeedSuffix { len: needed }))
}

/// Byte and record budgets for inferring one file's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceLimits {
    /// Most bytes fetched by a head read (default 1 MiB).
    pub max_read_bytes: u64,
    /// Most bytes produced by decompressing a sample (default 8 MiB).
    pub max_decompressed_bytes: u64,
    /// Most records examined (default 1000).
    pub max_records: usize,
    /// Longest acceptable first line of a text file (default 1 MiB).
    pub max_line_bytes: usize,
    /// Size of the first suffix read of a footer-based file (default 64 KiB).
    pub footer_probe_bytes: u64,
}

impl Default for InferenceLimits {
    fn default() -> Self {
        InferenceLimits {
            max_read_bytes: 1024 * 1024,
            max_decompressed_bytes: 8 * 1024 * 1024,
            max_records: 1000,
            max_line_bytes: 1024 * 1024,
            footer_probe_bytes: 64 * 1024,
        }
    }
}

/// The byte range to fetch first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRead {
    /// The first `len` bytes of the object.
    Head {
        /// Number of bytes.
        len: u64,
    },
    /// The last `len` bytes of the object.
    Suffix {
        /// Number of bytes.
        len: u64,
    },
}

/// Plans the first read: a footer probe for Parquet/ORC, a capped head read for everything else.
pub fn plan_first_read(detected: DetectedFormat, object_size: u64, limits: &InferenceLimits) -> FirstRead {
    if detected.format.footer_based() && detected.compression == Compression::None {
        FirstRead::Suffix { len: object_size.min(limits.footer_probe_bytes.max(8)) }
    } else {
        FirstRead::Head { len: object_size.min(limits.max_read_bytes) }
    }
}

/// Bytes the caller fetched: `bytes` = `object[start .. start + bytes.len()]`.
#[derive(Debug, Clone, Copy)]
pub struct Fetched<'a> {
    /// The fetched bytes.
    pub bytes: &'a [u8],
    /// Offset of `bytes[0]` in the object.
    pub start: u64,
    /// Size of the whole object.
    pub object_size: u64,
}

/// The outcome of one [`infer`] call.
#[derive(Debug, Clone, PartialEq)]
pub enum InferenceStep {
    /// The schema is known.
    Done(InferredFile),
    /// Fetch the last `len` bytes of the object and call [`infer`] again with them (same
    /// `detected`; the tail itself tells which footer format it is).
    ///
    /// When the first read was planned from a Parquet/ORC key this happens at most once: `len`
    /// is then the exact footer size. When a head read reveals a footer-based file under
    /// another name, the first request is a generous probe (`max(footer_probe_bytes,
    /// max_read_bytes)`) and a footer larger than that asks once more, exactly.
    NeedSuffix {
        /// Number of trailing bytes to fetch (never more than the object size).
        len: u64,
    },
}

/// How a delimited text file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CsvDialect {
    /// Field delimiter: `,`, `\t`, `|` or `;`.
    pub delimiter: u8,
    /// Quote character: `"` or `'`.
    pub quote: u8,
    /// True when the first row holds column names.
    pub has_header: bool,
}

/// The schema of one file and how it was obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct InferredFile {
    /// The format actually read (content may refine the key's hint, e.g. CSV → TSV).
    pub format: FileFormat,
    /// The outer compression actually decoded.
    pub compression: Compression,
    /// The inferred or declared schema.
    pub schema: Schema,
    /// Delimited text only: the sniffed dialect.
    pub dialect: Option<CsvDialect>,
    /// Records examined (for Avro: records in the complete blocks of the head read).
    pub records_sampled: u64,
    /// Exact row count, from Parquet/ORC footers.
    pub row_count: Option<u64>,
    /// True when sampling stopped at a byte or record cap rather than the end of the file.
    pub sample_truncated: bool,
}

/// Infers the schema of one file from the bytes fetched so far.
///
/// `detected` comes from [`crate::format::detect_from_key`]; on a head read, magic numbers in
/// the content override it (a `.csv` key holding Parquet is read as Parquet, an undeclared gzip
/// stream is decoded). Returns [`InferenceStep::NeedSuffix`] when a footer-based file needs
/// (more of) its tail.
pub fn infer(
    detected: DetectedFormat,
    fetched: Fetched<'_>,
    limits: &InferenceLimits,
) -> Result<InferenceStep, InferenceError> {
    // Our own code is written not to panic; this guards the third-party decoders we call.
    match catch_unwind(AssertUnwindSafe(|| infer_unguarded(detected, fetched, limits))) {
        Ok(result) => result,
        Err(_) => {
            Err(InferenceError::malformed(detected.format, fetched.start, "decoder failed unexpectedly"))
        }
    }
}

/// [`infer`] without the panic guard, so tests notice panics in our own code.
pub(crate) fn infer_unguarded(
    detected: DetectedFormat,
    fetched: Fetched<'_>,
    limits: &InferenceLimits,
) -> Result<InferenceStep, InferenceError> {
    let Fetched { bytes, start, object_size } = fetched;
    if object_size == 0 {
        return Err(InferenceError::EmptyFile { format: detected.format });
    }
    // A caller handing more bytes than the object holds is a bug; trust the object size.
    let available = usize::try_from(object_size.saturating_sub(start)).unwrap_or(usize::MAX);
    let bytes = bytes.get(..available).unwrap_or(bytes);
    let end = start.saturating_add(bytes.len() as u64);
    let is_head = start == 0;
    let detected = if is_head {
        resolve(detected, bytes)
    } else if let Some(format) = tail_format(detected.format, bytes) {
        // A suffix read after a head read revealed a footer-based file under another name.
        DetectedFormat::plain(format)
    } else {
        detected
    };
    let format = detected.format;

    match format {
        FileFormat::Parquet | FileFormat::Orc => {
            if end < object_size {
                // A head read revealed a footer-based file: probe generously so that the
                // footer is very likely covered by this single extra read.
                let probe = limits.footer_probe_bytes.max(limits.max_read_bytes).max(8);
                return Ok(InferenceStep::NeedSuffix { len: object_size.min(probe) });
            }
            if format == FileFormat::Parquet {
                parquet::infer(bytes, start, object_size)
            } else {
                orc::infer(bytes, start, object_size, limits)
            }
        }
        FileFormat::Avro => {
            if !is_head {
                return Err(InferenceError::malformed(format, start, "avro needs a head read"));
            }
            avro::infer(bytes, object_size, limits).map(InferenceStep::Done)
        }
        _ => {
            if !is_head {
                return Err(InferenceError::malformed(format, start, "text needs a head read"));
            }
            infer_text(detected, bytes, object_size, limits).map(InferenceStep::Done)
        }
    }
}

/// Lets strong content evidence (magic numbers) override the key.
fn resolve(key: DetectedFormat, head: &[u8]) -> DetectedFormat {
    if let Some(container) = container_from_magic(head) {
        // `ORC` is three printable letters: only trust it when the key does not claim text.
        let weak =
            container == FileFormat::Orc && !matches!(key.format, FileFormat::Unknown | FileFormat::Orc);
        if !weak {
            return DetectedFormat::plain(container);
        }
    }
    match compression_from_magic(head) {
        Some(compression) => DetectedFormat { format: key.format, compression },
        // A key saying `.gz` over plain bytes usually means the object was stored decoded
        // (Content-Encoding): read what is there.
        None if key.compression != Compression::None && !head.is_empty() => {
            DetectedFormat { format: key.format, compression: Compression::None }
        }
        None => key,
    }
}

/// The footer-based format a tail belongs to, when `claimed` is not already one.
fn tail_format(claimed: FileFormat, tail: &[u8]) -> Option<FileFormat> {
    if claimed.footer_based() {
        return None;
    }
    if tail.ends_with(b"PAR1") || tail.ends_with(b"PARE") {
        return Some(FileFormat::Parquet);
    }
    orc::looks_like_tail(tail).then_some(FileFormat::Orc)
}

/// Decodes, validates and samples a text file.
fn infer_text(
    detected: DetectedFormat,
    bytes: &[u8],
    object_size: u64,
    limits: &InferenceLimits,
) -> Result<InferredFile, InferenceError> {
    let sample = decode::decode_sample(detected, bytes, object_size, limits)?;
    let mut format = detected.format;
    if format == FileFormat::Unknown {
        format = sniff_text(&sample.data).ok_or_else(|| InferenceError::UnsupportedFormat {
            format,
            detail: "content is not recognisable delimited text or JSON".into(),
        })?;
    }
    let text = decode::prepare_text(format, &sample.data, sample.truncated, limits)?;
    let mut file = match format {
        FileFormat::Json => json::infer_document(text.text, text.truncated, limits)?,
        FileFormat::JsonLines => json::infer_lines(text.text, text.truncated, limits)?,
        FileFormat::Csv | FileFormat::Tsv | FileFormat::Psv => {
            delimited::infer(format, text.text, text.truncated, limits)?
        }
        other => {
            return Err(InferenceError::UnsupportedFormat {
                format: other,
                detail: "not a text format".into(),
            });
        }
    };
    file.compression = detected.compression;
    Ok(file)
}

#[cfg(test)]
mod tests;
