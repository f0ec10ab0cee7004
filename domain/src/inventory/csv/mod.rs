//! Inventory CSV data files: gzip (possibly multi-member), no header, RFC-4180 quoting, columns
//! from the manifest's `fileSchema`, keys form-URL-encoded (reference §1.5).

mod split;

use std::io::{self, Read};

use flate2::read::MultiGzDecoder;

use super::columns::InventoryColumn;
use super::manifest::ManifestFile;
use super::md5_reader::{ChecksumMismatch, Md5Reader};
use super::record::{
    InventoryRecord, InventoryRows, RecordBuilder, RowError, RowTarget, SnapshotRow, SnapshotRowBuilder,
    check_schema,
};
use split::{Row, RowSplitter};

/// Decodes a CSV `Key` value: `+` is a space, `%XX` a byte, and the bytes must be UTF-8.
///
/// `%` not followed by two hex digits is kept literally (as browsers and `unquote_plus` do).
pub fn decode_key(encoded: &[u8]) -> Result<String, std::string::FromUtf8Error> {
    // One pass: `+` is a space, `%XX` a byte (so an encoded `%2B` stays a plus), anything else
    // (a `%` without two hex digits too) itself. Every key goes through here: the bytes between
    // escapes are copied a run at a time.
    fn hex(b: Option<&u8>) -> Option<u8> {
        b.and_then(|&b| (b as char).to_digit(16)).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = memchr::memchr2(b'%', b'+', rest) {
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        match (rest[0], hex(rest.get(1)), hex(rest.get(2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(hi << 4 | lo);
                rest = &rest[3..];
            }
            (b'+', ..) => {
                out.push(b' ');
                rest = &rest[1..];
            }
            (other, ..) => {
                out.push(other);
                rest = &rest[1..];
            }
        }
    }
    out.extend_from_slice(rest);
    String::from_utf8(out)
}

/// The decompressed stream went past the byte budget.
#[derive(Debug, thiserror::Error)]
#[error("decompressed size limit of {limit} bytes exceeded")]
struct SizeLimitExceeded {
    limit: u64,
}

/// An error of the caller's reader (as opposed to a decoder error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SourceError(io::Error);

/// Tags the source's errors so they are not mistaken for corrupt gzip.
struct Source<R>(R);

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if ChecksumMismatch::from_io(&e).is_some() { e } else { io::Error::new(e.kind(), SourceError(e)) }
        })
    }
}

/// Fails once more than `limit` decompressed bytes would be produced.
struct Limited<R> {
    inner: R,
    limit: u64,
    produced: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.limit.saturating_sub(self.produced);
        if room == 0 {
            // At the budget exactly: fine if the stream ends here.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(SizeLimitExceeded { limit: self.limit })),
            };
        }
        let take = usize::try_from(room).unwrap_or(usize::MAX).min(buf.len());
        let n = self.inner.read(buf.get_mut(..take).unwrap_or_default())?;
        self.produced = self.produced.saturating_add(n as u64);
        Ok(n)
    }
}

type Decoder<R> = RowSplitter<Limited<MultiGzDecoder<Source<R>>>>;

/// Iterator over the rows of one gzipped inventory CSV file.
///
/// Yields one `Result` per row. Row-level errors ([`RowError::is_fatal`] false) are followed by
/// the next rows; after a fatal error (corrupt or truncated gzip, size limit, checksum, I/O)
/// the iterator ends.
pub struct CsvRecords<R: Read> {
    file: String,
    columns: Vec<InventoryColumn>,
    reader: Decoder<R>,
    row: u64,
    limit: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for CsvRecords<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRecords").field("file", &self.file).field("row", &self.row).finish_non_exhaustive()
    }
}

/// Reads a gzipped inventory CSV file whose columns are `columns` (the manifest's `fileSchema`),
/// decompressing at most `max_decompressed_bytes`.
///
/// Fails up front when the schema has no `Bucket` or `Key` column.
pub fn read_csv_gz<R: Read>(
    file: impl Into<String>,
    reader: R,
    columns: &[InventoryColumn],
    max_decompressed_bytes: u64,
) -> Result<CsvRecords<R>, RowError> {
    let file = file.into();
    check_schema(&file, columns)?;
    let decoder =
        Limited { inner: MultiGzDecoder::new(Source(reader)), limit: max_decompressed_bytes, produced: 0 };
    // Large reads (split::BUFFER_BYTES): each one is a call into inflate, so fewer cost less.
    Ok(CsvRecords {
        file,
        columns: columns.to_vec(),
        reader: RowSplitter::new(decoder),
        row: 0,
        limit: max_decompressed_bytes,
        done: false,
    })
}

