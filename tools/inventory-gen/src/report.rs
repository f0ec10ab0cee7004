//! Writing one report of the pair in AWS's layout and formats (reference §1).

use std::io::{self, Write};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use flate2::{Compression, write::GzEncoder};
use md5::{Digest, Md5};
use parquet::basic::Compression as ParquetCompression;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::model::{Day, Universe, VersionRow};

/// Data file format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// Gzip-compressed CSV, no header, URL-encoded keys.
    Csv,
    /// Parquet (snappy), snake_case columns.
    Parquet,
    /// ORC (zlib), snake_case columns.
    Orc,
}

impl ReportFormat {
    /// `fileFormat` in the manifest.
    pub fn manifest_name(self) -> &'static str {
        match self {
            ReportFormat::Csv => "CSV",
            ReportFormat::Parquet => "Parquet",
            ReportFormat::Orc => "ORC",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            ReportFormat::Csv => "csv.gz",
            ReportFormat::Parquet => "parquet",
            ReportFormat::Orc => "orc",
        }
    }
}

/// Everything that shapes a report pair besides the universe.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// The objects.
    pub universe: Universe,
    /// Data file format.
    pub format: ReportFormat,
    /// Number of data files per report.
    pub files: usize,
    /// All-versions report (`VersionId`, `IsLatest`, `IsDeleteMarker`, noncurrent rows).
    pub all_versions: bool,
    /// Destination bucket name (the manifest names it as an ARN).
    pub destination_bucket: String,
    /// Destination prefix (no trailing slash; empty for none).
    pub prefix: String,
    /// Inventory configuration id.
    pub configuration_id: String,
    /// Rows per Parquet row group / ORC batch.
    pub rows_per_group: usize,
}

/// What one written report is.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// Report folder timestamp, `YYYY-MM-DDTHH-MMZ`.
    pub timestamp: String,
    /// Key of `manifest.json`.
    pub manifest_key: String,
    /// Key of `manifest.checksum`.
    pub checksum_key: String,
    /// Data rows written (all versions included).
    pub rows: u64,
    /// Data file keys with their sizes.
    pub data_files: Vec<(String, u64)>,
}

/// Where generated files go: called once per file with its key in the destination bucket.
pub type Sink<'a> = dyn Fn(&str, Vec<u8>) -> io::Result<()> + Sync + 'a;

/// The rows of one data file.
type Rows<'a> = Box<dyn Iterator<Item = VersionRow> + 'a>;
/// The rows of data file `n`.
type RowsOf<'a> = dyn Fn(usize) -> Rows<'a> + Sync + 'a;

const COLUMNS_CURRENT: &[(&str, &str)] = &[
    ("Bucket", "bucket"),
    ("Key", "key"),
    ("Size", "size"),
    ("LastModifiedDate", "last_modified_date"),
    ("ETag", "e_tag"),
    ("StorageClass", "storage_class"),
    ("EncryptionStatus", "encryption_status"),
    ("BucketKeyStatus", "bucket_key_status"),
];
const COLUMNS_VERSIONS: &[(&str, &str)] = &[
    ("Bucket", "bucket"),
    ("Key", "key"),
    ("VersionId", "version_id"),
    ("IsLatest", "is_latest"),
    ("IsDeleteMarker", "is_delete_marker"),
    ("Size", "size"),
    ("LastModifiedDate", "last_modified_date"),
    ("ETag", "e_tag"),
    ("StorageClass", "storage_class"),
    ("EncryptionStatus", "encryption_status"),
    ("BucketKeyStatus", "bucket_key_status"),
];

