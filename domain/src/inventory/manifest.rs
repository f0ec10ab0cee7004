//! `manifest.json` and `manifest.checksum` of an inventory report (reference §1.4).

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde_json::{Map, Value};

use super::columns::InventoryColumn;
use super::location::{CHECKSUM_NAME, MANIFEST_NAME};
use super::md5_reader::{ChecksumMismatch, hex, md5_hex};

/// Why a manifest (or its checksum) was rejected. [`ManifestError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not a JSON object.
    #[error("manifest.json is not a JSON object: {detail}")]
    InvalidJson {
        /// Parser message.
        detail: String,
    },
    /// A required top-level field is absent (or null).
    #[error("manifest.json: missing field {field}")]
    MissingField {
        /// The JSON field name.
        field: &'static str,
    },
    /// A top-level field has the wrong type or an invalid value.
    #[error("manifest.json: invalid {field}: {detail}")]
    InvalidField {
        /// The JSON field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `fileFormat` is not CSV, ORC or Parquet.
    #[error("manifest.json: unknown fileFormat {format:?}")]
    UnknownFileFormat {
        /// The value as written.
        format: String,
    },
    /// `fileSchema` cannot be read for the declared format.
    #[error("manifest.json: invalid {format} fileSchema: {detail}")]
    InvalidSchema {
        /// The declared format.
        format: InventoryFormat,
        /// What is wrong.
        detail: String,
    },
    /// An entry of `files` is invalid.
    #[error("manifest.json: files[{index}] ({key}): invalid {field}: {detail}")]
    InvalidFileEntry {
        /// Position in `files`.
        index: usize,
        /// The entry's key when it has one, else empty.
        key: String,
        /// The JSON field name inside the entry.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `manifest.checksum` is not a 32-digit hex MD5.
    #[error("manifest.checksum is not a hex MD5: {detail}")]
    InvalidChecksumFile {
        /// What is wrong.
        detail: String,
    },
    /// The MD5 of `manifest.json` differs from `manifest.checksum`.
    #[error("{file}: MD5 mismatch, manifest.checksum says {expected}, computed {actual}")]
    ChecksumMismatch {
        /// The file whose MD5 was computed (`manifest.json`).
        file: &'static str,
        /// The value in `manifest.checksum`, lowercase.
        expected: String,
        /// The MD5 computed over `manifest.json`.
        actual: String,
    },
}

impl ManifestError {
    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestError::InvalidJson { .. } => "MANIFEST_INVALID_JSON",
            ManifestError::MissingField { .. } => "MANIFEST_MISSING_FIELD",
            ManifestError::InvalidField { .. } => "MANIFEST_INVALID_FIELD",
            ManifestError::UnknownFileFormat { .. } => "MANIFEST_UNKNOWN_FILE_FORMAT",
            ManifestError::InvalidSchema { .. } => "MANIFEST_INVALID_SCHEMA",
            ManifestError::InvalidFileEntry { .. } => "MANIFEST_INVALID_FILE_ENTRY",
            ManifestError::InvalidChecksumFile { .. } => "MANIFEST_INVALID_CHECKSUM_FILE",
            ManifestError::ChecksumMismatch { .. } => "MANIFEST_CHECKSUM_MISMATCH",
        }
    }
}

/// Data file format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InventoryFormat {
    /// Gzipped, header-less CSV.
    Csv,
    /// ORC (ZLIB). Its schema is parsed; reading ORC data files is not supported here.
    Orc,
    /// Parquet (Snappy).
    Parquet,
}

impl InventoryFormat {
    /// The `fileFormat` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InventoryFormat::Csv => "CSV",
            InventoryFormat::Orc => "ORC",
            InventoryFormat::Parquet => "Parquet",
        }
    }

    /// Parses `fileFormat`, case-insensitively.
    pub fn parse(value: &str) -> Option<InventoryFormat> {
        [InventoryFormat::Csv, InventoryFormat::Orc, InventoryFormat::Parquet]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

impl std::fmt::Display for InventoryFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One data file listed in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Key of the data file in the destination bucket.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the file's bytes, lowercase hex.
    pub md5: String,
}

