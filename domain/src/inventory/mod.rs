//! Reading S3 Inventory reports: report locations, `manifest.json` and its checksum, and the
//! CSV, Parquet and ORC data files, reduced to current objects.
//!
//! No I/O: everything parses bytes or an `impl Read` the caller opened, so the connector's
//! incremental extraction and the manifest-verifying Lambda share it.
//!
//! Typical flow: [`location::complete_reports`] on a destination listing → fetch the newest
//! report's two files → [`manifest::verify_checksum`] → [`Manifest::parse`] → for each
//! [`ManifestFile`], [`csv::read_verified_csv_gz`], or [`parquet::read_parquet`] /
//! [`orc::read_orc`] (the bytes checked by [`ManifestFile::verify`], or hashed by
//! [`md5_lanes::Md5Lanes`] with other files and checked by [`ManifestFile::check_digest`]) →
//! [`reduce::current_objects`].

mod arrow_cells;
pub mod columns;
pub mod csv;
pub mod fold;
pub mod location;
pub mod manifest;
pub mod md5_lanes;
pub mod md5_reader;
pub mod orc;
pub mod parquet;
pub mod record;
pub mod reduce;
pub mod snapshot;

pub use columns::InventoryColumn;
pub use location::{InventoryKey, LocationError, ReportFile, ReportLocation};
pub use manifest::{InventoryFormat, Manifest, ManifestError, ManifestFile};
pub use md5_reader::{ChecksumMismatch, Md5Reader};
pub use record::{EncryptionStatus, InventoryRecord, InventoryRows, RowError, SnapshotRow};

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write;

    /// The whole flow on an all-versions CSV report: listing → checksum → manifest → verified
    /// data files → current objects.
    #[test]
    fn csv_report_end_to_end() {
        let gzip = |text: &str| {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(text.as_bytes()).unwrap();
            enc.finish().unwrap()
        };
        let data = [
            gzip(
                "src,a+b.csv,v2,true,false,10,2024-01-01T00:00:00.000Z,SSE-KMS\nsrc,a+b.csv,v1,false,false,9,2023-01-01T00:00:00.000Z,SSE-S3\n",
            ),
            gzip(
                "src,gone,v2,true,true,,2024-01-02T00:00:00.000Z,\nsrc,%C3%A9t%C3%A9,v1,true,false,3,2024-01-03T00:00:00.000Z,NOT-SSE\n",
            ),
        ];
        let files: Vec<String> = data
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                format!(
                    r#"{{"key":"inv/src/cfg/data/{i}.csv.gz","size":{},"MD5checksum":"{}"}}"#,
                    bytes.len(),
                    md5_reader::md5_hex(bytes)
                )
            })
            .collect();
        let manifest_json = format!(
            r#"{{"sourceBucket":"src","destinationBucket":"arn:aws:s3:::dest","version":"2016-11-30",
            "creationTimestamp":"1704067200000","fileFormat":"CSV",
            "fileSchema":"Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, EncryptionStatus",
            "files":[{}]}}"#,
            files.join(",")
        );
        let checksum = format!("{}\n", md5_reader::md5_hex(manifest_json.as_bytes()));

        let listing = [
            "inv/src/cfg/2024-01-01T00-00Z/manifest.json",
            "inv/src/cfg/2024-01-01T00-00Z/manifest.checksum",
            "inv/src/cfg/2024-01-08T00-00Z/manifest.json",
            "inv/src/cfg/data/0.csv.gz",
            "inv/src/cfg/data/1.csv.gz",
            "inv/src/cfg/hive/dt=2024-01-01-00-00/symlink.txt",
        ];
        let newest = location::complete_reports(listing).pop().unwrap();
        assert_eq!(newest.manifest_key(), listing[0]);

        manifest::verify_checksum(manifest_json.as_bytes(), checksum.as_bytes()).unwrap();
        let manifest = Manifest::parse(manifest_json.as_bytes()).unwrap();
        let mut records = Vec::new();
        for (file, bytes) in manifest.files.iter().zip(&data) {
            for row in csv::read_verified_csv_gz(file, &bytes[..], &manifest.file_schema, 1 << 20).unwrap() {
                records.push(row.unwrap());
            }
        }
        let current = reduce::current_objects(records);
        let summary: Vec<(&str, Option<u64>, Option<EncryptionStatus>)> =
            current.iter().map(|r| (r.key.as_str(), r.size, r.encryption_status.clone())).collect();
        assert_eq!(
            summary,
            vec![
                ("a b.csv", Some(10), Some(EncryptionStatus::SseKms)),
                ("\u{e9}t\u{e9}", Some(3), Some(EncryptionStatus::NotSse)),
            ]
        );
        // A tampered manifest is caught before it is trusted.
        let tampered = manifest_json.replace("\"src\"", "\"other\"");
        let err = manifest::verify_checksum(tampered.as_bytes(), checksum.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "MANIFEST_CHECKSUM_MISMATCH");
    }
}
