//! Avro object container files: the writer schema from the header.
//!
//! The header (magic, metadata map, sync marker) is walked here with bounds checks, and the
//! `avro.schema` JSON is parsed with `apache_avro::Schema`. `apache_avro::Reader` would also
//! insist on knowing the data codec, which fails for codecs we did not compile in (snappy,
//! xz, ...) although the schema is readable; our walk also counts the records of the complete
//! blocks in the head read without decoding them.

use std::collections::HashMap;

use apache_avro::Schema as AvroSchema;

use super::{InferenceError, InferenceLimits, InferredFile};
use crate::model::{Compression, DataType, Field, FileFormat, Schema};

const FORMAT: FileFormat = FileFormat::Avro;

pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

/// Why a read ran out.
pub(crate) enum Short {
    /// The bytes ended: truncated (or capped) input.
    Eof,
    /// The bytes are not valid Avro encoding.
    Bad(&'static str),
}

impl<'a> Cursor<'a> {
    pub(crate) fn long(&mut self) -> Result<i64, Short> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos).ok_or(Short::Eof)?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // Zig-zag decoding.
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(Short::Bad("varint longer than 10 bytes"))
    }

    pub(crate) fn take(&mut self, len: i64) -> Result<&'a [u8], Short> {
        let len = usize::try_from(len).map_err(|_| Short::Bad("negative length"))?;
        let end = self.pos.checked_add(len).ok_or(Short::Bad("length overflow"))?;
        let slice = self.bytes.get(self.pos..end).ok_or(Short::Eof)?;
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Short> {
        let len = self.long()?;
        self.take(len)
    }
}

/// The header of an object container file.
pub(crate) struct Header<'a> {
    /// The writer schema.
    pub(crate) schema: AvroSchema,
    /// `avro.codec` (`null` when absent).
    pub(crate) codec: &'a [u8],
    /// The sync marker every block ends with.
    pub(crate) sync: &'a [u8],
    /// Offset of the first block.
    pub(crate) data_start: usize,
}

/// Reads the header of a head read `bytes` = `object[0..bytes.len()]`.
pub(crate) fn header(bytes: &[u8], object_size: u64) -> Result<Header<'_>, InferenceError> {
    let capped = (bytes.len() as u64) < object_size;
    let fail = |short: Short, pos: usize| match short {
        Short::Eof if capped => {
            InferenceError::truncated(FORMAT, pos as u64, "header is larger than the head read")
        }
        Short::Eof => InferenceError::truncated(FORMAT, pos as u64, "file ends inside the header"),
        Short::Bad(detail) => InferenceError::malformed(FORMAT, pos as u64, detail),
    };
    if !bytes.starts_with(b"Obj\x01") {
        if bytes.len() < 4 && !capped {
            return Err(InferenceError::truncated(FORMAT, 0, "shorter than the Avro magic"));
        }
        return Err(InferenceError::malformed(FORMAT, 0, "no Avro magic Obj\\x01"));
    }
    let mut cur = Cursor { bytes, pos: 4 };
    let mut schema_json: Option<&[u8]> = None;
    let mut codec: &[u8] = b"null";
    loop {
        let mut count = cur.long().map_err(|s| fail(s, cur.pos))?;
        if count == 0 {
            break;
        }
        if count < 0 {
            // A negative count is followed by the block's byte size.
            count = count.checked_neg().ok_or_else(|| fail(Short::Bad("bad map block count"), cur.pos))?;
            cur.long().map_err(|s| fail(s, cur.pos))?;
        }
        for _ in 0..count {
            let key = cur.bytes().map_err(|s| fail(s, cur.pos))?;
            let value = cur.bytes().map_err(|s| fail(s, cur.pos))?;
            if key == b"avro.schema" {
                schema_json = Some(value);
            } else if key == b"avro.codec" {
                codec = value;
            }
        }
    }
    let sync = cur.take(16).map_err(|s| fail(s, cur.pos))?;

    let json =
        schema_json.ok_or_else(|| InferenceError::malformed(FORMAT, 4, "header has no avro.schema"))?;
    let json = std::str::from_utf8(json)
        .map_err(|e| InferenceError::InvalidUtf8 { format: FORMAT, offset: e.valid_up_to() as u64 })?;
    check_names(json)?;
    let schema = AvroSchema::parse_str(json)
        .map_err(|e| InferenceError::malformed(FORMAT, 4, format!("avro.schema: {e}")))?;
    Ok(Header { schema, codec, sync, data_start: cur.pos })
}

