//! The snapshot file: one processed report's current objects, sorted by key.
//!
//! Layout (integers little-endian):
//!
//! ```text
//! magic "S3INVSNP" | u32 format version | u64 object count | [32] checksum | u32 header length
//! | header JSON (source bucket, configuration id, report timestamp) | zstd body
//! ```
//!
//! The checksum covers the count, the header length, the header JSON and the body (as
//! `H(count ‖ H(header length ‖ header ‖ body))`, since the count is known last), so
//! [`SnapshotReader::open`] can reject a truncated or damaged file before a single object is
//! read: a caller never acts on a partial snapshot. `H` is XXH3-128 from format version 3, its
//! 16 bytes followed by 16 zero bytes; versions 1 and 2 used SHA-256. (The checksum finds
//! damage, not tampering: whoever can write the state can write a matching checksum of either
//! kind. SHA-256 was 4.5% of a Parquet day 2's CPU, checking the old file and sealing the new.)
//! Body entries are length-prefixed and key-prefix-compressed against the previous key (sorted
//! keys share long prefixes). The body is a sequence of zstd frames, one per 1 MiB of entries
//! (a frame may end inside an entry: readers decode the frames as one stream); files written
//! as a single frame read the same. Frames are written with stored (raw) blocks, not
//! compressed (`write_stored_frame`); files whose frames are compressed read the same.
//!
//! Before the splitters, a snapshot written by a roll-up stores the datasets' totals in a
//! skippable frame of its own (`u32 0x184D2A5D | u32 frame length | payload | u32 payload
//! length | "S3INVDST"`; `read_dataset_totals`). The payload is the roll-up's
//! ([`super::DatasetDiffAggregator::totals_payload`]).
//!
//! The body ends with a zstd skippable frame (which decoders pass over, so readers of the
//! entries never see it) holding the snapshot's splitters: every [`SPLITTER_STRIDE`]th key,
//! which the next build deals its rows by ([`read_splitters`]):
//!
//! ```text
//! u32 0x184D2A5E | u32 frame length | (u32 key length | key)* | u32 keys length | "S3INVSPL"
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use twox_hash::XxHash3_128;

use super::super::md5_reader::hex;
use super::super::record::{EncryptionStatus, InventoryRecord, SnapshotRow};
use super::diff::UnchangedObject;
use super::direct::DirectWriter;
use super::page_cache::DropBehind;

/// Current snapshot format version. Version 3 is version 2 with an XXH3-128 checksum instead
/// of a SHA-256 one, its body's frames stored rather than compressed. Version 2 stores an MD5
/// ETag as its 16 bytes and a known storage class as a code; version 1 files (text for both)
/// are still read.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 3;
/// The oldest snapshot format version read.
const OLDEST_READ_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"S3INVSNP";
// magic + version + count + checksum + header length
const PREAMBLE_LEN: u64 = 8 + 4 + 8 + 32 + 4;
const COUNT_OFFSET: u64 = 12;
// Cap on the header JSON so a corrupt length cannot make us allocate gigabytes.
const MAX_HEADER_LEN: u32 = 64 * 1024;
// Cap on one field inside an entry, for the same reason (S3 keys are at most 1024 bytes).
const MAX_FIELD_LEN: u64 = 1 << 20;
/// The first word of a zstd frame.
const ZSTD_FRAME_MAGIC: u32 = 0xFD2F_B528;
/// The largest block a zstd frame may hold, whatever its window.
const MAX_ZSTD_BLOCK: usize = 128 * 1024;
/// Decompressed bytes buffered in front of the entry decoder.
const DECODE_BUFFER: usize = 256 * 1024;
/// Objects between two splitters: a next day's rows are dealt into ranges of about this many
/// keys ([`read_splitters`]).
pub const SPLITTER_STRIDE: u64 = 1 << 16;
/// First word of the splitters' skippable frame (zstd reserves 0x184D2A50..=0x184D2A5F).
const SPLITTERS_FRAME_MAGIC: u32 = 0x184D_2A5E;
/// Last bytes of a snapshot file that ends with splitters.
const SPLITTERS_MARKER: &[u8; 8] = b"S3INVSPL";
/// Cap on the splitters' bytes read back, so a corrupt length cannot make us allocate
/// gigabytes (a billion objects at the longest keys need about 16 MB).
const MAX_SPLITTERS_LEN: u64 = 64 << 20;
/// First word of the dataset totals' skippable frame, which comes before the splitters'.
const TOTALS_FRAME_MAGIC: u32 = 0x184D_2A5D;
/// Last bytes of the dataset totals' frame.
const TOTALS_MARKER: &[u8; 8] = b"S3INVDST";
/// Cap on the dataset totals' bytes read back (a million datasets take about 150 MB).
const MAX_TOTALS_LEN: u64 = 1 << 30;

/// One current object as kept in a snapshot: the fields a change is judged on, nothing else
/// (no ACLs, owners or data).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SnapshotObject {
    /// Object key, decoded.
    pub key: String,
    /// Size in bytes.
    pub size: Option<u64>,
    /// ETag (quotes stripped).
    pub etag: Option<String>,
    /// Last-modified time, milliseconds since the Unix epoch.
    pub last_modified_ms: Option<i64>,
    /// Storage class.
    pub storage_class: Option<String>,
    /// Server-side encryption status.
    pub encryption_status: Option<EncryptionStatus>,
    /// S3 Bucket Key status.
    pub bucket_key_enabled: Option<bool>,
}

impl From<&InventoryRecord> for SnapshotObject {
    fn from(r: &InventoryRecord) -> Self {
        SnapshotObject {
            key: r.key.clone(),
            size: r.size,
            etag: r.etag.clone(),
            last_modified_ms: r.last_modified_ms,
            storage_class: r.storage_class.clone(),
            encryption_status: r.encryption_status.clone(),
            bucket_key_enabled: r.bucket_key_enabled,
        }
    }
}

/// The listing metadata of an object, as grouping takes it (a missing size is 0).
impl From<SnapshotObject> for crate::model::ObjectMeta {
    fn from(o: SnapshotObject) -> Self {
        crate::model::ObjectMeta {
            key: o.key,
            size: o.size.unwrap_or(0),
            last_modified_ms: o.last_modified_ms,
            etag: o.etag,
            storage_class: o.storage_class,
        }
    }
}

impl SnapshotObject {
    /// This object as a view (what decoding its entry gives).
    #[cfg(test)]
    pub(crate) fn view(&self) -> ObjectView<'_> {
        ObjectView {
            key: &self.key,
            size: self.size,
            etag: self.etag.as_deref().map(EtagView::of),
            last_modified_ms: self.last_modified_ms,
            storage_class: self.storage_class.as_deref(),
            encryption_status: self.encryption_status.clone(),
            bucket_key_enabled: self.bucket_key_enabled,
        }
    }
}

/// A snapshot object borrowed from where it is stored (an encoded entry, mostly): the final
/// pass hands unchanged objects, nearly all of them, to its consumer without allocating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectView<'a> {
    /// Object key, decoded.
    pub key: &'a str,
    /// Size in bytes.
    pub size: Option<u64>,
    /// ETag (quotes stripped).
    pub etag: Option<EtagView<'a>>,
    /// Last-modified time, milliseconds since the Unix epoch.
    pub last_modified_ms: Option<i64>,
    /// Storage class.
    pub storage_class: Option<&'a str>,
    /// Server-side encryption status (owned: only [`EncryptionStatus::Other`] allocates).
    pub encryption_status: Option<EncryptionStatus>,
    /// S3 Bucket Key status.
    pub bucket_key_enabled: Option<bool>,
}

impl ObjectView<'_> {
    /// The owned object.
    pub fn to_object(&self) -> SnapshotObject {
        SnapshotObject {
            key: self.key.to_owned(),
            size: self.size,
            etag: self.etag.map(|etag| match etag {
                EtagView::Md5(bytes) => hex(&bytes),
                EtagView::Text(text) => text.to_owned(),
            }),
            last_modified_ms: self.last_modified_ms,
            storage_class: self.storage_class.map(str::to_owned),
            encryption_status: self.encryption_status.clone(),
            bucket_key_enabled: self.bucket_key_enabled,
        }
    }
}

/// An ETag as a snapshot holds it: the usual one, the 32 lowercase hex digits of an MD5, as
/// its 16 bytes; any other (a multipart `…-N`, other spellings) as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagView<'a> {
    /// An MD5 ETag's bytes.
    Md5([u8; 16]),
    /// Any other ETag.
    Text(&'a str),
}

impl<'a> EtagView<'a> {
    /// The view of an ETag's text: equal texts give equal views.
    pub fn of(etag: &'a str) -> Self {
        md5_bytes(etag).map_or(EtagView::Text(etag), EtagView::Md5)
    }
}

impl std::fmt::Display for EtagView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EtagView::Md5(bytes) => f.write_str(&hex(bytes)),
            EtagView::Text(text) => f.write_str(text),
        }
    }
}

/// The 16 bytes of exactly 32 lowercase hex digits: only that spelling round-trips through
/// bytes. Every row's ETag goes through here: eight digits at a time in a `u64` (a table
/// lookup per digit cost 2% of a Parquet day 2's CPU).
fn md5_bytes(etag: &str) -> Option<[u8; 16]> {
    let digits: &[u8; 32] = etag.as_bytes().try_into().ok()?;
    let mut bytes = [0u8; 16];
    let mut valid = true;
    for (out, eight) in bytes.as_chunks_mut::<4>().0.iter_mut().zip(digits.as_chunks::<8>().0) {
        let x = u64::from_le_bytes(*eight);
        valid &= lowercase_hex_digits(x);
        // A digit's value is its low nibble, plus 9 for a letter (bit 6: 'a' is 0x61, '0' 0x30).
        let values = (x & 0x0f0f_0f0f_0f0f_0f0f) + ((x >> 6) & 0x0101_0101_0101_0101) * 9;
        // Byte 2j becomes digit 2j << 4 | digit 2j + 1; then the even bytes move together.
        let pairs = ((values << 4) | (values >> 8)) & 0x00ff_00ff_00ff_00ff;
        let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
        let pairs = (pairs | (pairs >> 16)) & 0xffff_ffff;
        *out = (pairs as u32).to_le_bytes();
    }
    valid.then_some(bytes)
}

/// Whether each byte of `x` is one of `0-9a-f`.
#[inline]
fn lowercase_hex_digits(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte: set where that byte is at least `c` (for bytes below 0x80;
    // with the high bit set first, no subtraction borrows from the next byte).
    let at_least = |c: u64| ((x | HIGH) - c * ONES) & HIGH;
    let digit = at_least(0x30) & !at_least(0x3a);
    let letter = at_least(0x61) & !at_least(0x67);
    x & HIGH == 0 && (digit | letter) & HIGH == HIGH
}

/// What a snapshot describes; stored as JSON in the file header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHeader {
    /// The inventoried (source) bucket.
    pub source_bucket: String,
    /// The inventory configuration id.
    pub configuration_id: String,
    /// The report's creation timestamp, milliseconds since the Unix epoch.
    pub report_timestamp_ms: i64,
}

impl SnapshotHeader {
    /// The id of the report's snapshot: `<creation ms>-<16 hex digits of the SHA-256 of source
    /// bucket, configuration id and creation ms>`. It names the report, not the file: a rerun
    /// of the same report gets the same id, reports of the same objects in CSV, ORC or Parquet
    /// get the same id, and it is known before the snapshot is written, so changes can stream
    /// while it is.
    pub fn snapshot_id(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [self.source_bucket.as_bytes(), self.configuration_id.as_bytes()] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.update(self.report_timestamp_ms.to_le_bytes());
        let digest = hex(&hasher.finalize());
        format!("{}-{}", self.report_timestamp_ms, &digest[..16])
    }
}

/// A finished snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Where it is.
    pub path: PathBuf,
    /// What it describes.
    pub header: SnapshotHeader,
    /// Number of objects.
    pub object_count: u64,
    /// The file's checksum of header and body, hex (XXH3-128, or SHA-256 before format
    /// version 3); it identifies the snapshot's content.
    pub checksum_hex: String,
}

impl SnapshotInfo {
    /// The report's snapshot id ([`SnapshotHeader::snapshot_id`]).
    pub fn snapshot_id(&self) -> String {
        self.header.snapshot_id()
    }
}

