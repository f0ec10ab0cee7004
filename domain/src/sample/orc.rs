//! ORC sampling from ranged reads: the file tail (PostScript, Footer, Metadata) says where the
//! stripes are; each chosen stripe's footer says where its streams are; only the streams of the
//! projected columns are fetched, then decoded with `orc-rust`.
//!
//! Flow: `tail_length(probe)` → (fetch a longer suffix) → `read_footer` → `plan` → the caller
//! fetches `plan.footer_ranges` → `stream_ranges` → the caller fetches them → `sample`.
//! Every step checks what it is given: a truncated or corrupt file is a typed error, and the
//! decoder is guarded so corrupt input never panics through.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{self as dt, DataType as ArrowType, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use orc_rust::ArrowReaderBuilder;
use orc_rust::compression::Decompressor;
use orc_rust::projection::ProjectionMask;
use orc_rust::reader::metadata::{FileMetadata, read_metadata};
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Number, Value};

use super::avro::{date, time_of_day, timestamp};
use super::parquet::SparseFile;
use super::{Sample, SampleError, SampleLimits, SampleMode, SampledValue, bound};
use crate::model::Field;
use crate::schema::MAX_FOOTER_BYTES;
use crate::schema::orc::PostScript;

/// `orc-rust` reads the last 16 KiB (or the whole smaller file) in one piece first.
const READER_FIRST_READ: u64 = 16 * 1024;

/// Rows decoded per batch: bounds memory per step, whatever the stripe size.
const BATCH_ROWS: usize = 1024;

/// Nesting beyond this is rendered as text.
const MAX_DEPTH: usize = 64;

/// Why an ORC sample could not be taken (besides the common [`SampleError`]s).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrcSampleError {
    /// The file ends before what its tail or stripe footers describe.
    #[error("ORC file is truncated: {reason}")]
    Truncated {
        /// What is missing.
        reason: String,
    },
    /// The tail, a stripe footer or a stream cannot be decoded.
    #[error("ORC file cannot be decoded: {reason}")]
    Malformed {
        /// What the decoder said (never the data).
        reason: String,
    },
    /// Even the first stripe's projected streams exceed the byte budget.
    #[error("reading the first stripe needs {needed} bytes, over the sampling limit of {limit}")]
    TooLarge {
        /// Bytes the plan needs.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A common sampling error.
    #[error(transparent)]
    Sample(#[from] SampleError),
}

impl OrcSampleError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            OrcSampleError::Truncated { .. } => "FILE_TRUNCATED",
            OrcSampleError::Malformed { .. } => "FILE_MALFORMED",
            OrcSampleError::TooLarge { .. } => "SAMPLE_TOO_LARGE",
            OrcSampleError::Sample(e) => e.code(),
        }
    }
}

fn malformed(e: impl std::fmt::Display) -> OrcSampleError {
    OrcSampleError::Malformed { reason: e.to_string() }
}

fn truncated(reason: impl Into<String>) -> OrcSampleError {
    OrcSampleError::Truncated { reason: reason.into() }
}

/// Runs third-party decoding; a panic inside it is a malformed file, not a crash.
fn guarded<T>(work: impl FnOnce() -> Result<T, OrcSampleError>) -> Result<T, OrcSampleError> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| Err(malformed("the decoder failed unexpectedly")))
}

