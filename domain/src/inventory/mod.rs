//! Reading S3 Inventory reports: report locations, `manifest.json` and its checksum, and the
//! CSV and Parquet data files, reduced to current objects.
//!
//! No I/O: everything parses bytes or an `impl Read` the caller opened, so the connector's
//! incremental extraction and the manifest-verifying Lambda share it. ORC data files are not
//! read here (their manifest schema is parsed).
//!
//! Typical flow: [`location::complete_reports`] on a destination listing → fetch the newest
//! report's two files → [`manifest::verify_checksum`] → [`Manifest::parse`] → for each
//! [`ManifestFile`], [`csv::read_verified_csv_gz`] or [`parquet::read_parquet`] (after checking
//! [`md5_reader::md5_hex`] of the bytes) → [`reduce::current_objects`].

pub mod columns;
pub mod csv;
pub mod location;
pub mod manifest;
pub mod md5_reader;
pub mod parquet;
pub mod record;
pub mod reduce;

pub use columns::InventoryColumn;
pub use location::{InventoryKey, LocationError, ReportFile, ReportLocation};
pub use manifest::{InventoryFormat, Manifest, ManifestError, ManifestFile};
pub use md5_reader::{ChecksumMismatch, Md5Reader};
pub use record::{EncryptionStatus, InventoryRecord, RowError};