/// Why a snapshot file cannot be written or read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// An I/O error.
    #[error("snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Not a snapshot file (wrong magic), or its preamble is cut short.
    #[error("snapshot {path}: not a snapshot file ({detail})")]
    NotASnapshot {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Written by another format version.
    #[error("snapshot {path}: format version {found}, expected {expected}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The checksum does not match the content: truncated or altered.
    #[error("snapshot {path}: checksum mismatch (truncated or corrupt)")]
    ChecksumMismatch {
        /// The file.
        path: PathBuf,
    },
    /// The content is inconsistent although the checksum matched (or while writing).
    #[error("snapshot {path}: corrupt content: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Objects were written out of key order or twice.
    #[error("snapshot {path}: key {key:?} is not after the previous key")]
    Unsorted {
        /// The file.
        path: PathBuf,
        /// The offending key.
        key: String,
    },
}

impl SnapshotError {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        SnapshotError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        SnapshotError::Corrupt { path: path.to_path_buf(), detail: detail.into() }
    }

    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SnapshotError::Io { .. } => "SNAPSHOT_IO",
            SnapshotError::NotASnapshot { .. } => "SNAPSHOT_NOT_A_SNAPSHOT",
            SnapshotError::UnsupportedVersion { .. } => "SNAPSHOT_UNSUPPORTED_VERSION",
            SnapshotError::ChecksumMismatch { .. } => "SNAPSHOT_CHECKSUM_MISMATCH",
            SnapshotError::Corrupt { .. } => "SNAPSHOT_CORRUPT",
            SnapshotError::Unsorted { .. } => "SNAPSHOT_UNSORTED",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry encoding, shared with the sort's spill runs.

const F_SIZE: u8 = 1;
const F_ETAG: u8 = 1 << 1;
const F_MODIFIED: u8 = 1 << 2;
const F_CLASS: u8 = 1 << 3;
const F_ENCRYPTION: u8 = 1 << 4;
const F_BUCKET_KEY: u8 = 1 << 5;
const F_BUCKET_KEY_ON: u8 = 1 << 6;
/// Spill runs only: the row is a delete marker.
pub(crate) const F_DELETE_MARKER: u8 = 1 << 7;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Storage classes stored as a code, their index here (append only: the codes are in files).
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
];

/// A storage class's code: its index in [`STORAGE_CLASSES`]. Every row has a class: a `match`
/// on the name (by length, then bytes) rather than a scan of the table.
fn storage_class_code(class: &str) -> Option<usize> {
    let code = match class {
        "STANDARD" => 0,
        "REDUCED_REDUNDANCY" => 1,
        "STANDARD_IA" => 2,
        "ONEZONE_IA" => 3,
        "INTELLIGENT_TIERING" => 4,
        "GLACIER" => 5,
        "DEEP_ARCHIVE" => 6,
        "OUTPOSTS" => 7,
        "GLACIER_IR" => 8,
        "SNOW" => 9,
        "EXPRESS_ONEZONE" => 10,
        _ => return None,
    };
    debug_assert_eq!(STORAGE_CLASSES[code], class);
    Some(code)
}

/// The two fields stored (from format version 2) as a tag varint, `n << 1 | coded`: text of
/// `n` bytes follows an even tag; an odd tag is a coded value, an ETag's 16 MD5 bytes
/// (`n` = 16) or a storage class's code (`n`, no bytes follow).
#[derive(Debug, Clone, Copy)]
enum Tagged {
    Etag,
    StorageClass,
}

impl Tagged {
    fn coded_tag(self, n: usize) -> u64 {
        (n as u64) << 1 | 1
    }

    /// How many bytes follow `tag`.
    #[inline]
    fn body_len(self, tag: u64) -> Result<usize, String> {
        let n = tag >> 1;
        match (self, tag & 1) {
            (_, 0) if n <= MAX_FIELD_LEN => Ok(n as usize),
            (_, 0) => Err(format!("field length {n} exceeds {MAX_FIELD_LEN}")),
            (Tagged::Etag, _) if n == 16 => Ok(16),
            (Tagged::Etag, _) => Err(format!("a binary ETag of {n} bytes")),
            (Tagged::StorageClass, _) => self.class(n).map(|_| 0),
        }
    }

    fn class(self, code: u64) -> Result<&'static str, String> {
        usize::try_from(code)
            .ok()
            .and_then(|code| STORAGE_CLASSES.get(code).copied())
            .ok_or_else(|| format!("unknown storage class code {code}"))
    }
}

/// A tagged field's text form.
fn put_tagged_text(out: &mut Vec<u8>, text: &str) {
    put_varint(out, (text.len() as u64) << 1);
    out.extend_from_slice(text.as_bytes());
}

/// The encryption code of a status outside [`EncryptionStatus::KNOWN`], whose text follows.
const OTHER_ENCRYPTION_CODE: u8 = EncryptionStatus::KNOWN.len() as u8;

/// A status's code: its index in [`EncryptionStatus::KNOWN`], or [`OTHER_ENCRYPTION_CODE`].
fn encryption_code(status: &EncryptionStatus) -> u8 {
    status.known_index().map_or(OTHER_ENCRYPTION_CODE, |i| i as u8)
}

/// Appends one entry; `prev_key` is the previous entry's key in the same stream.
pub(crate) fn encode_entry(out: &mut Vec<u8>, prev_key: &str, obj: &SnapshotObject, extra_flags: u8) {
    encode_fields(
        out,
        prev_key.as_bytes(),
        EntryFields {
            key: &obj.key,
            size: obj.size,
            etag: obj.etag.as_deref(),
            last_modified_ms: obj.last_modified_ms,
            storage_class: obj.storage_class.as_deref(),
            encryption_status: obj.encryption_status.as_ref(),
            bucket_key_enabled: obj.bucket_key_enabled,
        },
        extra_flags,
    );
}

/// The fields of one entry, borrowed from a [`SnapshotObject`] or a [`SnapshotRow`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryFields<'a> {
    pub key: &'a str,
    pub size: Option<u64>,
    pub etag: Option<&'a str>,
    pub last_modified_ms: Option<i64>,
    pub storage_class: Option<&'a str>,
    pub encryption_status: Option<&'a EncryptionStatus>,
    pub bucket_key_enabled: Option<bool>,
}

impl<'a> From<&'a SnapshotRow<'_>> for EntryFields<'a> {
    fn from(r: &'a SnapshotRow<'_>) -> Self {
        EntryFields {
            key: &r.key,
            size: r.size,
            etag: r.etag.as_deref(),
            last_modified_ms: r.last_modified_ms,
            storage_class: r.storage_class.as_deref(),
            encryption_status: r.encryption_status.as_ref(),
            bucket_key_enabled: r.bucket_key_enabled,
        }
    }
}

/// Appends one entry from its fields; `prev_key` is the previous entry's key in the stream.
pub(crate) fn encode_fields(out: &mut Vec<u8>, prev_key: &[u8], f: EntryFields<'_>, extra_flags: u8) {
    let shared = common_prefix(prev_key, f.key.as_bytes());
    let mut flags = extra_flags;
    let set = |flags: &mut u8, bit: u8, on: bool| {
        if on {
            *flags |= bit
        }
    };
    set(&mut flags, F_SIZE, f.size.is_some());
    set(&mut flags, F_ETAG, f.etag.is_some());
    set(&mut flags, F_MODIFIED, f.last_modified_ms.is_some());
    set(&mut flags, F_CLASS, f.storage_class.is_some());
    set(&mut flags, F_ENCRYPTION, f.encryption_status.is_some());
    set(&mut flags, F_BUCKET_KEY, f.bucket_key_enabled.is_some());
    set(&mut flags, F_BUCKET_KEY_ON, f.bucket_key_enabled == Some(true));
    out.push(flags);
    put_varint(out, shared as u64);
    put_bytes(out, &f.key.as_bytes()[shared..]);
    if let Some(size) = f.size {
        put_varint(out, size);
    }
    if let Some(etag) = f.etag {
        match md5_bytes(etag) {
            Some(md5) => {
                put_varint(out, Tagged::Etag.coded_tag(md5.len()));
                out.extend_from_slice(&md5);
            }
            None => put_tagged_text(out, etag),
        }
    }
    if let Some(ms) = f.last_modified_ms {
        // zigzag: pre-1970 times stay short and valid
        put_varint(out, ((ms << 1) ^ (ms >> 63)) as u64);
    }
    if let Some(class) = f.storage_class {
        match storage_class_code(class) {
            Some(code) => put_varint(out, Tagged::StorageClass.coded_tag(code)),
            None => put_tagged_text(out, class),
        }
    }
    if let Some(status) = f.encryption_status {
        out.push(encryption_code(status));
        if let EncryptionStatus::Other(s) = status {
            put_bytes(out, s.as_bytes());
        }
    }
}

/// Re-encodes an entry written with an empty `prev_key` (`entry`, whose key is
/// `entry[key_start..key_end]`) against `prev_key`: only the key's shared prefix changes, the
/// fields after it are copied as they are.
pub(crate) fn reencode_entry(
    out: &mut Vec<u8>,
    prev_key: &[u8],
    entry: &[u8],
    key_start: usize,
    key_end: usize,
) {
    let shared = common_prefix(prev_key, &entry[key_start..key_end]);
    reencode_with_shared(out, shared, entry, key_start, key_end);
}

/// [`reencode_entry`] with the bytes the key shares with the previous one known.
fn reencode_with_shared(out: &mut Vec<u8>, shared: usize, entry: &[u8], key_start: usize, key_end: usize) {
    let key = &entry[key_start..key_end];
    out.push(entry[0]);
    put_varint(out, shared as u64);
    put_bytes(out, &key[shared..]);
    out.extend_from_slice(&entry[key_end..]);
}

/// Bytes of a varint's encoding.
pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    common_prefix_from(a, b, 0)
}

/// How many bytes `a` and `b` share at their start, given that they share `from` (compared 8
/// bytes at a time: keys share long prefixes, and this runs for every row several times).
pub(crate) fn common_prefix_from(a: &[u8], b: &[u8], from: usize) -> usize {
    let end = a.len().min(b.len());
    let mut i = from.min(end);
    while let (Some(x), Some(y)) = (a[i..end].first_chunk::<8>(), b[i..end].first_chunk::<8>()) {
        let diff = u64::from_be_bytes(*x) ^ u64::from_be_bytes(*y);
        if diff != 0 {
            return i + (diff.leading_zeros() / 8) as usize;
        }
        i += 8;
    }
    // Fewer than 8 bytes left: the last 8 of both, overlapping bytes this call found equal, in
    // one load rather than a loop of byte compares (most keys end this way).
    if i < end
        && end.checked_sub(8).is_some_and(|last| last >= from)
        && let (Some(x), Some(y)) = (a[..end].last_chunk::<8>(), b[..end].last_chunk::<8>())
    {
        let diff = u64::from_be_bytes(*x) ^ u64::from_be_bytes(*y);
        return if diff == 0 { end } else { end - 8 + (diff.leading_zeros() / 8) as usize };
    }
    i + a[i..end].iter().zip(&b[i..end]).take_while(|(x, y)| x == y).count()
}

/// Where one flat entry lies in a buffer. A flat entry is encoded against an empty previous
/// key (flags, 0, key length, key, fields), so it stands alone: the sort's runs, the merge and
/// the diff move and compare entries as bytes, and two entries of one key are equal objects
/// when their bytes after the key and their flags are equal (the encoding is canonical).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlatEntry {
    /// First byte (the flags).
    pub start: usize,
    /// The key's bytes, relative to `start`.
    pub key_start: u32,
    pub key_end: u32,
    /// Length of the whole entry.
    pub end: u32,
    /// Decoded while copying: the sort orders versions of a key by it.
    pub last_modified_ms: Option<i64>,
    pub flags: u8,
}

impl FlatEntry {
    /// The layout of `entry`, one whole flat entry about to be copied to `start` of a buffer,
    /// whose last-modified time is known already (`last_modified_ms`, taken when its flags say
    /// it has one): only its key is located, its fields are not read.
    pub(crate) fn located(entry: &[u8], start: usize, last_modified_ms: i64) -> Result<FlatEntry, String> {
        let mut r = SliceReader { buf: entry, at: 0 };
        let flags = whole(r.byte().map(Ok))?;
        if whole(r.varint())? != 0 {
            return Err("a flat entry shares no key prefix".into());
        }
        let key = whole(r.field())?;
        let last_modified_ms = (flags & F_MODIFIED != 0).then_some(last_modified_ms);
        flat_entry(start, key.start, key.end, entry.len(), last_modified_ms, flags)
    }
}

