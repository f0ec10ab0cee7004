//! One inventory row, whatever the file format, and the errors of reading rows.

use chrono::DateTime;

use super::columns::InventoryColumn;
use super::md5_reader::ChecksumMismatch;
use crate::model::EncryptionType;

/// The `EncryptionStatus` column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EncryptionStatus {
    /// `SSE-S3`.
    SseS3,
    /// `SSE-C`.
    SseC,
    /// `SSE-KMS`.
    SseKms,
    /// `DSSE-KMS` (reported by current S3; not in every version of the documentation).
    DsseKms,
    /// `NOT-SSE`.
    NotSse,
    /// Any other value, kept verbatim.
    Other(String),
}

impl EncryptionStatus {
    /// Parses the column value (case-insensitive); unknown values are kept as [`Self::Other`].
    pub fn parse(value: &str) -> EncryptionStatus {
        // Every row has one: compared in place with the spellings of `as_str`, no uppercased
        // copy.
        use EncryptionStatus::*;
        let trimmed = value.trim();
        [SseS3, SseC, SseKms, DsseKms, NotSse]
            .into_iter()
            .find(|status| trimmed.eq_ignore_ascii_case(status.as_str()))
            .unwrap_or_else(|| Other(value.to_string()))
    }

    /// The inventory spelling.
    pub fn as_str(&self) -> &str {
        match self {
            EncryptionStatus::SseS3 => "SSE-S3",
            EncryptionStatus::SseC => "SSE-C",
            EncryptionStatus::SseKms => "SSE-KMS",
            EncryptionStatus::DsseKms => "DSSE-KMS",
            EncryptionStatus::NotSse => "NOT-SSE",
            EncryptionStatus::Other(s) => s,
        }
    }

    /// The domain's encryption type. Inventory cannot see client-side encryption: such objects
    /// show their server-side status (usually `SSE-S3`).
    pub fn encryption_type(&self) -> EncryptionType {
        match self {
            EncryptionStatus::SseS3 => EncryptionType::SseS3,
            EncryptionStatus::SseC => EncryptionType::SseC,
            EncryptionStatus::SseKms => EncryptionType::SseKms,
            EncryptionStatus::DsseKms => EncryptionType::DsseKms,
            EncryptionStatus::NotSse => EncryptionType::None,
            EncryptionStatus::Other(_) => EncryptionType::Unknown,
        }
    }
}

/// One inventory row. Columns absent from the report, or empty in the row, are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InventoryRecord {
    /// Source bucket.
    pub bucket: String,
    /// Object key, decoded.
    pub key: String,
    /// Version id (all-versions reports; `null` for unversioned objects is kept as given).
    pub version_id: Option<String>,
    /// Whether this is the current version.
    pub is_latest: Option<bool>,
    /// Whether this version is a delete marker.
    pub is_delete_marker: Option<bool>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Last-modified time, milliseconds since the Unix epoch.
    pub last_modified_ms: Option<i64>,
    /// ETag as reported (quotes stripped).
    pub etag: Option<String>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Whether the object was uploaded in parts.
    pub is_multipart_uploaded: Option<bool>,
    /// `PENDING`, `COMPLETED`, `FAILED`, `REPLICA`, ...
    pub replication_status: Option<String>,
    /// Server-side encryption status.
    pub encryption_status: Option<EncryptionStatus>,
    /// Object Lock retain-until, milliseconds since the Unix epoch.
    pub object_lock_retain_until_ms: Option<i64>,
    /// `GOVERNANCE`/`COMPLIANCE` as reported.
    pub object_lock_mode: Option<String>,
    /// Legal hold (`On` → true, `Off` → false).
    pub object_lock_legal_hold: Option<bool>,
    /// Intelligent-Tiering access tier.
    pub intelligent_tiering_access_tier: Option<String>,
    /// S3 Bucket Key (`ENABLED` → true, `DISABLED` → false).
    pub bucket_key_enabled: Option<bool>,
    /// Additional checksum algorithm.
    pub checksum_algorithm: Option<String>,
    /// The object ACL document, verbatim.
    pub object_access_control_list: Option<String>,
    /// The object owner, verbatim.
    pub object_owner: Option<String>,
    /// Lifecycle expiration, milliseconds since the Unix epoch.
    pub lifecycle_expiration_ms: Option<i64>,
    /// Other columns (unknown or not modelled), as `(column name, value)` in file order.
    pub other: Vec<(String, String)>,
}

