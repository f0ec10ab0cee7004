//! JSON Lines and JSON documents.
//!
//! Values are typed while they are deserialized (no `serde_json::Value` tree, whose maps would
//! lose key order), and records are merged into one struct type as they arrive.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::merge::{merge_fields, widen};
use super::scalar::{Scalar, classify_temporal};
use super::{InferenceError, InferenceLimits, InferredFile};
use crate::model::{Compression, DataType, Field, FileFormat, Schema};

/// The type of one JSON value.
struct Inferred {
    ty: DataType,
    null: bool,
}

impl<'de> Deserialize<'de> for Inferred {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InferVisitor)
    }
}

struct InferVisitor;

fn typed(ty: DataType) -> Inferred {
    Inferred { ty, null: false }
}

impl<'de> Visitor<'de> for InferVisitor {
    type Value = Inferred;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Inferred, E> {
        Ok(typed(DataType::Boolean))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Inferred, E> {
        Ok(typed(DataType::Int64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Inferred, E> {
        Ok(typed(if i64::try_from(v).is_ok() { DataType::Int64 } else { DataType::Double }))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Inferred, E> {
        Ok(typed(DataType::Double))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Inferred, E> {
        Ok(typed(match classify_temporal(v) {
            Some(Scalar::Date) => DataType::Date,
            Some(Scalar::Timestamp) => DataType::Timestamp { with_time_zone: false },
            Some(Scalar::TimestampTz) => DataType::Timestamp { with_time_zone: true },
            _ => DataType::String,
        }))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Inferred, E> {
        Ok(Inferred { ty: DataType::Null, null: true })
    }
    fn visit_none<E: de::Error>(self) -> Result<Inferred, E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inferred, A::Error> {
        let mut element = DataType::Null;
        let mut nullable = false;
        while let Some(item) = seq.next_element::<Inferred>()? {
            nullable |= item.null;
            element = widen(&element, &item.ty);
        }
        Ok(typed(DataType::List(Box::new(Field { name: "element".into(), data_type: element, nullable }))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Inferred, A::Error> {
        let mut fields: Vec<Field> = Vec::new();
        // Objects may have very many keys: find duplicates by hash, not by scanning.
        let mut index: HashMap<String, usize> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: Inferred = map.next_value()?;
            let field = Field { name: key, data_type: value.ty, nullable: value.null };
            match index.get(&field.name).and_then(|&i| fields.get_mut(i)) {
                // Duplicate keys: keep one column, wide enough for both.
                Some(existing) => {
                    existing.data_type = widen(&existing.data_type, &field.data_type);
                    existing.nullable |= field.nullable;
                }
                None => {
                    index.insert(field.name.clone(), fields.len());
                    fields.push(field);
                }
            }
        }
        Ok(typed(DataType::Struct(fields)))
    }
}

/// Accumulates records into one schema.
struct Records {
    fields: Vec<Field>,
    count: u64,
    format: FileFormat,
}

impl Records {
    fn add(&mut self, value: Inferred, offset: usize) -> Result<(), InferenceError> {
        let DataType::Struct(fields) = value.ty else {
            return Err(InferenceError::malformed(self.format, offset as u64, "record is not a JSON object"));
        };
        self.fields = if self.count == 0 { fields } else { merge_fields(&self.fields, &fields) };
        self.count += 1;
        Ok(())
    }

    fn finish(self, truncated: bool) -> Result<InferredFile, InferenceError> {
        if self.count == 0 && truncated {
            return Err(InferenceError::truncated(
                self.format,
                0,
                "no complete record within the read limits",
            ));
        }
        if self.count == 0 {
            return Err(InferenceError::EmptyFile { format: self.format });
        }
        Ok(InferredFile {
            format: self.format,
            compression: Compression::None,
            schema: Schema { fields: self.fields },
            dialect: None,
            records_sampled: self.count,
            row_count: None,
            sample_truncated: truncated,
        })
    }
}

/// A stream of JSON objects, separated by newlines or nothing at all.
pub(crate) fn infer_lines(
    text: &str,
    truncated: bool,
    limits: &InferenceLimits,
) -> Result<InferredFile, InferenceError> {
    infer_stream(FileFormat::JsonLines, text, 0, truncated, limits)
}

fn infer_stream(
    format: FileFormat,
    text: &str,
    base: usize,
    truncated: bool,
    limits: &InferenceLimits,
) -> Result<InferredFile, InferenceError> {
    let mut records = Records { fields: Vec::new(), count: 0, format };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Inferred>();
    let mut sample_truncated = truncated;
    loop {
        let offset = stream.byte_offset();
        if records.count >= limits.max_records as u64 {
            sample_truncated |= !text.get(offset..).unwrap_or("").trim().is_empty();
            break;
        }
        match stream.next() {
            None => break,
            Some(Ok(value)) => records.add(value, base + offset)?,
            // The sample was cut: the record at the cut is simply not part of it.
            Some(Err(e)) if truncated && e.is_eof() => break,
            Some(Err(e)) => {
                return Err(InferenceError::malformed(
                    format,
                    (base + stream.byte_offset()) as u64,
                    e.to_string(),
                ));
            }
        }
    }
    records.finish(sample_truncated)
}

/// A JSON document: an array of objects (read incrementally, so a cut sample still yields its
/// leading records) or one or more objects.
pub(crate) fn infer_document(
    text: &str,
    truncated: bool,
    limits: &InferenceLimits,
) -> Result<InferredFile, InferenceError> {
    let format = FileFormat::Json;
    let start = text.len() - text.trim_start().len();
    let rest = text.get(start..).unwrap_or("");
    if rest.starts_with('{') {
        return infer_stream(format, rest, start, truncated, limits);
    }
    if !rest.starts_with('[') {
        return Err(InferenceError::malformed(format, start as u64, "expected a JSON array or object"));
    }
    let mut records = Records { fields: Vec::new(), count: 0, format };
    let mut pos = start + 1;
    let mut sample_truncated = truncated;
    let skip_ws = |p: usize| p + text.get(p..).map_or(0, |t| t.len() - t.trim_start().len());
    loop {
        pos = skip_ws(pos);
        let rest = text.get(pos..).unwrap_or("");
        if rest.starts_with(']') || (rest.is_empty() && truncated) {
            break;
        }
        if records.count >= limits.max_records as u64 {
            sample_truncated = true;
            break;
        }
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Inferred>();
        match stream.next() {
            Some(Ok(value)) => records.add(value, pos)?,
            Some(Err(e)) if truncated && e.is_eof() => break,
            Some(Err(e)) => {
                return Err(InferenceError::malformed(format, pos as u64, e.to_string()));
            }
            None if truncated => break,
            None => {
                return Err(InferenceError::truncated(format, pos as u64, "array is not closed"));
            }
        }
        pos = skip_ws(pos + stream.byte_offset());
        let rest = text.get(pos..).unwrap_or("");
        if let Some(after) = rest.strip_prefix(',') {
            pos = text.len() - after.len();
        } else if rest.starts_with(']') || (rest.is_empty() && truncated) {
            break;
        } else if rest.is_empty() {
            return Err(InferenceError::truncated(format, pos as u64, "array is not closed"));
        } else {
            return Err(InferenceError::malformed(format, pos as u64, "expected ',' or ']'"));
        }
    }
    records.finish(sample_truncated)
}
