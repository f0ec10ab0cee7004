//! ORC: schema and row count from the PostScript and Footer at the end of the file.
//!
//! Only the messages we need are declared, with field numbers from ORC's `orc_proto.proto`;
//! prost skips the fields we leave out (stripes, statistics, ...).

use std::io::Read;

use prost::Message;

use super::decode::read_bounded;
use super::{InferenceError, InferenceLimits, InferenceStep, InferredFile};
use crate::model::{Compression, DataType, Field, FileFormat, Schema};

const FORMAT: FileFormat = FileFormat::Orc;

/// `orc.proto.PostScript` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PostScript {
    #[prost(uint64, optional, tag = "1")]
    pub footer_length: Option<u64>,
    /// `CompressionKind`: NONE=0, ZLIB=1, SNAPPY=2, LZO=3, LZ4=4, ZSTD=5.
    #[prost(int32, optional, tag = "2")]
    pub compression: Option<i32>,
    #[prost(uint64, optional, tag = "3")]
    pub compression_block_size: Option<u64>,
    #[prost(uint32, repeated, tag = "4")]
    pub version: Vec<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub metadata_length: Option<u64>,
    #[prost(uint32, optional, tag = "6")]
    pub writer_version: Option<u32>,
    #[prost(string, optional, tag = "8000")]
    pub magic: Option<String>,
}

/// `orc.proto.Footer` (subset).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Footer {
    #[prost(uint64, optional, tag = "1")]
    pub header_length: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub content_length: Option<u64>,
    #[prost(message, repeated, tag = "4")]
    pub types: Vec<OrcType>,
    #[prost(uint64, optional, tag = "6")]
    pub number_of_rows: Option<u64>,
}

/// `orc.proto.Type`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct OrcType {
    /// `Kind`, see [`kind_name`].
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(uint32, repeated, tag = "2")]
    pub subtypes: Vec<u32>,
    #[prost(string, repeated, tag = "3")]
    pub field_names: Vec<String>,
    #[prost(uint32, optional, tag = "4")]
    pub maximum_length: Option<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub precision: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub scale: Option<u32>,
}

/// Reads the footer from a tail `bytes` = `object[start..object_size]`.
pub(crate) fn infer(
    bytes: &[u8],
    start: u64,
    object_size: u64,
    limits: &InferenceLimits,
) -> Result<InferenceStep, InferenceError> {
    let Some((&ps_len, rest)) = bytes.split_last() else {
        return Err(InferenceError::truncated(FORMAT, object_size, "no PostScript length byte"));
    };
    let ps_len = usize::from(ps_len);
    if ps_len > rest.len() && (bytes.len() as u64) < object_size && start > 0 {
        // A probe too small for even the PostScript (at most 255 bytes): fetch a size that
        // very likely holds the footer as well.
        let len = object_size.min(limits.max_read_bytes.max(limits.footer_probe_bytes).max(256));
        if len > bytes.len() as u64 {
            return Ok(InferenceStep::NeedSuffix { len });
        }
    }
    // "ORC" header + PostScript + its length byte at the very least.
    if ps_len == 0 || (ps_len as u64) + 4 > object_size || ps_len > rest.len() {
        return Err(InferenceError::truncated(
            FORMAT,
            object_size,
            format!("bad PostScript length {ps_len}"),
        ));
    }
    let ps_start = rest.len() - ps_len;
    let ps_bytes = rest.get(ps_start..).unwrap_or(&[]);
    let ps = PostScript::decode(ps_bytes).map_err(|e| {
        InferenceError::truncated(FORMAT, start + ps_start as u64, format!("PostScript does not decode: {e}"))
    })?;
    if ps.magic.as_deref().is_some_and(|m| m != "ORC") {
        return Err(InferenceError::malformed(
            FORMAT,
            start + ps_start as u64,
            "PostScript magic is not ORC",
        ));
    }
    let footer_len = ps.footer_length.unwrap_or(0);
    let needed = footer_len.saturating_add(ps_len as u64).saturating_add(1);
    if let Some(step) = super::check_footer_length(FORMAT, footer_len, needed, 3, object_size, bytes.len())? {
        return Ok(step);
    }
    let footer_start = ps_start - footer_len as usize;
    let footer_offset = start + footer_start as u64;
    let raw_footer = rest.get(footer_start..ps_start).unwrap_or(&[]);
    let footer_bytes = decompress(ps.compression.unwrap_or(0), raw_footer, footer_offset, limits)?;
    let footer = Footer::decode(footer_bytes.as_slice()).map_err(|e| {
        InferenceError::malformed(FORMAT, footer_offset, format!("Footer does not decode: {e}"))
    })?;
    let schema = match footer.types.first() {
        None => Schema::default(),
        Some(root) => match build(&footer.types, 0, root, 0, &mut vec![false; footer.types.len()]) {
            DataType::Struct(fields) => Schema { fields },
            other => {
                Schema { fields: vec![Field { name: "_col0".into(), data_type: other, nullable: true }] }
            }
        },
    };
    Ok(InferenceStep::Done(InferredFile {
        format: FORMAT,
        compression: Compression::None,
        schema,
        dialect: None,
        records_sampled: 0,
        row_count: footer.number_of_rows,
        sample_truncated: false,
    }))
}

/// True when `tail` ends with a PostScript carrying the `ORC` magic.
pub(crate) fn looks_like_tail(tail: &[u8]) -> bool {
    let Some((&ps_len, rest)) = tail.split_last() else {
        return false;
    };
    let ps_len = usize::from(ps_len);
    let Some(ps_bytes) = rest.len().checked_sub(ps_len).and_then(|s| rest.get(s..)) else {
        return false;
    };
    ps_len > 0 && PostScript::decode(ps_bytes).is_ok_and(|ps| ps.magic.as_deref() == Some("ORC"))
}