/// How many trailing bytes of the file hold its PostScript, Footer and Metadata (and what the
/// decoder reads first), given `tail` = the last `tail.len()` bytes of an `object_size`-byte
/// file. When the answer exceeds `tail.len()`, fetch that suffix and go on with it.
pub fn tail_length(tail: &[u8], object_size: u64) -> Result<u64, OrcSampleError> {
    let first = object_size.min(READER_FIRST_READ);
    let Some((&ps_len, rest)) = tail.split_last() else {
        return Err(truncated("the file is empty"));
    };
    let ps_len = usize::from(ps_len);
    if ps_len == 0 || (ps_len as u64) + 4 > object_size {
        return Err(truncated(format!("bad PostScript length {ps_len}")));
    }
    let Some(ps_bytes) = rest.len().checked_sub(ps_len).and_then(|s| rest.get(s..)) else {
        // The probe does not even hold the PostScript (at most 255 bytes).
        return Ok(first.max(256).min(object_size));
    };
    let ps =
        PostScript::decode(ps_bytes).map_err(|e| malformed(format!("PostScript does not decode: {e}")))?;
    if ps.magic.as_deref() != Some("ORC") {
        return Err(malformed("PostScript magic is not ORC"));
    }
    let needed = 1u64
        .saturating_add(ps_len as u64)
        .saturating_add(ps.footer_length.unwrap_or(0))
        .saturating_add(ps.metadata_length.unwrap_or(0));
    // "ORC" header in front of it all.
    if needed.saturating_add(3) > object_size {
        return Err(truncated(format!("the tail claims {needed} bytes of a {object_size}-byte file")));
    }
    if needed > MAX_FOOTER_BYTES {
        return Err(malformed(format!("tail of {needed} bytes exceeds the {MAX_FOOTER_BYTES} byte limit")));
    }
    Ok(needed.max(first))
}

/// The decoded tail of an ORC file.
#[derive(Debug, Clone)]
pub struct OrcFooter {
    metadata: Arc<FileMetadata>,
}

impl OrcFooter {
    /// Rows in the file.
    pub fn rows(&self) -> u64 {
        self.metadata.number_of_rows()
    }

    /// Stripes in the file.
    pub fn stripes(&self) -> usize {
        self.metadata.stripe_metadatas().len()
    }
}

/// Decodes the tail. `file` must hold the last [`tail_length`] bytes in one piece.
pub fn read_footer(file: &SparseFile) -> Result<OrcFooter, OrcSampleError> {
    let mut reader = file.clone();
    guarded(|| {
        let metadata = read_metadata(&mut reader).map_err(malformed)?;
        Ok(OrcFooter { metadata: Arc::new(metadata) })
    })
}

/// What to fetch and decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrcPlan {
    /// Stripes to read, ascending.
    pub stripes: Vec<usize>,
    /// Top-level columns to return, in output order.
    pub columns: Vec<String>,
    /// Byte ranges `(start, length)` to fetch first: the chosen stripes' footers (a small stripe
    /// whole, cheaper than two requests).
    pub footer_ranges: Vec<(u64, u64)>,
    /// Rows in the chosen stripes.
    pub rows_in_plan: u64,
    /// Rows in the file.
    pub rows_in_file: u64,
}

/// Stripes no larger than this are fetched whole with their footer.
pub const SMALL_STRIPE: u64 = 64 * 1024;

/// Plans a sample: the stripes (first ones for `Head`, random ones for `Random`) holding at
/// least `limits.max_rows` rows, and the projected columns.
pub fn plan(
    footer: &OrcFooter,
    schema: &[Field],
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
) -> Result<OrcPlan, OrcSampleError> {
    let picked = super::projection(schema, columns)?;
    let root = footer.metadata.root_data_type();
    let names: Vec<String> = picked.iter().map(|&i| schema[i].name.clone()).collect();
    for name in &names {
        if !root.children().iter().any(|c| c.name() == name) {
            return Err(OrcSampleError::Sample(SampleError::UnknownColumn {
                column: name.clone(),
                available: root.children().iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
            }));
        }
    }
    let stripes = footer.metadata.stripe_metadatas();
    let mut order: Vec<usize> = (0..stripes.len()).collect();
    if let SampleMode::Random { seed } = mode {
        order.shuffle(&mut StdRng::seed_from_u64(seed));
    }
    let mut chosen = Vec::new();
    let mut rows_in_plan = 0u64;
    for s in order {
        if rows_in_plan >= limits.max_rows as u64 && !chosen.is_empty() {
            break;
        }
        rows_in_plan += stripes[s].number_of_rows();
        chosen.push(s);
    }
    chosen.sort_unstable();
    let footer_ranges = chosen
        .iter()
        .map(|&s| {
            let info = &stripes[s];
            let whole = info.index_length() + info.data_length() + info.footer_length();
            if whole <= SMALL_STRIPE {
                (info.offset(), whole)
            } else {
                (info.footer_offset(), info.footer_length())
            }
        })
        .collect();
    Ok(OrcPlan {
        stripes: chosen,
        columns: names,
        footer_ranges,
        rows_in_plan,
        rows_in_file: footer.metadata.number_of_rows(),
    })
}

