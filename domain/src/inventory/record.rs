//! One inventory row, whatever the file format, and the errors of reading rows.

use std::borrow::Cow;

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
    /// The statuses AWS defines, in a fixed order: a snapshot stores a status as its index
    /// here, so the order never changes and new statuses go at the end.
    pub(crate) const KNOWN: [EncryptionStatus; 5] = [
        EncryptionStatus::SseS3,
        EncryptionStatus::SseC,
        EncryptionStatus::SseKms,
        EncryptionStatus::DsseKms,
        EncryptionStatus::NotSse,
    ];

    /// This status's index in [`Self::KNOWN`]; `None` for [`Self::Other`].
    pub(crate) fn known_index(&self) -> Option<usize> {
        match self {
            EncryptionStatus::SseS3 => Some(0),
            EncryptionStatus::SseC => Some(1),
            EncryptionStatus::SseKms => Some(2),
            EncryptionStatus::DsseKms => Some(3),
            EncryptionStatus::NotSse => Some(4),
            EncryptionStatus::Other(_) => None,
        }
    }

    /// Parses the column value (case-insensitive); unknown values are kept as [`Self::Other`].
    #[inline]
    pub fn parse(value: &str) -> EncryptionStatus {
        // Every row has one, nearly always in AWS's own spelling: matched whole first.
        match value {
            "SSE-S3" => EncryptionStatus::SseS3,
            "SSE-KMS" => EncryptionStatus::SseKms,
            "NOT-SSE" => EncryptionStatus::NotSse,
            "DSSE-KMS" => EncryptionStatus::DsseKms,
            "SSE-C" => EncryptionStatus::SseC,
            _ => Self::parse_any_spelling(value),
        }
    }

    /// [`Self::parse`] of any case and surrounding space.
    fn parse_any_spelling(value: &str) -> EncryptionStatus {
        // Compared in place with the spellings of `as_str`, no uppercased copy.
        let trimmed = value.trim();
        Self::KNOWN
            .into_iter()
            .find(|status| trimmed.eq_ignore_ascii_case(status.as_str()))
            .unwrap_or_else(|| EncryptionStatus::Other(value.to_string()))
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

/// A cell's parse: its error boxed, so that the `Result` every cell goes through stays small
/// (a `RowError` by value made each cell's result ~90 bytes to move, most of a Parquet row's
/// conversion). `?` unboxes it where a row's `RowError` is returned.
pub(crate) type CellResult<T> = Result<T, Box<RowError>>;

impl From<Box<RowError>> for RowError {
    fn from(boxed: Box<RowError>) -> Self {
        *boxed
    }
}

impl Ctx<'_> {
    pub(crate) fn invalid(&self, column: &InventoryColumn, detail: String) -> RowError {
        RowError::InvalidValue {
            file: self.file.to_string(),
            row: self.row,
            column: column.to_string(),
            detail,
        }
    }

    /// A boolean-like column: `yes`/`no` spellings compared case-insensitively.
    fn flag(&self, column: &InventoryColumn, value: &str, yes: &str, no: &str) -> CellResult<bool> {
        let v = value.trim();
        if v.eq_ignore_ascii_case(yes) {
            Ok(true)
        } else if v.eq_ignore_ascii_case(no) {
            Ok(false)
        } else {
            Err(Box::new(self.invalid(column, format!("expected {yes} or {no}, found {v:?}"))))
        }
    }

    fn unsigned(&self, column: &InventoryColumn, value: &str) -> CellResult<u64> {
        value
            .trim()
            .parse()
            .map_err(|_| Box::new(self.invalid(column, format!("{value:?} is not a non-negative integer"))))
    }

    /// ISO-8601 timestamps (`2023-01-31T12:00:00.000Z`), or epoch milliseconds.
    fn timestamp(&self, column: &InventoryColumn, value: &str) -> CellResult<i64> {
        let v = value.trim();
        if let Some(ms) = utc_millis(v) {
            return Ok(ms);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(v) {
            return Ok(t.timestamp_millis());
        }
        v.parse::<i64>()
            .map_err(|_| Box::new(self.invalid(column, format!("{v:?} is not an ISO-8601 timestamp"))))
    }
}

/// The time of `text` when it has the exact form inventory reports write,
/// `YYYY-MM-DDTHH:MM:SS.sssZ` (or without the milliseconds), and is a valid time; `None`
/// sends it to the general RFC 3339 parser, which gives the same result for these and handles
/// everything else (offsets, other precisions, leap seconds). Every CSV row has one: the
/// general parser cost more than the rest of the row's fields.
fn utc_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b.get(range)?.iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let millis = match b.len() {
        20 => 0,
        24 if b[19] == b'.' => digits(20..23)?,
        _ => return None,
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (b.len() - 1, b'Z')];
    if separators.iter().any(|&(at, c)| b[at] != c) {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let time = date.and_hms_milli_opt(digits(11..13)?, digits(14..16)?, digits(17..19)?, millis)?;
    Some(time.and_utc().timestamp_millis())
}

/// One column's value, parsed for its column: what a row keeps of it. CSV, Parquet and ORC
/// cells all go through [`Ctx::parse_text`], [`Ctx::parse_bool`] or [`Ctx::parse_int`], so every
/// format accepts and refuses the same values.
#[derive(Debug)]
pub(crate) enum Field<'v> {
    /// An empty value: the column is `None` in this row.
    Empty,
    Bucket(Cow<'v, str>),
    Key(Cow<'v, str>),
    VersionId(Cow<'v, str>),
    IsLatest(bool),
    IsDeleteMarker(bool),
    Size(u64),
    LastModified(i64),
    /// Quotes stripped.
    ETag(Cow<'v, str>),
    StorageClass(Cow<'v, str>),
    IsMultipartUploaded(bool),
    ReplicationStatus(Cow<'v, str>),
    Encryption(EncryptionStatus),
    ObjectLockRetainUntil(i64),
    ObjectLockMode(Cow<'v, str>),
    ObjectLockLegalHold(bool),
    IntelligentTieringAccessTier(Cow<'v, str>),
    BucketKey(bool),
    ChecksumAlgorithm(Cow<'v, str>),
    ObjectAccessControlList(Cow<'v, str>),
    ObjectOwner(Cow<'v, str>),
    LifecycleExpiration(i64),
    /// A column the record keeps under its name (unknown or not modelled).
    Other(Cow<'v, str>),
}

impl Ctx<'_> {
    /// Parses a column's text form; `value` is already decoded (CSV keys are URL-decoded by the
    /// caller).
    #[inline]
    pub(crate) fn parse_text<'v>(&self, column: &InventoryColumn, value: &'v str) -> CellResult<Field<'v>> {
        use InventoryColumn as C;
        if value.is_empty() {
            return Ok(Field::Empty);
        }
        let text = Cow::Borrowed(value);
        Ok(match column {
            C::Bucket => Field::Bucket(text),
            C::Key => Field::Key(text),
            C::VersionId => Field::VersionId(text),
            C::IsLatest => Field::IsLatest(self.flag(column, value, "true", "false")?),
            C::IsDeleteMarker => Field::IsDeleteMarker(self.flag(column, value, "true", "false")?),
            C::Size => Field::Size(self.unsigned(column, value)?),
            C::LastModifiedDate => Field::LastModified(self.timestamp(column, value)?),
            C::ETag => Field::ETag(Cow::Borrowed(value.trim_matches('"'))),
            C::StorageClass => Field::StorageClass(text),
            C::IsMultipartUploaded => Field::IsMultipartUploaded(self.flag(column, value, "true", "false")?),
            C::ReplicationStatus => Field::ReplicationStatus(text),
            C::EncryptionStatus => Field::Encryption(EncryptionStatus::parse(value)),
            C::ObjectLockRetainUntilDate => Field::ObjectLockRetainUntil(self.timestamp(column, value)?),
            C::ObjectLockMode => Field::ObjectLockMode(text),
            C::ObjectLockLegalHoldStatus => {
                Field::ObjectLockLegalHold(self.flag(column, value, "on", "off")?)
            }
            C::IntelligentTieringAccessTier => Field::IntelligentTieringAccessTier(text),
            C::BucketKeyStatus => Field::BucketKey(self.flag(column, value, "enabled", "disabled")?),
            C::ChecksumAlgorithm => Field::ChecksumAlgorithm(text),
            C::ObjectAccessControlList => Field::ObjectAccessControlList(text),
            C::ObjectOwner => Field::ObjectOwner(text),
            C::LifecycleExpirationDate => Field::LifecycleExpiration(self.timestamp(column, value)?),
            C::IntelligentTieringReferenceDate
            | C::ObjectLockEventHoldDuration
            | C::ObjectLockEventHoldStatus
            | C::Other(_) => Field::Other(text),
        })
    }

    /// Parses a typed boolean (Parquet, ORC); columns that are not flags take its text form.
    #[inline]
    pub(crate) fn parse_bool(&self, column: &InventoryColumn, value: bool) -> CellResult<Field<'static>> {
        use InventoryColumn as C;
        Ok(match column {
            C::IsLatest => Field::IsLatest(value),
            C::IsDeleteMarker => Field::IsDeleteMarker(value),
            C::IsMultipartUploaded => Field::IsMultipartUploaded(value),
            C::ObjectLockLegalHoldStatus => Field::ObjectLockLegalHold(value),
            C::BucketKeyStatus => Field::BucketKey(value),
            _ => self.parse_text(column, if value { "true" } else { "false" })?,
        })
    }

    /// Parses a typed integer (Parquet, ORC; timestamps in milliseconds); columns that are not
    /// numbers take its text form.
    #[inline]
    pub(crate) fn parse_int(&self, column: &InventoryColumn, value: i64) -> CellResult<Field<'static>> {
        use InventoryColumn as C;
        Ok(match column {
            C::Size => Field::Size(
                u64::try_from(value)
                    .map_err(|_| Box::new(self.invalid(column, format!("{value} is negative"))))?,
            ),
            C::LastModifiedDate => Field::LastModified(value),
            C::ObjectLockRetainUntilDate => Field::ObjectLockRetainUntil(value),
            C::LifecycleExpirationDate => Field::LifecycleExpiration(value),
            _ => self.parse_text(column, &value.to_string())?.into_owned(),
        })
    }
}

impl Field<'_> {
    /// The same field, owning its text.
    fn into_owned(self) -> Field<'static> {
        let own = |text: Cow<'_, str>| Cow::Owned(text.into_owned());
        match self {
            Field::Empty => Field::Empty,
            Field::Bucket(t) => Field::Bucket(own(t)),
            Field::Key(t) => Field::Key(own(t)),
            Field::VersionId(t) => Field::VersionId(own(t)),
            Field::IsLatest(b) => Field::IsLatest(b),
            Field::IsDeleteMarker(b) => Field::IsDeleteMarker(b),
            Field::Size(n) => Field::Size(n),
            Field::LastModified(ms) => Field::LastModified(ms),
            Field::ETag(t) => Field::ETag(own(t)),
            Field::StorageClass(t) => Field::StorageClass(own(t)),
            Field::IsMultipartUploaded(b) => Field::IsMultipartUploaded(b),
            Field::ReplicationStatus(t) => Field::ReplicationStatus(own(t)),
            Field::Encryption(e) => Field::Encryption(e),
            Field::ObjectLockRetainUntil(ms) => Field::ObjectLockRetainUntil(ms),
            Field::ObjectLockMode(t) => Field::ObjectLockMode(own(t)),
            Field::ObjectLockLegalHold(b) => Field::ObjectLockLegalHold(b),
            Field::IntelligentTieringAccessTier(t) => Field::IntelligentTieringAccessTier(own(t)),
            Field::BucketKey(b) => Field::BucketKey(b),
            Field::ChecksumAlgorithm(t) => Field::ChecksumAlgorithm(own(t)),
            Field::ObjectAccessControlList(t) => Field::ObjectAccessControlList(own(t)),
            Field::ObjectOwner(t) => Field::ObjectOwner(own(t)),
            Field::LifecycleExpiration(ms) => Field::LifecycleExpiration(ms),
            Field::Other(t) => Field::Other(own(t)),
        }
    }
}

/// Where a row is being built from: parsed cells arrive one column at a time.
pub(crate) trait RowTarget<'v> {
    /// Where the row comes from, for error messages.
    fn ctx(&self) -> Ctx<'_>;
    /// Keeps one parsed column value.
    fn store(&mut self, column: &InventoryColumn, field: Field<'v>);

    /// Sets a column from its text form.
    fn set_text(&mut self, column: &InventoryColumn, value: &'v str) -> CellResult<()> {
        let field = self.ctx().parse_text(column, value)?;
        self.store(column, field);
        Ok(())
    }

    /// Sets the key, already decoded (CSV keys are URL-decoded by the caller).
    fn set_decoded_key(&mut self, key: String) {
        // Moved in, not copied: as `parse_text` does, an empty key is no value.
        let field = if key.is_empty() { Field::Empty } else { Field::Key(Cow::Owned(key)) };
        self.store(&InventoryColumn::Key, field);
    }

    /// Sets a column from a typed boolean (Parquet, ORC).
    fn set_bool(&mut self, column: &InventoryColumn, value: bool) -> CellResult<()> {
        let field = self.ctx().parse_bool(column, value)?;
        self.store(column, field);
        Ok(())
    }

    /// Sets a column from a typed integer (Parquet, ORC; timestamps in milliseconds).
    fn set_int(&mut self, column: &InventoryColumn, value: i64) -> CellResult<()> {
        let field = self.ctx().parse_int(column, value)?;
        self.store(column, field);
        Ok(())
    }
}

/// Bucket and key are required in every row.
fn check_required(ctx: Ctx<'_>, bucket: &str, key: &str) -> Result<(), RowError> {
    for (column, value) in [(InventoryColumn::Bucket, bucket), (InventoryColumn::Key, key)] {
        if value.is_empty() {
            return Err(ctx.invalid(&column, "empty".into()));
        }
    }
    Ok(())
}

/// Builds a record column by column from text values (CSV) or typed values (Parquet, ORC).
pub(crate) struct RecordBuilder<'a> {
    pub(crate) file: &'a str,
    pub(crate) row: u64,
    pub(crate) record: InventoryRecord,
}

/// Where a value comes from, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    file: &'a str,
    row: u64,
}

impl<'a> RecordBuilder<'a> {
    pub(crate) fn new(file: &'a str, row: u64) -> Self {
        RecordBuilder { file, row, record: InventoryRecord::default() }
    }

    /// Finishes the row: bucket and key are required.
    pub(crate) fn finish(self) -> Result<InventoryRecord, RowError> {
        check_required(self.ctx(), &self.record.bucket, &self.record.key)?;
        Ok(self.record)
    }
}

impl RowTarget<'_> for RecordBuilder<'_> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx { file: self.file, row: self.row }
    }

    fn store(&mut self, column: &InventoryColumn, field: Field<'_>) {
        let r = &mut self.record;
        match field {
            Field::Empty => {}
            Field::Bucket(t) => r.bucket = t.into_owned(),
            Field::Key(t) => r.key = t.into_owned(),
            Field::VersionId(t) => r.version_id = Some(t.into_owned()),
            Field::IsLatest(b) => r.is_latest = Some(b),
            Field::IsDeleteMarker(b) => r.is_delete_marker = Some(b),
            Field::Size(n) => r.size = Some(n),
            Field::LastModified(ms) => r.last_modified_ms = Some(ms),
            Field::ETag(t) => r.etag = Some(t.into_owned()),
            Field::StorageClass(t) => r.storage_class = Some(t.into_owned()),
            Field::IsMultipartUploaded(b) => r.is_multipart_uploaded = Some(b),
            Field::ReplicationStatus(t) => r.replication_status = Some(t.into_owned()),
            Field::Encryption(e) => r.encryption_status = Some(e),
            Field::ObjectLockRetainUntil(ms) => r.object_lock_retain_until_ms = Some(ms),
            Field::ObjectLockMode(t) => r.object_lock_mode = Some(t.into_owned()),
            Field::ObjectLockLegalHold(b) => r.object_lock_legal_hold = Some(b),
            Field::IntelligentTieringAccessTier(t) => {
                r.intelligent_tiering_access_tier = Some(t.into_owned())
            }
            Field::BucketKey(b) => r.bucket_key_enabled = Some(b),
            Field::ChecksumAlgorithm(t) => r.checksum_algorithm = Some(t.into_owned()),
            Field::ObjectAccessControlList(t) => r.object_access_control_list = Some(t.into_owned()),
            Field::ObjectOwner(t) => r.object_owner = Some(t.into_owned()),
            Field::LifecycleExpiration(ms) => r.lifecycle_expiration_ms = Some(ms),
            Field::Other(t) => r.other.push((column.to_string(), t.into_owned())),
        }
    }
}

/// The columns of one inventory row that a snapshot keeps, borrowed from where the row was read
/// (an [`InventoryRecord`], or a Parquet row group's column values).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotRow<'a> {
    /// Source bucket.
    pub bucket: Cow<'a, str>,
    /// Object key, decoded.
    pub key: Cow<'a, str>,
    /// Whether this is the current version.
    pub is_latest: Option<bool>,
    /// Whether this version is a delete marker.
    pub is_delete_marker: Option<bool>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Last-modified time, milliseconds since the Unix epoch.
    pub last_modified_ms: Option<i64>,
    /// ETag (quotes stripped).
    pub etag: Option<Cow<'a, str>>,
    /// Storage class.
    pub storage_class: Option<Cow<'a, str>>,
    /// Server-side encryption status.
    pub encryption_status: Option<EncryptionStatus>,
    /// S3 Bucket Key status.
    pub bucket_key_enabled: Option<bool>,
}