impl InventoryRecord {
    /// True when the row describes a current object: not a delete marker and not superseded.
    /// Current-only reports have no `IsLatest` column: their rows are current.
    pub fn is_current(&self) -> bool {
        self.is_latest != Some(false) && self.is_delete_marker != Some(true)
    }
}

/// Why a row (or the rest of a file) could not be read. [`RowError::code`] is stable.
///
/// `row` is 1-based; 0 means the file as a whole (before the first row or after the last).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// The report schema lacks a column every row needs.
    #[error("{file}: the schema has no {column} column")]
    MissingColumn {
        /// The data file.
        file: String,
        /// The missing column.
        column: InventoryColumn,
    },
    /// A value that cannot be parsed for its column.
    #[error("{file}: row {row}, column {column}: {detail}")]
    InvalidValue {
        /// The data file.
        file: String,
        /// 1-based row number.
        row: u64,
        /// The column.
        column: String,
        /// What is wrong.
        detail: String,
    },
    /// The row is not well-formed (field count, CSV syntax).
    #[error("{file}: row {row} is malformed: {detail}")]
    MalformedRow {
        /// The data file.
        file: String,
        /// 1-based row number.
        row: u64,
        /// What is wrong.
        detail: String,
    },
    /// The compressed stream is corrupt or truncated. Reading stops.
    #[error("{file}: decompression failed after row {row}: {detail}")]
    Decompression {
        /// The data file.
        file: String,
        /// Rows read before the failure.
        row: u64,
        /// Decoder message.
        detail: String,
    },
    /// The decompressed data exceeds the byte budget. Reading stops.
    #[error("{file}: decompressed data exceeds {limit} bytes (after row {row})")]
    DecompressedSizeLimit {
        /// The data file.
        file: String,
        /// Rows read before the limit.
        row: u64,
        /// The budget.
        limit: u64,
    },
    /// The file's MD5 differs from the manifest. Reported at end of stream; earlier rows were
    /// already returned and must be discarded by the caller.
    #[error("{0}")]
    Checksum(ChecksumMismatch),
    /// The file (Parquet) cannot be opened or read. Reading stops.
    #[error("{file}: {detail}")]
    UnreadableFile {
        /// The data file.
        file: String,
        /// Reader message.
        detail: String,
    },
    /// An I/O error of the underlying reader. Reading stops.
    #[error("{file}: read error after row {row}: {detail}")]
    Io {
        /// The data file.
        file: String,
        /// Rows read before the failure.
        row: u64,
        /// Error message.
        detail: String,
    },
}

impl RowError {
    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RowError::MissingColumn { .. } => "INVENTORY_MISSING_COLUMN",
            RowError::InvalidValue { .. } => "INVENTORY_INVALID_VALUE",
            RowError::MalformedRow { .. } => "INVENTORY_MALFORMED_ROW",
            RowError::Decompression { .. } => "INVENTORY_DECOMPRESSION_FAILED",
            RowError::DecompressedSizeLimit { .. } => "INVENTORY_DECOMPRESSED_SIZE_LIMIT",
            RowError::Checksum(m) => m.code(),
            RowError::UnreadableFile { .. } => "INVENTORY_UNREADABLE_FILE",
            RowError::Io { .. } => "INVENTORY_IO",
        }
    }

    /// True when reading cannot continue after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, RowError::InvalidValue { .. } | RowError::MalformedRow { .. })
    }
}

/// Checks that a schema can produce records at all.
pub(crate) fn check_schema<'a>(
    file: &str,
    columns: impl IntoIterator<Item = &'a InventoryColumn> + Clone,
) -> Result<(), RowError> {
    for required in [InventoryColumn::Bucket, InventoryColumn::Key] {
        if !columns.clone().into_iter().any(|c| *c == required) {
            return Err(RowError::MissingColumn { file: file.to_string(), column: required });
        }
    }
    Ok(())
}

