//! Avro rows from a head read: the header gives the writer schema, codec and sync marker; the
//! complete blocks within the window are decompressed (within the decompression budget) and
//! their records decoded here.
//!
//! The datum decoder is our own rather than `apache_avro::from_avro_datum`: that one allocates
//! a string's or array's claimed length before reading it, recurses without a depth bound
//! (a recursive schema over crafted data overflows the stack) and reads a string cut short as
//! null. Here every length is checked against the bytes left in the block, nesting stops at
//! `MAX_DEPTH`, and the values decoded per window are bounded, so hostile files end in a
//! typed error. Values keep their JSON types; bytes/fixed are base64, decimals exact strings,
//! dates `YYYY-MM-DD`, timestamps RFC 3339 (`Z` for UTC instants, none for local ones).

use std::collections::HashMap;
use std::io::Read;

use apache_avro::Schema as AvroSchema;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Number, Value};

use super::{Sample, SampleFileError, SampleLimits, SampleMode, choose, object_rows, projection};
use crate::model::{Field, FileFormat};
use crate::schema::InferenceError;
use crate::schema::InferenceLimits;
use crate::schema::avro::{Cursor, Header, Short, header};
use crate::schema::decode::{read_bounded, zstd_decoder};

const FORMAT: FileFormat = FileFormat::Avro;
/// Deepest nesting of values decoded.
const MAX_DEPTH: usize = 64;
/// Values (of any nesting level) decoded per window at least allowed; the budget is the larger
/// of this and the decompression budget, so a block of empty arrays claiming billions of
/// elements stops instead of looping.
const MIN_VALUE_BUDGET: u64 = 1 << 20;

/// Why a datum could not be decoded.
enum Bad {
    /// The block ended inside a value.
    Eof,
    /// The bytes do not follow the schema.
    Malformed(String),
    /// A string is not UTF-8.
    Utf8,
}

impl From<Short> for Bad {
    fn from(short: Short) -> Bad {
        match short {
            Short::Eof => Bad::Eof,
            Short::Bad(detail) => Bad::Malformed(detail.into()),
        }
    }
}

/// Named types by full (and short) name, for `Ref`s.
fn collect_names<'s>(s: &'s AvroSchema, names: &mut HashMap<String, &'s AvroSchema>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut add = |name: &apache_avro::schema::Name| {
        names.entry(name.fullname(None)).or_insert(s);
        names.entry(name.name.clone()).or_insert(s);
    };
    match s {
        AvroSchema::Record(r) => {
            add(&r.name);
            for f in &r.fields {
                collect_names(&f.schema, names, depth + 1);
            }
        }
        AvroSchema::Enum(e) => add(&e.name),
        AvroSchema::Fixed(f) => add(&f.name),
        AvroSchema::Array(a) => collect_names(&a.items, names, depth + 1),
        AvroSchema::Map(m) => collect_names(&m.types, names, depth + 1),
        AvroSchema::Union(u) => u.variants().iter().for_each(|v| collect_names(v, names, depth + 1)),
        AvroSchema::Decimal(d) => collect_names(&d.inner, names, depth + 1),
        _ => {}
    }
}

/// Decodes datums of one schema.
struct Decoder<'s> {
    names: HashMap<String, &'s AvroSchema>,
    /// Values still allowed in this window.
    values_left: u64,
}

fn int(cur: &mut Cursor<'_>) -> Result<i32, Bad> {
    i32::try_from(cur.long()?).map_err(|_| Bad::Malformed("int out of range".into()))
}

fn fixed<'a>(cur: &mut Cursor<'a>, size: usize) -> Result<&'a [u8], Bad> {
    Ok(cur.take(i64::try_from(size).map_err(|_| Bad::Malformed("fixed size overflow".into()))?)?)
}

fn float(v: f64) -> Value {
    // NaN and infinities have no JSON number: keep them readable.
    Number::from_f64(v).map(Value::Number).unwrap_or_else(|| Value::String(v.to_string()))
}