impl<'a> From<&'a InventoryRecord> for SnapshotRow<'a> {
    fn from(r: &'a InventoryRecord) -> Self {
        SnapshotRow {
            bucket: Cow::Borrowed(&r.bucket),
            key: Cow::Borrowed(&r.key),
            is_latest: r.is_latest,
            is_delete_marker: r.is_delete_marker,
            size: r.size,
            last_modified_ms: r.last_modified_ms,
            etag: r.etag.as_deref().map(Cow::Borrowed),
            storage_class: r.storage_class.as_deref().map(Cow::Borrowed),
            encryption_status: r.encryption_status.clone(),
            bucket_key_enabled: r.bucket_key_enabled,
        }
    }
}

/// The rows of one inventory data file: records as an iterator, or only the columns a snapshot
/// keeps ([`SnapshotRow`]) through [`for_each_snapshot_row`](Self::for_each_snapshot_row).
pub trait InventoryRows: Iterator<Item = Result<InventoryRecord, RowError>> + Sized {
    /// Reads the remaining rows as [`SnapshotRow`]s. Readers that can borrow them from what
    /// they parsed build no [`InventoryRecord`]; every cell is parsed either way, so a row that
    /// is an error as a record is the same error here.
    ///
    /// Stops at the first row error, fatal or not, or at the first error of `on_row`. Returns
    /// the rows read.
    fn for_each_snapshot_row<E: From<RowError>>(
        self,
        on_row: impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        snapshot_rows_of_records(self, on_row)
    }
}