/// [`read_csv_gz`] on a manifest's data file, verifying its MD5 while reading: a mismatch is
/// the last item ([`RowError::Checksum`]), after which all earlier rows must be discarded.
pub fn read_verified_csv_gz<R: Read>(
    file: &ManifestFile,
    reader: R,
    columns: &[InventoryColumn],
    max_decompressed_bytes: u64,
) -> Result<CsvRecords<Md5Reader<R>>, RowError> {
    read_csv_gz(&file.key, Md5Reader::new(reader, &file.key, &file.md5), columns, max_decompressed_bytes)
}

impl<R: Read> CsvRecords<R> {
    /// Rows read so far (including rows that failed).
    pub fn rows_read(&self) -> u64 {
        self.row
    }

    /// The error that ends reading: the source's, the decompressor's, the budget's or the
    /// checksum's. (Every byte sequence splits into rows; a row's shape is checked by `fill`.)
    fn stream_error(&self, e: io::Error) -> RowError {
        let file = self.file.clone();
        let row = self.row;
        if let Some(mismatch) = ChecksumMismatch::from_io(&e) {
            return RowError::Checksum(mismatch.clone());
        }
        let inner = e.get_ref();
        if inner.is_some_and(|i| i.is::<SizeLimitExceeded>()) {
            RowError::DecompressedSizeLimit { file, row, limit: self.limit }
        } else if inner.is_some_and(|i| i.is::<SourceError>()) {
            RowError::Io { file, row, detail: e.to_string() }
        } else {
            RowError::Decompression { file, row, detail: e.to_string() }
        }
    }
}

/// Feeds one CSV row's cells to `target`: values are borrowed from the row, the key is
/// URL-decoded into a string of its own.
fn fill<'v>(
    file: &str,
    row: u64,
    columns: &[InventoryColumn],
    record: &Row<'v>,
    target: &mut impl RowTarget<'v>,
) -> Result<(), RowError> {
    if record.len() != columns.len() {
        return Err(RowError::MalformedRow {
            file: file.to_string(),
            row,
            detail: format!("expected {} fields, found {}", columns.len(), record.len()),
        });
    }
    // One UTF-8 check for the whole row: a field of a valid row is valid when it starts and
    // ends on character boundaries (a field that does not is checked on its own, for its error).
    let row_text = std::str::from_utf8(record.text()).ok();
    for (i, (column, raw)) in columns.iter().zip(record.iter()).enumerate() {
        let invalid = |detail: String| RowError::InvalidValue {
            file: file.to_string(),
            row,
            column: column.to_string(),
            detail,
        };
        if *column == InventoryColumn::Key {
            let key = decode_key(raw)
                .map_err(|e| invalid(format!("not UTF-8 after URL decoding: {}", e.utf8_error())))?;
            target.set_decoded_key(key);
        } else {
            let text = match row_text.and_then(|row| row.get(record.range(i)?)) {
                Some(text) => text,
                None => std::str::from_utf8(raw).map_err(|e| invalid(format!("not UTF-8: {e}")))?,
            };
            target.set_text(column, text)?;
        }
    }
    Ok(())
}

