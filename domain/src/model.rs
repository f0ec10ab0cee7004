//! Shared vocabulary: objects, formats, schemas and encryption as the domain sees them.

use std::fmt;

/// One object as a listing (or an inventory row) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object key, decoded (never URL-encoded).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-modified time in milliseconds since the Unix epoch, when known.
    pub last_modified_ms: Option<i64>,
    /// The ETag as S3 returns it (quotes stripped), when known.
    pub etag: Option<String>,
    /// The storage class, when known (`STANDARD`, `GLACIER`, ...).
    pub storage_class: Option<String>,
}

/// File format of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileFormat {
    /// Comma-separated values.
    Csv,
    /// Tab-separated values.
    Tsv,
    /// Pipe-separated values.
    Psv,
    /// One JSON value per line.
    JsonLines,
    /// A JSON document (typically an array of records).
    Json,
    /// Apache Parquet.
    Parquet,
    /// Apache Avro object container file.
    Avro,
    /// Apache ORC.
    Orc,
    /// Anything we cannot read as tabular data.
    Unknown,
}

impl FileFormat {
    /// Stable lowercase name used in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Tsv => "tsv",
            FileFormat::Psv => "psv",
            FileFormat::JsonLines => "jsonl",
            FileFormat::Json => "json",
            FileFormat::Parquet => "parquet",
            FileFormat::Avro => "avro",
            FileFormat::Orc => "orc",
            FileFormat::Unknown => "unknown",
        }
    }

    /// The format named `name` by [`as_str`](Self::as_str).
    pub fn from_name(name: &str) -> Option<FileFormat> {
        use FileFormat::*;
        [Csv, Tsv, Psv, JsonLines, Json, Parquet, Avro, Orc, Unknown].into_iter().find(|f| f.as_str() == name)
    }

    /// True for the formats whose schema lives in a footer at the end of the file.
    pub fn footer_based(self) -> bool {
        matches!(self, FileFormat::Parquet | FileFormat::Orc)
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whole-file compression wrapped around a text or Avro file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// Zstandard (`.zst`, `.zstd`).
    Zstd,
    /// bzip2 (`.bz2`).
    Bzip2,
}

impl Compression {
    /// Stable lowercase name used in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// A column type, as inferred or read from a self-describing format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `true`/`false`.
    Boolean,
    /// 32-bit signed integer (from self-describing formats).
    Int32,
    /// 64-bit signed integer.
    Int64,
    /// 32-bit float (from self-describing formats).
    Float,
    /// 64-bit float.
    Double,
    /// Fixed-point decimal.
    Decimal {
        /// Total number of digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// Calendar date.
    Date,
    /// Timestamp, with or without a time zone.
    Timestamp {
        /// True when values carry an offset or are UTC-adjusted.
        with_time_zone: bool,
    },
    /// Time of day.
    Time,
    /// UTF-8 text.
    String,
    /// Raw bytes.
    Binary,
    /// A nested record.
    Struct(Vec<Field>),
    /// A list of elements.
    List(Box<Field>),
    /// A map from keys to values.
    Map {
        /// The key type.
        key: Box<Field>,
        /// The value type.
        value: Box<Field>,
    },
    /// A type we cannot express (kept verbatim, e.g. an exotic Avro or Parquet type).
    Other(String),
    /// Only nulls were seen: the type is unknown.
    Null,
}

/// A named column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Column type.
    pub data_type: DataType,
    /// True when nulls (or missing values) were seen or the format declares the column optional.
    pub nullable: bool,
}

/// An ordered list of columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Schema {
    /// The columns, in file order.
    pub fields: Vec<Field>,
}

/// How an object is encrypted, as S3 reports it on GET/HEAD (or the inventory reports it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncryptionType {
    /// No server-side or client-side encryption.
    None,
    /// SSE-S3 (`AES256`).
    SseS3,
    /// SSE-KMS (`aws:kms`).
    SseKms,
    /// Dual-layer SSE-KMS (`aws:kms:dsse`).
    DsseKms,
    /// SSE-C (customer-provided key).
    SseC,
    /// Client-side encryption with an S3 Encryption Client format (stored with SSE on top or not).
    ClientSide,
    /// A value we do not know (kept as text by the caller).
    Unknown,
}