/// The parts of an encoded entry read from a slice: `None` where the slice ends first, which
/// the entry-in-buffer parser takes as "read it field by field" and [`decode_flat`] as an error.
struct SliceReader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> SliceReader<'a> {
    #[inline]
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    /// Inlined for the one-byte case: most varints of an entry (lengths, tags) are one byte,
    /// and the call was most of their cost where every entry's key is located (5M entries
    /// read back twice on a day 2).
    #[inline]
    fn varint(&mut self) -> Option<Result<u64, String>> {
        let first = *self.buf.get(self.at)?;
        if first < 0x80 {
            self.at += 1;
            return Some(Ok(u64::from(first)));
        }
        self.long_varint()
    }

    /// Out of line: inlined into every caller it made the entry parsers slower.
    #[cold]
    #[inline(never)]
    fn long_varint(&mut self) -> Option<Result<u64, String>> {
        let mut v: u64 = 0;
        let mut shift = 0;
        while shift < 64 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(Ok(v));
            }
            shift += 7;
        }
        Some(Err("varint too long".into()))
    }

    /// A length-prefixed field's place in the slice.
    #[inline]
    fn field(&mut self) -> Option<Result<std::ops::Range<usize>, String>> {
        let len = match self.varint()? {
            Ok(len) if len <= MAX_FIELD_LEN => len as usize,
            Ok(len) => return Some(Err(format!("field length {len} exceeds {MAX_FIELD_LEN}"))),
            Err(e) => return Some(Err(e)),
        };
        let range = self.at..self.at + len;
        (range.end <= self.buf.len()).then(|| {
            self.at = range.end;
            Ok(range)
        })
    }

    /// A tagged field ([`Tagged`]): its tag and the place of the bytes after it.
    #[inline]
    fn tagged(&mut self, field: Tagged) -> Option<Result<(u64, std::ops::Range<usize>), String>> {
        let tag = match self.varint()? {
            Ok(tag) => tag,
            Err(e) => return Some(Err(e)),
        };
        let len = match field.body_len(tag) {
            Ok(len) => len,
            Err(e) => return Some(Err(e)),
        };
        let range = self.at..self.at + len;
        (range.end <= self.buf.len()).then(|| {
            self.at = range.end;
            Ok((tag, range))
        })
    }

    fn etag(&mut self) -> Option<Result<EtagView<'a>, String>> {
        let buf = self.buf;
        Some(self.tagged(Tagged::Etag)?.and_then(|(tag, range)| match tag & 1 {
            1 => Ok(EtagView::Md5(buf[range].try_into().map_err(|_| "a cut ETag".to_string())?)),
            // Text that is an MD5's hex (not how this build writes it) views as the bytes.
            _ => std::str::from_utf8(&buf[range]).map(EtagView::of).map_err(|_| "etag is not UTF-8".into()),
        }))
    }

    fn storage_class(&mut self) -> Option<Result<&'a str, String>> {
        let buf = self.buf;
        Some(self.tagged(Tagged::StorageClass)?.and_then(|(tag, range)| match tag & 1 {
            1 => Tagged::StorageClass.class(tag >> 1),
            _ => std::str::from_utf8(&buf[range]).map_err(|_| "storage class is not UTF-8".into()),
        }))
    }

    /// A length-prefixed UTF-8 field.
    fn text(&mut self, what: &str) -> Option<Result<&'a str, String>> {
        let buf = self.buf;
        Some(
            self.field()?.and_then(|range| {
                std::str::from_utf8(&buf[range]).map_err(|_| format!("{what} is not UTF-8"))
            }),
        )
    }
}

/// A part every flat entry has whole: the slice ending first is an error.
fn whole<T>(part: Option<Result<T, String>>) -> Result<T, String> {
    part.unwrap_or_else(|| Err("entry cut short".into()))
}

/// Decodes a flat entry (as [`FlatEntry`] describes) into a view of its bytes.
pub(crate) fn decode_flat(entry: &[u8]) -> Result<ObjectView<'_>, String> {
    let mut r = SliceReader { buf: entry, at: 0 };
    let flags = whole(r.byte().map(Ok))?;
    if whole(r.varint())? != 0 {
        return Err("a flat entry shares no key prefix".into());
    }
    let mut view = ObjectView {
        key: whole(r.text("key"))?,
        size: None,
        etag: None,
        last_modified_ms: None,
        storage_class: None,
        encryption_status: None,
        bucket_key_enabled: None,
    };
    if flags & F_SIZE != 0 {
        view.size = Some(whole(r.varint())?);
    }
    if flags & F_ETAG != 0 {
        view.etag = Some(whole(r.etag())?);
    }
    if flags & F_MODIFIED != 0 {
        view.last_modified_ms = Some(unzigzag(whole(r.varint())?));
    }
    if flags & F_CLASS != 0 {
        view.storage_class = Some(whole(r.storage_class())?);
    }
    if flags & F_ENCRYPTION != 0 {
        view.encryption_status = Some(match whole(r.byte().map(Ok))? {
            OTHER_ENCRYPTION_CODE => EncryptionStatus::Other(whole(r.text("encryption status"))?.to_owned()),
            code => known_encryption(code)?,
        });
    }
    if flags & F_BUCKET_KEY != 0 {
        view.bucket_key_enabled = Some(flags & F_BUCKET_KEY_ON != 0);
    }
    if r.at != entry.len() {
        return Err(format!("{} bytes after the entry", entry.len() - r.at));
    }
    Ok(view)
}

/// Decodes what an unchanged object's step carries ([`UnchangedObject`]) from a flat entry:
/// its key, size and encryption status; the other fields are stepped over, not decoded.
pub(crate) fn decode_unchanged(entry: &[u8]) -> Result<UnchangedObject<'_>, String> {
    let mut r = SliceReader { buf: entry, at: 0 };
    let flags = whole(r.byte().map(Ok))?;
    if whole(r.varint())? != 0 {
        return Err("a flat entry shares no key prefix".into());
    }
    let key = whole(r.text("key"))?;
    let size = if flags & F_SIZE != 0 { Some(whole(r.varint())?) } else { None };
    if flags & F_ETAG != 0 {
        whole(r.tagged(Tagged::Etag))?;
    }
    if flags & F_MODIFIED != 0 {
        whole(r.varint())?;
    }
    if flags & F_CLASS != 0 {
        let (tag, _) = whole(r.tagged(Tagged::StorageClass))?;
        if tag & 1 == 1 {
            Tagged::StorageClass.class(tag >> 1)?;
        }
    }
    let mut encryption_status = None;
    if flags & F_ENCRYPTION != 0 {
        encryption_status = Some(match whole(r.byte().map(Ok))? {
            OTHER_ENCRYPTION_CODE => EncryptionStatus::Other(whole(r.text("encryption status"))?.to_owned()),
            code => known_encryption(code)?,
        });
    }
    if r.at != entry.len() {
        return Err(format!("{} bytes after the entry", entry.len() - r.at));
    }
    Ok(UnchangedObject { key, size, encryption_status })
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// The status of a code below [`OTHER_ENCRYPTION_CODE`] (that one carries its text).
fn known_encryption(code: u8) -> Result<EncryptionStatus, String> {
    // A `static`: indexing the `const` builds and drops the whole array at every call.
    static KNOWN: [EncryptionStatus; 5] = EncryptionStatus::KNOWN;
    check_encryption_code(code)?;
    Ok(KNOWN[usize::from(code)].clone())
}

/// Checks that `code` is one of [`known_encryption`]'s, for entries copied without decoding.
fn check_encryption_code(code: u8) -> Result<(), String> {
    if usize::from(code) < EncryptionStatus::KNOWN.len() {
        Ok(())
    } else {
        Err(format!("unknown encryption code {code}"))
    }
}

fn flat_entry(
    start: usize,
    key_start: usize,
    key_end: usize,
    end: usize,
    last_modified_ms: Option<i64>,
    flags: u8,
) -> Result<FlatEntry, String> {
    let len = |n: usize| u32::try_from(n).map_err(|_| "entry too long".to_string());
    Ok(FlatEntry {
        start,
        key_start: len(key_start)?,
        key_end: len(key_end)?,
        end: len(end)?,
        last_modified_ms,
        flags,
    })
}

/// Where the parts of one encoded entry lie in a buffer that holds all of it.
struct EntryLayout {
    flags: u8,
    /// Key bytes shared with the previous key.
    shared: usize,
    /// The rest of the key; the fields follow it up to `len`.
    suffix: std::ops::Range<usize>,
    len: usize,
    last_modified_ms: Option<i64>,
}

impl EntryLayout {
    /// The layout of the entry at the start of `buf`, or `None` when `buf` ends before it
    /// does; the same checks as [`EntryDecoder::next_flat`]'s field-by-field path.
    fn parse(buf: &[u8], prev_key_len: usize) -> Result<Option<EntryLayout>, String> {
        // `None` (incomplete) and errors pass straight out.
        macro_rules! step {
            ($e:expr) => {
                match $e {
                    Some(Ok(v)) => v,
                    Some(Err(e)) => return Err(e),
                    None => return Ok(None),
                }
            };
        }
        let mut r = SliceReader { buf, at: 0 };
        let Some(flags) = r.byte() else { return Ok(None) };
        let shared = step!(r.varint());
        if shared > prev_key_len as u64 {
            return Err(format!("shared prefix {shared} longer than the previous key"));
        }
        let suffix = step!(r.field());
        if flags & F_SIZE != 0 {
            step!(r.varint());
        }
        if flags & F_ETAG != 0 {
            step!(r.tagged(Tagged::Etag));
        }
        let mut last_modified_ms = None;
        if flags & F_MODIFIED != 0 {
            last_modified_ms = Some(unzigzag(step!(r.varint())));
        }
        if flags & F_CLASS != 0 {
            step!(r.tagged(Tagged::StorageClass));
        }
        if flags & F_ENCRYPTION != 0 {
            match r.byte() {
                None => return Ok(None),
                Some(OTHER_ENCRYPTION_CODE) => {
                    step!(r.field());
                }
                Some(code) => check_encryption_code(code)?,
            }
        }
        Ok(Some(EntryLayout { flags, shared: shared as usize, suffix, len: r.at, last_modified_ms }))
    }
}

/// Decodes entries from a byte stream. Errors are plain strings; the caller adds the file.
/// Entries are read a few bytes at a time, so `R` is buffered: over a zstd stream, use
/// [`buffered`], else every varint byte would be a call into the decoder.
pub(crate) struct EntryDecoder<R> {
    inner: R,
    prev_key: Vec<u8>,
    /// The format version of the stream (spill runs: always the current one).
    version: u32,
    /// Whether the last key read sorts after the one before it: its suffix against the
    /// previous key's bytes past the shared prefix, which is all that differs.
    after_previous: bool,
}

/// A zstd stream with a buffer in front, for [`EntryDecoder`].
pub(crate) fn buffered<R: Read>(inner: R) -> BufReader<R> {
    BufReader::with_capacity(DECODE_BUFFER, inner)
}

impl<R: BufRead> EntryDecoder<R> {
    /// A decoder of a stream of the current format version.
    pub(crate) fn new(inner: R) -> Self {
        Self::of_version(inner, SNAPSHOT_FORMAT_VERSION)
    }