impl ReportSpec {
    fn columns(&self) -> &'static [(&'static str, &'static str)] {
        if self.all_versions { COLUMNS_VERSIONS } else { COLUMNS_CURRENT }
    }

    /// `<prefix>/<source>/<config-id>/`.
    fn config_folder(&self) -> String {
        let base = format!("{}/{}/", self.universe.source_bucket, self.configuration_id);
        if self.prefix.is_empty() { base } else { format!("{}/{base}", self.prefix.trim_end_matches('/')) }
    }

    /// Timestamp folder and creation time of a day's report.
    pub fn timestamp(day: Day) -> (&'static str, i64) {
        match day {
            Day::One => ("2024-01-02T00-00Z", 1_704_153_600_000),
            Day::Two => ("2024-01-03T00-00Z", 1_704_240_000_000),
        }
    }

    /// `fileSchema` as AWS writes it for the format.
    pub fn file_schema(&self) -> String {
        let cols = self.columns();
        match self.format {
            ReportFormat::Csv => cols.iter().map(|(pascal, _)| *pascal).collect::<Vec<_>>().join(", "),
            ReportFormat::Orc => format!(
                "struct<{}>",
                cols.iter()
                    .map(|(_, snake)| format!("{snake}:{}", orc_type(snake)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ReportFormat::Parquet => format!(
                "message s3.inventory {{ {} }}",
                cols.iter().map(|(_, snake)| parquet_field(snake)).collect::<Vec<_>>().join(" ")
            ),
        }
    }

    /// Rows of data file `file` of `day`, in generation order.
    fn rows(&self, day: Day, file: usize) -> impl Iterator<Item = VersionRow> + '_ {
        let files = self.files.max(1) as u64;
        self.universe
            .index_range()
            .filter(move |i| crate::model::file_of(self.universe.seed, *i, files) == file as u64)
            .flat_map(move |i| {
                let rows = self.universe.versions(i, day);
                let take = if self.all_versions { rows.len() } else { usize::from(!rows.is_empty()) };
                rows.into_iter().take(take).filter(|r| self.all_versions || !r.is_delete_marker)
            })
    }

    /// Writes the data files, then `manifest.json`, then `manifest.checksum` (the order AWS
    /// completes a report in), data files in parallel on `threads` threads.
    pub fn write(&self, day: Day, threads: usize, sink: &Sink<'_>) -> io::Result<ReportSummary> {
        let (timestamp, created_ms) = Self::timestamp(day);
        let day_tag = match day {
            Day::One => "d1",
            Day::Two => "d2",
        };
        let prefix = format!("{day_tag}-{:08x}", self.universe.seed as u32);
        self.write_files(timestamp, created_ms, &prefix, threads, sink, &|file| {
            Box::new(self.rows(day, file))
        })
    }

    /// Writes a report of the given rows instead of the universe's (tests that describe real
    /// objects: a bucket's listing, say), in folder `timestamp` (`YYYY-MM-DDTHH-MMZ`) with
    /// `creationTimestamp` `created_ms`. Rows are dealt round-robin over `self.files` data
    /// files and written as given: all-versions rows (noncurrent versions, delete markers) only
    /// make sense with `all_versions`. `universe.source_bucket` names the `Bucket` column; the
    /// universe's other fields are not used.
    pub fn write_rows(
        &self,
        timestamp: &str,
        created_ms: i64,
        rows: &[VersionRow],
        sink: &Sink<'_>,
    ) -> io::Result<ReportSummary> {
        let files = self.files.max(1);
        self.write_files(timestamp, created_ms, timestamp, 1, sink, &|file| {
            Box::new(rows.iter().skip(file).step_by(files).cloned())
        })
    }

    fn write_files(
        &self,
        timestamp: &str,
        created_ms: i64,
        data_prefix: &str,
        threads: usize,
        sink: &Sink<'_>,
        rows_of: &RowsOf<'_>,
    ) -> io::Result<ReportSummary> {
        let folder = self.config_folder();
        let files = self.files.max(1);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..threads.max(1).min(files) {
                scope.spawn(|| {
                    loop {
                        let f = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if f >= files {
                            break;
                        }
                        let key = format!("{folder}data/{data_prefix}-{f:04}.{}", self.format.extension());
                        let outcome = self.encode(rows_of(f)).and_then(|(bytes, rows)| {
                            let md5 = hex(&Md5::digest(&bytes));
                            let size = bytes.len() as u64;
                            sink(&key, bytes)?;
                            Ok((f, key.clone(), size, md5, rows))
                        });
                        results.lock().unwrap_or_else(|e| e.into_inner()).push(outcome);
                    }
                });
            }
        });
        let mut written = results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .collect::<io::Result<Vec<_>>>()?;
        written.sort_by_key(|w| w.0);
        let manifest = serde_json::json!({
            "sourceBucket": self.universe.source_bucket,
            "destinationBucket": format!("arn:aws:s3:::{}", self.destination_bucket),
            "version": "2016-11-30",
            "creationTimestamp": created_ms.to_string(),
            "fileFormat": self.format.manifest_name(),
            "fileSchema": self.file_schema(),
            "files": written.iter().map(|(_, key, size, md5, _)| serde_json::json!({
                "key": key, "size": size, "MD5checksum": md5,
            })).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(io::Error::other)?;
        let checksum = format!("{}\n", hex(&Md5::digest(&manifest_bytes)));
        let manifest_key = format!("{folder}{timestamp}/manifest.json");
        let checksum_key = format!("{folder}{timestamp}/manifest.checksum");
        sink(&manifest_key, manifest_bytes)?;
        sink(&checksum_key, checksum.into_bytes())?;
        Ok(ReportSummary {
            timestamp: timestamp.to_string(),
            manifest_key,
            checksum_key,
            rows: written.iter().map(|w| w.4).sum(),
            data_files: written.into_iter().map(|(_, key, size, _, _)| (key, size)).collect(),
        })
    }

    fn encode(&self, rows: Rows<'_>) -> io::Result<(Vec<u8>, u64)> {
        match self.format {
            ReportFormat::Csv => self.encode_csv(rows),
            ReportFormat::Parquet => self.encode_parquet(rows),
            ReportFormat::Orc => self.encode_orc(rows),
        }
    }

    fn encode_csv(&self, rows_in: Rows<'_>) -> io::Result<(Vec<u8>, u64)> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        let mut line = String::new();
        let mut rows = 0u64;
        for row in rows_in {
            line.clear();
            for (n, (pascal, _)) in self.columns().iter().enumerate() {
                if n > 0 {
                    line.push(',');
                }
                line.push('"');
                line.push_str(&csv_value(&self.universe.source_bucket, &row, pascal));
                line.push('"');
            }
            line.push('\n');
            gz.write_all(line.as_bytes())?;
            rows += 1;
        }
        Ok((gz.finish()?, rows))
    }

    fn encode_parquet(&self, rows_in: Rows<'_>) -> io::Result<(Vec<u8>, u64)> {
        let schema = Arc::new(parse_message_type(&self.file_schema()).map_err(io::Error::other)?);
        let props = Arc::new(WriterProperties::builder().set_compression(ParquetCompression::SNAPPY).build());
        let mut writer = SerializedFileWriter::new(Vec::new(), schema, props).map_err(io::Error::other)?;
        let mut rows = 0u64;
        let mut group: Vec<VersionRow> = Vec::with_capacity(self.rows_per_group);
        let mut flush = |group: &mut Vec<VersionRow>| -> io::Result<()> {
            if group.is_empty() {
                return Ok(());
            }
            let mut rg = writer.next_row_group().map_err(io::Error::other)?;
            for (_, snake) in self.columns() {
                let mut col =
                    rg.next_column().map_err(io::Error::other)?.ok_or_else(|| io::Error::other("column"))?;
                let required = matches!(*snake, "bucket" | "key");
                match *snake {
                    "is_latest" | "is_delete_marker" => {
                        let values: Vec<bool> = group
                            .iter()
                            .map(|r| if *snake == "is_latest" { r.is_latest } else { r.is_delete_marker })
                            .collect();
                        col.typed::<BoolType>().write_batch(&values, Some(&vec![1; values.len()]), None)
                    }
                    "size" | "last_modified_date" => {
                        let (values, defs) = ints(group, snake);
                        col.typed::<Int64Type>().write_batch(&values, Some(&defs), None)
                    }
                    _ => {
                        let mut values = Vec::with_capacity(group.len());
                        let mut defs = Vec::with_capacity(group.len());
                        for r in group.iter() {
                            match text_value(&self.universe.source_bucket, r, snake) {
                                Some(v) => {
                                    values.push(ByteArray::from(v.into_bytes()));
                                    defs.push(1);
                                }
                                None => defs.push(0),
                            }
                        }
                        let defs = if required { None } else { Some(&defs[..]) };
                        col.typed::<ByteArrayType>().write_batch(&values, defs, None)
                    }
                }
                .map_err(io::Error::other)?;
                col.close().map_err(io::Error::other)?;
            }
            rg.close().map_err(io::Error::other)?;
            group.clear();
            Ok(())
        };
        for row in rows_in {
            group.push(row);
            rows += 1;
            if group.len() >= self.rows_per_group {
                flush(&mut group)?;
            }
        }
        flush(&mut group)?;
        let bytes = writer.into_inner().map_err(io::Error::other)?;
        Ok((bytes, rows))
    }

    fn encode_orc(&self, rows_in: Rows<'_>) -> io::Result<(Vec<u8>, u64)> {
        let fields: Vec<Field> = self
            .columns()
            .iter()
            .map(|(_, snake)| {
                let ty = match *snake {
                    "is_latest" | "is_delete_marker" => DataType::Boolean,
                    "size" => DataType::Int64,
                    "last_modified_date" => DataType::Timestamp(TimeUnit::Millisecond, None),
                    _ => DataType::Utf8,
                };
                Field::new(*snake, ty, !matches!(*snake, "bucket" | "key"))
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let mut out = Vec::new();
        let mut writer = orc_rust::ArrowWriterBuilder::new(&mut out, schema.clone())
            .with_compression(orc_rust::compression::CompressionType::Zlib)
            .try_build()
            .map_err(io::Error::other)?;
        let mut rows = 0u64;
        let mut group: Vec<VersionRow> = Vec::with_capacity(self.rows_per_group);
        let mut flush = |group: &mut Vec<VersionRow>| -> io::Result<()> {
            if group.is_empty() {
                return Ok(());
            }
            let arrays: Vec<ArrayRef> = self
                .columns()
                .iter()
                .map(|(_, snake)| -> ArrayRef {
                    match *snake {
                        "is_latest" | "is_delete_marker" => {
                            let mut b = BooleanBuilder::new();
                            for r in group.iter() {
                                b.append_value(if *snake == "is_latest" {
                                    r.is_latest
                                } else {
                                    r.is_delete_marker
                                });
                            }
                            Arc::new(b.finish())
                        }
                        "size" => {
                            let mut b = Int64Builder::new();
                            let (values, defs) = ints(group, snake);
                            let mut v = values.into_iter();
                            for d in defs {
                                b.append_option((d == 1).then(|| v.next()).flatten());
                            }
                            Arc::new(b.finish())
                        }
                        "last_modified_date" => {
                            let mut b = TimestampMillisecondBuilder::new();
                            for r in group.iter() {
                                b.append_value(r.state.last_modified_ms);
                            }
                            Arc::new(b.finish())
                        }
                        _ => {
                            let mut b = StringBuilder::new();
                            for r in group.iter() {
                                b.append_option(text_value(&self.universe.source_bucket, r, snake));
                            }
                            Arc::new(b.finish())
                        }
                    }
                })
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(io::Error::other)?;
            writer.write(&batch).map_err(io::Error::other)?;
            group.clear();
            Ok(())
        };
        for row in rows_in {
            group.push(row);
            rows += 1;
            if group.len() >= self.rows_per_group {
                flush(&mut group)?;
            }
        }
        flush(&mut group)?;
        writer.close().map_err(io::Error::other)?;
        Ok((out, rows))
    }
}

fn orc_type(snake: &str) -> &'static str {
    match snake {
        "is_latest" | "is_delete_marker" => "boolean",
        "size" => "bigint",
        "last_modified_date" => "timestamp",
        _ => "string",
    }
}

fn parquet_field(snake: &str) -> String {
    match snake {
        "bucket" | "key" => format!("required binary {snake} (UTF8);"),
        "is_latest" | "is_delete_marker" => format!("optional boolean {snake};"),
        "size" => "optional int64 size;".into(),
        "last_modified_date" => "optional int64 last_modified_date (TIMESTAMP_MILLIS);".into(),
        _ => format!("optional binary {snake} (UTF8);"),
    }
}

/// Values and definition levels of an int64 column (delete markers have no size).
fn ints(group: &[VersionRow], snake: &str) -> (Vec<i64>, Vec<i16>) {
    let mut values = Vec::with_capacity(group.len());
    let mut defs = Vec::with_capacity(group.len());
    for r in group {
        let v = match snake {
            "size" if r.is_delete_marker => None,
            "size" => Some(r.state.size as i64),
            _ => Some(r.state.last_modified_ms),
        };
        if let Some(v) = v {
            values.push(v);
            defs.push(1);
        } else {
            defs.push(0);
        }
    }
    (values, defs)
}

/// A text column's value, unencoded; `None` where AWS leaves the field empty (delete markers).
fn text_value(bucket: &str, row: &VersionRow, snake: &str) -> Option<String> {
    let s = &row.state;
    let marker = row.is_delete_marker;
    match snake {
        "bucket" => Some(bucket.to_string()),
        "key" => Some(s.key.clone()),
        "version_id" => Some(s.version_id.clone()),
        "e_tag" if !marker => Some(s.etag.clone()),
        "storage_class" if !marker => Some(s.storage_class.to_string()),
        "encryption_status" if !marker => Some(s.encryption_status.to_string()),
        "bucket_key_status" if !marker => Some(s.bucket_key_status.to_string()),
        _ => None,
    }
}

fn csv_value(bucket: &str, row: &VersionRow, pascal: &str) -> String {
    let s = &row.state;
    match pascal {
        "Key" => form_url_encode(&s.key),
        "IsLatest" => row.is_latest.to_string(),
        "IsDeleteMarker" => row.is_delete_marker.to_string(),
        "Size" if row.is_delete_marker => String::new(),
        "Size" => s.size.to_string(),
        "LastModifiedDate" => iso_millis(s.last_modified_ms),
        other => {
            let snake = COLUMNS_VERSIONS.iter().find(|(p, _)| *p == other).map(|(_, s)| *s).unwrap_or("");
            text_value(bucket, row, snake).unwrap_or_default()
        }
    }
}

/// Form URL encoding as S3 Inventory writes keys: unreserved bytes as they are, space as `+`,
/// everything else `%XX` (so `/` too, and a literal `+` or `%`).
pub fn form_url_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for &b in key.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `2024-01-01T00:00:00.000Z` from epoch milliseconds (UTC, civil-from-days).
pub fn iso_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_keys_and_times_like_aws() {
        assert_eq!(form_url_encode("a b+c%/\u{e9}"), "a+b%2Bc%25%2F%C3%A9");
        assert_eq!(iso_millis(1_704_067_200_123), "2024-01-01T00:00:00.123Z");
        assert_eq!(iso_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