impl EncryptionType {
    /// Stable name used in records.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionType::None => "NONE",
            EncryptionType::SseS3 => "SSE_S3",
            EncryptionType::SseKms => "SSE_KMS",
            EncryptionType::DsseKms => "DSSE_KMS",
            EncryptionType::SseC => "SSE_C",
            EncryptionType::ClientSide => "CLIENT_SIDE",
            EncryptionType::Unknown => "UNKNOWN",
        }
    }
}

/// Version of the AWS S3 Encryption Client format detected from object metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientSideFormat {
    /// `x-amz-key` (legacy, CBC or GCM).
    V1,
    /// `x-amz-key-v2`.
    V2,
    /// `x-amz-3` / `x-amz-d` / `x-amz-i` (committing suite).
    V3,
    /// Metadata lives in a `.instruction` file.
    InstructionFile,
}

/// What S3 told us about one object's encryption.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObservedEncryption {
    /// The server-side (or client-side) encryption type.
    pub kind: EncryptionType,
    /// The KMS key as S3 reported it (ARN on AWS; may be a bare id on some emulators).
    pub kms_key_id: Option<String>,
    /// Whether an S3 Bucket Key was used, when reported.
    pub bucket_key_enabled: Option<bool>,
    /// Set when the object carries S3 Encryption Client metadata.
    pub client_side: Option<ClientSideFormat>,
    /// The server-side layer underneath client-side encryption, if any.
    pub server_side_under_client_side: Option<EncryptionType>,
    /// The KMS key that wraps a client-side object's data key: `kms_cmk_id` of its material
    /// description / encryption context, or the key KMS named when it unwrapped the data key.
    pub client_side_kms_key_id: Option<String>,
}

impl ObservedEncryption {
    /// An object with no encryption at all.
    pub fn none() -> Self {
        ObservedEncryption {
            kind: EncryptionType::None,
            kms_key_id: None,
            bucket_key_enabled: None,
            client_side: None,
            server_side_under_client_side: None,
            client_side_kms_key_id: None,
        }
    }
}

/// Canonical type strings, shared by records, tests and the sample-estate generator:
/// `boolean`, `int32`, `int64`, `float`, `double`, `decimal(p,s)`, `date`, `timestamp`,
/// `timestamp_tz`, `time`, `string`, `binary`, `struct<a:int64,b:string>`, `list<int64>`,
/// `map<string,int64>`, `null`, or the verbatim text of an unmapped type.
impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataType::Boolean => f.write_str("boolean"),
            DataType::Int32 => f.write_str("int32"),
            DataType::Int64 => f.write_str("int64"),
            DataType::Float => f.write_str("float"),
            DataType::Double => f.write_str("double"),
            DataType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            DataType::Date => f.write_str("date"),
            DataType::Timestamp { with_time_zone: false } => f.write_str("timestamp"),
            DataType::Timestamp { with_time_zone: true } => f.write_str("timestamp_tz"),
            DataType::Time => f.write_str("time"),
            DataType::String => f.write_str("string"),
            DataType::Binary => f.write_str("binary"),
            DataType::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}:{}", field.name, field.data_type)?;
                }
                f.write_str(">")
            }
            DataType::List(element) => write!(f, "list<{}>", element.data_type),
            DataType::Map { key, value } => write!(f, "map<{},{}>", key.data_type, value.data_type),
            DataType::Other(text) => f.write_str(text),
            DataType::Null => f.write_str("null"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_types_render_canonically() {
        let field = |name: &str, data_type| Field { name: name.into(), data_type, nullable: true };
        let ty = DataType::Struct(vec![
            field("id", DataType::Int64),
            field("tags", DataType::List(Box::new(field("element", DataType::String)))),
            field("amount", DataType::Decimal { precision: 10, scale: 2 }),
        ]);
        assert_eq!(ty.to_string(), "struct<id:int64,tags:list<string>,amount:decimal(10,2)>");
    }
}