    /// A decoder of a stream written in format `version` (checked by the caller).
    fn of_version(inner: R, version: u32) -> Self {
        EntryDecoder { inner, prev_key: Vec::new(), version, after_previous: true }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b).map_err(|e| format!("entry cut short: {e}"))?;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let len = self.varint()?;
        if len > MAX_FIELD_LEN {
            return Err(format!("field length {len} exceeds {MAX_FIELD_LEN}"));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf).map_err(|e| format!("entry cut short: {e}"))?;
        Ok(buf)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        String::from_utf8(self.bytes()?).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// The flags byte of the next entry, or `None` at a clean end of stream.
    fn first_byte(&mut self) -> Result<Option<u8>, String> {
        let mut first = [0u8; 1];
        loop {
            match self.inner.read(&mut first) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(first[0])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    /// Reads the key into `prev_key`: the suffix goes straight behind the shared prefix, no
    /// buffer per entry.
    fn read_key(&mut self) -> Result<(), String> {
        let shared = self.varint()?;
        if shared > self.prev_key.len() as u64 {
            return Err(format!("shared prefix {shared} longer than the previous key"));
        }
        let suffix_len = self.varint()?;
        if suffix_len > MAX_FIELD_LEN {
            return Err(format!("field length {suffix_len} exceeds {MAX_FIELD_LEN}"));
        }
        let previous_tail = self.prev_key.split_off(shared as usize);
        let at = self.prev_key.len();
        self.prev_key.resize(at + suffix_len as usize, 0);
        self.inner.read_exact(&mut self.prev_key[at..]).map_err(|e| format!("entry cut short: {e}"))?;
        self.after_previous = self.prev_key[at..] > previous_tail[..];
        Ok(())
    }

    /// Copies a length-prefixed field to `out`.
    fn copy_bytes(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let len = self.varint()?;
        if len > MAX_FIELD_LEN {
            return Err(format!("field length {len} exceeds {MAX_FIELD_LEN}"));
        }
        put_varint(out, len);
        let at = out.len();
        out.resize(at + len as usize, 0);
        self.inner.read_exact(&mut out[at..]).map_err(|e| format!("entry cut short: {e}"))
    }

    /// Copies a tagged field ([`Tagged`]) to `out`.
    fn copy_tagged(&mut self, field: Tagged, out: &mut Vec<u8>) -> Result<(), String> {
        let tag = self.varint()?;
        let len = field.body_len(tag)?;
        put_varint(out, tag);
        let at = out.len();
        out.resize(at + len, 0);
        self.inner.read_exact(&mut out[at..]).map_err(|e| format!("entry cut short: {e}"))
    }

    /// A tagged field's text: an MD5 ETag as hex, a storage class by its name.
    fn tagged_text(&mut self, field: Tagged) -> Result<String, String> {
        let tag = self.varint()?;
        let len = field.body_len(tag)?;
        let mut body = vec![0u8; len];
        self.inner.read_exact(&mut body).map_err(|e| format!("entry cut short: {e}"))?;
        match (field, tag & 1) {
            (Tagged::Etag, 1) => Ok(hex(&body)),
            (Tagged::StorageClass, 1) => field.class(tag >> 1).map(str::to_owned),
            (_, _) => String::from_utf8(body).map_err(|_| format!("{field:?} is not UTF-8")),
        }
    }

    /// Appends the next entry to `out` as a flat entry, copying its fields without decoding
    /// them (nor checking their UTF-8: [`decode_flat`] does, for the entries that are decoded),
    /// or `None` at a clean end of stream.
    #[inline]
    pub(crate) fn next_flat(&mut self, out: &mut Vec<u8>) -> Result<Option<FlatEntry>, String> {
        if self.version == 1 {
            return self.next_flat_transcoded(out);
        }
        // Nearly every entry lies whole in the read buffer: parsed there, its fields copied in
        // one piece. One that straddles the buffer's end is read field by field.
        let buffered = self.inner.fill_buf().map_err(|e| format!("read failed: {e}"))?;
        if buffered.is_empty() {
            return Ok(None);
        }
        let Some(layout) = EntryLayout::parse(buffered, self.prev_key.len())? else {
            return self.next_flat_split(out);
        };
        let suffix = &buffered[layout.suffix.clone()];
        self.after_previous = *suffix > self.prev_key[layout.shared..];
        self.prev_key.truncate(layout.shared);
        self.prev_key.extend_from_slice(suffix);
        let start = out.len();
        out.push(layout.flags);
        out.push(0);
        put_varint(out, self.prev_key.len() as u64);
        let key_start = out.len() - start;
        out.extend_from_slice(&self.prev_key);
        let key_end = out.len() - start;
        out.extend_from_slice(&buffered[layout.suffix.end..layout.len]);
        self.inner.consume(layout.len);
        flat_entry(start, key_start, key_end, out.len() - start, layout.last_modified_ms, layout.flags)
            .map(Some)
    }

    /// [`Self::next_flat`] of a version 1 entry: decoded and written again in the current
    /// format (a slower path, for the first run after an upgrade). Versions 2 and 3 encode
    /// entries alike.
    fn next_flat_transcoded(&mut self, out: &mut Vec<u8>) -> Result<Option<FlatEntry>, String> {
        let Some((obj, flags)) = self.next_entry()? else { return Ok(None) };
        let start = out.len();
        encode_entry(out, "", &obj, flags & F_DELETE_MARKER);
        let key_start = 2 + varint_len(obj.key.len() as u64);
        let key_end = key_start + obj.key.len();
        flat_entry(start, key_start, key_end, out.len() - start, obj.last_modified_ms, out[start]).map(Some)
    }

    /// [`Self::next_flat`] for an entry that is not whole in the read buffer.
    fn next_flat_split(&mut self, out: &mut Vec<u8>) -> Result<Option<FlatEntry>, String> {
        let Some(flags) = self.first_byte()? else { return Ok(None) };
        self.read_key()?;
        let start = out.len();
        out.push(flags);
        out.push(0);
        put_varint(out, self.prev_key.len() as u64);
        let key_start = out.len() - start;
        out.extend_from_slice(&self.prev_key);
        let key_end = out.len() - start;
        if flags & F_SIZE != 0 {
            put_varint(out, self.varint()?);
        }
        if flags & F_ETAG != 0 {
            self.copy_tagged(Tagged::Etag, out)?;
        }
        let mut last_modified_ms = None;
        if flags & F_MODIFIED != 0 {
            let z = self.varint()?;
            last_modified_ms = Some(unzigzag(z));
            put_varint(out, z);
        }
        if flags & F_CLASS != 0 {
            self.copy_tagged(Tagged::StorageClass, out)?;
        }
        if flags & F_ENCRYPTION != 0 {
            let code = self.byte()?;
            out.push(code);
            if code == OTHER_ENCRYPTION_CODE {
                self.copy_bytes(out)?;
            } else {
                check_encryption_code(code)?;
            }
        }
        flat_entry(start, key_start, key_end, out.len() - start, last_modified_ms, flags).map(Some)
    }

    /// The next entry and its flags, or `None` at a clean end of stream.
    pub(crate) fn next_entry(&mut self) -> Result<Option<(SnapshotObject, u8)>, String> {
        let Some(flags) = self.first_byte()? else { return Ok(None) };
        self.read_key()?;
        let key = String::from_utf8(self.prev_key.clone()).map_err(|_| "key is not UTF-8".to_string())?;
        let mut obj = SnapshotObject { key, ..SnapshotObject::default() };
        if flags & F_SIZE != 0 {
            obj.size = Some(self.varint()?);
        }
        let v1 = self.version == 1;
        if flags & F_ETAG != 0 {
            obj.etag = Some(if v1 { self.string("etag")? } else { self.tagged_text(Tagged::Etag)? });
        }
        if flags & F_MODIFIED != 0 {
            obj.last_modified_ms = Some(unzigzag(self.varint()?));
        }
        if flags & F_CLASS != 0 {
            obj.storage_class = Some(if v1 {
                self.string("storage class")?
            } else {
                self.tagged_text(Tagged::StorageClass)?
            });
        }
        if flags & F_ENCRYPTION != 0 {
            obj.encryption_status = Some(match self.byte()? {
                OTHER_ENCRYPTION_CODE => EncryptionStatus::Other(self.string("encryption status")?),
                code => known_encryption(code)?,
            });
        }
        if flags & F_BUCKET_KEY != 0 {
            obj.bucket_key_enabled = Some(flags & F_BUCKET_KEY_ON != 0);
        }
        Ok(Some((obj, flags)))
    }
}

// ---------------------------------------------------------------------------------------------
// Writer

/// Writes `Write` through to a file while hashing, so the checksum costs no second pass.
struct HashingWriter {
    inner: DirectWriter,
    hasher: ContentHasher,
    /// Bytes written since the last request to the syncer.
    unsynced: u64,
    syncer: Option<Syncer>,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(buf)?;
        let n = buf.len();
        self.hasher.update(buf);
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.unsynced = 0;
            if let Some(syncer) = &self.syncer {
                syncer.request();
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        // Written a buffer at a time; the rest at `DirectWriter::finish`.
        Ok(())
    }
}

/// Bytes written between two background syncs of a snapshot being written.
const SYNC_EVERY_BYTES: u64 = 32 << 20;

/// Flushes a snapshot being written to disk on a thread of its own, every
/// [`SYNC_EVERY_BYTES`]: the final fsync, which the state's crash safety needs, then has little
/// left to wait for, instead of the whole file.
struct Syncer {
    requests: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl Syncer {
    /// A syncer of `file`, or `None` when the file cannot be shared or no thread started (the
    /// final fsync then does all the work, as it would anyway).
    fn start(file: &File) -> Option<Syncer> {
        let file = file.try_clone().ok()?;
        let (requests, pending) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("snapshot-sync".into())
            .spawn(move || {
                for () in pending {
                    file.sync_data()?;
                }
                Ok(())
            })
            .ok()?;
        Some(Syncer { requests, thread })
    }

    /// Asks for a sync unless one is already waiting.
    fn request(&self) {
        let _ = self.requests.try_send(());
    }

    /// Waits for the syncs asked for; the first error of any.
    fn finish(self) -> io::Result<()> {
        drop(self.requests);
        self.thread.join().map_err(|_| io::Error::other("the snapshot sync thread panicked"))?
    }
}

/// Encoded bytes a [`SnapshotWriter`] gathers before handing them to its frame writer.
const STAGED_BYTES: usize = 1024 * 1024;

/// Writes `data` as one zstd frame of stored (raw) blocks: its content size, then blocks of at
/// most [`MAX_ZSTD_BLOCK`] bytes, each behind its 3-byte header. Any zstd decoder reads it, at
/// the speed of a copy.
///
/// Entries are prefix-encoded already and an ETag is 16 random bytes, so compressing found
/// little: on a 5M-object body (207 MB, `zstd -b`) zstd's level -5 wrote 158 MB at 985 MB/s,
/// level -20 177 MB at 1.4 GB/s, level 1 146 MB at 425 MB/s. At -5 the compression was 6% of a
/// Parquet day 2's CPU and reading it back 2% more, to save a quarter of the file's bytes.
fn write_stored_frame(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    let content_size = u32::try_from(data.len()).map_err(|_| io::Error::other("a body frame over 4 GiB"))?;
    let mut header = [0u8; 9];
    header[..4].copy_from_slice(&ZSTD_FRAME_MAGIC.to_le_bytes());
    // Frame header descriptor: a 4-byte content size, a single segment (so no window
    // descriptor), no checksum (the file has its own), no dictionary.
    header[4] = 0b1010_0000;
    header[5..].copy_from_slice(&content_size.to_le_bytes());
    out.write_all(&header)?;
    if data.is_empty() {
        return out.write_all(&raw_block_header(0, true));
    }
    let mut blocks = data.chunks(MAX_ZSTD_BLOCK).peekable();
    while let Some(block) = blocks.next() {
        out.write_all(&raw_block_header(block.len(), blocks.peek().is_none()))?;
        out.write_all(block)?;
    }
    Ok(())
}

/// A raw block's header: last-block flag in bit 0, block type 0 (raw) in bits 1-2, size above.
fn raw_block_header(len: usize, last: bool) -> [u8; 3] {
    // `len` is at most MAX_ZSTD_BLOCK, far below the 21 bits the size has.
    let word = (len as u32) << 3 | u32::from(last);
    let [a, b, c, _] = word.to_le_bytes();
    [a, b, c]
}

/// Hashes and writes a snapshot's body frames on a thread of its own, so the caller's thread
/// (merging and joining runs) only encodes entries. Buffers are handed over whole and come
/// back emptied: nothing is copied between the threads.
struct FrameWriter {
    full: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    emptied: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<io::Result<HashingWriter>>>,
}

impl FrameWriter {
    fn start(hashing: HashingWriter) -> io::Result<FrameWriter> {
        // Each buffer is a frame of its own. Buffers end where the writer's staging ends, so
        // reruns write the same bytes.
        let mut hashing = hashing;
        let (full, pending) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (give_back, emptied) = std::sync::mpsc::sync_channel::<Vec<u8>>(3);
        let thread = std::thread::Builder::new().name("snapshot-frames".into()).spawn(move || {
            let mut frames = 0u64;
            for mut buffer in pending {
                write_stored_frame(&mut hashing, &buffer)?;
                frames += 1;
                buffer.clear();
                let _ = give_back.try_send(buffer);
            }
            if frames == 0 {
                // An empty body is still one frame.
                write_stored_frame(&mut hashing, &[])?;
            }
            Ok(hashing)
        })?;
        Ok(FrameWriter { full: Some(full), emptied, thread: Some(thread) })
    }

    /// Hands `staged` over, leaving an empty buffer in its place.
    fn hand_over(&mut self, staged: &mut Vec<u8>) -> io::Result<()> {
        let next = self.emptied.try_recv().unwrap_or_else(|_| Vec::with_capacity(staged.capacity()));
        let buffer = std::mem::replace(staged, next);
        let sent = self.full.as_ref().is_some_and(|full| full.send(buffer).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped early: its error says why.
        self.join().and_then(|_| Err(io::Error::other("the snapshot frame writer stopped")))
    }

    /// Writes what is left and returns the file's writer.
    fn finish(mut self) -> io::Result<HashingWriter> {
        self.join()
    }

    fn join(&mut self) -> io::Result<HashingWriter> {
        self.full = None;
        let thread =
            self.thread.take().ok_or_else(|| io::Error::other("the snapshot frame writer is gone"))?;
        thread.join().map_err(|_| io::Error::other("the snapshot frame writer panicked"))?
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        // Unfinished: let the thread end (it closes the file) before the file is removed.
        if self.thread.is_some() {
            let _ = self.join();
        }
    }
}

/// Writes a snapshot atomically: objects go to a temporary file in the target's directory,
/// which [`finish`](Self::finish) fsyncs and renames into place. Dropping the writer without
/// finishing leaves no file at the target path.
pub struct SnapshotWriter {
    path: PathBuf,
    tmp_path: PathBuf,
    header: SnapshotHeader,
    frames: Option<FrameWriter>,
    prev_key: Option<Vec<u8>>,
    /// Encoded entries not yet handed to the frame writer, which takes [`STAGED_BYTES`] at a
    /// time rather than one entry.
    staged: Vec<u8>,
    /// An owned object's flat entry, for [`Self::push`].
    flat: Vec<u8>,
    count: u64,
    /// Every [`SPLITTER_STRIDE`]th key so far, written at the end.
    splitters: Vec<Vec<u8>>,
    splitter_stride: u64,
    /// The dataset totals' payload ([`Self::set_dataset_totals`]), written at the end.
    dataset_totals: Option<Vec<u8>>,
}

impl SnapshotWriter {
    /// Starts a snapshot that will appear at `path` when finished.
    pub fn create(path: &Path, header: SnapshotHeader) -> Result<Self, SnapshotError> {
        let tmp_path = temp_sibling(path);
        let header_json =
            serde_json::to_vec(&header).map_err(|e| SnapshotError::corrupt(path, format!("header: {e}")))?;
        let header_len = u32::try_from(header_json.len())
            .ok()
            .filter(|len| *len <= MAX_HEADER_LEN)
            .ok_or_else(|| SnapshotError::corrupt(path, "header too long"))?;
        let mut inner = DirectWriter::create(&tmp_path).map_err(|e| SnapshotError::io(&tmp_path, e))?;
        let mut preamble = Vec::with_capacity(PREAMBLE_LEN as usize);
        preamble.extend_from_slice(MAGIC);
        preamble.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        preamble.extend_from_slice(&[0u8; 8 + 32]); // count and checksum, patched in finish
        preamble.extend_from_slice(&header_len.to_le_bytes());
        inner.write_all(&preamble).map_err(|e| SnapshotError::io(&tmp_path, e))?;
        let mut hasher = ContentHasher::new(SNAPSHOT_FORMAT_VERSION);
        hasher.update(&header_len.to_le_bytes());
        let syncer = Syncer::start(inner.file());
        let mut hashing = HashingWriter { inner, hasher, unsynced: 0, syncer };
        hashing.write_all(&header_json).map_err(|e| SnapshotError::io(&tmp_path, e))?;
        let frames = FrameWriter::start(hashing).map_err(|e| SnapshotError::io(&tmp_path, e))?;
        Ok(SnapshotWriter {
            path: path.to_path_buf(),
            tmp_path,
            header,
            frames: Some(frames),
            prev_key: None,
            staged: Vec::with_capacity(STAGED_BYTES + 4096),
            flat: Vec::with_capacity(256),
            count: 0,
            splitters: Vec::new(),
            splitter_stride: SPLITTER_STRIDE,
            dataset_totals: None,
        })
    }

    /// Stores `payload` (the datasets' totals over this snapshot's objects, encoded by the
    /// dataset roll-up) in a frame of its own before the splitters, under the checksum: the
    /// next run reads it back with [`read_dataset_totals`].
    /// A payload over [`MAX_TOTALS_LEN`] is not stored: the next run counts every object, as
    /// it does after a snapshot without totals.
    pub(crate) fn set_dataset_totals(&mut self, payload: Vec<u8>) {
        self.dataset_totals = (payload.len() as u64 <= MAX_TOTALS_LEN).then_some(payload);
    }

    /// Keeps every `stride`th key as a splitter instead of every [`SPLITTER_STRIDE`]th.
    #[cfg(test)]
    pub(crate) fn with_splitter_stride(mut self, stride: u64) -> Self {
        self.splitter_stride = stride.max(1);
        self
    }

    /// Appends one object; keys must be strictly increasing.
    pub fn push(&mut self, obj: &SnapshotObject) -> Result<(), SnapshotError> {
        let mut flat = std::mem::take(&mut self.flat);
        flat.clear();
        encode_entry(&mut flat, "", obj, 0);
        let key_start = 2 + varint_len(obj.key.len() as u64);
        let pushed = self.push_flat(&flat, key_start, key_start + obj.key.len());
        self.flat = flat;
        pushed
    }

    /// Appends one flat entry (see [`FlatEntry`]) whose key is `entry[key_start..key_end]`;
    /// keys must be strictly increasing. Only the key's shared prefix is re-encoded.
    pub(crate) fn push_flat(
        &mut self,
        entry: &[u8],
        key_start: usize,
        key_end: usize,
    ) -> Result<(), SnapshotError> {
        let key = &entry[key_start..key_end];
        let prev = self.prev_key.as_deref().unwrap_or_default();
        // One pass gives both the order check and the prefix the entry shares.
        let shared = common_prefix(prev, key);
        let after_prev = key.get(shared).is_some_and(|b| prev.get(shared).is_none_or(|p| b > p));
        if self.prev_key.is_some() && !after_prev {
            let key = String::from_utf8_lossy(key).into_owned();
            return Err(SnapshotError::Unsorted { path: self.path.clone(), key });
        }
        if entry[0] & F_DELETE_MARKER != 0 {
            return Err(SnapshotError::corrupt(&self.path, "a delete marker written as an object"));
        }
        reencode_with_shared(&mut self.staged, shared, entry, key_start, key_end);
        if self.staged.len() >= STAGED_BYTES {
            self.write_staged()?;
        }
        let prev = self.prev_key.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(key);
        if self.count > 0 && self.count.is_multiple_of(self.splitter_stride) {
            self.splitters.push(key.to_vec());
        }
        self.count += 1;
        Ok(())
    }

    /// Hands the staged entries to the frame writer.
    fn write_staged(&mut self) -> Result<(), SnapshotError> {
        let frames =
            self.frames.as_mut().ok_or_else(|| SnapshotError::corrupt(&self.path, "writer closed"))?;
        frames.hand_over(&mut self.staged).map_err(|e| SnapshotError::io(&self.tmp_path, e))
    }

    /// Completes the file: patches count and checksum, fsyncs, renames into place and fsyncs
    /// the directory.
    pub fn finish(mut self) -> Result<SnapshotInfo, SnapshotError> {
        self.write_staged()?;
        let tmp = self.tmp_path.clone();
        let io = |e| SnapshotError::io(&tmp, e);
        let frames = self.frames.take().ok_or_else(|| SnapshotError::corrupt(&self.path, "writer closed"))?;
        let mut hashing = frames.finish().map_err(io)?;
        if let Some(payload) = &self.dataset_totals {
            hashing.write_all(&trailing_frame(TOTALS_FRAME_MAGIC, payload, TOTALS_MARKER)).map_err(io)?;
        }
        hashing.write_all(&splitters_frame(&self.splitters)).map_err(io)?;
        if let Some(syncer) = hashing.syncer.take() {
            syncer.finish().map_err(io)?;
        }
        let checksum = hashing.hasher.seal(self.count);
        let patch = [&self.count.to_le_bytes()[..], &checksum].concat();
        let file = hashing.inner.finish(COUNT_OFFSET as usize, &patch).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&self.tmp_path, &self.path).map_err(io)?;
        sync_parent_dir(&self.path)?;
        Ok(SnapshotInfo {
            path: self.path.clone(),
            header: self.header.clone(),
            object_count: self.count,
            checksum_hex: checksum_hex(SNAPSHOT_FORMAT_VERSION, &checksum),
        })
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        // Unfinished: remove the partial temporary file (best effort; a crash leaves it for
        // the state store's cleanup).
        if let Some(frames) = self.frames.take() {
            drop(frames);
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

/// A temporary name next to `path`, unique within this process.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{n}-{name}", std::process::id()))
}

/// Fsyncs the directory holding `path`, so a rename in it survives a crash.
pub(crate) fn sync_parent_dir(path: &Path) -> Result<(), SnapshotError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| SnapshotError::io(dir, e))
}

/// The skippable frame that ends a snapshot's body (see the module documentation).
fn splitters_frame(splitters: &[Vec<u8>]) -> Vec<u8> {
    let mut keys = Vec::with_capacity(splitters.iter().map(|k| 4 + k.len()).sum());
    for key in splitters {
        // Keys are at most 1024 bytes and splitters one per 65536 objects: lengths fit in u32.
        keys.extend_from_slice(&(key.len() as u32).to_le_bytes());
        keys.extend_from_slice(key);
    }
    trailing_frame(SPLITTERS_FRAME_MAGIC, &keys, SPLITTERS_MARKER)
}

/// A zstd skippable frame that is read from its end: magic, frame length, payload, payload
/// length, marker (the splitters' and the dataset totals' frames).
fn trailing_frame(magic: u32, payload: &[u8], marker: &[u8; 8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len() + 4 + marker.len());
    frame.extend_from_slice(&magic.to_le_bytes());
    // Payloads past u32 are refused when read (MAX_SPLITTERS_LEN, MAX_TOTALS_LEN), not here.
    frame.extend_from_slice(&((payload.len() + 4 + marker.len()) as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(marker);
    frame
}

/// A snapshot file's end, where its trailing frames are read from.
struct FileTail<'p> {
    path: &'p Path,
    file: File,
    /// Bytes after the preamble.
    body_len: u64,
}

impl<'p> FileTail<'p> {
    fn open(path: &'p Path) -> Result<Self, SnapshotError> {
        let file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
        let file_len = file.metadata().map_err(|e| SnapshotError::io(path, e))?.len();
        Ok(FileTail { path, file, body_len: file_len.saturating_sub(PREAMBLE_LEN) })
    }

    /// The payload length of the [`trailing_frame`] ending `end` bytes before the file's end,
    /// or `None` when `marker` is not there.
    fn payload_len(&mut self, end: u64, marker: &[u8; 8]) -> Result<Option<u64>, SnapshotError> {
        if end + 12 > self.body_len {
            return Ok(None);
        }
        let mut tail = [0u8; 12];
        self.read_at_end(end + 12, &mut tail)?;
        Ok((&tail[4..] == marker)
            .then(|| u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]))))
    }

    /// The `len` payload bytes of the frame ending `end` bytes before the file's end; a length
    /// over `cap` or past the body is corrupt (`what`, for the error).
    fn payload(&mut self, end: u64, len: u64, cap: u64, what: &str) -> Result<Vec<u8>, SnapshotError> {
        if len > cap || end + 12 + len > self.body_len {
            return Err(SnapshotError::corrupt(self.path, format!("{what} of {len} bytes")));
        }
        let mut payload = vec![0u8; len as usize];
        self.read_at_end(end + 12 + len, &mut payload)?;
        Ok(payload)
    }

    /// Fills `buf` from `from_end` bytes before the file's end.
    fn read_at_end(&mut self, from_end: u64, buf: &mut [u8]) -> Result<(), SnapshotError> {
        let io = |e| SnapshotError::io(self.path, e);
        // At most the body's length (checked by the callers), so it fits in i64.
        self.file.seek(SeekFrom::End(-(from_end as i64))).map_err(io)?;
        self.file.read_exact(buf).map_err(io)
    }
}

/// The dataset totals' payload stored before a snapshot's splitters
/// ([`SnapshotWriter::set_dataset_totals`]), or `None` when the file has none. Reads only the
/// file's end and does not verify the checksum: call it on a file [`SnapshotReader::open`]
/// has verified.
pub(crate) fn read_dataset_totals(path: &Path) -> Result<Option<Vec<u8>>, SnapshotError> {
    let mut tail = FileTail::open(path)?;
    let Some(keys_len) = tail.payload_len(0, SPLITTERS_MARKER)? else { return Ok(None) };
    // The splitters' frame: magic, length, keys, keys length, marker.
    let splitters_frame = 8 + keys_len + 12;
    let Some(len) = tail.payload_len(splitters_frame, TOTALS_MARKER)? else { return Ok(None) };
    tail.payload(splitters_frame, len, MAX_TOTALS_LEN, "dataset totals").map(Some)
}

/// The splitters a snapshot file ends with, in key order: empty for a file written before
/// snapshots carried them. Reads only the file's end and does not verify its checksum: the
/// splitters steer how the next snapshot is built, never what it holds.
pub fn read_splitters(path: &Path) -> Result<Vec<Vec<u8>>, SnapshotError> {
    let mut tail = FileTail::open(path)?;
    let Some(keys_len) = tail.payload_len(0, SPLITTERS_MARKER)? else { return Ok(Vec::new()) };
    let keys = tail.payload(0, keys_len, MAX_SPLITTERS_LEN, "splitters")?;
    let mut splitters = Vec::new();
    let mut rest = keys.as_slice();
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        let Some((key, after)) = (len <= after.len()).then(|| after.split_at(len)) else { break };
        splitters.push(key.to_vec());
        rest = after;
    }
    if !rest.is_empty() {
        return Err(SnapshotError::corrupt(path, "splitters cut short"));
    }
    if splitters.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SnapshotError::corrupt(path, "splitters out of order"));
    }
    Ok(splitters)
}

