//! Bounded decompression and text validation of head samples.

use std::borrow::Cow;
use std::io::{self, Read};

use super::{InferenceError, InferenceLimits};
use crate::format::DetectedFormat;
use crate::model::{Compression, FileFormat};

/// A decoded head sample.
pub(crate) struct Sample<'a> {
    /// Decoded bytes (borrowed when there was nothing to decode).
    pub data: Cow<'a, [u8]>,
    /// True when the sample stops before the end of the file (read cap or decode cap).
    pub truncated: bool,
}

/// Reads at most `cap` bytes from `reader`. Returns the bytes, the error that stopped the read
/// (if any), and whether the cap was hit with more data behind it.
pub(crate) fn read_bounded<R: Read>(mut reader: R, cap: usize) -> (Vec<u8>, Option<io::Error>, bool) {
    let mut out: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        if out.len() >= cap {
            // Probe one byte to tell "exactly cap bytes" from "more behind the cap".
            let mut one = [0u8; 1];
            let more = loop {
                match reader.read(&mut one) {
                    Ok(n) => break n > 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break true,
                }
            };
            return (out, None, more);
        }
        let want = buf.len().min(cap - out.len());
        match reader.read(&mut buf[..want]) {
            Ok(0) => return (out, None, false),
            Ok(n) => {
                // Grow by doubling, but never past the cap: the capacity is the allocation.
                if out.capacity() < out.len() + n {
                    let target = (out.capacity() * 2).max(out.len() + n).min(cap);
                    out.reserve_exact(target.saturating_sub(out.len()));
                }
                out.extend_from_slice(buf.get(..n).unwrap_or(&[]));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (out, Some(e), false),
        }
    }
}

/// A zstd decoder whose window, its one large allocation, fits the decompression budget
/// (never below 8 MiB, which every level up to 19 needs; at most zstd's 128 MiB default).
/// A frame asking for a larger window fails instead of allocating it.
pub(crate) fn zstd_decoder(
    input: &[u8],
    max_decompressed: u64,
) -> io::Result<zstd::stream::read::Decoder<'static, io::BufReader<&[u8]>>> {
    let mut decoder = zstd::stream::read::Decoder::new(input)?;
    let log = (64 - max_decompressed.saturating_sub(1).leading_zeros()).clamp(23, 27);
    decoder.window_log_max(log)?;
    Ok(decoder)
}

/// Decodes the outer compression of a head read, within `max_decompressed_bytes`.
pub(crate) fn decode_sample<'a>(
    detected: DetectedFormat,
    bytes: &'a [u8],
    object_size: u64,
    limits: &InferenceLimits,
) -> Result<Sample<'a>, InferenceError> {
    let capped_read = (bytes.len() as u64) < object_size;
    let cap = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let format = detected.format;
    let compression = detected.compression;
    let (out, err, hit_cap) = match compression {
        Compression::None => {
            let truncated = capped_read || bytes.len() > cap;
            let data = bytes.get(..cap.min(bytes.len())).unwrap_or(bytes);
            return Ok(Sample { data: Cow::Borrowed(data), truncated });
        }
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(bytes), cap),
        Compression::Bzip2 => read_bounded(bzip2::read::MultiBzDecoder::new(bytes), cap),
        Compression::Zstd => match zstd_decoder(bytes, limits.max_decompressed_bytes) {
            Ok(decoder) => read_bounded(decoder, cap),
            Err(e) => (Vec::new(), Some(e), false),
        },
    };
    if let Some(e) = err {
        // A stream cut by our own read cap is expected to end badly; keep what decoded.
        if capped_read && !out.is_empty() {
            return Ok(Sample { data: Cow::Owned(out), truncated: true });
        }
        if !capped_read && e.kind() == io::ErrorKind::UnexpectedEof {
            return Err(InferenceError::truncated(
                format,
                out.len() as u64,
                format!("{} stream ends early: {e}", compression.as_str()),
            ));
        }
        return Err(InferenceError::decompression(format, compression, out.len() as u64, e.to_string()));
    }
    if out.is_empty() && !capped_read {
        return Err(InferenceError::EmptyFile { format });
    }
    Ok(Sample { data: Cow::Owned(out), truncated: capped_read || hit_cap })
}

/// Validated text of a sample.
pub(crate) struct Text<'a> {
    /// Complete lines only (except for JSON documents, which are parsed incrementally).
    pub text: &'a str,
    /// True when the sample stops before the end of the file.
    pub truncated: bool,
}

/// Checks for binary content, over-long first lines and invalid UTF-8, and drops a trailing
/// partial line from a truncated sample.
pub(crate) fn prepare_text<'a>(
    format: FileFormat,
    data: &'a [u8],
    truncated: bool,
    limits: &InferenceLimits,
) -> Result<Text<'a>, InferenceError> {
    let (data, bom) = match data.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => (rest, 3u64),
        None => (data, 0u64),
    };
    if data.iter().all(|b| b.is_ascii_whitespace()) && !truncated {
        return Err(InferenceError::EmptyFile { format });
    }
    if let Some(pos) = data.iter().position(|&b| b == 0) {
        return Err(InferenceError::BinaryContent { format, offset: bom + pos as u64 });
    }
    // Text has the odd form feed or escape; binary data has many control bytes.
    let is_control = |b: &u8| matches!(*b, 0x01..=0x08 | 0x0E..=0x1A | 0x1C..=0x1F | 0x7F);
    let controls = data.iter().filter(|b| is_control(b)).count();
    if controls > 0 && controls * 100 > data.len() {
        let pos = data.iter().position(is_control).unwrap_or(0);
        return Err(InferenceError::BinaryContent { format, offset: bom + pos as u64 });
    }
    let mut data = data;
    if format != FileFormat::Json {
        let first_newline = data.iter().position(|&b| b == b'\n');
        let first_line_len = first_newline.unwrap_or(data.len());
        if first_line_len > limits.max_line_bytes || (first_newline.is_none() && truncated) {
            return Err(InferenceError::LineTooLong { format, offset: bom, limit: limits.max_line_bytes });
        }
        if truncated {
            let last = data.iter().rposition(|&b| b == b'\n').unwrap_or(0);
            data = data.get(..=last).unwrap_or(data);
        }
    }
    let text = match std::str::from_utf8(data) {
        Ok(text) => text,
        // A JSON document cut mid-character: the parser will stop before the cut anyway.
        Err(e) if truncated && e.error_len().is_none() => {
            std::str::from_utf8(data.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or("")
        }
        Err(e) => {
            return Err(InferenceError::InvalidUtf8 { format, offset: bom + e.valid_up_to() as u64 });
        }
    };
    Ok(Text { text, truncated })
}