/// A two's-complement big-endian unscaled integer as an exact decimal string.
fn decimal(bytes: &[u8], scale: usize) -> Value {
    if bytes.is_empty() {
        return Value::String("0".into());
    }
    if bytes.len() > 16 {
        // Wider than any i128: rare (precision > 38); the bytes are kept, not guessed at.
        return Value::String(B64.encode(bytes));
    }
    let mut buf = if bytes[0] & 0x80 != 0 { [0xffu8; 16] } else { [0u8; 16] };
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    let n = i128::from_be_bytes(buf);
    let digits = n.unsigned_abs().to_string();
    let sign = if n < 0 { "-" } else { "" };
    if scale == 0 {
        return Value::String(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, frac) = padded.split_at(padded.len() - scale);
    Value::String(format!("{sign}{whole}.{frac}"))
}

pub(super) fn date(days: i32) -> Value {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::TimeDelta::try_days(i64::from(days))?))
        .map_or_else(|| Value::from(days), |d| Value::String(d.format("%Y-%m-%d").to_string()))
}

pub(super) fn time_of_day(micros: i64) -> Value {
    let secs = micros.div_euclid(1_000_000);
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as u32;
    u32::try_from(secs)
        .ok()
        .and_then(|s| chrono::NaiveTime::from_num_seconds_from_midnight_opt(s, nanos))
        .map_or_else(|| Value::from(micros), |t| Value::String(t.format("%H:%M:%S%.f").to_string()))
}

/// A timestamp `n` units (`per_second` per second) after the epoch.
pub(super) fn timestamp(n: i64, per_second: i64, utc: bool) -> Value {
    let secs = n.div_euclid(per_second);
    let nanos = (n.rem_euclid(per_second) * (1_000_000_000 / per_second)) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) if utc => Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        Some(t) => Value::String(t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        None => Value::from(n),
    }
}