/// The checksum of a file of one format version, fed the bytes after the count.
enum ContentHasher {
    /// Format versions 1 and 2.
    Sha256(Box<Sha256>),
    /// From format version 3.
    Xxh3(Box<XxHash3_128>),
}

impl ContentHasher {
    fn new(version: u32) -> Self {
        if version >= 3 {
            ContentHasher::Xxh3(Box::new(XxHash3_128::new()))
        } else {
            ContentHasher::Sha256(Box::new(Sha256::new()))
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            ContentHasher::Sha256(hasher) => hasher.update(bytes),
            ContentHasher::Xxh3(hasher) => hasher.write(bytes),
        }
    }

    /// The final checksum: the count is only known at the end, so it wraps the streamed digest.
    fn seal(self, count: u64) -> [u8; 32] {
        match self {
            ContentHasher::Sha256(streamed) => {
                let mut outer = Sha256::new();
                outer.update(count.to_le_bytes());
                outer.update(streamed.finalize());
                outer.finalize().into()
            }
            ContentHasher::Xxh3(streamed) => {
                let mut outer = XxHash3_128::new();
                outer.write(&count.to_le_bytes());
                outer.write(&streamed.finish_128().to_le_bytes());
                let mut checksum = [0u8; 32];
                checksum[..16].copy_from_slice(&outer.finish_128().to_le_bytes());
                checksum
            }
        }
    }
}