/// `orc.proto.StripeFooter` (subset).
#[derive(Clone, PartialEq, prost::Message)]
struct StripeFooter {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<Stream>,
}

/// `orc.proto.Stream`.
#[derive(Clone, PartialEq, prost::Message)]
struct Stream {
    #[prost(int32, optional, tag = "1")]
    kind: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    column: Option<u32>,
    #[prost(uint64, optional, tag = "3")]
    length: Option<u64>,
}

/// ORC column ids of the projected top-level columns (and the root).
fn projected_ids(footer: &OrcFooter, columns: &[String]) -> Vec<usize> {
    let mut ids = vec![0];
    for child in footer.metadata.root_data_type().children() {
        if columns.iter().any(|c| c == child.name()) {
            ids.extend(child.data_type().all_indices());
        }
    }
    ids
}

/// The byte ranges of the projected columns' streams in the planned stripes, from their
/// footers (which `file` must hold). Stripes past `max_bytes` are dropped from the plan; when
/// even the first does not fit, the sample is refused.
pub fn stream_ranges(
    file: &SparseFile,
    footer: &OrcFooter,
    plan: &mut OrcPlan,
    max_bytes: u64,
) -> Result<Vec<(u64, u64)>, OrcSampleError> {
    let ids = projected_ids(footer, &plan.columns);
    let stripes = footer.metadata.stripe_metadatas();
    let mut ranges = Vec::new();
    let mut kept = Vec::new();
    let mut total = 0u64;
    for &s in &plan.stripes {
        let info = &stripes[s];
        let raw = file
            .find(info.footer_offset(), info.footer_length())
            .ok_or_else(|| malformed(format!("the footer of stripe {s} was not fetched")))?;
        let compression = footer.metadata.compression();
        let decoded = guarded(|| {
            let mut buf = Vec::new();
            Decompressor::new(raw, compression, Vec::new())
                .take(MAX_FOOTER_BYTES)
                .read_to_end(&mut buf)
                .map_err(|e| malformed(format!("stripe {s} footer: {e}")))?;
            StripeFooter::decode(buf.as_slice()).map_err(|e| malformed(format!("stripe {s} footer: {e}")))
        })?;
        let mut at = info.offset();
        let end = info.offset() + info.index_length() + info.data_length();
        let mut wanted = Vec::new();
        for stream in &decoded.streams {
            let len = stream.length.unwrap_or(0);
            let stream_end = at.saturating_add(len);
            if stream_end > end {
                return Err(malformed(format!("stripe {s}: streams run past the stripe's data")));
            }
            if ids.contains(&(stream.column.unwrap_or(0) as usize)) && len > 0 {
                wanted.push((at, len));
            }
            at = stream_end;
        }
        let cost: u64 = wanted.iter().filter(|&&(a, l)| !file.holds(a, l)).map(|&(_, l)| l).sum();
        if total + cost > max_bytes {
            if kept.is_empty() {
                return Err(OrcSampleError::TooLarge { needed: cost, limit: max_bytes });
            }
            break;
        }
        total += cost;
        kept.push(s);
        ranges.extend(wanted.into_iter().filter(|&(a, l)| !file.holds(a, l)));
    }
    if kept.len() < plan.stripes.len() {
        plan.rows_in_plan = kept.iter().map(|&s| stripes[s].number_of_rows()).sum();
        plan.stripes = kept;
    }
    Ok(ranges)
}

impl orc_rust::reader::ChunkReader for SparseFile {
    type T = bytes::buf::Reader<Bytes>;

    fn len(&self) -> u64 {
        self.file_len()
    }