impl<'s> Decoder<'s> {
    fn value(&mut self, s: &'s AvroSchema, cur: &mut Cursor<'_>, depth: usize) -> Result<Value, Bad> {
        if depth > MAX_DEPTH {
            return Err(Bad::Malformed(format!("values nested deeper than {MAX_DEPTH} levels")));
        }
        self.values_left = self
            .values_left
            .checked_sub(1)
            .ok_or_else(|| Bad::Malformed("more values than the sampling budget allows".into()))?;
        Ok(match s {
            AvroSchema::Null => Value::Null,
            AvroSchema::Boolean => match fixed(cur, 1)? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                _ => return Err(Bad::Malformed("boolean byte is neither 0 nor 1".into())),
            },
            AvroSchema::Int => Value::from(int(cur)?),
            AvroSchema::Long => Value::from(cur.long()?),
            AvroSchema::Float => {
                let b = fixed(cur, 4)?;
                float(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
            AvroSchema::Double => {
                let mut b = [0u8; 8];
                b.copy_from_slice(fixed(cur, 8)?);
                float(f64::from_le_bytes(b))
            }
            AvroSchema::Bytes | AvroSchema::BigDecimal => Value::String(B64.encode(cur.bytes()?)),
            AvroSchema::String => {
                Value::String(std::str::from_utf8(cur.bytes()?).map_err(|_| Bad::Utf8)?.to_string())
            }
            AvroSchema::Uuid => {
                let b = cur.bytes()?;
                match b.len() {
                    16 => {
                        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                        Value::String(format!(
                            "{}-{}-{}-{}-{}",
                            &hex[..8],
                            &hex[8..12],
                            &hex[12..16],
                            &hex[16..20],
                            &hex[20..]
                        ))
                    }
                    _ => Value::String(std::str::from_utf8(b).map_err(|_| Bad::Utf8)?.to_string()),
                }
            }
            AvroSchema::Fixed(f) => Value::String(B64.encode(fixed(cur, f.size)?)),
            AvroSchema::Enum(e) => {
                let i = int(cur)?;
                let symbol = usize::try_from(i).ok().and_then(|i| e.symbols.get(i));
                Value::String(
                    symbol.ok_or_else(|| Bad::Malformed(format!("enum index {i} out of range")))?.clone(),
                )
            }
            AvroSchema::Union(u) => {
                let i = cur.long()?;
                let variant = usize::try_from(i).ok().and_then(|i| u.variants().get(i));
                let variant =
                    variant.ok_or_else(|| Bad::Malformed(format!("union index {i} out of range")))?;
                self.value(variant, cur, depth + 1)?
            }
            AvroSchema::Array(a) => {
                let mut items = Vec::new();
                self.blocks(cur, |d, cur| {
                    items.push(d.value(&a.items, cur, depth + 1)?);
                    Ok(())
                })?;
                Value::Array(items)
            }
            AvroSchema::Map(m) => {
                let mut map = Map::new();
                self.blocks(cur, |d, cur| {
                    let key = std::str::from_utf8(cur.bytes()?).map_err(|_| Bad::Utf8)?.to_string();
                    let value = d.value(&m.types, cur, depth + 1)?;
                    map.insert(key, value);
                    Ok(())
                })?;
                Value::Object(map)
            }
            AvroSchema::Record(r) => {
                let mut map = Map::new();
                for f in &r.fields {
                    let value = self.value(&f.schema, cur, depth + 1)?;
                    map.insert(f.name.clone(), value);
                }
                Value::Object(map)
            }
            AvroSchema::Decimal(d) => {
                let bytes = match d.inner.as_ref() {
                    AvroSchema::Fixed(f) => fixed(cur, f.size)?,
                    _ => cur.bytes()?,
                };
                decimal(bytes, d.scale)
            }
            AvroSchema::Date => date(int(cur)?),
            AvroSchema::TimeMillis => time_of_day(i64::from(int(cur)?) * 1000),
            AvroSchema::TimeMicros => time_of_day(cur.long()?),
            AvroSchema::TimestampMillis => timestamp(cur.long()?, 1_000, true),
            AvroSchema::TimestampMicros => timestamp(cur.long()?, 1_000_000, true),
            AvroSchema::TimestampNanos => timestamp(cur.long()?, 1_000_000_000, true),
            AvroSchema::LocalTimestampMillis => timestamp(cur.long()?, 1_000, false),
            AvroSchema::LocalTimestampMicros => timestamp(cur.long()?, 1_000_000, false),
            AvroSchema::LocalTimestampNanos => timestamp(cur.long()?, 1_000_000_000, false),
            AvroSchema::Duration => {
                let b = fixed(cur, 12)?;
                let part = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
                serde_json::json!({"months": part(0), "days": part(4), "millis": part(8)})
            }
            AvroSchema::Ref { name } => {
                let target = self
                    .names
                    .get(&name.fullname(None))
                    .or_else(|| self.names.get(&name.name))
                    .copied()
                    .ok_or_else(|| Bad::Malformed(format!("unknown named type {}", name.fullname(None))))?;
                self.value(target, cur, depth + 1)?
            }
        })
    }

    /// Walks the blocks of an array or map: counts, a negative count followed by a byte size,
    /// a zero count at the end.
    fn blocks(
        &mut self,
        cur: &mut Cursor<'_>,
        mut item: impl FnMut(&mut Self, &mut Cursor<'_>) -> Result<(), Bad>,
    ) -> Result<(), Bad> {
        loop {
            let mut count = cur.long()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| Bad::Malformed("bad block count".into()))?;
                cur.long()?;
            }
            // Each item takes at least one value of the budget: a huge claimed count over
            // zero-byte items stops at the budget instead of looping.
            if u64::try_from(count).unwrap_or(u64::MAX) > self.values_left {
                return Err(Bad::Malformed("more values than the sampling budget allows".into()));
            }
            for _ in 0..count {
                item(self, cur)?;
            }
        }
    }
}