/// Reads the header of a head read `bytes` = `object[0..bytes.len()]`.
pub(crate) fn infer(
    bytes: &[u8],
    object_size: u64,
    _limits: &InferenceLimits,
) -> Result<InferredFile, InferenceError> {
    let capped = (bytes.len() as u64) < object_size;
    let Header { schema: avro, data_start, .. } = header(bytes, object_size)?;
    let mut cur = Cursor { bytes, pos: data_start };

    // Count the records of complete blocks: count, size, data, 16-byte sync.
    let mut records = 0u64;
    let mut complete = true;
    loop {
        if cur.pos >= bytes.len() {
            break;
        }
        let block = (|| -> Result<i64, Short> {
            let n = cur.long()?;
            let size = cur.long()?;
            cur.take(size)?;
            cur.take(16)?;
            Ok(n)
        })();
        match block {
            Ok(n) => records = records.saturating_add(u64::try_from(n).unwrap_or(0)),
            Err(_) => {
                complete = false;
                break;
            }
        }
    }

    let mut named = HashMap::new();
    let data_type = map_type(&avro, &mut named, &mut Ctx::default(), 0);
    let fields = match data_type {
        DataType::Struct(fields) => fields,
        // A file of bare values: one column named after the type.
        other => vec![Field { name: "value".into(), data_type: other, nullable: false }],
    };
    Ok(InferredFile {
        format: FORMAT,
        compression: Compression::None,
        schema: Schema { fields },
        dialect: None,
        records_sampled: records,
        row_count: None,
        sample_truncated: capped || !complete,
    })
}

/// apache-avro 0.21 panics (`unwrap` in `Name::parse`) on a named type whose name is
/// invalid, so names are checked against the specification's grammar before parsing.
fn check_names(json: &str) -> Result<(), InferenceError> {
    fn valid(name: &str) -> bool {
        name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }
    // serde_json stops at 128 levels of nesting, so this recursion is shallow.
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(map) => {
                // Only schema positions: a `default` value may well hold a "name" key.
                map.get("name").is_none_or(|n| n.as_str().is_some_and(valid))
                    && ["type", "fields", "items", "values"].iter().filter_map(|k| map.get(*k)).all(walk)
            }
            serde_json::Value::Array(items) => items.iter().all(walk),
            _ => true,
        }
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| InferenceError::malformed(FORMAT, 4, format!("avro.schema: {e}")))?;
    if walk(&value) {
        Ok(())
    } else {
        Err(InferenceError::malformed(FORMAT, 4, "avro.schema has an invalid name"))
    }
}

const MAX_DEPTH: usize = 64;
/// Named types can be referenced many times; this bounds the expanded size (and the work).
const MAX_NODES: usize = 10_000;

/// Traversal state of [`map_type`].
#[derive(Default)]
struct Ctx {
    /// Records being expanded (to stop at self references).
    stack: Vec<String>,
    /// Types mapped so far.
    nodes: usize,
}