    fn get_read(&self, offset_from_start: u64) -> std::io::Result<Self::T> {
        self.from(offset_from_start).map(bytes::Buf::reader).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("byte {offset_from_start} was not fetched"),
            )
        })
    }

    fn get_bytes(&self, offset_from_start: u64, length: u64) -> std::io::Result<Bytes> {
        self.find(offset_from_start, length).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("bytes {offset_from_start}+{length} were not fetched"),
            )
        })
    }
}

/// Decodes the planned rows. `file` must hold the tail and every range of the plan.
pub fn sample(
    file: SparseFile,
    footer: &OrcFooter,
    plan: &OrcPlan,
    schema: &[Field],
    mode: SampleMode,
    limits: &SampleLimits,
) -> Result<Sample, OrcSampleError> {
    let max = limits.max_rows;
    let mut rng = match mode {
        SampleMode::Random { seed } => Some(StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15)),
        SampleMode::Head => None,
    };
    let mut chosen: Vec<(usize, Vec<SampledValue>)> = Vec::new();
    let mut seen = 0usize;
    let stripes = footer.metadata.stripe_metadatas();
    'stripes: for &s in &plan.stripes {
        let offset = stripes[s].offset() as usize;
        let mut reader = guarded(|| {
            let builder = ArrowReaderBuilder::try_new(file.clone()).map_err(malformed)?;
            let projection =
                ProjectionMask::named_roots(builder.file_metadata().root_data_type(), &plan.columns);
            // A byte range holding only this stripe's start selects just this stripe.
            Ok(builder
                .with_projection(projection)
                .with_file_byte_range(offset..offset + 1)
                .with_batch_size(BATCH_ROWS)
                .build())
        })?;
        loop {
            let batch = match catch_unwind(AssertUnwindSafe(|| reader.next())) {
                Ok(None) => break,
                Ok(Some(Ok(batch))) => batch,
                Ok(Some(Err(e))) => return Err(malformed(format!("stripe {s}: {e}"))),
                Err(_) => return Err(malformed(format!("stripe {s}: the decoder failed unexpectedly"))),
            };
            let positions: Vec<Option<usize>> =
                plan.columns.iter().map(|n| batch.schema().index_of(n).ok()).collect();
            for row in 0..batch.num_rows() {
                let slot = match rng.as_mut() {
                    None if chosen.len() == max => {
                        seen += 1;
                        break 'stripes;
                    }
                    None => Some(chosen.len()),
                    Some(_) if chosen.len() < max => Some(chosen.len()),
                    Some(rng) => Some(rng.random_range(0..=seen)).filter(|&j| j < max),
                };
                if let Some(j) = slot {
                    let values = guarded(|| Ok(row_values(&batch, &positions, row, limits)))?;
                    if j == chosen.len() {
                        chosen.push((seen, values));
                    } else {
                        chosen[j] = (seen, values);
                    }
                }
                seen += 1;
            }
        }
    }
    chosen.sort_by_key(|(i, _)| *i);
    let columns = plan
        .columns
        .iter()
        .map(|n| {
            schema.iter().find(|f| &f.name == n).cloned().unwrap_or_else(|| Field {
                name: n.clone(),
                data_type: crate::model::DataType::String,
                nullable: true,
            })
        })
        .collect();
    Ok(Sample {
        columns,
        rows: chosen.into_iter().map(|(_, r)| r).collect(),
        more_rows: seen > max || plan.rows_in_file > plan.rows_in_plan,
    })
}

fn row_values(
    batch: &RecordBatch,
    positions: &[Option<usize>],
    row: usize,
    limits: &SampleLimits,
) -> Vec<SampledValue> {
    positions
        .iter()
        .map(|p| {
            let raw = p.map_or(Value::Null, |i| json_value(batch.column(i).as_ref(), row, 0));
            let (value, truncated) = bound(raw, limits.max_value_bytes);
            SampledValue { value, truncated }
        })
        .collect()
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or_else(|| Value::String(v.to_string()), Value::Number)
}