impl ManifestFile {
    /// Checks a fully downloaded data file (e.g. a Parquet file held in memory) against `md5`.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), ChecksumMismatch> {
        self.check_digest(&Md5::digest(bytes).into())
    }

    /// Checks the MD5 `digest` of a data file (e.g. from [`super::md5_lanes::Md5Lanes`])
    /// against `md5`.
    pub fn check_digest(&self, digest: &[u8; 16]) -> Result<(), ChecksumMismatch> {
        let actual = hex(digest);
        if actual == self.md5 {
            Ok(())
        } else {
            Err(ChecksumMismatch { file: self.key.clone(), expected: self.md5.clone(), actual })
        }
    }
}

/// A parsed `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bucket the inventory describes (bare name).
    pub source_bucket: String,
    /// The destination bucket name (taken from the ARN).
    pub destination_bucket: String,
    /// The manifest format version (`2016-11-30`).
    pub version: String,
    /// `creationTimestamp` in milliseconds since the Unix epoch.
    pub creation_timestamp_ms: i64,
    /// Data file format.
    pub file_format: InventoryFormat,
    /// Columns of every data file, in file order.
    pub file_schema: Vec<InventoryColumn>,
    /// The data files.
    pub files: Vec<ManifestFile>,
}

impl Manifest {
    /// Parses `manifest.json`.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::InvalidJson { detail: e.to_string() })?;
        let Value::Object(root) = value else {
            return Err(ManifestError::InvalidJson { detail: "top level is not an object".into() });
        };
        let source_bucket = string_field(&root, "sourceBucket")?.to_string();
        let destination_bucket = bucket_from_arn(string_field(&root, "destinationBucket")?)?;
        let version = string_field(&root, "version")?.to_string();
        let creation_timestamp_ms = integer_field(&root, "creationTimestamp")?;
        if DateTime::<Utc>::from_timestamp_millis(creation_timestamp_ms).is_none() {
            return Err(ManifestError::InvalidField {
                field: "creationTimestamp",
                detail: format!("{creation_timestamp_ms} is out of range"),
            });
        }
        let format_text = string_field(&root, "fileFormat")?;
        let file_format = InventoryFormat::parse(format_text)
            .ok_or_else(|| ManifestError::UnknownFileFormat { format: format_text.to_string() })?;
        let file_schema = parse_schema(file_format, string_field(&root, "fileSchema")?)?;
        let files = match root.get("files") {
            Some(Value::Array(entries)) => {
                entries.iter().enumerate().map(|(i, e)| parse_file(i, e)).collect::<Result<_, _>>()?
            }
            None | Some(Value::Null) => return Err(ManifestError::MissingField { field: "files" }),
            Some(other) => {
                return Err(ManifestError::InvalidField { field: "files", detail: kind_of(other).into() });
            }
        };
        Ok(Manifest {
            source_bucket,
            destination_bucket,
            version,
            creation_timestamp_ms,
            file_format,
            file_schema,
            files,
        })
    }

    /// `creationTimestamp` as a UTC time (validated by [`Manifest::parse`]).
    pub fn creation_timestamp(&self) -> Option<DateTime<Utc>> {
        DateTime::<Utc>::from_timestamp_millis(self.creation_timestamp_ms)
    }

    /// True when the schema carries the all-versions columns.
    pub fn includes_all_versions(&self) -> bool {
        self.file_schema.contains(&InventoryColumn::VersionId)
    }
}

/// Checks `manifest.json` against `manifest.checksum` (hex MD5, case-insensitive, trimmed).
pub fn verify_checksum(manifest_bytes: &[u8], checksum_file_bytes: &[u8]) -> Result<(), ManifestError> {
    let text = std::str::from_utf8(checksum_file_bytes).map_err(|e| ManifestError::InvalidChecksumFile {
        detail: format!("{CHECKSUM_NAME} is not UTF-8: {e}"),
    })?;
    let expected = text.trim().to_ascii_lowercase();
    if !is_md5_hex(&expected) {
        return Err(ManifestError::InvalidChecksumFile {
            detail: format!("expected 32 hex digits, found {} characters", expected.chars().count()),
        });
    }
    let actual = md5_hex(manifest_bytes);
    if actual == expected {
        Ok(())
    } else {
        Err(ManifestError::ChecksumMismatch { file: MANIFEST_NAME, expected, actual })
    }
}

