//! Parquet: schema and row count from the footer only.

use parquet::basic::{ConvertedType, LogicalType, Repetition, Type as Physical};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::schema::types::Type;

use super::{InferenceError, InferenceStep, InferredFile};
use crate::model::{Compression, DataType, Field, FileFormat, Schema};

const FORMAT: FileFormat = FileFormat::Parquet;

/// Reads the footer from a tail `bytes` = `object[start..object_size]`.
pub(crate) fn infer(bytes: &[u8], start: u64, object_size: u64) -> Result<InferenceStep, InferenceError> {
    let Some(tail_start) = bytes.len().checked_sub(8) else {
        return Err(InferenceError::truncated(FORMAT, object_size, "shorter than the 8-byte footer tail"));
    };
    let tail = bytes.get(tail_start..).unwrap_or(&[]);
    let (len_bytes, magic) = tail.split_at(4.min(tail.len()));
    match magic {
        b"PAR1" => {}
        b"PARE" => return Err(InferenceError::ParquetEncryptedFooter),
        _ => {
            return Err(InferenceError::truncated(
                FORMAT,
                object_size.saturating_sub(4),
                "no PAR1 magic at the end of the file",
            ));
        }
    }
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(len_bytes);
    let metadata_len = u64::from(u32::from_le_bytes(len4));
    let needed = metadata_len + 8;
    // The leading `PAR1` must fit in front of the footer.
    if let Some(step) = super::check_footer_length(FORMAT, metadata_len, needed, 4, object_size, bytes.len())?
    {
        return Ok(step);
    }
    let metadata_start = tail_start - metadata_len as usize;
    let metadata = bytes.get(metadata_start..tail_start).unwrap_or(&[]);
    let decoded = ParquetMetaDataReader::decode_metadata(metadata).map_err(|e| {
        InferenceError::malformed(FORMAT, start + metadata_start as u64, format!("footer: {e}"))
    })?;
    let file_metadata = decoded.file_metadata();
    let root = file_metadata.schema();
    let fields = root.get_fields().iter().map(|t| field(t, 0)).collect();
    Ok(InferenceStep::Done(InferredFile {
        format: FORMAT,
        compression: Compression::None,
        schema: Schema { fields },
        dialect: None,
        records_sampled: 0,
        row_count: u64::try_from(file_metadata.num_rows()).ok(),
        sample_truncated: false,
    }))
}

/// Nesting beyond this is rendered as an opaque type rather than recursed into.
const MAX_DEPTH: usize = 64;

fn repetition(t: &Type) -> Repetition {
    let info = t.get_basic_info();
    if info.has_repetition() { info.repetition() } else { Repetition::REQUIRED }
}

/// A column, with a bare repeated field (outside a LIST annotation) read as a list.
fn field(t: &Type, depth: usize) -> Field {
    let name = t.name().to_string();
    match repetition(t) {
        Repetition::REPEATED => Field {
            name,
            data_type: DataType::List(Box::new(Field {
                name: "element".into(),
                data_type: data_type(t, depth),
                nullable: false,
            })),
            nullable: false,
        },
        rep => Field { name, data_type: data_type(t, depth), nullable: rep == Repetition::OPTIONAL },
    }
}

/// The element of a repeated field that is already wrapped in a list or map.
fn element(t: &Type, name: &str, depth: usize) -> Field {
    Field {
        name: name.into(),
        data_type: data_type(t, depth),
        nullable: repetition(t) == Repetition::OPTIONAL,
    }
}

fn data_type(t: &Type, depth: usize) -> DataType {
    if depth > MAX_DEPTH {
        return DataType::Other("deeply_nested".into());
    }
    let info = t.get_basic_info();
    match t {
        Type::PrimitiveType { physical_type, precision, scale, .. } => {
            primitive(*physical_type, info.logical_type_ref(), info.converted_type(), *precision, *scale)
        }
        Type::GroupType { fields, .. } => {
            let is_list = matches!(info.logical_type_ref(), Some(LogicalType::List))
                || info.converted_type() == ConvertedType::LIST;
            let is_map = matches!(info.logical_type_ref(), Some(LogicalType::Map))
                || matches!(info.converted_type(), ConvertedType::MAP | ConvertedType::MAP_KEY_VALUE);
            if is_list && let [repeated] = fields.as_slice() {
                return DataType::List(Box::new(list_element(t.name(), repeated, depth + 1)));
            }
            if is_map
                && let [repeated] = fields.as_slice()
                && let Type::GroupType { fields: kv, .. } = repeated.as_ref()
                && let [key, value] = kv.as_slice()
            {
                return DataType::Map {
                    key: Box::new(element(key, "key", depth + 2)),
                    value: Box::new(element(value, "value", depth + 2)),
                };
            }
            DataType::Struct(fields.iter().map(|f| field(f, depth + 1)).collect())
        }
    }
}