/// [`InventoryRows::for_each_snapshot_row`] through records.
pub(crate) fn snapshot_rows_of_records<E: From<RowError>>(
    records: impl Iterator<Item = Result<InventoryRecord, RowError>>,
    mut on_row: impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
) -> Result<u64, E> {
    let mut count = 0u64;
    for record in records {
        count += 1;
        on_row(&SnapshotRow::from(&record?))?;
    }
    Ok(count)
}

/// Builds a [`SnapshotRow`] from borrowed cells: the columns a snapshot does not keep are parsed
/// (so a bad value is the same error as in a record) and dropped.
pub(crate) struct SnapshotRowBuilder<'v> {
    pub(crate) file: &'v str,
    pub(crate) row_number: u64,
    pub(crate) row: SnapshotRow<'v>,
}

impl<'v> SnapshotRowBuilder<'v> {
    pub(crate) fn new(file: &'v str, row_number: u64) -> Self {
        SnapshotRowBuilder { file, row_number, row: SnapshotRow::default() }
    }

    /// The finished row, lent where it is (it is large, and lent once): bucket and key are
    /// required.
    pub(crate) fn finished(&self) -> Result<&SnapshotRow<'v>, RowError> {
        check_required(self.ctx(), &self.row.bucket, &self.row.key)?;
        Ok(&self.row)
    }
}