impl Ctx<'_> {
    fn invalid(&self, column: &InventoryColumn, detail: String) -> RowError {
        RowError::InvalidValue {
            file: self.file.to_string(),
            row: self.row,
            column: column.to_string(),
            detail,
        }
    }

    /// A boolean-like column: `yes`/`no` spellings compared case-insensitively.
    fn flag(&self, column: &InventoryColumn, value: &str, yes: &str, no: &str) -> Result<bool, RowError> {
        let v = value.trim();
        if v.eq_ignore_ascii_case(yes) {
            Ok(true)
        } else if v.eq_ignore_ascii_case(no) {
            Ok(false)
        } else {
            Err(self.invalid(column, format!("expected {yes} or {no}, found {v:?}")))
        }
    }

    fn unsigned(&self, column: &InventoryColumn, value: &str) -> Result<u64, RowError> {
        value
            .trim()
            .parse()
            .map_err(|_| self.invalid(column, format!("{value:?} is not a non-negative integer")))
    }

    /// ISO-8601 timestamps (`2023-01-31T12:00:00.000Z`), or epoch milliseconds.
    fn timestamp(&self, column: &InventoryColumn, value: &str) -> Result<i64, RowError> {
        let v = value.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(v) {
            return Ok(t.timestamp_millis());
        }
        v.parse::<i64>().map_err(|_| self.invalid(column, format!("{v:?} is not an ISO-8601 timestamp")))
    }
}

/// Builds a record column by column from text values (CSV) or typed values (Parquet).
pub(crate) struct RecordBuilder<'a> {
    pub(crate) file: &'a str,
    pub(crate) row: u64,
    pub(crate) record: InventoryRecord,
}

/// Where a value comes from, for error messages.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    file: &'a str,
    row: u64,
}

impl<'a> RecordBuilder<'a> {
    pub(crate) fn new(file: &'a str, row: u64) -> Self {
        RecordBuilder { file, row, record: InventoryRecord::default() }
    }