/// Decompresses one block's data with the file's codec, producing at most `cap` bytes.
/// `Ok(None)`: the block decompresses to more than `cap`.
fn decompress(codec: &[u8], data: &[u8], cap: usize, offset: u64) -> Result<Option<Vec<u8>>, InferenceError> {
    let failed = |detail: String| InferenceError::DecompressionFailed {
        format: FORMAT,
        compression: String::from_utf8_lossy(codec).into_owned(),
        offset,
        detail,
    };
    let bounded = |(out, err, more): (Vec<u8>, Option<std::io::Error>, bool)| match err {
        Some(e) => Err(failed(e.to_string())),
        None if more => Ok(None),
        None => Ok(Some(out)),
    };
    match codec {
        b"null" => Ok((data.len() <= cap).then(|| data.to_vec())),
        b"deflate" => bounded(read_bounded(flate2::read::DeflateDecoder::new(data), cap)),
        b"bzip2" => bounded(read_bounded(bzip2::read::BzDecoder::new(data), cap)),
        b"zstandard" => {
            let decoder = zstd_decoder(data, cap as u64).map_err(|e| failed(e.to_string()))?;
            bounded(read_bounded(decoder, cap))
        }
        b"snappy" => {
            // Raw snappy, then the CRC-32 of the uncompressed bytes (big-endian).
            let (body, crc) = data
                .split_at_checked(data.len().saturating_sub(4))
                .filter(|(_, crc)| crc.len() == 4)
                .ok_or_else(|| failed("block shorter than its checksum".into()))?;
            let len = snap::raw::decompress_len(body).map_err(|e| failed(e.to_string()))?;
            if len > cap {
                return Ok(None);
            }
            let out = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| failed(e.to_string()))?;
            let mut hasher = flate2::Crc::new();
            hasher.update(&out);
            if hasher.sum().to_be_bytes() != crc {
                return Err(failed("checksum mismatch".into()));
            }
            Ok(Some(out))
        }
        other => {
            let mut name = String::new();
            let _ = other.take(64).read_to_string(&mut name);
            Err(InferenceError::UnsupportedFormat {
                format: FORMAT,
                detail: format!("codec '{}' is not decoded for sampling", name.escape_debug()),
            })
        }
    }
}

/// The records of the complete blocks of a window, decoded lazily.
struct Records<'h, 's> {
    window: &'h [u8],
    header: &'s Header<'h>,
    decoder: Decoder<'s>,
    pos: usize,
    /// The current block: decompressed bytes, read position, records left, file offset.
    block: Vec<u8>,
    block_pos: usize,
    left: i64,
    block_offset: u64,
    /// Decompressed bytes still allowed.
    budget: usize,
    /// The window ends before the end of the file.
    capped: bool,
    /// Set when reading stopped at the window's end or a budget, with records behind it.
    stopped_early: bool,
    done: bool,
}

impl Records<'_, '_> {
    fn malformed(&self, detail: impl Into<String>) -> SampleFileError {
        InferenceError::malformed(FORMAT, self.block_offset, detail).into()
    }