/// What [`SnapshotRowBuilder::set_text`] sets for one text value, worked out once for every
/// row that holds the value: a few-valued column read as a Parquet dictionary is parsed per
/// dictionary value, not per row ([`SnapshotRowBuilder::prepare`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PreparedCell<'v> {
    /// Nothing kept: an empty cell, or a valid cell of a column the snapshot drops.
    Nothing,
    Bucket(&'v str),
    StorageClass(&'v str),
    /// A known status (an `Other` status is set row by row: it owns its text).
    Encryption(EncryptionStatus),
    BucketKey(bool),
}

impl<'v> SnapshotRowBuilder<'v> {
    /// What `set_text(column, value)` would set, or `None` where the value must be set row by
    /// row: an invalid value (each row's error names the row), an unusual status, or a column
    /// whose text sets something else (the key, the ETag, flags, numbers and times).
    pub(crate) fn prepare(column: &InventoryColumn, value: &'v str) -> Option<PreparedCell<'v>> {
        use InventoryColumn as C;
        let mut scratch = SnapshotRowBuilder::new("", 0);
        scratch.set_text(column, value).ok()?;
        if value.is_empty() {
            return Some(PreparedCell::Nothing);
        }
        match column {
            C::Bucket => Some(PreparedCell::Bucket(value)),
            C::StorageClass => Some(PreparedCell::StorageClass(value)),
            C::EncryptionStatus => match scratch.row.encryption_status? {
                EncryptionStatus::Other(_) => None,
                status => Some(PreparedCell::Encryption(status)),
            },
            C::BucketKeyStatus => scratch.row.bucket_key_enabled.map(PreparedCell::BucketKey),
            C::Key | C::ETag | C::IsLatest | C::IsDeleteMarker | C::Size | C::LastModifiedDate => None,
            // Checked by `parse_text` above, and not stored.
            _ => Some(PreparedCell::Nothing),
        }
    }

    /// Sets a cell [`Self::prepare`]d from its value: as `set_text` with that value would.
    #[inline]
    pub(crate) fn set_prepared(&mut self, cell: &PreparedCell<'v>) {
        let r = &mut self.row;
        match cell {
            PreparedCell::Nothing => {}
            PreparedCell::Bucket(t) => r.bucket = Cow::Borrowed(t),
            PreparedCell::StorageClass(t) => r.storage_class = Some(Cow::Borrowed(t)),
            PreparedCell::Encryption(status) => r.encryption_status = Some(status.clone()),
            PreparedCell::BucketKey(b) => r.bucket_key_enabled = Some(*b),
        }
    }
}

impl<'v> RowTarget<'v> for SnapshotRowBuilder<'v> {
    #[inline]
    fn ctx(&self) -> Ctx<'_> {
        Ctx { file: self.file, row: self.row_number }
    }

    #[inline]
    fn store(&mut self, _column: &InventoryColumn, field: Field<'v>) {
        let r = &mut self.row;
        match field {
            Field::Bucket(t) => r.bucket = t,
            Field::Key(t) => r.key = t,
            Field::IsLatest(b) => r.is_latest = Some(b),
            Field::IsDeleteMarker(b) => r.is_delete_marker = Some(b),
            Field::Size(n) => r.size = Some(n),
            Field::LastModified(ms) => r.last_modified_ms = Some(ms),
            Field::ETag(t) => r.etag = Some(t),
            Field::StorageClass(t) => r.storage_class = Some(t),
            Field::Encryption(e) => r.encryption_status = Some(e),
            Field::BucketKey(b) => r.bucket_key_enabled = Some(b),
            _ => {}
        }
    }

    /// [`Ctx::parse_text`] then [`Self::store`], with the kept text columns set in place: as a
    /// returned [`Field`], a borrowed text went through the stack in pieces and was read back
    /// whole, a stalled load that cost 3% of a Parquet day 2's CPU. Every other column goes
    /// through `parse_text` (checked, then dropped). Held to the two steps by
    /// `snapshot_cells_are_set_as_parsed_then_stored`.
    #[inline]
    fn set_text(&mut self, column: &InventoryColumn, value: &'v str) -> CellResult<()> {
        use InventoryColumn as C;
        if value.is_empty() {
            return Ok(());
        }
        match column {
            C::Bucket => self.row.bucket = Cow::Borrowed(value),
            C::Key => self.row.key = Cow::Borrowed(value),
            C::ETag => self.row.etag = Some(Cow::Borrowed(value.trim_matches('"'))),
            C::StorageClass => self.row.storage_class = Some(Cow::Borrowed(value)),
            C::EncryptionStatus => self.row.encryption_status = Some(EncryptionStatus::parse(value)),
            C::BucketKeyStatus => {
                // AWS's spelling matched whole first, as for the encryption status.
                let enabled = match value {
                    "ENABLED" => true,
                    "DISABLED" => false,
                    _ => self.ctx().flag(column, value, "enabled", "disabled")?,
                };
                self.row.bucket_key_enabled = Some(enabled);
            }
            _ => {
                let field = self.ctx().parse_text(column, value)?;
                self.store(column, field);
            }
        }
        Ok(())
    }

    /// [`Ctx::parse_int`] then [`Self::store`], size and time set in place (as in
    /// [`Self::set_text`]). Held to the two steps by `snapshot_ints_are_set_as_parsed_then_stored`.
    #[inline]
    fn set_int(&mut self, column: &InventoryColumn, value: i64) -> CellResult<()> {
        match column {
            InventoryColumn::Size if value >= 0 => self.row.size = Some(value as u64),
            InventoryColumn::LastModifiedDate => self.row.last_modified_ms = Some(value),
            _ => {
                let field = self.ctx().parse_int(column, value)?;
                self.store(column, field);
            }
        }
        Ok(())
    }
}