impl<R: Read> InventoryRows for CsvRecords<R> {
    /// Values are borrowed from the parsed row: no [`InventoryRecord`] per row.
    fn for_each_snapshot_row<E: From<RowError>>(
        mut self,
        mut on_row: impl FnMut(&SnapshotRow<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut count = 0u64;
        while !self.done {
            match self.reader.next_row() {
                Ok(None) => self.done = true,
                Ok(Some(record)) => {
                    self.row += 1;
                    count += 1;
                    let mut builder = SnapshotRowBuilder::new(&self.file, self.row);
                    fill(&self.file, self.row, &self.columns, &record, &mut builder)?;
                    on_row(builder.finished()?)?;
                }
                Err(error) => return Err(self.stream_error(error).into()),
            }
        }
        Ok(count)
    }
}

impl<R: Read> Iterator for CsvRecords<R> {
    type Item = Result<InventoryRecord, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.reader.next_row() {
            Ok(None) => {
                self.done = true;
                None
            }
            Ok(Some(record)) => {
                self.row += 1;
                let mut builder = RecordBuilder::new(&self.file, self.row);
                let filled = fill(&self.file, self.row, &self.columns, &record, &mut builder);
                Some(filled.and_then(|()| builder.finish()))
            }
            Err(error) => {
                // Nothing after a stream error can be trusted.
                self.done = true;
                Some(Err(self.stream_error(error)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::manifest::{InventoryFormat, parse_schema};
    use crate::inventory::md5_reader::md5_hex;
    use crate::inventory::record::EncryptionStatus;
    use flate2::{Compression, write::GzEncoder};
    use proptest::prelude::*;
    use std::io::Write;

    const LIMIT: u64 = 1 << 20;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(text).unwrap();
        enc.finish().unwrap()
    }

    fn columns(schema: &str) -> Vec<InventoryColumn> {
        parse_schema(InventoryFormat::Csv, schema).unwrap()
    }

    /// The rows of `text`, gzipped, as a data file of `schema`.
    fn reader(text: &str, schema: &str) -> CsvRecords<std::io::Cursor<Vec<u8>>> {
        read_csv_gz("data/f.csv.gz", std::io::Cursor::new(gzip(text.as_bytes())), &columns(schema), LIMIT)
            .unwrap()
    }

    fn read_all(text: &str, schema: &str) -> Vec<Result<InventoryRecord, RowError>> {
        reader(text, schema).collect()
    }

    #[test]
    fn snapshot_rows_are_the_records_snapshot_columns() {
        use crate::inventory::record::testing::{expected_snapshot_rows, snapshot_rows};
        let schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, EncryptionStatus, BucketKeyStatus";
        let good = concat!(
            "src,dir/my+file%2B1%25.csv,v1,true,false,1024,2023-01-31T12:00:00.000Z,\"\"\"0123abcd\"\"\",GLACIER,false,SSE-KMS,ENABLED\n",
            "src,caf%C3%A9,v2,false,true,,1675166400000,,,,,\n",
            "src,plain,,,,0,,e-1,STANDARD,true,sse-future,DISABLED\n",
        );
        let bad_rows = [
            "src,neg,,,,-1,,,,,,\n",
            "src,multi,,,,,,,,maybe,,\n",
            "src,short\n",
            "src,%FF,,,,,,,,,,\n",
            ",no-bucket,,,,,,,,,,\n",
        ];
        let read = |text: &str| reader(text, schema);
        let (rows, error) = snapshot_rows(read(good));
        assert_eq!((rows.len(), &error), (3, &None));
        assert!(rows[0].contains(r#"key: "dir/my file+1%.csv""#), "{}", rows[0]);
        assert!(rows[0].contains(r#"etag: Some("0123abcd")"#), "{}", rows[0]);
        assert_eq!((rows, error), expected_snapshot_rows(read(good)));
        for bad in bad_rows {
            // One good row, the bad one, one that is never read.
            let text = format!("src,a,,,,1,,,,,,\n{bad}src,b,,,,2,,,,,,\n");
            let (rows, error) = snapshot_rows(read(&text));
            assert_eq!(rows.len(), 1, "{bad}");
            assert!(error.is_some(), "{bad}");
            assert_eq!((rows, error), expected_snapshot_rows(read(&text)), "{bad}");
        }
        // A stream cut short: the rows before the cut, then the decompression error.
        let gz = gzip(good.as_bytes());
        let cut = &gz[..gz.len() - 12];
        let open = || read_csv_gz("f", cut, &columns(schema), LIMIT).unwrap();
        let (rows, error) = snapshot_rows(open());
        assert_eq!(error.as_ref().map(RowError::code), Some("INVENTORY_DECOMPRESSION_FAILED"));
        assert_eq!((rows, error), expected_snapshot_rows(open()));
    }

    #[test]
    fn decodes_keys() {
        let cases: &[(&str, &str)] = &[
            ("plain/key.csv", "plain/key.csv"),
            ("with+space", "with space"),
            ("plus%2Bsign", "plus+sign"),
            ("pct%25", "pct%"),
            ("unicode%C3%A9%E2%9C%93", "unicode\u{e9}\u{2713}"),
            ("quote%22d", "quote\"d"),
            ("bad%zzescape", "bad%zzescape"),
            ("trailing%", "trailing%"),
        ];
        for (encoded, want) in cases {
            assert_eq!(decode_key(encoded.as_bytes()).unwrap(), *want, "{encoded}");
        }
        assert!(decode_key(b"%FF%FE").is_err());
    }

    #[test]
    fn reads_all_versions_rows() {
        let schema = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm";
        let text = concat!(
            "\"src\",\"dir/my+file%2B1%25.csv\",\"v1\",\"true\",\"false\",\"1024\",\"2023-01-31T12:00:00.000Z\",\"0123abcd\",\"STANDARD\",\"false\",\"\",\"SSE-KMS\",\"\",\"\",\"\",\"\",\"ENABLED\",\"\"\n",
            "\"src\",\"caf%C3%A9/%E2%9C%93\",\"v2\",\"false\",\"true\",\"\",\"2023-02-01T00:00:00.000Z\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\",\"\"\n",
            "src,quote%22s,,true,false,0,2023-02-01T00:00:00Z,e,GLACIER,true,COMPLETED,NOT-SSE,2030-01-01T00:00:00.000Z,COMPLIANCE,On,ARCHIVE_ACCESS,DISABLED,SHA256\n",
        );
        let rows: Vec<InventoryRecord> = read_all(text, schema).into_iter().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 3);
        let r = &rows[0];
        assert_eq!((r.bucket.as_str(), r.key.as_str()), ("src", "dir/my file+1%.csv"));
        assert_eq!(r.version_id.as_deref(), Some("v1"));
        assert_eq!((r.is_latest, r.is_delete_marker, r.size), (Some(true), Some(false), Some(1024)));
        assert_eq!(r.last_modified_ms, Some(1_675_166_400_000));
        assert_eq!(r.encryption_status, Some(EncryptionStatus::SseKms));
        assert_eq!(r.bucket_key_enabled, Some(true));
        assert_eq!(r.replication_status, None);
        let r = &rows[1];
        assert_eq!(r.key, "caf\u{e9}/\u{2713}");
        assert_eq!((r.is_delete_marker, r.size, r.encryption_status.clone()), (Some(true), None, None));
        let r = &rows[2];
        assert_eq!(r.key, "quote\"s");
        assert_eq!(r.version_id, None);
        assert_eq!(r.object_lock_legal_hold, Some(true));
        assert_eq!(r.object_lock_mode.as_deref(), Some("COMPLIANCE"));
        assert_eq!(r.bucket_key_enabled, Some(false));
        assert_eq!(r.encryption_status, Some(EncryptionStatus::NotSse));
        assert_eq!(r.checksum_algorithm.as_deref(), Some("SHA256"));
    }

    #[test]
    fn optional_fields_in_any_order_and_quoting() {
        // Columns in a non-default order, an unknown column, RFC-4180 doubled quotes and a comma
        // inside a quoted field.
        let schema = "EncryptionStatus, Size, Key, NewColumn, Bucket";
        let text = "SSE-S3,5,\"a,b+\"\"c\"\"\",\"x, y\",src\n,,k,,src\n";
        let rows: Vec<InventoryRecord> = read_all(text, schema).into_iter().map(Result::unwrap).collect();
        assert_eq!(rows[0].key, "a,b \"c\"");
        assert_eq!(rows[0].size, Some(5));
        assert_eq!(rows[0].other, vec![("NewColumn".to_string(), "x, y".to_string())]);
        assert_eq!(rows[1].encryption_status, None);
        assert!(rows[1].other.is_empty());
    }

    #[test]
    fn malformed_rows_are_typed_and_reading_goes_on() {
        let schema = "Bucket, Key, Size, IsLatest";
        let text =
            "src,a,1,true\nsrc,b,x,true\nsrc,c,1\nsrc,%FF,1,true\nsrc,d,1,maybe\n,e,1,true\nsrc,f,2,false\n";
        let results = read_all(text, schema);
        let summary: Vec<Result<&str, (&str, String)>> = results
            .iter()
            .map(|r| match r {
                Ok(rec) => Ok(rec.key.as_str()),
                Err(e) => Err((e.code(), e.to_string())),
            })
            .collect();
        assert_eq!(summary.len(), 7, "{summary:?}");
        assert_eq!(summary[0], Ok("a"));
        assert_eq!(summary[6], Ok("f"));
        let errs: Vec<&(&str, String)> = summary.iter().filter_map(|s| s.as_ref().err()).collect();
        let want = [
            ("INVENTORY_INVALID_VALUE", "data/f.csv.gz: row 2, column Size:"),
            ("INVENTORY_MALFORMED_ROW", "data/f.csv.gz: row 3 is malformed: expected 4 fields, found 3"),
            ("INVENTORY_INVALID_VALUE", "data/f.csv.gz: row 4, column Key: not UTF-8 after URL decoding"),
            ("INVENTORY_INVALID_VALUE", "data/f.csv.gz: row 5, column IsLatest:"),
            ("INVENTORY_INVALID_VALUE", "data/f.csv.gz: row 6, column Bucket: empty"),
        ];
        assert_eq!(errs.len(), want.len());
        for ((code, msg), (want_code, want_msg)) in errs.iter().zip(want) {
            assert_eq!(*code, want_code);
            assert!(msg.starts_with(want_msg), "{msg}");
        }
    }

    #[test]
    fn a_field_that_is_not_utf8_is_its_rows_error_even_when_the_row_is() {
        // Row 4 cuts `é` between two fields: the row's bytes are UTF-8, neither field's are.
        let mut text = b"src,k1,STANDARD,SSE-S3\nsrc,k2,STANDARD,\xC3\n".to_vec();
        text.extend_from_slice(b"src,k3,STANDARD,SSE-KMS\nsrc,k4,X\xC3,\xA9\nsrc,k5,STANDARD,NOT-SSE\n");
        let schema = columns("Bucket, Key, StorageClass, EncryptionStatus");
        let rows: Vec<_> = read_csv_gz("f.csv.gz", &gzip(&text)[..], &schema, LIMIT)
            .unwrap()
            .map(|r| r.map(|rec| rec.key).map_err(|e| e.to_string()))
            .collect();
        // The row's fields back to back, as the row-wide check sees them.
        assert!(std::str::from_utf8(b"srck4X\xC3\xA9").is_ok());
        assert_eq!(rows[0], Ok("k1".to_string()));
        assert_eq!(rows[2], Ok("k3".to_string()));
        assert_eq!(rows[4], Ok("k5".to_string()));
        let bad = |row: usize, column: &str| format!("f.csv.gz: row {row}, column {column}: not UTF-8");
        assert!(rows[1].as_ref().unwrap_err().starts_with(&bad(2, "EncryptionStatus")), "{:?}", rows[1]);
        assert!(rows[3].as_ref().unwrap_err().starts_with(&bad(4, "StorageClass")), "{:?}", rows[3]);
    }

    #[test]
    fn missing_columns_fail_up_front() {
        for (schema, missing) in [(&["Key", "Size"][..], "Bucket"), (&["Bucket", "Size"][..], "Key")] {
            let cols: Vec<InventoryColumn> = schema.iter().map(|n| InventoryColumn::from_name(n)).collect();
            let err = read_csv_gz("f", &b""[..], &cols, LIMIT).unwrap_err();
            assert_eq!(err.code(), "INVENTORY_MISSING_COLUMN");
            assert_eq!(err.to_string(), format!("f: the schema has no {missing} column"));
        }
    }

    #[test]
    fn stream_failures_stop_reading() {
        let text: String = (0..2000).map(|i| format!("src,key{i},{i}\n")).collect();
        let gz = gzip(text.as_bytes());
        let cols = columns("Bucket, Key, Size");
        let run = |bytes: &[u8], limit: u64| -> (usize, Option<RowError>) {
            let results: Vec<_> = read_csv_gz("f", bytes, &cols, limit).unwrap().collect();
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let errors: Vec<RowError> = results.into_iter().filter_map(Result::err).collect();
            assert!(errors.len() <= 1, "{errors:?}");
            (ok, errors.into_iter().next())
        };
        // Whole file, exactly at the budget, is fine.
        assert_eq!(run(&gz, text.len() as u64), (2000, None));
        // One byte short of the budget.
        let (ok, err) = run(&gz, text.len() as u64 - 1);
        assert!(ok < 2000);
        assert_eq!(err.unwrap().code(), "INVENTORY_DECOMPRESSED_SIZE_LIMIT");
        // Truncated gzip.
        let (ok, err) = run(&gz[..gz.len() / 2], LIMIT);
        assert!(ok < 2000);
        assert_eq!(err.unwrap().code(), "INVENTORY_DECOMPRESSION_FAILED");
        // Not gzip at all.
        let (ok, err) = run(text.as_bytes(), LIMIT);
        assert_eq!(ok, 0);
        assert_eq!(err.unwrap().code(), "INVENTORY_DECOMPRESSION_FAILED");
        // A gzipped empty text has no rows; a zero-byte file is not gzip (a cut upload).
        assert_eq!(run(&gzip(b""), LIMIT), (0, None));
        let (ok, err) = run(b"", LIMIT);
        assert_eq!((ok, err.unwrap().code()), (0, "INVENTORY_DECOMPRESSION_FAILED"));
        // Multi-member gzip (concatenated members) is read whole.
        let mut two = gzip(b"src,a,1\n");
        two.extend(gzip(b"src,b,2\n"));
        assert_eq!(run(&two, LIMIT), (2, None));
    }

    #[test]
    fn reader_errors_are_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        let cols = columns("Bucket, Key");
        let results: Vec<_> = read_csv_gz("f", Failing, &cols, LIMIT).unwrap().collect();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].as_ref().unwrap_err().code(), "INVENTORY_IO");
    }

    #[test]
    fn verified_reading_checks_md5() {
        let gz = gzip(b"src,a\nsrc,b\n");
        let cols = columns("Bucket, Key");
        let good = ManifestFile { key: "data/a.csv.gz".into(), size: gz.len() as u64, md5: md5_hex(&gz) };
        let rows: Vec<_> = read_verified_csv_gz(&good, &gz[..], &cols, LIMIT).unwrap().collect();
        assert!(rows.iter().all(Result::is_ok) && rows.len() == 2, "{rows:?}");
        let bad = ManifestFile { md5: "f11166069f1990abeb9c97ace9cdfabc".into(), ..good };
        let rows: Vec<_> = read_verified_csv_gz(&bad, &gz[..], &cols, LIMIT).unwrap().collect();
        let last = rows.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), "INVENTORY_CHECKSUM_MISMATCH");
        let RowError::Checksum(m) = last else { panic!("{last:?}") };
        assert_eq!((m.file.as_str(), m.actual.as_str()), ("data/a.csv.gz", md5_hex(&gz).as_str()));
    }

    proptest! {
        /// The one-pass decoder agrees with `+` → space followed by the `percent-encoding`
        /// crate's decoding, on any mix of escapes, broken escapes and bytes.
        #[test]
        fn key_decoding_matches_percent_encoding(encoded in proptest::collection::vec(
            prop_oneof![Just(b'%'), Just(b'+'), Just(b'2'), Just(b'B'), Just(b'f'), Just(b'z'), Just(b'/'), any::<u8>()],
            0..24,
        )) {
            let spaced: Vec<u8> = encoded.iter().map(|b| if *b == b'+' { b' ' } else { *b }).collect();
            let reference = String::from_utf8(percent_encoding::percent_decode(&spaced).collect());
            prop_assert_eq!(decode_key(&encoded).ok(), reference.ok());
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let cols = columns("Bucket, Key, VersionId, IsLatest, Size, LastModifiedDate, EncryptionStatus, BucketKeyStatus");
            // As the raw (gzip) file…
            for r in read_csv_gz("f", &bytes[..], &cols, 4096).unwrap() { let _ = r; }
            // …and as the decompressed text, with a tight budget too.
            let gz = gzip(&bytes);
            for limit in [LIMIT, 64] {
                let mut n = 0;
                for r in read_csv_gz("f", &gz[..], &cols, limit).unwrap() {
                    let _ = r;
                    n += 1;
                    prop_assert!(n <= bytes.len() + 1);
                }
            }
        }

        #[test]
        fn keys_round_trip_through_form_encoding(key in "\\PC{0,40}") {
            let encoded: String = form_encode(&key);
            prop_assert_eq!(decode_key(encoded.as_bytes()).unwrap(), key);
        }
    }

    /// `application/x-www-form-urlencoded` as S3 writes it: unreserved kept, space as `+`.
    fn form_encode(key: &str) -> String {
        let mut out = String::new();
        for b in key.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                    out.push(char::from(b))
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
}