/// One Arrow value as JSON, like the other formats: numbers, booleans, strings, lists and
/// objects keep their JSON types; bytes are base64, decimals exact strings, dates
/// `YYYY-MM-DD`, timestamps RFC 3339 (`Z` for instants, none for local times).
fn json_value(array: &dyn Array, row: usize, depth: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    if depth > MAX_DEPTH {
        return text(array, row);
    }
    match array.data_type() {
        ArrowType::Boolean => Value::Bool(array.as_boolean().value(row)),
        ArrowType::Int8 => array.as_primitive::<dt::Int8Type>().value(row).into(),
        ArrowType::Int16 => array.as_primitive::<dt::Int16Type>().value(row).into(),
        ArrowType::Int32 => array.as_primitive::<dt::Int32Type>().value(row).into(),
        ArrowType::Int64 => array.as_primitive::<dt::Int64Type>().value(row).into(),
        ArrowType::UInt8 => array.as_primitive::<dt::UInt8Type>().value(row).into(),
        ArrowType::UInt16 => array.as_primitive::<dt::UInt16Type>().value(row).into(),
        ArrowType::UInt32 => array.as_primitive::<dt::UInt32Type>().value(row).into(),
        ArrowType::UInt64 => array.as_primitive::<dt::UInt64Type>().value(row).into(),
        ArrowType::Float32 => float(f64::from(array.as_primitive::<dt::Float32Type>().value(row))),
        ArrowType::Float64 => float(array.as_primitive::<dt::Float64Type>().value(row)),
        ArrowType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_string()),
        ArrowType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_string()),
        ArrowType::Binary => Value::String(B64.encode(array.as_binary::<i32>().value(row))),
        ArrowType::LargeBinary => Value::String(B64.encode(array.as_binary::<i64>().value(row))),
        ArrowType::Date32 => date(array.as_primitive::<dt::Date32Type>().value(row)),
        ArrowType::Time64(TimeUnit::Microsecond) => {
            time_of_day(array.as_primitive::<dt::Time64MicrosecondType>().value(row))
        }
        ArrowType::Timestamp(unit, tz) => {
            let utc = tz.is_some();
            match unit {
                TimeUnit::Second => {
                    timestamp(array.as_primitive::<dt::TimestampSecondType>().value(row), 1, utc)
                }
                TimeUnit::Millisecond => {
                    timestamp(array.as_primitive::<dt::TimestampMillisecondType>().value(row), 1_000, utc)
                }
                TimeUnit::Microsecond => {
                    timestamp(array.as_primitive::<dt::TimestampMicrosecondType>().value(row), 1_000_000, utc)
                }
                TimeUnit::Nanosecond => timestamp(
                    array.as_primitive::<dt::TimestampNanosecondType>().value(row),
                    1_000_000_000,
                    utc,
                ),
            }
        }
        ArrowType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            Value::Array((0..items.len()).map(|i| json_value(items.as_ref(), i, depth + 1)).collect())
        }
        ArrowType::LargeList(_) => {
            let items = array.as_list::<i64>().value(row);
            Value::Array((0..items.len()).map(|i| json_value(items.as_ref(), i, depth + 1)).collect())
        }
        ArrowType::Struct(fields) => {
            let s = array.as_struct();
            Value::Object(
                fields
                    .iter()
                    .zip(s.columns())
                    .map(|(f, c)| (f.name().clone(), json_value(c.as_ref(), row, depth + 1)))
                    .collect::<Map<String, Value>>(),
            )
        }
        ArrowType::Map(..) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            Value::Object(
                (0..entries.len())
                    .map(|i| {
                        let key = match json_value(keys.as_ref(), i, depth + 1) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (key, json_value(values.as_ref(), i, depth + 1))
                    })
                    .collect(),
            )
        }
        // Decimals (exact), unions and anything else: their text form.
        _ => text(array, row),
    }
}

fn text(array: &dyn Array, row: usize) -> Value {
    match ArrayFormatter::try_new(array, &FormatOptions::default()) {
        Ok(f) => Value::String(f.value(row).to_string()),
        Err(_) => Value::Null,
    }
}

#[cfg(test)]
mod tests;