/// Checks shared by the readers' tests: their snapshot rows against their records.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The snapshot rows `rows` reads (as their `Debug` text), and the error that stopped it.
    pub(crate) fn snapshot_rows(rows: impl InventoryRows) -> (Vec<String>, Option<RowError>) {
        let mut read = Vec::new();
        let outcome = rows.for_each_snapshot_row(|row| {
            read.push(format!("{row:?}"));
            Ok::<_, RowError>(())
        });
        match outcome {
            Ok(count) => {
                assert_eq!(count, read.len() as u64);
                (read, None)
            }
            Err(e) => (read, Some(e)),
        }
    }

    /// What [`snapshot_rows`] must give for the same file: the records' snapshot columns up to
    /// the first error, then that error.
    pub(crate) fn expected_snapshot_rows(
        records: impl Iterator<Item = Result<InventoryRecord, RowError>>,
    ) -> (Vec<String>, Option<RowError>) {
        let mut rows = Vec::new();
        for record in records {
            match record {
                Ok(record) => rows.push(format!("{:?}", SnapshotRow::from(&record))),
                Err(e) => return (rows, Some(e)),
            }
        }
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The fast path reads what the RFC 3339 parser reads, and leaves it what it cannot.
        #[test]
        fn report_timestamps_read_as_rfc3339_does(
            text in "[0-9]{4}-[0-1][0-9]-[0-3][0-9][Tt ][0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{1,4})?([Zz]|\\+01:00)",
        ) {
            let general = DateTime::parse_from_rfc3339(&text).ok().map(|t| t.timestamp_millis());
            if let Some(fast) = utc_millis(&text) {
                prop_assert_eq!(Some(fast), general, "{}", text);
            }
            let ctx = Ctx { file: "f", row: 1 };
            let parsed = ctx.timestamp(&InventoryColumn::LastModifiedDate, &text).ok();
            prop_assert_eq!(parsed, general.or_else(|| text.parse().ok()), "{}", text);
        }
    }

    /// A column and a text cell for the `set_text` properties: the kept columns, some dropped
    /// ones and an unknown one; AWS's spellings, others, bad values and any text.
    fn arb_text_cell() -> impl Strategy<Value = (&'static str, String)> {
        let names = prop::sample::select(vec![
            "Bucket",
            "Key",
            "VersionId",
            "IsLatest",
            "IsDeleteMarker",
            "Size",
            "LastModifiedDate",
            "ETag",
            "StorageClass",
            "ReplicationStatus",
            "EncryptionStatus",
            "BucketKeyStatus",
            "ObjectLockMode",
            "ObjectLockLegalHoldStatus",
            "IntelligentTieringAccessTier",
            "ChecksumAlgorithm",
            "ObjectLockRetainUntilDate",
            "SomethingNew",
        ]);
        let values = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec![
                "\"abc\"",
                "\"\"",
                "SSE-KMS",
                " sse-s3 ",
                "DSSE-KMS",
                "NOT-SSE",
                "SSE-FUTURE",
                "Enabled",
                "ENABLED",
                "DISABLED",
                "MAYBE",
                "true",
                "False",
                "on",
                " 12 ",
                "-3",
                "2024-01-02T03:04:05.678Z",
                "STANDARD",
                "GLACIER_IR",
                "+",
                "src-bucket",
            ])
            .prop_map(String::from),
            "\\PC{0,12}",
        ];
        (names, values)
    }

    proptest! {
        /// A snapshot row's `set_text`, which sets the kept text columns in place, ends where
        /// parsing the cell and storing the field does: the same row, or the same error.
        #[test]
        fn snapshot_cells_are_set_as_parsed_then_stored((name, value) in arb_text_cell()) {
            let column = InventoryColumn::from_name(name);
            let mut fast = SnapshotRowBuilder::new("f", 7);
            let fast_result = fast.set_text(&column, &value);
            let mut slow = SnapshotRowBuilder::new("f", 7);
            let slow_result = slow.ctx().parse_text(&column, &value).map(|field| slow.store(&column, field));
            prop_assert_eq!(fast_result, slow_result);
            prop_assert_eq!(fast.row, slow.row);
        }
    }

    proptest! {
        /// A prepared cell (a dictionary value parsed once for all its rows) sets what the
        /// value sets; a value that is not valid is never prepared, so each row holding it
        /// gives its own error.
        #[test]
        fn prepared_cells_set_what_their_text_sets((name, value) in arb_text_cell()) {
            let column = InventoryColumn::from_name(name);
            let mut by_text = SnapshotRowBuilder::new("f", 7);
            let text_result = by_text.set_text(&column, &value);
            match SnapshotRowBuilder::prepare(&column, &value) {
                Some(cell) => {
                    prop_assert!(text_result.is_ok());
                    let mut prepared = SnapshotRowBuilder::new("f", 7);
                    prepared.set_prepared(&cell);
                    prop_assert_eq!(prepared.row, by_text.row);
                }
                // Left to each row: invalid values, and the columns whose text is not few-valued
                // or sets something other than text.
                None => prop_assert!(
                    text_result.is_err()
                        || matches!(by_text.row.encryption_status, Some(EncryptionStatus::Other(_)))
                        || ["Key", "ETag", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate"].contains(&name),
                    "{} {:?} not prepared", name, value
                ),
            }
        }
    }

    proptest! {
        /// As `snapshot_cells_are_set_as_parsed_then_stored`, for typed integers.
        #[test]
        fn snapshot_ints_are_set_as_parsed_then_stored(
            name in prop::sample::select(vec![
                "Size", "LastModifiedDate", "ObjectLockRetainUntilDate", "IsLatest", "BucketKeyStatus",
                "StorageClass", "Key", "SomethingNew",
            ]),
            value in prop_oneof![Just(0i64), Just(-1), Just(i64::MIN), Just(i64::MAX), any::<i64>()],
        ) {
            let column = InventoryColumn::from_name(name);
            let mut fast = SnapshotRowBuilder::new("f", 7);
            let fast_result = fast.set_int(&column, value);
            let mut slow = SnapshotRowBuilder::new("f", 7);
            let slow_result = slow.ctx().parse_int(&column, value).map(|field| slow.store(&column, field));
            prop_assert_eq!(fast_result, slow_result);
            prop_assert_eq!(fast.row, slow.row);
        }
    }

    proptest! {
        /// AWS's exact spellings, matched whole, parse as any spelling does.
        #[test]
        fn encryption_statuses_parse_as_any_spelling_does(
            value in prop_oneof![
                prop::sample::select(vec![
                    "SSE-S3", "SSE-KMS", "NOT-SSE", "DSSE-KMS", "SSE-C", "sse-kms", " SSE-S3", "SSE-S3 ",
                    "SSE-KMS2", "SSE", "", "DSSE-KMS\t",
                ]).prop_map(String::from),
                "[A-Za-z -]{0,9}",
            ],
        ) {
            prop_assert_eq!(EncryptionStatus::parse(&value), EncryptionStatus::parse_any_spelling(&value));
        }
    }

    #[test]
    fn report_timestamps_take_the_fast_path() {
        assert_eq!(utc_millis("2024-01-02T03:04:05.678Z"), Some(1_704_164_645_678));
        assert_eq!(utc_millis("2024-01-02T03:04:05Z"), Some(1_704_164_645_000));
        // Not a day, a leap second, an offset: the general parser's.
        assert_eq!(utc_millis("2024-02-30T03:04:05.000Z"), None);
        assert_eq!(utc_millis("2016-12-31T23:59:60.000Z"), None);
        assert_eq!(utc_millis("2024-01-02T03:04:05+01:00"), None);
    }

    #[test]
    fn known_statuses_are_at_their_index() {
        for (i, status) in EncryptionStatus::KNOWN.iter().enumerate() {
            assert_eq!(status.known_index(), Some(i), "{status:?}");
        }
        assert_eq!(EncryptionStatus::Other("X".into()).known_index(), None);
    }

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