/// The hex of a file's checksum: its digest's bytes, without the padding of an XXH3-128.
fn checksum_hex(version: u32, checksum: &[u8; 32]) -> String {
    hex(if version >= 3 { &checksum[..16] } else { checksum })
}

/// The fixed-size start of a snapshot file: what it is and what its checksum must be.
struct Preamble {
    version: u32,
    object_count: u64,
    checksum: [u8; 32],
    header_len: u32,
}

impl Preamble {
    /// Reads and checks the preamble at the start of `file` (the snapshot at `path`).
    fn read(file: &mut File, path: &Path) -> Result<Self, SnapshotError> {
        let mut bytes = [0u8; PREAMBLE_LEN as usize];
        if let Err(e) = file.read_exact(&mut bytes) {
            return Err(SnapshotError::NotASnapshot { path: path.to_path_buf(), detail: e.to_string() });
        }
        if &bytes[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot { path: path.to_path_buf(), detail: "bad magic".into() });
        }
        let le_u32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let version = le_u32(&bytes[8..12]);
        if !(OLDEST_READ_VERSION..=SNAPSHOT_FORMAT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version,
                expected: SNAPSHOT_FORMAT_VERSION,
            });
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&bytes[12..20]);
        let mut checksum = [0u8; 32];
        checksum.copy_from_slice(&bytes[20..52]);
        let header_len = le_u32(&bytes[52..56]);
        if header_len > MAX_HEADER_LEN {
            return Err(SnapshotError::ChecksumMismatch { path: path.to_path_buf() });
        }
        Ok(Preamble { version, object_count: u64::from_le_bytes(count), checksum, header_len })
    }

    /// The snapshot's info, with its header read from `file` (positioned after the preamble).
    fn info(&self, file: &mut File, path: &Path) -> Result<SnapshotInfo, SnapshotError> {
        let mut header_json = vec![0u8; self.header_len as usize];
        file.read_exact(&mut header_json).map_err(|e| SnapshotError::io(path, e))?;
        let header: SnapshotHeader = serde_json::from_slice(&header_json)
            .map_err(|e| SnapshotError::corrupt(path, format!("header: {e}")))?;
        Ok(SnapshotInfo {
            path: path.to_path_buf(),
            header,
            object_count: self.object_count,
            checksum_hex: checksum_hex(self.version, &self.checksum),
        })
    }
}

impl SnapshotInfo {
    /// Which snapshot the file at `path` is (its header, count and recorded checksum), read
    /// from its start alone: the body is not verified, as [`SnapshotReader::open`] does.
    pub fn read(path: &Path) -> Result<Self, SnapshotError> {
        let mut file = File::open(path).map_err(|e| SnapshotError::io(path, e))?;
        Preamble::read(&mut file, path)?.info(&mut file, path)
    }
}

// ---------------------------------------------------------------------------------------------
// Reader

/// Reads a snapshot in key order. [`open`](Self::open) verifies the checksum over the whole
/// file first, so iteration never yields objects of a truncated or altered file; iteration
/// still checks order and count and reports any inconsistency as an error item.
pub struct SnapshotReader {
    info: SnapshotInfo,
    decoder: EntryDecoder<BufReader<zstd::Decoder<'static, BufReader<DropBehind>>>>,
    read: u64,
    done: bool,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader").field("info", &self.info).field("read", &self.read).finish()
    }
}

impl SnapshotReader {
    /// Opens and verifies a snapshot file.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let io = |e| SnapshotError::io(path, e);
        let mut file = File::open(path).map_err(io)?;
        let preamble = Preamble::read(&mut file, path)?;

        // Pass 1: checksum over everything after the preamble.
        let mut hasher = ContentHasher::new(preamble.version);
        hasher.update(&preamble.header_len.to_le_bytes());
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => hasher.update(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(e)),
            }
        }
        if hasher.seal(preamble.object_count) != preamble.checksum {
            return Err(SnapshotError::ChecksumMismatch { path: path.to_path_buf() });
        }

        // Pass 2: header, then the body as a stream.
        file.seek(SeekFrom::Start(PREAMBLE_LEN)).map_err(io)?;
        let info = preamble.info(&mut file, path)?;
        // Read once (the checksum pass read it from the cache), then deleted once the next
        // report's snapshot takes its place: its pages are dropped as they are decoded.
        let at = file.stream_position().map_err(io)?;
        let decoder = zstd::Decoder::new(DropBehind::new(file, at)).map_err(io)?;
        Ok(SnapshotReader {
            info,
            decoder: EntryDecoder::of_version(buffered(decoder), preamble.version),
            read: 0,
            done: false,
        })
    }

    /// The file, its header, object count and checksum.
    pub fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn next_checked(&mut self) -> Result<Option<SnapshotObject>, SnapshotError> {
        let path = &self.info.path;
        match self.decoder.next_entry().map_err(|d| SnapshotError::corrupt(path, d))? {
            None => {
                if self.read != self.info.object_count {
                    return Err(SnapshotError::corrupt(
                        path,
                        format!("{} objects, header says {}", self.read, self.info.object_count),
                    ));
                }
                Ok(None)
            }
            Some((obj, flags)) => {
                if flags & F_DELETE_MARKER != 0 {
                    return Err(SnapshotError::corrupt(path, "delete-marker flag in a snapshot"));
                }
                if self.read > 0 && !self.decoder.after_previous {
                    return Err(SnapshotError::Unsorted { path: path.clone(), key: obj.key });
                }
                self.read += 1;
                Ok(Some(obj))
            }
        }
    }
}

impl SnapshotReader {
    /// Appends the next object to `out` as a flat entry (see [`FlatEntry`]), or `None` after
    /// the last; checks order and count as iteration does, but not the fields' UTF-8 (checked
    /// where an entry is decoded).
    #[inline]
    pub(crate) fn next_flat(&mut self, out: &mut Vec<u8>) -> Result<Option<FlatEntry>, SnapshotError> {
        let path = &self.info.path;
        let Some(entry) = self.decoder.next_flat(out).map_err(|d| SnapshotError::corrupt(path, d))? else {
            if self.read != self.info.object_count {
                return Err(SnapshotError::corrupt(
                    path,
                    format!("{} objects, header says {}", self.read, self.info.object_count),
                ));
            }
            return Ok(None);
        };
        if entry.flags & F_DELETE_MARKER != 0 {
            return Err(SnapshotError::corrupt(path, "delete-marker flag in a snapshot"));
        }
        if self.read > 0 && !self.decoder.after_previous {
            let key = &out[entry.start + entry.key_start as usize..entry.start + entry.key_end as usize];
            let key = String::from_utf8_lossy(key).into_owned();
            return Err(SnapshotError::Unsorted { path: path.clone(), key });
        }
        self.read += 1;
        Ok(Some(entry))
    }
}

impl Iterator for SnapshotReader {
    type Item = Result<SnapshotObject, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_checked() {
            Ok(Some(obj)) => Some(Ok(obj)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Items produced ahead of their consumer, in batches.
pub(crate) const PREFETCH_BATCH: usize = 4096;
/// Batches a prefetching thread may have ready before it waits.
pub(crate) const PREFETCH_DEPTH: usize = 4;

/// An iterator run on its own thread, a few batches ahead of its consumer: the diff reads
/// two snapshots at once and the sort merges several runs, and decoding them is most of the
/// work. Dropping it stops the thread at its next batch. The source should end after its
/// first error (snapshot and run readers do).
#[derive(Debug)]
pub struct Prefetch<T> {
    batches: std::sync::mpsc::Receiver<Vec<T>>,
    current: std::vec::IntoIter<T>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts `source` on a thread named `name`, at most `depth` batches of `batch` items
    /// ahead (plus the one being filled).
    pub(crate) fn spawn<I>(name: &str, source: I, batch: usize, depth: usize) -> io::Result<Self>
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        let batch_len = batch.max(1);
        std::thread::Builder::new().name(name.into()).spawn(move || {
            let mut source = source;
            loop {
                let batch: Vec<T> = source.by_ref().take(batch_len).collect();
                if batch.is_empty() || tx.send(batch).is_err() {
                    return;
                }
            }
        })?;
        Ok(Prefetch { batches: rx, current: Vec::new().into_iter() })
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            // A closed channel is the end: the thread stops after the last item.
            self.current = self.batches.recv().ok()?.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            source_bucket: "src".into(),
            configuration_id: "daily".into(),
            report_timestamp_ms: 1_704_067_200_000,
        }
    }

    fn obj(key: &str, size: u64) -> SnapshotObject {
        SnapshotObject {
            key: key.into(),
            size: Some(size),
            etag: Some(format!("e{size}")),
            last_modified_ms: Some(-5),
            storage_class: Some("STANDARD".into()),
            encryption_status: Some(EncryptionStatus::Other("SSE-NEW".into())),
            bucket_key_enabled: Some(true),
        }
    }

    fn write(dir: &Path, objs: &[SnapshotObject]) -> SnapshotInfo {
        let mut w = SnapshotWriter::create(&dir.join("s.snap"), header()).unwrap();
        for o in objs {
            w.push(o).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn splitters_are_every_strideth_key_and_readers_pass_over_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let objs: Vec<_> = (0..7).map(|i| obj(&format!("k{i}"), i)).collect();
        let mut w = SnapshotWriter::create(&path, header()).unwrap().with_splitter_stride(3);
        objs.iter().for_each(|o| w.push(o).unwrap());
        w.finish().unwrap();
        assert_eq!(read_splitters(&path).unwrap(), [b"k3".to_vec(), b"k6".to_vec()]);
        let read: Vec<_> = SnapshotReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, objs, "the skippable frame is not an entry");

        // The splitters are under the checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(2).rposition(|w| w == b"k6").unwrap();
        bytes[at + 1] = b'7';
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(SnapshotReader::open(&path), Err(SnapshotError::ChecksumMismatch { .. })));
    }

    #[test]
    fn dataset_totals_sit_before_the_splitters_under_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let objs: Vec<_> = (0..7).map(|i| obj(&format!("k{i}"), i)).collect();
        // None in a file written without them.
        let info = write(dir.path(), &objs);
        assert_eq!(read_dataset_totals(&info.path).unwrap(), None);