/// The element of a LIST-annotated group, following the format's backward-compatibility rules.
fn list_element(list_name: &str, repeated: &Type, depth: usize) -> Field {
    match repeated {
        // 2-level list: the repeated primitive is the element.
        Type::PrimitiveType { .. } => Field { nullable: false, ..element(repeated, "element", depth) },
        Type::GroupType { fields, .. } => {
            let legacy_struct = fields.len() != 1
                || repeated.name() == "array"
                || repeated.name() == format!("{list_name}_tuple");
            match fields.as_slice() {
                // 3-level list: repeated group list { <element> }.
                [only] if !legacy_struct => element(only, "element", depth + 1),
                _ => Field {
                    name: "element".into(),
                    data_type: DataType::Struct(fields.iter().map(|f| field(f, depth + 1)).collect()),
                    nullable: false,
                },
            }
        }
    }
}

fn primitive(
    physical: Physical,
    logical: Option<&LogicalType>,
    converted: ConvertedType,
    precision: i32,
    scale: i32,
) -> DataType {
    let decimal = |precision: i32, scale: i32| DataType::Decimal {
        precision: u32::try_from(precision).unwrap_or(0),
        scale: u32::try_from(scale).unwrap_or(0),
    };
    if let Some(logical) = logical {
        let mapped = match logical {
            LogicalType::String | LogicalType::Enum | LogicalType::Json | LogicalType::Uuid => {
                Some(DataType::String)
            }
            LogicalType::Decimal(d) => Some(decimal(d.precision, d.scale)),
            LogicalType::Date => Some(DataType::Date),
            LogicalType::Time(_) => Some(DataType::Time),
            LogicalType::Timestamp(t) => Some(DataType::Timestamp { with_time_zone: t.is_adjusted_to_u_t_c }),
            LogicalType::Integer(i) => Some(match (i.bit_width, i.is_signed) {
                (64, true) | (32, false) => DataType::Int64,
                (64, false) => DataType::Decimal { precision: 20, scale: 0 },
                _ => DataType::Int32,
            }),
            LogicalType::Bson => Some(DataType::Binary),
            LogicalType::Float16 => Some(DataType::Float),
            LogicalType::Unknown => Some(DataType::Null),
            _ => None,
        };
        if let Some(mapped) = mapped {
            return mapped;
        }
    }
    match converted {
        ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON => return DataType::String,
        ConvertedType::DECIMAL => return decimal(precision, scale),
        ConvertedType::DATE => return DataType::Date,
        ConvertedType::TIME_MILLIS | ConvertedType::TIME_MICROS => return DataType::Time,
        // The legacy annotations denote UTC instants.
        ConvertedType::TIMESTAMP_MILLIS | ConvertedType::TIMESTAMP_MICROS => {
            return DataType::Timestamp { with_time_zone: true };
        }
        ConvertedType::INT_8 | ConvertedType::INT_16 | ConvertedType::INT_32 => {
            return DataType::Int32;
        }
        ConvertedType::UINT_8 | ConvertedType::UINT_16 => return DataType::Int32,
        ConvertedType::UINT_32 | ConvertedType::INT_64 => return DataType::Int64,
        ConvertedType::UINT_64 => {
            return DataType::Decimal { precision: 20, scale: 0 };
        }
        ConvertedType::BSON => return DataType::Binary,
        ConvertedType::INTERVAL => return DataType::Other("interval".into()),
        _ => {}
    }
    match physical {
        Physical::BOOLEAN => DataType::Boolean,
        Physical::INT32 => DataType::Int32,
        Physical::INT64 => DataType::Int64,
        // Legacy Impala/Spark timestamps.
        Physical::INT96 => DataType::Timestamp { with_time_zone: false },
        Physical::FLOAT => DataType::Float,
        Physical::DOUBLE => DataType::Double,
        Physical::BYTE_ARRAY | Physical::FIXED_LEN_BYTE_ARRAY => DataType::Binary,
    }
}