fn is_md5_hex(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field<'a>(root: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, ManifestError> {
    match root.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(ManifestError::InvalidField { field, detail: "empty".into() }),
        None | Some(Value::Null) => Err(ManifestError::MissingField { field }),
        Some(other) => Err(ManifestError::InvalidField {
            field,
            detail: format!("expected a string, found {}", kind_of(other)),
        }),
    }
}

/// An integer written as a JSON number or as a string of digits.
fn integer_value(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not a 64-bit integer")),
        Value::String(s) => s.trim().parse::<i64>().map_err(|_| format!("{s:?} is not an integer")),
        other => Err(format!("expected a number or a string, found {}", kind_of(other))),
    }
}

fn integer_field(root: &Map<String, Value>, field: &'static str) -> Result<i64, ManifestError> {
    match root.get(field) {
        None | Some(Value::Null) => Err(ManifestError::MissingField { field }),
        Some(value) => integer_value(value).map_err(|detail| ManifestError::InvalidField { field, detail }),
    }
}

/// `arn:aws:s3:::name` (any partition) → `name`; a bare name is accepted as is.
fn bucket_from_arn(arn: &str) -> Result<String, ManifestError> {
    let invalid =
        |detail: &str| ManifestError::InvalidField { field: "destinationBucket", detail: detail.into() };
    if !arn.starts_with("arn:") {
        return if arn.contains(':') || arn.contains('/') {
            Err(invalid("neither an S3 bucket ARN nor a bucket name"))
        } else {
            Ok(arn.to_string())
        };
    }
    // arn:partition:service:region:account:resource
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "s3", _, _, bucket] if !bucket.is_empty() && !bucket.contains('/') => {
            Ok(bucket.to_string())
        }
        _ => Err(invalid("not an S3 bucket ARN (arn:aws:s3:::name)")),
    }
}

fn parse_file(index: usize, entry: &Value) -> Result<ManifestFile, ManifestError> {
    let invalid = |key: &str, field: &'static str, detail: String| ManifestError::InvalidFileEntry {
        index,
        key: key.to_string(),
        field,
        detail,
    };
    let Value::Object(map) = entry else {
        return Err(invalid("", "entry", format!("expected an object, found {}", kind_of(entry))));
    };
    let key = match map.get("key") {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        Some(Value::String(_)) => return Err(invalid("", "key", "empty".into())),
        None | Some(Value::Null) => return Err(invalid("", "key", "missing".into())),
        Some(other) => {
            return Err(invalid("", "key", format!("expected a string, found {}", kind_of(other))));
        }
    };
    let size = match map.get("size") {
        None | Some(Value::Null) => return Err(invalid(key, "size", "missing".into())),
        Some(value) => integer_value(value).map_err(|d| invalid(key, "size", d))?,
    };
    let size = u64::try_from(size).map_err(|_| invalid(key, "size", format!("{size} is negative")))?;
    let md5 = match map.get("MD5checksum") {
        Some(Value::String(s)) => s.trim().to_ascii_lowercase(),
        None | Some(Value::Null) => return Err(invalid(key, "MD5checksum", "missing".into())),
        Some(other) => {
            return Err(invalid(key, "MD5checksum", format!("expected a string, found {}", kind_of(other))));
        }
    };
    if !is_md5_hex(&md5) {
        return Err(invalid(key, "MD5checksum", "expected 32 hex digits".into()));
    }
    Ok(ManifestFile { key: key.to_string(), size, md5 })
}

/// Parses `fileSchema` into the ordered columns.
pub fn parse_schema(format: InventoryFormat, schema: &str) -> Result<Vec<InventoryColumn>, ManifestError> {
    let invalid = |detail: String| ManifestError::InvalidSchema { format, detail };
    let names: Vec<String> = match format {
        InventoryFormat::Csv => schema.split(',').map(|n| n.trim().to_string()).collect(),
        InventoryFormat::Orc => orc_struct_names(schema).map_err(invalid)?,
        InventoryFormat::Parquet => {
            let message =
                ::parquet::schema::parser::parse_message_type(schema).map_err(|e| invalid(e.to_string()))?;
            message.get_fields().iter().map(|f| f.name().to_string()).collect()
        }
    };
    if let Some(pos) = names.iter().position(|n| n.is_empty()) {
        return Err(invalid(format!("column {} has no name", pos + 1)));
    }
    let columns: Vec<InventoryColumn> = names.iter().map(|n| InventoryColumn::from_name(n)).collect();
    for (i, column) in columns.iter().enumerate() {
        if columns.get(..i).is_some_and(|before| before.contains(column)) {
            return Err(invalid(format!("column {column} appears twice")));
        }
    }
    for required in [InventoryColumn::Bucket, InventoryColumn::Key] {
        if !columns.contains(&required) {
            return Err(invalid(format!("no {required} column")));
        }
    }
    Ok(columns)
}