        let mut w = SnapshotWriter::create(&path, header()).unwrap().with_splitter_stride(3);
        objs.iter().for_each(|o| w.push(o).unwrap());
        w.set_dataset_totals(b"{totals}".to_vec());
        w.finish().unwrap();
        assert_eq!(read_dataset_totals(&path).unwrap().as_deref(), Some(&b"{totals}"[..]));
        assert_eq!(read_splitters(&path).unwrap(), [b"k3".to_vec(), b"k6".to_vec()]);
        let read: Vec<_> = SnapshotReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(read, objs, "the totals' frame is not an entry");

        // A length past the file's start is corrupt.
        let mut bytes = std::fs::read(&path).unwrap();
        let marker = bytes.windows(8).rposition(|w| w == TOTALS_MARKER).unwrap();
        let saved = bytes.clone();
        bytes[marker - 4..marker].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = read_dataset_totals(&path).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_CORRUPT", "{err}");
        assert!(err.to_string().contains("dataset totals"), "{err}");
        // The totals are under the checksum.
        let mut bytes = saved;
        let at = bytes.windows(8).rposition(|w| w == b"{totals}").unwrap();
        bytes[at + 1] = b'T';
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(SnapshotReader::open(&path), Err(SnapshotError::ChecksumMismatch { .. })));
    }

    #[test]
    fn a_file_without_splitters_has_none_and_a_bad_length_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let info = write(dir.path(), &[obj("a", 1), obj("b", 2)]);
        assert_eq!(read_splitters(&info.path).unwrap(), Vec::<Vec<u8>>::new());
        let mut bytes = std::fs::read(&info.path).unwrap();
        // As written before snapshots kept splitters: no frame at the end.
        let without = &bytes[..bytes.len() - 20];
        std::fs::write(&info.path, without).unwrap();
        assert_eq!(read_splitters(&info.path).unwrap(), Vec::<Vec<u8>>::new());
        // A length past the file's start.
        let len = bytes.len();
        bytes[len - 12..len - 8].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&info.path, &bytes).unwrap();
        let err = read_splitters(&info.path).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_CORRUPT", "{err}");
        assert!(err.to_string().contains("splitters"), "{err}");
    }

    #[test]
    fn the_snapshot_id_names_the_report() {
        let h = header();
        assert_eq!(h.snapshot_id(), header().snapshot_id(), "stable");
        let (prefix, digest) =
            h.snapshot_id().split_once('-').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap();
        assert_eq!(prefix, "1704067200000");
        assert!(digest.len() == 16 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
        let other_bucket = SnapshotHeader { source_bucket: "src2".into(), ..header() };
        let other_config = SnapshotHeader { configuration_id: "weekly".into(), ..header() };
        let other_time = SnapshotHeader { report_timestamp_ms: 1, ..header() };
        // Length-prefixed parts: moving a character between bucket and configuration matters.
        let shifted =
            SnapshotHeader { source_bucket: "srcd".into(), configuration_id: "aily".into(), ..header() };
        let ids: std::collections::BTreeSet<String> =
            [&h, &other_bucket, &other_config, &other_time, &shifted]
                .iter()
                .map(|h| h.snapshot_id())
                .collect();
        assert_eq!(ids.len(), 5, "{ids:?}");
    }

    #[test]
    fn round_trip_and_info() {
        let dir = tempfile::tempdir().unwrap();
        let bare = SnapshotObject { key: "z".into(), ..SnapshotObject::default() };
        let objs = vec![obj("a b", 1), obj("a%2F", 2), obj("a+b", 3), bare, obj("\u{e9}t\u{e9}", 4)];
        let info = write(dir.path(), &objs);
        assert_eq!(info.object_count, 5);
        let reader = SnapshotReader::open(&info.path).unwrap();
        assert_eq!(reader.info(), &info);
        let back: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(back, objs);
        // Only the finished file remains.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_files_identity_is_read_from_its_start_alone() {
        let dir = tempfile::tempdir().unwrap();
        let info = write(dir.path(), &[obj("a", 1), obj("b", 2)]);
        assert_eq!(SnapshotInfo::read(&info.path).unwrap(), info);
        // The body is not read: a flipped body byte is found by `open`, not here.
        let mut bytes = std::fs::read(&info.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&info.path, &bytes).unwrap();
        assert_eq!(SnapshotInfo::read(&info.path).unwrap(), info);
        assert!(matches!(SnapshotReader::open(&info.path), Err(SnapshotError::ChecksumMismatch { .. })));
        // Another file is told apart, and anything else is no snapshot.
        let other = SnapshotWriter::create(&dir.path().join("o.snap"), header()).unwrap();
        let other = other.finish().unwrap();
        assert_ne!(SnapshotInfo::read(&other.path).unwrap().checksum_hex, info.checksum_hex);
        std::fs::write(dir.path().join("x"), b"not a snapshot").unwrap();
        let err = SnapshotInfo::read(&dir.path().join("x")).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_NOT_A_SNAPSHOT", "{err}");
    }

    #[test]
    fn slice_varints_of_one_byte_many_bytes_cut_or_too_long() {
        let read = |bytes: &[u8]| {
            let mut r = SliceReader { buf: bytes, at: 0 };
            (r.varint(), r.at)
        };
        assert_eq!(read(&[0x05, 0xff]), (Some(Ok(5)), 1));
        assert_eq!(read(&[0x80, 0x01]), (Some(Ok(128)), 2));
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(read(&max), (Some(Ok(u64::MAX)), 10));
        assert_eq!(read(&[0x80, 0x80]).0, None, "cut short");
        assert_eq!(read(&[]).0, None);
        assert_eq!(read(&[0x80; 11]).0, Some(Err("varint too long".to_string())));
    }

    #[test]
    fn the_same_objects_make_the_same_file() {
        // Enough entries for several buffers handed to the frame writer's thread.
        let objs: Vec<_> = (0..120_000).map(|i| obj(&format!("k/{i:06}"), i)).collect();
        let files: Vec<Vec<u8>> = (0..2)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::read(write(dir.path(), &objs).path).unwrap()
            })
            .collect();
        let mut raw = Vec::new();
        objs.iter().for_each(|o| encode_entry(&mut raw, "", o, 0));
        assert!(raw.len() > 2 * STAGED_BYTES, "{}", raw.len());
        assert!(files[0] == files[1], "two writes of the same objects differ");
        let dir = tempfile::tempdir().unwrap();
        let info = write(dir.path(), &objs);
        let back: Vec<_> = SnapshotReader::open(&info.path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, objs);
    }

    #[test]
    fn unsorted_push_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SnapshotWriter::create(&dir.path().join("s.snap"), header()).unwrap();
        w.push(&obj("b", 1)).unwrap();
        let err = w.push(&obj("a", 1)).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_UNSORTED");
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn truncation_is_a_typed_error_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let objs: Vec<_> = (0..200).map(|i| obj(&format!("k/{i:05}"), i)).collect();
        let info = write(dir.path(), &objs);
        let bytes = std::fs::read(&info.path).unwrap();
        let cut = dir.path().join("cut.snap");
        for len in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let err = SnapshotReader::open(&cut).unwrap_err();
            assert!(
                matches!(err.code(), "SNAPSHOT_NOT_A_SNAPSHOT" | "SNAPSHOT_CHECKSUM_MISMATCH"),
                "len {len}: {err}"
            );
            assert!(err.to_string().contains("cut.snap"), "{err}");
        }
    }

    #[test]
    fn wrong_version_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let info = write(dir.path(), &[obj("a", 1)]);
        let mut bytes = std::fs::read(&info.path).unwrap();
        bytes[8] = 9;
        std::fs::write(&info.path, &bytes).unwrap();
        assert_eq!(SnapshotReader::open(&info.path).unwrap_err().code(), "SNAPSHOT_UNSUPPORTED_VERSION");
    }

    #[test]
    fn stored_frames_decode_to_their_bytes() {
        for len in
            [0, 1, MAX_ZSTD_BLOCK - 1, MAX_ZSTD_BLOCK, MAX_ZSTD_BLOCK + 1, 3 * MAX_ZSTD_BLOCK, STAGED_BYTES]
        {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut frame = Vec::new();
            write_stored_frame(&mut frame, &data).unwrap();
            // Stored: a 9-byte frame header and a 3-byte header per block, nothing else.
            assert_eq!(frame.len(), 9 + 3 * len.div_ceil(MAX_ZSTD_BLOCK).max(1) + len, "len {len}");
            assert_eq!(zstd::decode_all(&frame[..]).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn an_empty_snapshot_reads_back_empty() {
        let dir = tempfile::tempdir().unwrap();
        let info = write(dir.path(), &[]);
        let mut reader = SnapshotReader::open(&info.path).unwrap();
        assert_eq!(reader.info().object_count, 0);
        assert!(reader.next().is_none());
    }

    /// The file at `path` as format version 2 wrote it: the same bytes as version 3's, sealed
    /// with SHA-256.
    fn reseal_as_version_2(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        let count = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
        let mut hasher = ContentHasher::new(2);
        hasher.update(&bytes[52..]);
        bytes[20..52].copy_from_slice(&hasher.seal(count));
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn version_2_files_sealed_with_sha256_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let objs = mixed_objects();
        let info = write(dir.path(), &objs);
        assert_eq!(info.checksum_hex.len(), 32, "an XXH3-128");
        reseal_as_version_2(&info.path);
        let reader = SnapshotReader::open(&info.path).unwrap();
        assert_eq!(reader.info().checksum_hex.len(), 64, "a SHA-256");
        let back: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(back, objs);
        // Checked by SHA-256: a version 2 file with a damaged byte is refused.
        let mut bytes = std::fs::read(&info.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&info.path, &bytes).unwrap();
        assert_eq!(SnapshotReader::open(&info.path).unwrap_err().code(), "SNAPSHOT_CHECKSUM_MISMATCH");
    }

    /// One entry as format version 1 wrote it: ETag and storage class as length-prefixed text.
    fn encode_entry_v1(out: &mut Vec<u8>, prev_key: &str, obj: &SnapshotObject) {
        let (mut v2, mut rest) = (Vec::new(), Vec::new());
        encode_entry(&mut v2, prev_key, obj, 0);
        // Flags, the key and size are as in version 2; the fields after them are rewritten.
        let mut r = SliceReader { buf: &v2, at: 1 };
        r.varint().unwrap().unwrap();
        r.field().unwrap().unwrap();
        if obj.size.is_some() {
            r.varint().unwrap().unwrap();
        }
        let head = &v2[..r.at];
        if let Some(etag) = &obj.etag {
            put_bytes(&mut rest, etag.as_bytes());
        }
        if let Some(ms) = obj.last_modified_ms {
            put_varint(&mut rest, ((ms << 1) ^ (ms >> 63)) as u64);
        }
        if let Some(class) = &obj.storage_class {
            put_bytes(&mut rest, class.as_bytes());
        }
        if let Some(status) = &obj.encryption_status {
            rest.push(encryption_code(status));
            if let EncryptionStatus::Other(text) = status {
                put_bytes(&mut rest, text.as_bytes());
            }
        }
        out.extend_from_slice(head);
        out.extend_from_slice(&rest);
    }

    /// A snapshot file of format `version` at `path`: `count` objects, the test header and
    /// `frames` (the body's frames as they are to be stored), sealed as that version seals.
    fn write_sealed(path: &Path, version: u32, count: u64, frames: &[u8]) {
        let header_json = serde_json::to_vec(&header()).unwrap();
        let header_len = (header_json.len() as u32).to_le_bytes();
        let mut hasher = ContentHasher::new(version);
        hasher.update(&header_len);
        hasher.update(&header_json);
        hasher.update(frames);
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&version.to_le_bytes());
        file.extend_from_slice(&count.to_le_bytes());
        file.extend_from_slice(&hasher.seal(count));
        file.extend_from_slice(&header_len);
        file.extend_from_slice(&header_json);
        file.extend_from_slice(frames);
        std::fs::write(path, file).unwrap();
    }

    /// A whole version 1 snapshot file of `objs`, sealed as version 1 sealed them.
    fn write_v1(path: &Path, objs: &[SnapshotObject]) {
        let mut body = Vec::new();
        let mut prev = String::new();
        for o in objs {
            encode_entry_v1(&mut body, &prev, o);
            prev = o.key.clone();
        }
        write_sealed(path, 1, objs.len() as u64, &zstd::encode_all(&body[..], 1).unwrap());
    }

    /// ETags of every kind: an MD5's hex (stored as bytes), its capitals and a multipart ETag
    /// (text), and storage classes known and not.
    fn mixed_objects() -> Vec<SnapshotObject> {
        let etags =
            ["0123456789abcdef0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF", "d41d8cd98f00-3", ""];
        let classes = ["STANDARD", "GLACIER_IR", "EXPRESS_ONEZONE", "FUTURE_CLASS", ""];
        (0..20)
            .map(|i| SnapshotObject {
                etag: Some(etags[i % etags.len()].to_string()),
                storage_class: Some(classes[i % classes.len()].to_string()),
                ..obj(&format!("k/{i:02}"), i as u64)
            })
            .collect()
    }

    #[test]
    fn version_1_files_are_read_as_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let objs = mixed_objects();
        let path = dir.path().join("v1.snap");
        write_v1(&path, &objs);
        let back: Vec<_> = SnapshotReader::open(&path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(back, objs);
        // As flat entries they are written again in this version's encoding: byte for byte
        // what this version writes for the same objects.
        let mut reader = SnapshotReader::open(&path).unwrap();
        let (mut out, mut expected, mut read) = (Vec::new(), Vec::new(), 0);
        while let Some(entry) = reader.next_flat(&mut out).unwrap() {
            let bytes = &out[entry.start..entry.start + entry.end as usize];
            assert_eq!(decode_flat(bytes).unwrap().to_object(), objs[read]);
            encode_entry(&mut expected, "", &objs[read], 0);
            read += 1;
        }
        assert_eq!((read, out), (objs.len(), expected));
    }

    #[test]
    fn a_version_1_previous_snapshot_diffs_as_unchanged() {
        use crate::inventory::snapshot::test_support::OwnedEntry;
        use crate::inventory::snapshot::{DiffEntry, SnapshotBuilder};
        let dir = tempfile::tempdir().unwrap();
        let objs = mixed_objects();
        let old = dir.path().join("v1.snap");
        write_v1(&old, &objs);
        let mut builder = SnapshotBuilder::new(header(), dir.path(), 7);
        for o in objs.iter().rev() {
            builder.push(&crate::inventory::snapshot::test_support::record_of(o)).unwrap();
        }
        let mut entries = Vec::new();
        let new = dir.path().join("v2.snap");
        let old = SnapshotReader::open(&old).unwrap();
        builder
            .finish_with_diff(&new, Some(old), |e: DiffEntry<'_>| {
                entries.push(OwnedEntry::from(e));
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        let unchanged: Vec<_> = objs.iter().map(OwnedEntry::unchanged).collect();
        assert_eq!(entries, unchanged);
        let written: Vec<_> = SnapshotReader::open(&new).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(written, objs);
    }

    #[test]
    fn md5_etags_and_known_classes_are_stored_coded() {
        let text = SnapshotObject {
            etag: Some("d41d8cd98f00-3".into()),
            storage_class: Some("FUTURE_CLASS".into()),
            ..obj("k", 1)
        };
        let coded = SnapshotObject {
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            storage_class: Some("INTELLIGENT_TIERING".into()),
            ..obj("k", 1)
        };
        let encoded = |o: &SnapshotObject| {
            let mut out = Vec::new();
            encode_entry(&mut out, "", o, 0);
            out
        };
        let (text_len, coded_len) = (encoded(&text).len(), encoded(&coded).len());
        // 1 + 14 and 1 + 12 bytes of text against 1 + 16 bytes and a 1-byte code.
        assert_eq!(text_len - coded_len, (15 + 13) - (17 + 1));
        for o in [&text, &coded] {
            let bytes = encoded(o);
            let view = decode_flat(&bytes).unwrap();
            assert_eq!(view.to_object(), *o);
            assert_eq!(view, o.view());
        }
        assert_eq!(
            EtagView::of("d41d8cd98f00b204e9800998ecf8427e").to_string(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert!(matches!(EtagView::of("D41D8CD98F00B204E9800998ECF8427E"), EtagView::Text(_)));
        assert!(matches!(EtagView::of("d41d8cd98f00b204e9800998ecf8427"), EtagView::Text(_)));
        assert!(matches!(EtagView::of("g41d8cd98f00b204e9800998ecf8427e"), EtagView::Text(_)));
    }

    #[test]
    fn bad_coded_fields_are_errors() {
        // flags: size, etag, class; shared 0; key "k".
        let head = [F_ETAG | F_CLASS, 0, 1, b'k'];
        let cases: &[(&[u8], &str)] = &[
            // An ETag tagged as 15 binary bytes.
            (&[15 << 1 | 1], "binary ETag of 15"),
            // A storage class code past the table (after an empty text ETag).
            (&[0, 60 << 1 | 1], "unknown storage class code 60"),
        ];
        for (rest, message) in cases {
            let entry = [&head[..], rest].concat();
            let err = decode_flat(&entry).unwrap_err();
            assert!(err.contains(message), "{err}");
            let err = decode_unchanged(&entry).unwrap_err();
            assert!(err.contains(message), "{err}");
            let mut decoder = EntryDecoder::new(BufReader::new(&entry[..]));
            let err = decoder.next_flat(&mut Vec::new()).unwrap_err();
            assert!(err.contains(message), "{err}");
        }
    }

    /// A version 3 file of `count` entries whose body is `body` as given (sealed as the writer
    /// seals), for bodies the writer refuses to write, in frames of `frame_len` bytes (small
    /// ones: entries straddle the reads, and take the decoder's slower path).
    fn write_raw_v3(path: &Path, count: u64, body: &[u8], frame_len: usize) {
        let mut frames = Vec::new();
        for chunk in body.chunks(frame_len) {
            write_stored_frame(&mut frames, chunk).unwrap();
        }
        write_sealed(path, 3, count, &frames);
    }

    proptest! {
        /// Entries read as flat entries are refused at the first key that does not sort after
        /// the one before it, as read as objects; keys whose shared prefix was written shorter
        /// than it could be are read and ordered like any other.
        #[test]
        fn flat_entries_are_refused_at_the_first_key_out_of_order(
            keys in proptest::collection::vec("[ab]{0,3}(/[ab]{0,9})?", 1..30),
            cuts in proptest::collection::vec(0usize..12, 30),
            frame_len in prop_oneof![Just(7usize), Just(STAGED_BYTES)],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("raw.snap");
            let mut body = Vec::new();
            for (i, key) in keys.iter().enumerate() {
                // Encoded against a cut of the previous key: a shared prefix at most as long
                // as the one the two keys have.
                let prev = if i == 0 { "" } else { &keys[i - 1][..cuts[i].min(keys[i - 1].len())] };
                encode_entry(&mut body, prev, &obj(key, i as u64), 0);
            }
            write_raw_v3(&path, keys.len() as u64, &body, frame_len);
            let first_out_of_order = (1..keys.len()).find(|&i| keys[i] <= keys[i - 1]);
            let mut reader = SnapshotReader::open(&path).unwrap();
            let (mut out, mut read) = (Vec::new(), 0);
            let outcome = loop {
                match reader.next_flat(&mut out) {
                    Ok(Some(entry)) => {
                        let key = &out[entry.start + entry.key_start as usize..entry.start + entry.key_end as usize];
                        prop_assert_eq!(key, keys[read].as_bytes());
                        read += 1;
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e.code()),
                }
            };
            match first_out_of_order {
                Some(i) => prop_assert_eq!((read, outcome), (i, Some("SNAPSHOT_UNSORTED"))),
                None => prop_assert_eq!((read, outcome), (keys.len(), None)),
            }
            let objects: Vec<_> = SnapshotReader::open(&path).unwrap().collect();
            let refused = objects.iter().position(|o| o.is_err());
            prop_assert_eq!(refused, first_out_of_order);
        }
    }

    proptest! {
        /// An ETag's bytes are those of its digits read one by one, and only 32 lowercase hex
        /// digits have bytes: every byte value is tried in every place (among valid digits, so
        /// that the one bad byte decides).
        #[test]
        fn an_etag_has_bytes_exactly_when_it_is_32_lowercase_hex_digits(
            digits in proptest::collection::vec(prop_oneof![0x30u8..=0x39, 0x61u8..=0x66], 32),
            // The neighbours of the digit ranges, and anything.
            bad in prop_oneof![proptest::sample::select(b"/:`gAFG".to_vec()), any::<u8>()],
            at in 0usize..33,
        ) {
            let one_by_one = |text: &[u8]| -> Option<[u8; 16]> {
                let value = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                let mut bytes = [0u8; 16];
                if text.len() != 32 {
                    return None;
                }
                for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
                    *byte = value(pair[0])? << 4 | value(pair[1])?;
                }
                Some(bytes)
            };
            let mut text = digits.clone();
            if at < 32 {
                text[at] = bad;
            } else {
                text.push(bad);
            }
            // Three digits made one character whose bytes, their high bits aside, are digits
            // ('\u{1c30}': e1 b0 b0).
            let mut wide = digits.clone();
            if at + 3 <= 32 {
                wide.splice(at..at + 3, "\u{1c30}".bytes());
            }
            for text in [&digits, &text, &wide] {
                if let Ok(etag) = std::str::from_utf8(text) {
                    prop_assert_eq!(md5_bytes(etag), one_by_one(text), "{}", etag);
                }
            }
            prop_assert!(md5_bytes(std::str::from_utf8(&digits).unwrap()).is_some());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The chunked prefix count equals a byte-by-byte one, from any point the two share.
        #[test]
        fn common_prefix_counts_bytes_as_one_by_one_does(
            a in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8)], 0..40),
            b in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8)], 0..40),
            prefix in proptest::collection::vec(any::<u8>(), 0..30),
            from in any::<prop::sample::Index>(),
        ) {
            let (a, b) = ([prefix.clone(), a].concat(), [prefix, b].concat());
            let expected = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            let from = from.index(expected + 1);
            prop_assert_eq!(common_prefix_from(&a, &b, from), expected);
            prop_assert_eq!(common_prefix(&a, &b), expected);
        }

        /// Flat entries read back equal the objects written, whether an entry lies whole in the
        /// read buffer or straddles its end (every buffer size from 1 byte); a stream cut
        /// anywhere is an error, never a short success.
        #[test]
        fn flat_entries_read_the_same_through_any_buffer(
            objs in crate::inventory::snapshot::test_support::arb_objects(12),
            cut in any::<prop::sample::Index>(),
        ) {
            let (mut stream, mut ends) = (Vec::new(), vec![0]);
            let mut prev = String::new();
            for o in &objs {
                encode_entry(&mut stream, &prev, o, 0);
                ends.push(stream.len());
                prev = o.key.clone();
            }
            let read = |bytes: &[u8], capacity: usize| -> Result<Vec<SnapshotObject>, String> {
                let mut decoder = EntryDecoder::new(BufReader::with_capacity(capacity, bytes));
                let (mut out, mut back) = (Vec::new(), Vec::new());
                while let Some(e) = decoder.next_flat(&mut out)? {
                    let entry = &out[e.start..e.start + e.end as usize];
                    let object = decode_flat(entry)?.to_object();
                    // An unchanged step's decode reads the same key, size and status.
                    assert_eq!(decode_unchanged(entry)?, UnchangedObject::from(&object));
                    back.push(object);
                }
                Ok(back)
            };
            for capacity in (1..48).chain([DECODE_BUFFER]) {
                prop_assert_eq!(&read(&stream, capacity).unwrap(), &objs, "capacity {}", capacity);
            }
            if !stream.is_empty() {
                let at = cut.index(stream.len());
                match (read(&stream[..at], 5), ends.iter().position(|end| *end == at)) {
                    // Cut between entries: the entries before the cut, as a clean end.
                    (Ok(back), Some(n)) => prop_assert_eq!(&back[..], &objs[..n]),
                    (Err(_), None) => {}
                    (outcome, boundary) => prop_assert!(false, "cut at {} ({:?}): {:?}", at, boundary, outcome),
                }
            }
        }

        /// Any single bit flip anywhere in the file is refused at open, before any object is
        /// read.
        #[test]
        fn bit_flip_is_detected(n in 1usize..40, pos_seed in any::<u64>(), bit in 0u8..8) {
            let dir = tempfile::tempdir().unwrap();
            let objs: Vec<_> = (0..n).map(|i| obj(&format!("p/{i:03} x+%\u{e9}"), i as u64)).collect();
            let info = write(dir.path(), &objs);
            let mut bytes = std::fs::read(&info.path).unwrap();
            let pos = (pos_seed % bytes.len() as u64) as usize;
            bytes[pos] ^= 1 << bit;
            std::fs::write(&info.path, &bytes).unwrap();
            let err = SnapshotReader::open(&info.path).err();
            prop_assert!(err.is_some(), "flip at {} bit {} went unnoticed", pos, bit);
        }
    }
}