    fn ctx(&self) -> Ctx<'a> {
        Ctx { file: self.file, row: self.row }
    }

    /// Sets the key, already decoded.
    pub(crate) fn set_key(&mut self, key: String) {
        self.record.key = key;
    }

    /// Sets a column from its text form; `value` is already decoded (CSV keys are URL-decoded by
    /// the caller). Empty values leave the field `None`.
    pub(crate) fn set_text(&mut self, column: &InventoryColumn, value: &str) -> Result<(), RowError> {
        use InventoryColumn as C;
        if value.is_empty() {
            return Ok(());
        }
        let text = || Some(value.to_string());
        let ctx = self.ctx();
        let r = &mut self.record;
        match column {
            C::Bucket => r.bucket = value.to_string(),
            C::Key => r.key = value.to_string(),
            C::VersionId => r.version_id = text(),
            C::IsLatest => r.is_latest = Some(ctx.flag(column, value, "true", "false")?),
            C::IsDeleteMarker => r.is_delete_marker = Some(ctx.flag(column, value, "true", "false")?),
            C::Size => r.size = Some(ctx.unsigned(column, value)?),
            C::LastModifiedDate => r.last_modified_ms = Some(ctx.timestamp(column, value)?),
            C::ETag => r.etag = Some(value.trim_matches('"').to_string()),
            C::StorageClass => r.storage_class = text(),
            C::IsMultipartUploaded => {
                r.is_multipart_uploaded = Some(ctx.flag(column, value, "true", "false")?)
            }
            C::ReplicationStatus => r.replication_status = text(),
            C::EncryptionStatus => r.encryption_status = Some(EncryptionStatus::parse(value)),
            C::ObjectLockRetainUntilDate => {
                r.object_lock_retain_until_ms = Some(ctx.timestamp(column, value)?)
            }
            C::ObjectLockMode => r.object_lock_mode = text(),
            C::ObjectLockLegalHoldStatus => {
                r.object_lock_legal_hold = Some(ctx.flag(column, value, "on", "off")?)
            }
            C::IntelligentTieringAccessTier => r.intelligent_tiering_access_tier = text(),
            C::BucketKeyStatus => {
                r.bucket_key_enabled = Some(ctx.flag(column, value, "enabled", "disabled")?)
            }
            C::ChecksumAlgorithm => r.checksum_algorithm = text(),
            C::ObjectAccessControlList => r.object_access_control_list = text(),
            C::ObjectOwner => r.object_owner = text(),
            C::LifecycleExpirationDate => r.lifecycle_expiration_ms = Some(ctx.timestamp(column, value)?),
            C::IntelligentTieringReferenceDate
            | C::ObjectLockEventHoldDuration
            | C::ObjectLockEventHoldStatus
            | C::Other(_) => r.other.push((column.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Sets a boolean column from a typed value (Parquet).
    pub(crate) fn set_bool(&mut self, column: &InventoryColumn, value: bool) -> Result<(), RowError> {
        use InventoryColumn as C;
        let r = &mut self.record;
        match column {
            C::IsLatest => r.is_latest = Some(value),
            C::IsDeleteMarker => r.is_delete_marker = Some(value),
            C::IsMultipartUploaded => r.is_multipart_uploaded = Some(value),
            C::ObjectLockLegalHoldStatus => r.object_lock_legal_hold = Some(value),
            C::BucketKeyStatus => r.bucket_key_enabled = Some(value),
            _ => return self.set_text(column, if value { "true" } else { "false" }),
        }
        Ok(())
    }

    /// Sets a numeric column from a typed value (Parquet); `is_millis` marks timestamps.
    pub(crate) fn set_int(&mut self, column: &InventoryColumn, value: i64) -> Result<(), RowError> {
        use InventoryColumn as C;
        let ctx = self.ctx();
        let r = &mut self.record;
        match column {
            C::Size => {
                r.size = Some(
                    u64::try_from(value).map_err(|_| ctx.invalid(column, format!("{value} is negative")))?,
                )
            }
            C::LastModifiedDate => r.last_modified_ms = Some(value),
            C::ObjectLockRetainUntilDate => r.object_lock_retain_until_ms = Some(value),
            C::LifecycleExpirationDate => r.lifecycle_expiration_ms = Some(value),
            _ => return self.set_text(column, &value.to_string()),
        }
        Ok(())
    }

    /// Finishes the row: bucket and key are required.
    pub(crate) fn finish(self) -> Result<InventoryRecord, RowError> {
        for (column, value) in
            [(InventoryColumn::Bucket, &self.record.bucket), (InventoryColumn::Key, &self.record.key)]
        {
            if value.is_empty() {
                return Err(self.ctx().invalid(&column, "empty".into()));
            }
        }
        Ok(self.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encryption_status_values() {
        let cases: &[(&str, EncryptionStatus, EncryptionType)] = &[
            ("SSE-S3", EncryptionStatus::SseS3, EncryptionType::SseS3),
            ("sse-kms", EncryptionStatus::SseKms, EncryptionType::SseKms),
            ("SSE-C", EncryptionStatus::SseC, EncryptionType::SseC),
            ("DSSE-KMS", EncryptionStatus::DsseKms, EncryptionType::DsseKms),
            ("NOT-SSE", EncryptionStatus::NotSse, EncryptionType::None),
            ("SSE-FUTURE", EncryptionStatus::Other("SSE-FUTURE".into()), EncryptionType::Unknown),
        ];
        for (text, status, ty) in cases {
            let parsed = EncryptionStatus::parse(text);
            assert_eq!(&parsed, status);
            assert_eq!(parsed.encryption_type(), *ty);
            assert!(parsed.as_str().eq_ignore_ascii_case(text));
        }
    }

    #[test]
    fn text_values_per_column() {
        use InventoryColumn as C;
        let ok: &[(C, &str)] = &[
            (C::IsLatest, "TRUE"),
            (C::Size, "0"),
            (C::LastModifiedDate, "2023-01-31T12:00:00.000Z"),
            (C::LastModifiedDate, "1675166400000"),
            (C::ObjectLockLegalHoldStatus, "Off"),
            (C::BucketKeyStatus, "ENABLED"),
            (C::Other("X".into()), "anything"),
        ];
        for (column, value) in ok {
            RecordBuilder::new("f", 1).set_text(column, value).unwrap();
        }
        let bad: &[(C, &str)] = &[
            (C::IsLatest, "yes"),
            (C::Size, "-1"),
            (C::Size, "1.5"),
            (C::LastModifiedDate, "yesterday"),
            (C::BucketKeyStatus, "true"),
        ];
        for (column, value) in bad {
            let err = RecordBuilder::new("f", 3).set_text(column, value).unwrap_err();
            assert_eq!(err.code(), "INVENTORY_INVALID_VALUE");
            assert!(err.to_string().starts_with(&format!("f: row 3, column {column}:")), "{err}");
            assert!(!err.is_fatal());
        }
        let mut b = RecordBuilder::new("f", 1);
        b.set_text(&C::LastModifiedDate, "2023-01-31T12:00:00.000Z").unwrap();
        assert_eq!(b.record.last_modified_ms, Some(1_675_166_400_000));
    }
}