/// Decodes an ORC compressed stream: chunks with a 3-byte little-endian header
/// `(length << 1) | is_original`.
fn decompress(
    kind: i32,
    data: &[u8],
    offset: u64,
    limits: &InferenceLimits,
) -> Result<Vec<u8>, InferenceError> {
    let codec = match kind {
        0 => return Ok(data.to_vec()),
        1 => "zlib",
        2 => "snappy",
        5 => "zstd",
        3 => return Err(unsupported("LZO")),
        4 => return Err(unsupported("LZ4")),
        other => return Err(unsupported(&format!("compression kind {other}"))),
    };
    let cap = usize::try_from(limits.max_decompressed_bytes).unwrap_or(usize::MAX);
    let fail = |detail: String| InferenceError::DecompressionFailed {
        format: FORMAT,
        compression: codec.into(),
        offset,
        detail,
    };
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let header = data.get(pos..pos + 3).ok_or_else(|| fail("cut chunk header".into()))?;
        let value = u32::from(header[0]) | u32::from(header[1]) << 8 | u32::from(header[2]) << 16;
        let (len, original) = ((value >> 1) as usize, value & 1 == 1);
        pos += 3;
        let chunk = data.get(pos..pos.saturating_add(len)).ok_or_else(|| fail("cut chunk".into()))?;
        pos += len;
        let room = cap.saturating_sub(out.len());
        if original {
            out.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
        } else {
            let decoded = match kind {
                1 => bounded(flate2::read::DeflateDecoder::new(chunk), room)?,
                5 => bounded(
                    super::decode::zstd_decoder(chunk, limits.max_decompressed_bytes)
                        .map_err(|e| fail(e.to_string()))?,
                    room,
                )?,
                _ => {
                    let n = snap::raw::decompress_len(chunk).map_err(|e| fail(e.to_string()))?;
                    if n > room {
                        return Err(fail(format!("chunk of {n} bytes exceeds the decompression limit")));
                    }
                    snap::raw::Decoder::new().decompress_vec(chunk).map_err(|e| fail(e.to_string()))?
                }
            };
            out.extend_from_slice(&decoded);
        }
        if out.len() >= cap {
            return Err(fail("footer exceeds the decompression limit".into()));
        }
    }
    Ok(out)
}

fn bounded<R: Read>(reader: R, cap: usize) -> Result<Vec<u8>, InferenceError> {
    let (out, err, _) = read_bounded(reader, cap);
    match err {
        Some(e) => Err(InferenceError::DecompressionFailed {
            format: FORMAT,
            compression: "orc chunk".into(),
            offset: out.len() as u64,
            detail: e.to_string(),
        }),
        None => Ok(out),
    }
}

fn unsupported(codec: &str) -> InferenceError {
    InferenceError::UnsupportedFormat {
        format: FORMAT,
        detail: format!("ORC {codec} compression is not supported"),
    }
}

/// Nesting beyond this is rendered as an opaque type.
const MAX_DEPTH: usize = 64;

/// Builds the type of `types[id]`. Types are stored in pre-order, so children have larger
/// ids than their parent and each type has one parent; anything else (a cycle, or a type
/// shared by several parents, which could expand exponentially) is rejected.
fn build(types: &[OrcType], id: usize, t: &OrcType, depth: usize, visited: &mut [bool]) -> DataType {
    match visited.get_mut(id) {
        Some(seen) if !*seen => *seen = true,
        _ => return DataType::Other("shared_type".into()),
    }
    if depth > MAX_DEPTH {
        return DataType::Other("deeply_nested".into());
    }
    let mut child = |n: usize| -> DataType {
        match t.subtypes.get(n).map(|&s| s as usize) {
            Some(sub) if sub > id => match types.get(sub) {
                Some(st) => build(types, sub, st, depth + 1, visited),
                None => DataType::Other("missing_type".into()),
            },
            _ => DataType::Other("missing_type".into()),
        }
    };
    let nullable = |name: &str, data_type| Field { name: name.into(), data_type, nullable: true };
    match t.kind.unwrap_or(-1) {
        0 => DataType::Boolean,
        1..=3 => DataType::Int32,
        4 => DataType::Int64,
        5 => DataType::Float,
        6 => DataType::Double,
        7 | 16 | 17 => DataType::String,
        8 => DataType::Binary,
        9 => DataType::Timestamp { with_time_zone: false },
        10 => DataType::List(Box::new(nullable("element", child(0)))),
        11 => DataType::Map {
            key: Box::new(nullable("key", child(0))),
            value: Box::new(nullable("value", child(1))),
        },
        12 => DataType::Struct(
            (0..t.subtypes.len())
                .map(|i| {
                    let name = t.field_names.get(i).cloned().unwrap_or_else(|| format!("_col{i}"));
                    nullable(&name, child(i))
                })
                .collect(),
        ),
        13 => {
            let parts: Vec<String> = (0..t.subtypes.len()).map(|i| child(i).to_string()).collect();
            DataType::Other(format!("uniontype<{}>", parts.join(",")))
        }
        // ORC's defaults for a decimal without declared precision/scale.
        14 => DataType::Decimal { precision: t.precision.unwrap_or(38), scale: t.scale.unwrap_or(10) },
        15 => DataType::Date,
        18 => DataType::Timestamp { with_time_zone: true },
        other => DataType::Other(format!("orc_kind_{other}")),
    }
}