    /// Loads the next block; `Ok(false)` at the end of what can be read.
    fn next_block(&mut self) -> Result<bool, SampleFileError> {
        if self.pos >= self.window.len() {
            self.stopped_early = self.capped;
            return Ok(false);
        }
        let start = self.pos;
        let mut cur = Cursor { bytes: self.window, pos: start };
        let parsed = (|| -> Result<(i64, &[u8], &[u8]), Short> {
            let count = cur.long()?;
            let size = cur.long()?;
            let data = cur.take(size)?;
            let sync = cur.take(16)?;
            Ok((count, data, sync))
        })();
        self.block_offset = start as u64;
        let (count, data, sync) = match parsed {
            Ok(block) => block,
            Err(Short::Eof) if self.capped => {
                self.stopped_early = true;
                return Ok(false);
            }
            Err(Short::Eof) => {
                return Err(
                    InferenceError::truncated(FORMAT, start as u64, "file ends inside a block").into()
                );
            }
            Err(Short::Bad(detail)) => return Err(self.malformed(detail)),
        };
        if sync != self.header.sync {
            return Err(self.malformed("block does not end with the file's sync marker"));
        }
        if count < 0 {
            return Err(self.malformed("negative record count"));
        }
        match decompress(self.header.codec, data, self.budget, start as u64)? {
            Some(block) => {
                self.budget -= block.len();
                self.block = block;
            }
            None if self.budget > 0 && start > self.header.data_start => {
                // Earlier blocks gave rows; this one is over what is left of the budget.
                self.stopped_early = true;
                return Ok(false);
            }
            None => {
                return Err(InferenceError::DecompressionFailed {
                    format: FORMAT,
                    compression: String::from_utf8_lossy(self.header.codec).into_owned(),
                    offset: start as u64,
                    detail: "block decompresses to more than the decompression limit".into(),
                }
                .into());
            }
        }
        self.block_pos = 0;
        self.left = count;
        self.pos = cur.pos;
        Ok(true)
    }

    fn next_record(&mut self) -> Result<Option<Map<String, Value>>, SampleFileError> {
        while self.left == 0 {
            if self.block_pos != self.block.len() {
                return Err(self.malformed("block has bytes after its records"));
            }
            if !self.next_block()? {
                return Ok(None);
            }
        }
        let block = std::mem::take(&mut self.block);
        let mut cur = Cursor { bytes: &block, pos: self.block_pos };
        let header = self.header;
        let decoded = self.decoder.value(&header.schema, &mut cur, 0);
        self.block_pos = cur.pos;
        self.block = block;
        self.left -= 1;
        match decoded {
            Ok(Value::Object(map)) if matches!(self.header.schema, AvroSchema::Record(_)) => Ok(Some(map)),
            // A file of bare values: one column named `value` (as inference names it).
            Ok(other) => Ok(Some(Map::from_iter([("value".to_string(), other)]))),
            Err(Bad::Eof) => Err(self.malformed("a record runs past the end of its block")),
            Err(Bad::Malformed(detail)) => Err(self.malformed(detail)),
            Err(Bad::Utf8) => {
                Err(InferenceError::InvalidUtf8 { format: FORMAT, offset: self.block_offset }.into())
            }
        }
    }
}