/// Field names of a Hive struct type `struct<a:string,b:struct<…>,…>` (top level only).
fn orc_struct_names(schema: &str) -> Result<Vec<String>, String> {
    let trimmed = schema.trim();
    let body = trimmed
        .strip_prefix("struct<")
        .or_else(|| trimmed.strip_prefix("STRUCT<"))
        .and_then(|rest| rest.strip_suffix('>'))
        .ok_or_else(|| "expected struct<name:type,...>".to_string())?;
    let mut names = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    let mut fields = Vec::new();
    for (i, c) in body.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth = depth.checked_sub(1).ok_or_else(|| format!("unbalanced {c:?} at {i}"))?,
            ',' if depth == 0 => {
                fields.push(body.get(start..i).unwrap_or(""));
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced <".into());
    }
    fields.push(body.get(start..).unwrap_or(""));
    for (i, field) in fields.iter().enumerate() {
        let (name, ty) =
            field.split_once(':').ok_or_else(|| format!("field {} has no type: {field:?}", i + 1))?;
        if ty.trim().is_empty() {
            return Err(format!("field {} has no type: {field:?}", i + 1));
        }
        names.push(name.trim().to_string());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use InventoryColumn as C;

    /// The example of reference §1.4, verbatim.
    const REFERENCE_EXAMPLE: &str = r#"{"sourceBucket":"example-source-bucket",
 "destinationBucket":"arn:aws:s3:::example-inventory-destination-bucket",
 "version":"2016-11-30",
 "creationTimestamp":"1514944800000",
 "fileFormat":"CSV",
 "fileSchema":"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm",
 "files":[{"key":"…/939c6d46-….csv.gz","size":2147483647,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]}"#;

    fn all_18() -> Vec<InventoryColumn> {
        vec![
            C::Bucket,
            C::Key,
            C::VersionId,
            C::IsLatest,
            C::IsDeleteMarker,
            C::Size,
            C::LastModifiedDate,
            C::ETag,
            C::StorageClass,
            C::IsMultipartUploaded,
            C::ReplicationStatus,
            C::EncryptionStatus,
            C::ObjectLockRetainUntilDate,
            C::ObjectLockMode,
            C::ObjectLockLegalHoldStatus,
            C::IntelligentTieringAccessTier,
            C::BucketKeyStatus,
            C::ChecksumAlgorithm,
        ]
    }

    #[test]
    fn reference_example_verbatim() {
        let m = Manifest::parse(REFERENCE_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(m.source_bucket, "example-source-bucket");
        assert_eq!(m.destination_bucket, "example-inventory-destination-bucket");
        assert_eq!(m.version, "2016-11-30");
        assert_eq!(m.creation_timestamp_ms, 1_514_944_800_000);
        assert_eq!(m.creation_timestamp().unwrap().to_rfc3339(), "2018-01-03T02:00:00+00:00");
        assert_eq!(m.file_format, InventoryFormat::Csv);
        assert_eq!(m.file_schema, all_18());
        assert!(m.includes_all_versions());
        assert_eq!(
            m.files,
            vec![ManifestFile {
                key: "…/939c6d46-….csv.gz".into(),
                size: 2_147_483_647,
                md5: "f11166069f1990abeb9c97ace9cdfabc".into()
            }]
        );
    }

    fn manifest(timestamp: &str, format: &str, schema: &str, files: &str) -> String {
        format!(
            r#"{{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::dest","version":"2016-11-30",
            "creationTimestamp":{timestamp},"fileFormat":{format},"fileSchema":{schema},"files":{files}}}"#
        )
    }

    const FILES: &str = r#"[{"key":"inv/src/cfg/data/a.csv.gz","size":"12","MD5checksum":"F11166069F1990ABEB9C97ACE9CDFABC"}]"#;

    #[test]
    fn creation_timestamp_string_or_number() {
        for ts in [r#""1514944800000""#, "1514944800000"] {
            let m = Manifest::parse(manifest(ts, r#""CSV""#, r#""Bucket, Key""#, FILES).as_bytes()).unwrap();
            assert_eq!(m.creation_timestamp_ms, 1_514_944_800_000, "{ts}");
            assert_eq!(m.files[0].size, 12);
            assert_eq!(m.files[0].md5, "f11166069f1990abeb9c97ace9cdfabc");
        }
    }

    #[test]
    fn schemas_of_every_format() {
        let orc = "struct<bucket:string,key:string,version_id:string,is_latest:boolean,is_delete_marker:boolean,size:bigint,last_modified_date:timestamp,e_tag:string,storage_class:string,is_multipart_uploaded:boolean,replication_status:string,encryption_status:string,object_lock_retain_until_date:timestamp,object_lock_mode:string,object_lock_legal_hold_status:string,intelligent_tiering_access_tier:string,bucket_key_status:string,checksum_algorithm:string>";
        let parquet = "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); optional binary version_id (UTF8); optional boolean is_latest; optional boolean is_delete_marker; optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); optional binary e_tag (UTF8); optional binary storage_class (UTF8); optional boolean is_multipart_uploaded; optional binary replication_status (UTF8); optional binary encryption_status (UTF8); optional int64 object_lock_retain_until_date (TIMESTAMP_MILLIS); optional binary object_lock_mode (UTF8); optional binary object_lock_legal_hold_status (UTF8); optional binary intelligent_tiering_access_tier (UTF8); optional binary bucket_key_status (UTF8); optional binary checksum_algorithm (UTF8);}";
        let cases: &[(InventoryFormat, &str, Vec<InventoryColumn>)] = &[
            (InventoryFormat::Orc, orc, all_18()),
            (InventoryFormat::Parquet, parquet, all_18()),
            (
                InventoryFormat::Csv,
                "Bucket,Key ,Size, NewThing",
                vec![C::Bucket, C::Key, C::Size, C::Other("NewThing".into())],
            ),
            (
                InventoryFormat::Orc,
                "struct<bucket:string,key:string,acl:struct<a:int,b:string>>",
                vec![C::Bucket, C::Key, C::Other("acl".into())],
            ),
        ];
        for (format, schema, want) in cases {
            assert_eq!(&parse_schema(*format, schema).unwrap(), want, "{format}");
            let text = serde_json::to_string(schema).unwrap();
            let json = manifest("1", &format!("\"{format}\""), &text, FILES);
            assert_eq!(&Manifest::parse(json.as_bytes()).unwrap().file_schema, want);
        }
    }

    #[test]
    fn rejects_bad_manifests() {
        let ok_schema = r#""Bucket, Key""#;
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "MANIFEST_INVALID_JSON"),
            ("[1]".into(), "MANIFEST_INVALID_JSON"),
            (manifest("1", r#""JSON""#, ok_schema, FILES), "MANIFEST_UNKNOWN_FILE_FORMAT"),
            (manifest("\"soon\"", r#""CSV""#, ok_schema, FILES), "MANIFEST_INVALID_FIELD"),
            (manifest("1.5", r#""CSV""#, ok_schema, FILES), "MANIFEST_INVALID_FIELD"),
            (manifest("true", r#""CSV""#, ok_schema, FILES), "MANIFEST_INVALID_FIELD"),
            (manifest("null", r#""CSV""#, ok_schema, FILES), "MANIFEST_MISSING_FIELD"),
            (manifest("1", r#""CSV""#, r#""Key, Size""#, FILES), "MANIFEST_INVALID_SCHEMA"),
            (manifest("1", r#""CSV""#, r#""Bucket, Key, Key""#, FILES), "MANIFEST_INVALID_SCHEMA"),
            (manifest("1", r#""CSV""#, r#""Bucket, , Key""#, FILES), "MANIFEST_INVALID_SCHEMA"),
            (manifest("1", r#""ORC""#, r#""struct<bucket:string,key>""#, FILES), "MANIFEST_INVALID_SCHEMA"),
            (manifest("1", r#""ORC""#, r#""bucket:string""#, FILES), "MANIFEST_INVALID_SCHEMA"),
            (manifest("1", r#""Parquet""#, r#""message {""#, FILES), "MANIFEST_INVALID_SCHEMA"),
            (manifest("1", r#""CSV""#, ok_schema, r#"{}"#), "MANIFEST_INVALID_FIELD"),
            (manifest("1", r#""CSV""#, ok_schema, r#"[1]"#), "MANIFEST_INVALID_FILE_ENTRY"),
            (
                manifest(
                    "1",
                    r#""CSV""#,
                    ok_schema,
                    r#"[{"key":"k","size":-1,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]"#,
                ),
                "MANIFEST_INVALID_FILE_ENTRY",
            ),
            (
                manifest("1", r#""CSV""#, ok_schema, r#"[{"key":"k","size":1,"MD5checksum":"xyz"}]"#),
                "MANIFEST_INVALID_FILE_ENTRY",
            ),
            (
                manifest(
                    "1",
                    r#""CSV""#,
                    ok_schema,
                    r#"[{"size":1,"MD5checksum":"f11166069f1990abeb9c97ace9cdfabc"}]"#,
                ),
                "MANIFEST_INVALID_FILE_ENTRY",
            ),
            (r#"{"sourceBucket":"s"}"#.into(), "MANIFEST_MISSING_FIELD"),
            (
                REFERENCE_EXAMPLE.replace("arn:aws:s3:::example", "arn:aws:sqs:::example"),
                "MANIFEST_INVALID_FIELD",
            ),
        ];
        for (json, code) in &cases {
            let err = Manifest::parse(json.as_bytes()).unwrap_err();
            assert_eq!(err.code(), *code, "{json}: {err}");
        }
        // Errors name what they are about.
        let err = Manifest::parse(manifest("1", r#""JSON""#, ok_schema, FILES).as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "manifest.json: unknown fileFormat \"JSON\"");
        let err = Manifest::parse(
            manifest("1", r#""CSV""#, ok_schema, r#"[{"key":"data/a.csv.gz","size":1,"MD5checksum":"xyz"}]"#)
                .as_bytes(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("files[0] (data/a.csv.gz): invalid MD5checksum"), "{err}");
    }

    #[test]
    fn checksum_verification() {
        let body = REFERENCE_EXAMPLE.as_bytes();
        let md5 = md5_hex(body);
        let cases: Vec<(Vec<u8>, Result<(), &str>)> = vec![
            (md5.clone().into_bytes(), Ok(())),
            (format!("{}\n", md5.to_uppercase()).into_bytes(), Ok(())),
            (format!("  {md5}\r\n").into_bytes(), Ok(())),
            (b"d41d8cd98f00b204e9800998ecf8427e".to_vec(), Err("MANIFEST_CHECKSUM_MISMATCH")),
            (b"".to_vec(), Err("MANIFEST_INVALID_CHECKSUM_FILE")),
            (b"\xff\xfe".to_vec(), Err("MANIFEST_INVALID_CHECKSUM_FILE")),
            (format!("{md5} extra").into_bytes(), Err("MANIFEST_INVALID_CHECKSUM_FILE")),
        ];
        for (checksum, want) in cases {
            let got = verify_checksum(body, &checksum).map_err(|e| e.code());
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&checksum));
        }
    }

    #[test]
    fn data_file_verification() {
        let file = ManifestFile { key: "data/a.parquet".into(), size: 3, md5: md5_hex(b"abc") };
        assert_eq!(file.verify(b"abc"), Ok(()));
        let err = file.verify(b"abd").unwrap_err();
        assert_eq!((err.file.as_str(), err.actual), ("data/a.parquet", md5_hex(b"abd")));
    }

    #[test]
    fn bucket_arns() {
        let cases: &[(&str, Option<&str>)] = &[
            ("arn:aws:s3:::dest", Some("dest")),
            ("arn:aws-cn:s3:::dest.cn", Some("dest.cn")),
            ("dest", Some("dest")),
            ("arn:aws:s3:::", None),
            ("arn:aws:s3:::dest/prefix", None),
            ("arn:aws:sns:us-east-1:1:topic", None),
            ("s3://dest", None),
        ];
        for (arn, want) in cases {
            assert_eq!(bucket_from_arn(arn).ok().as_deref(), *want, "{arn}");
        }
    }
}