/// Maps an Avro schema; `named` collects named types for `Ref`s, `expanding` stops recursion
/// through self-referencing records.
fn map_type<'s>(
    s: &'s AvroSchema,
    named: &mut HashMap<String, &'s AvroSchema>,
    expanding: &mut Ctx,
    depth: usize,
) -> DataType {
    expanding.nodes += 1;
    if depth > MAX_DEPTH || expanding.nodes > MAX_NODES {
        return DataType::Other("too_complex".into());
    }
    match s {
        AvroSchema::Null => DataType::Null,
        AvroSchema::Boolean => DataType::Boolean,
        AvroSchema::Int => DataType::Int32,
        AvroSchema::Long => DataType::Int64,
        AvroSchema::Float => DataType::Float,
        AvroSchema::Double => DataType::Double,
        AvroSchema::Bytes | AvroSchema::Fixed(_) => DataType::Binary,
        AvroSchema::String | AvroSchema::Uuid | AvroSchema::Enum(_) => DataType::String,
        AvroSchema::Array(a) => {
            DataType::List(Box::new(element(&a.items, "element", named, expanding, depth)))
        }
        AvroSchema::Map(m) => DataType::Map {
            key: Box::new(Field { name: "key".into(), data_type: DataType::String, nullable: false }),
            value: Box::new(element(&m.types, "value", named, expanding, depth)),
        },
        AvroSchema::Union(u) => {
            let (data_type, _) = union_type(u.variants(), named, expanding, depth);
            data_type
        }
        AvroSchema::Record(r) => {
            let name = r.name.fullname(None);
            named.insert(name.clone(), s);
            expanding.stack.push(name);
            let fields =
                r.fields.iter().map(|f| element(&f.schema, &f.name, named, expanding, depth)).collect();
            expanding.stack.pop();
            DataType::Struct(fields)
        }
        AvroSchema::Decimal(d) => DataType::Decimal {
            precision: u32::try_from(d.precision).unwrap_or(u32::MAX),
            scale: u32::try_from(d.scale).unwrap_or(0),
        },
        AvroSchema::BigDecimal => DataType::Other("big-decimal".into()),
        AvroSchema::Date => DataType::Date,
        AvroSchema::TimeMillis | AvroSchema::TimeMicros => DataType::Time,
        // Avro timestamps are UTC instants; local-timestamps are wall-clock values.
        AvroSchema::TimestampMillis | AvroSchema::TimestampMicros | AvroSchema::TimestampNanos => {
            DataType::Timestamp { with_time_zone: true }
        }
        AvroSchema::LocalTimestampMillis
        | AvroSchema::LocalTimestampMicros
        | AvroSchema::LocalTimestampNanos => DataType::Timestamp { with_time_zone: false },
        AvroSchema::Duration => DataType::Other("duration".into()),
        AvroSchema::Ref { name } => {
            let full = name.fullname(None);
            match named.get(&full).copied() {
                Some(target) if !expanding.stack.contains(&full) => {
                    map_type(target, named, expanding, depth + 1)
                }
                _ => DataType::Other(full),
            }
        }
    }
}

/// A named child (record field, list element, map value) with union nullability applied.
fn element<'s>(
    s: &'s AvroSchema,
    name: &str,
    named: &mut HashMap<String, &'s AvroSchema>,
    expanding: &mut Ctx,
    depth: usize,
) -> Field {
    let (data_type, nullable) = match s {
        AvroSchema::Union(u) => union_type(u.variants(), named, expanding, depth + 1),
        AvroSchema::Null => (DataType::Null, true),
        other => (map_type(other, named, expanding, depth + 1), false),
    };
    Field { name: name.into(), data_type, nullable }
}

/// `[null, T]` is a nullable `T`; other unions are kept as `union<...>`.
fn union_type<'s>(
    variants: &'s [AvroSchema],
    named: &mut HashMap<String, &'s AvroSchema>,
    expanding: &mut Ctx,
    depth: usize,
) -> (DataType, bool) {
    let nullable = variants.iter().any(|v| matches!(v, AvroSchema::Null));
    let others: Vec<&AvroSchema> = variants.iter().filter(|v| !matches!(v, AvroSchema::Null)).collect();
    match others.as_slice() {
        [] => (DataType::Null, true),
        [only] => (map_type(only, named, expanding, depth + 1), nullable),
        many => {
            let parts: Vec<String> =
                many.iter().map(|v| map_type(v, named, expanding, depth + 1).to_string()).collect();
            (DataType::Other(format!("union<{}>", parts.join(","))), nullable)
        }
    }
}