impl Iterator for Records<'_, '_> {
    type Item = Result<Map<String, Value>, SampleFileError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_record().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// Samples the records of the complete blocks in `head` = `object[0..head.len()]`; `schema`
/// is the file's inferred schema (column names and types).
pub fn sample(
    head: &[u8],
    object_size: u64,
    schema: &[Field],
    columns: &[String],
    mode: SampleMode,
    limits: &SampleLimits,
    inference: &InferenceLimits,
) -> Result<Sample, SampleFileError> {
    let picked = projection(schema, columns)?;
    let head = head.get(..usize::try_from(object_size).unwrap_or(usize::MAX)).unwrap_or(head);
    let header = header(head, object_size)?;
    let mut names = HashMap::new();
    collect_names(&header.schema, &mut names, 0);
    let budget = usize::try_from(inference.max_decompressed_bytes).unwrap_or(usize::MAX);
    let mut records = Records {
        window: head,
        header: &header,
        decoder: Decoder { names, values_left: inference.max_decompressed_bytes.max(MIN_VALUE_BUDGET) },
        pos: header.data_start,
        block: Vec::new(),
        block_pos: 0,
        left: 0,
        block_offset: header.data_start as u64,
        budget,
        capped: (head.len() as u64) < object_size,
        stopped_early: false,
        done: false,
    };
    let (rows, more) = choose(&mut records, mode, limits.max_rows)?;
    let rows = object_rows(rows, &picked, schema, limits);
    Ok(Sample {
        columns: picked.iter().map(|&c| schema[c].clone()).collect(),
        rows,
        more_rows: more || records.stopped_early,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use apache_avro::types::Value as Avro;

    use super::*;
    use crate::sample::sample_text_head;

    const SCHEMA: &str = r#"{"type": "record", "name": "Row", "namespace": "t", "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "email", "type": ["null", "string"]},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "blob", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "double"}]}},
        {"name": "again", "type": ["null", "Inner"]}
    ]}"#;

    fn record(i: i64) -> Avro {
        Avro::Record(vec![
            ("id".into(), Avro::Long(i)),
            ("name".into(), Avro::String(format!("name {i}"))),
            ("email".into(), Avro::Union(0, Box::new(Avro::Null))),
            ("day".into(), Avro::Date(19000)),
            ("price".into(), Avro::Decimal(apache_avro::Decimal::from(vec![0xfe, 0xfe]))),
            ("at".into(), Avro::TimestampMillis(1_700_000_000_123)),
            ("tags".into(), Avro::Array(vec![Avro::String("t".into())])),
            ("kind".into(), Avro::Enum(1, "B".into())),
            ("blob".into(), Avro::Fixed(4, vec![0, 1, 2, 3])),
            ("inner".into(), Avro::Record(vec![("x".into(), Avro::Double(0.5))])),
            ("again".into(), Avro::Union(1, Box::new(Avro::Record(vec![("x".into(), Avro::Double(2.0))])))),
        ])
    }

    fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn compress(codec: &str, raw: &[u8]) -> Vec<u8> {
        match codec {
            "null" | "xz" => raw.to_vec(),
            "deflate" => {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            "snappy" => {
                let mut out = snap::raw::Encoder::new().compress_vec(raw).unwrap();
                let mut crc = flate2::Crc::new();
                crc.update(raw);
                out.extend_from_slice(&crc.sum().to_be_bytes());
                out
            }
            "zstandard" => zstd::encode_all(raw, 3).unwrap(),
            "bzip2" => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            other => panic!("{other}"),
        }
    }

    const SYNC: [u8; 16] = *b"0123456789abcdef";

    /// An object container file written by hand: `blocks` of (record count, raw datums).
    fn container(schema: &str, codec: &str, blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"Obj\x01".to_vec();
        long(&mut out, 2);
        for (k, v) in [("avro.schema", schema), ("avro.codec", codec)] {
            long(&mut out, k.len() as i64);
            out.extend_from_slice(k.as_bytes());
            long(&mut out, v.len() as i64);
            out.extend_from_slice(v.as_bytes());
        }
        long(&mut out, 0);
        out.extend_from_slice(&SYNC);
        for (count, raw) in blocks {
            let data = compress(codec, raw);
            long(&mut out, *count);
            long(&mut out, data.len() as i64);
            out.extend_from_slice(&data);
            out.extend_from_slice(&SYNC);
        }
        out
    }

    /// `groups` blocks of `per_block` records of [`SCHEMA`].
    fn file(codec: &str, groups: i64, per_block: i64) -> Vec<u8> {
        let schema = AvroSchema::parse_str(SCHEMA).unwrap();
        let blocks: Vec<(i64, Vec<u8>)> = (0..groups)
            .map(|g| {
                let raw = (0..per_block)
                    .flat_map(|r| apache_avro::to_avro_datum(&schema, record(g * per_block + r)).unwrap())
                    .collect();
                (per_block, raw)
            })
            .collect();
        container(SCHEMA, codec, &blocks)
    }

    fn take(
        bytes: &[u8],
        size: u64,
        columns: &[&str],
        mode: SampleMode,
        max_rows: usize,
    ) -> Result<Sample, SampleFileError> {
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        sample_text_head(
            crate::format::detect_from_key("d/part-0.avro"),
            bytes,
            size,
            &columns,
            mode,
            &SampleLimits { max_rows, max_value_bytes: 64 },
            &InferenceLimits::default(),
        )
    }

    fn ids(s: &Sample) -> Vec<i64> {
        s.rows.iter().map(|r| r[0].value.as_i64().unwrap()).collect()
    }

    #[test]
    fn every_codec_gives_typed_rows() {
        for codec in ["null", "deflate", "snappy", "zstandard", "bzip2"] {
            let bytes = file(codec, 3, 10);
            let s = take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 12).unwrap();
            assert_eq!(s.rows.len(), 12, "{codec}");
            assert!(s.more_rows, "{codec}");
            assert_eq!(ids(&s), (0..12).collect::<Vec<_>>(), "{codec}: across blocks, in order");
            let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names[..4], ["id", "name", "email", "day"]);
            let row: Vec<&Value> = s.rows[3].iter().map(|v| &v.value).collect();
            assert_eq!(row[1], &Value::from("name 3"));
            assert_eq!(row[2], &Value::Null);
            assert_eq!(row[3], &Value::from("2022-01-08"));
            assert_eq!(row[4], &Value::from("-2.58"), "two's complement decimal, exact");
            assert_eq!(row[5], &Value::from("2023-11-14T22:13:20.123Z"));
            assert_eq!(row[6], &serde_json::json!(["t"]));
            assert_eq!(row[7], &Value::from("B"));
            assert_eq!(row[8], &Value::from("AAECAw=="), "fixed bytes are base64");
            assert_eq!(row[9], &serde_json::json!({"x": 0.5}));
            assert_eq!(row[10], &serde_json::json!({"x": 2.0}), "named type reference");
        }
    }

    #[test]
    fn a_file_written_by_fastavro_with_bzip2_is_sampled() {
        let object = include_bytes!("../schema/testdata/avro_bzip2.avro");
        let s = take(object, object.len() as u64, &["id", "at"], SampleMode::Head, 100).unwrap();
        assert_eq!(s.rows.len(), 5);
        assert!(!s.more_rows);
        assert!(s.rows[0][1].value.as_str().is_some_and(|t| t.ends_with('Z')), "{:?}", s.rows[0][1]);
    }

    #[test]
    fn a_capped_window_yields_its_complete_blocks_only() {
        let bytes = file("deflate", 20, 50);
        let window = &bytes[..bytes.len() / 2];
        let s = take(window, bytes.len() as u64, &["id"], SampleMode::Head, 10_000).unwrap();
        assert!(
            s.rows.len() >= 50 && s.rows.len() < 1000 && s.rows.len().is_multiple_of(50),
            "{}",
            s.rows.len()
        );
        assert!(s.more_rows);
        // The same cut at the real end of the file is a truncated file.
        let err = take(window, window.len() as u64, &["id"], SampleMode::Head, 10_000).unwrap_err();
        assert_eq!(err.code(), "FILE_TRUNCATED", "{err}");
    }

    #[test]
    fn random_rows_come_from_later_blocks_reproducibly() {
        let bytes = file("snappy", 8, 25);
        let size = bytes.len() as u64;
        let a = ids(&take(&bytes, size, &["id"], SampleMode::Random { seed: 5 }, 20).unwrap());
        assert_eq!(a, ids(&take(&bytes, size, &["id"], SampleMode::Random { seed: 5 }, 20).unwrap()));
        assert_eq!(a.len(), 20);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "file order");
        assert!(a.iter().any(|&i| i >= 25), "{a:?}");
    }

    #[test]
    fn long_values_are_cut_and_marked() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#;
        let mut raw = Vec::new();
        let text = "é".repeat(100);
        long(&mut raw, text.len() as i64);
        raw.extend_from_slice(text.as_bytes());
        let bytes = container(schema, "null", &[(1, raw)]);
        let s = take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10).unwrap();
        assert_eq!(s.rows[0][0].value, Value::from("é".repeat(32)));
        assert!(s.rows[0][0].truncated);
    }

    fn one_string_column(raw: Vec<u8>, count: i64) -> Result<Sample, SampleFileError> {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"}]}"#;
        let bytes = container(schema, "null", &[(count, raw)]);
        take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10)
    }

    #[test]
    fn hostile_blocks_are_typed_errors() {
        // Invalid UTF-8 in a string.
        let err = one_string_column(vec![4, 0xff, 0xfe], 1).unwrap_err();
        assert_eq!(err.code(), "INVALID_UTF8", "{err}");
        // A string claiming 2^40 bytes in a 10-byte block: no allocation, an error.
        let mut raw = Vec::new();
        long(&mut raw, 1 << 40);
        raw.extend_from_slice(b"abcdefgh");
        let err = one_string_column(raw, 1).unwrap_err();
        assert_eq!(err.code(), "FILE_MALFORMED", "{err}");
        assert!(err.to_string().contains("past the end of its block"), "{err}");
        // More records claimed than the block holds, and bytes left over.
        assert_eq!(one_string_column(vec![2, b'a'], 2).unwrap_err().code(), "FILE_MALFORMED");
        assert_eq!(one_string_column(vec![2, b'a', 0], 1).unwrap_err().code(), "FILE_MALFORMED");
        // A varint that never ends.
        assert_eq!(one_string_column(vec![0xff; 12], 1).unwrap_err().code(), "FILE_MALFORMED");

        // An array claiming a billion null items.
        let schema =
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"array","items":"null"}}]}"#;
        let mut raw = Vec::new();
        long(&mut raw, 1_000_000_000);
        long(&mut raw, 0);
        let bytes = container(schema, "null", &[(1, raw)]);
        let err = take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10).unwrap_err();
        assert!(err.to_string().contains("budget"), "{err}");

        // A recursive schema over data nested a million levels deep.
        let schema = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
        let mut raw = vec![2u8; 1_000_000];
        raw.push(0);
        let bytes = container(schema, "null", &[(1, raw)]);
        let err = take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");

        // A wrong sync marker.
        let mut bytes = file("null", 1, 3);
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        let err = take(&bytes, n as u64, &[], SampleMode::Head, 10).unwrap_err();
        assert!(err.to_string().contains("sync marker"), "{err}");

        // A codec we do not decode.
        let bytes = file("xz", 1, 3);
        assert_eq!(
            take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10).unwrap_err().code(),
            "UNSUPPORTED_FORMAT"
        );

        // A corrupt snappy checksum.
        let mut bytes = file("snappy", 1, 3);
        let n = bytes.len();
        bytes[n - 17] ^= 1;
        assert_eq!(
            take(&bytes, n as u64, &[], SampleMode::Head, 10).unwrap_err().code(),
            "DECOMPRESSION_FAILED"
        );
    }

    #[test]
    fn a_compression_bomb_stops_at_the_decompression_budget() {
        let schema = r#"{"type":"record","name":"R","fields":[{"name":"b","type":"bytes"}]}"#;
        let big = 64 * 1024 * 1024;
        let mut raw = Vec::new();
        long(&mut raw, big as i64);
        raw.resize(raw.len() + big, 0);
        let bytes = container(schema, "deflate", &[(1, raw)]);
        assert!(bytes.len() < 1024 * 1024, "{}", bytes.len());
        let err = take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10).unwrap_err();
        assert_eq!(err.code(), "DECOMPRESSION_FAILED", "{err}");
        assert!(err.to_string().contains("decompression limit"), "{err}");
        // After good blocks, a block over the rest of the budget ends the sample instead.
        let mut small = Vec::new();
        for _ in 0..3 {
            long(&mut small, 2);
            small.extend_from_slice(b"ok");
        }
        let mut bomb = Vec::new();
        long(&mut bomb, big as i64);
        bomb.resize(bomb.len() + big, 0);
        let bytes = container(schema, "deflate", &[(3, small), (1, bomb)]);
        let s = take(&bytes, bytes.len() as u64, &[], SampleMode::Head, 10).unwrap();
        assert_eq!(s.rows.len(), 3);
        assert!(s.more_rows);
    }
}
