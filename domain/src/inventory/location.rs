//! Where S3 Inventory writes its reports, and which keys of a destination are reports.
//!
//! Layout (reference §1.3):
//! `<prefix>/<source-bucket>/<config-id>/YYYY-MM-DDTHH-MMZ/manifest.json|manifest.checksum`,
//! next to `<…>/<config-id>/hive/dt=…/symlink.txt` and `<…>/<config-id>/data/<file>` which a
//! reader ignores (data files are always found through `manifest.json`'s `files[].key`).

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, Utc};

/// Name of the manifest inside a report folder.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Name of the manifest's checksum inside a report folder.
pub const CHECKSUM_NAME: &str = "manifest.checksum";
/// `chrono` format of the report folder name (`2016-11-06T21-32Z`).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H-%MZ";

/// Why a key is not a report manifest or checksum key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The last segment is neither `manifest.json` nor `manifest.checksum`.
    #[error("inventory key {key:?} is not a manifest.json or manifest.checksum")]
    NotAManifest {
        /// The key.
        key: String,
    },
    /// Fewer than `<source-bucket>/<config-id>/<timestamp>/<file>` segments.
    #[error("inventory key {key:?} has too few segments for <source-bucket>/<config-id>/<timestamp>/")]
    TooFewSegments {
        /// The key.
        key: String,
    },
    /// The folder name is not `YYYY-MM-DDTHH-MMZ`.
    #[error("inventory key {key:?}: folder {segment:?} is not a YYYY-MM-DDTHH-MMZ timestamp")]
    BadTimestamp {
        /// The key.
        key: String,
        /// The offending segment.
        segment: String,
    },
    /// An empty source bucket or config-id segment (`//`).
    #[error("inventory key {key:?}: empty {part} segment")]
    EmptySegment {
        /// The key.
        key: String,
        /// `source bucket` or `config id`.
        part: &'static str,
    },
}

impl LocationError {
    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            LocationError::NotAManifest { .. } => "INVENTORY_KEY_NOT_MANIFEST",
            LocationError::TooFewSegments { .. } => "INVENTORY_KEY_TOO_FEW_SEGMENTS",
            LocationError::BadTimestamp { .. } => "INVENTORY_KEY_BAD_TIMESTAMP",
            LocationError::EmptySegment { .. } => "INVENTORY_KEY_EMPTY_SEGMENT",
        }
    }
}

/// Which of the two report files a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFile {
    /// `manifest.json`.
    Manifest,
    /// `manifest.checksum`.
    Checksum,
}

impl ReportFile {
    /// The file name inside the report folder.
    pub fn name(self) -> &'static str {
        match self {
            ReportFile::Manifest => MANIFEST_NAME,
            ReportFile::Checksum => CHECKSUM_NAME,
        }
    }
}

/// One inventory report (one delivery of one configuration), identified by its folder.
///
/// Ordered by timestamp first, then by prefix, source bucket and config id, so sorting a list
/// of reports puts the newest last.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReportLocation {
    /// Everything before the source bucket, verbatim and with its trailing `/` (`"inventory/"`);
    /// empty when the destination has no prefix. Kept verbatim so that keys round-trip exactly
    /// (a prefix configured as `inv/` may yield `inv//…`).
    pub prefix: String,
    /// The bucket the inventory describes.
    pub source_bucket: String,
    /// The inventory configuration id.
    pub config_id: String,
    /// When the scan started (minute precision, from the folder name).
    pub timestamp: DateTime<Utc>,
}

impl PartialOrd for ReportLocation {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ReportLocation {
    fn cmp(&self, other: &Self) -> Ordering {
        self.timestamp
            .cmp(&other.timestamp)
            .then_with(|| self.prefix.cmp(&other.prefix))
            .then_with(|| self.source_bucket.cmp(&other.source_bucket))
            .then_with(|| self.config_id.cmp(&other.config_id))
    }
}

impl ReportLocation {
    /// Parses a `manifest.json` or `manifest.checksum` key into its report and which file it is.
    pub fn parse(key: &str) -> Result<(ReportLocation, ReportFile), LocationError> {
        // Split from the right: the prefix may itself contain `/`, the other parts may not.
        let mut parts = key.rsplitn(4, '/');
        let file = match parts.next() {
            Some(MANIFEST_NAME) => ReportFile::Manifest,
            Some(CHECKSUM_NAME) => ReportFile::Checksum,
            _ => return Err(LocationError::NotAManifest { key: key.to_string() }),
        };
        let too_few = || LocationError::TooFewSegments { key: key.to_string() };
        let stamp = parts.next().ok_or_else(too_few)?;
        let config_id = parts.next().ok_or_else(too_few)?;
        let rest = parts.next().ok_or_else(too_few)?;
        // `rest` is `<prefix><source-bucket>`; the prefix keeps its trailing slash.
        let (prefix, source_bucket) = match rest.rfind('/') {
            Some(slash) => rest.split_at(slash + 1),
            None => ("", rest),
        };
        let timestamp = parse_timestamp(stamp).ok_or_else(|| LocationError::BadTimestamp {
            key: key.to_string(),
            segment: stamp.to_string(),
        })?;
        for (part, value) in [("source bucket", source_bucket), ("config id", config_id)] {
            if value.is_empty() {
                return Err(LocationError::EmptySegment { key: key.to_string(), part });
            }
        }
        let location = ReportLocation {
            prefix: prefix.to_string(),
            source_bucket: source_bucket.to_string(),
            config_id: config_id.to_string(),
            timestamp,
        };
        Ok((location, file))
    }

    /// The report folder, with a trailing `/`.
    pub fn folder(&self) -> String {
        let stamp = self.timestamp.format(TIMESTAMP_FORMAT);
        format!("{}{}/{}/{stamp}/", self.prefix, self.source_bucket, self.config_id)
    }

    /// The key of one of the report's files.
    pub fn key(&self, file: ReportFile) -> String {
        format!("{}{}", self.folder(), file.name())
    }

    /// The key of `manifest.json`.
    pub fn manifest_key(&self) -> String {
        self.key(ReportFile::Manifest)
    }

    /// The key of `manifest.checksum`.
    pub fn checksum_key(&self) -> String {
        self.key(ReportFile::Checksum)
    }

    /// True when both `manifest.json` and `manifest.checksum` are among `keys`.
    ///
    /// S3 writes the checksum last, so a report without it may still be in delivery.
    pub fn is_complete<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> bool {
        let (manifest, checksum) = (self.manifest_key(), self.checksum_key());
        let (mut has_manifest, mut has_checksum) = (false, false);
        for key in keys {
            has_manifest |= key == manifest;
            has_checksum |= key == checksum;
        }
        has_manifest && has_checksum
    }
}

/// Parses a `YYYY-MM-DDTHH-MMZ` folder name.
fn parse_timestamp(segment: &str) -> Option<DateTime<Utc>> {
    // chrono accepts some non-padded fields; the folder name is always exactly 17 characters.
    if segment.len() != 17 {
        return None;
    }
    NaiveDateTime::parse_from_str(segment, TIMESTAMP_FORMAT).ok().map(|naive| naive.and_utc())
}

/// What a key found under an inventory destination is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryKey {
    /// A report's `manifest.json`.
    Manifest(ReportLocation),
    /// A report's `manifest.checksum`.
    Checksum(ReportLocation),
    /// `<…>/<config-id>/hive/dt=…/symlink.txt`, the Hive manifest: ignored.
    HiveSymlink,
    /// `<…>/<config-id>/data/<file>`: a data file, read only through a manifest.
    DataFile,
    /// Anything else.
    Other,
}

impl InventoryKey {
    /// Classifies a destination key.
    pub fn classify(key: &str) -> InventoryKey {
        if let Ok((location, file)) = ReportLocation::parse(key) {
            return match file {
                ReportFile::Manifest => InventoryKey::Manifest(location),
                ReportFile::Checksum => InventoryKey::Checksum(location),
            };
        }
        let segments: Vec<&str> = key.split('/').collect();
        let n = segments.len();
        if n >= 3
            && segments.last() == Some(&"symlink.txt")
            && segments.get(n - 3) == Some(&"hive")
            && segments.get(n - 2).is_some_and(|s| s.starts_with("dt="))
        {
            return InventoryKey::HiveSymlink;
        }
        if n >= 2 && segments.get(n - 2) == Some(&"data") && segments.last().is_some_and(|s| !s.is_empty()) {
            return InventoryKey::DataFile;
        }
        InventoryKey::Other
    }

    /// True for keys a report reader skips (Hive symlinks and data files).
    pub fn is_ignored(&self) -> bool {
        matches!(self, InventoryKey::HiveSymlink | InventoryKey::DataFile)
    }
}

/// The complete reports among `keys` (both files present), oldest first, without duplicates.
pub fn complete_reports<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<ReportLocation> {
    let mut manifests = BTreeSet::new();
    let mut checksums = BTreeSet::new();
    for key in keys {
        match InventoryKey::classify(key) {
            InventoryKey::Manifest(location) => {
                manifests.insert(location);
            }
            InventoryKey::Checksum(location) => {
                checksums.insert(location);
            }
            _ => {}
        }
    }
    manifests.intersection(&checksums).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap()
    }

    /// key, prefix, source bucket, config id, timestamp, file.
    type Case = (&'static str, &'static str, &'static str, &'static str, DateTime<Utc>, ReportFile);

    #[test]
    fn parses_report_keys() {
        let cases: &[Case] = &[
            (
                "inv/src-bucket/cfg1/2016-11-06T21-32Z/manifest.json",
                "inv/",
                "src-bucket",
                "cfg1",
                at(2016, 11, 6, 21, 32),
                ReportFile::Manifest,
            ),
            (
                "a/b/c/src/cfg/2024-01-31T00-00Z/manifest.checksum",
                "a/b/c/",
                "src",
                "cfg",
                at(2024, 1, 31, 0, 0),
                ReportFile::Checksum,
            ),
            (
                "src/cfg/2024-12-31T23-59Z/manifest.json",
                "",
                "src",
                "cfg",
                at(2024, 12, 31, 23, 59),
                ReportFile::Manifest,
            ),
        ];
        for (key, prefix, bucket, config, ts, file) in cases {
            let (loc, f) = ReportLocation::parse(key).unwrap();
            assert_eq!(loc.prefix, *prefix, "{key}");
            assert_eq!(loc.source_bucket, *bucket, "{key}");
            assert_eq!(loc.config_id, *config, "{key}");
            assert_eq!(loc.timestamp, *ts, "{key}");
            assert_eq!(f, *file, "{key}");
            assert_eq!(loc.key(f), *key);
        }
    }

    #[test]
    fn rejects_non_report_keys() {
        let cases: &[(&str, &str)] = &[
            ("inv/src/cfg/2016-11-06T21-32Z/other.json", "INVENTORY_KEY_NOT_MANIFEST"),
            ("cfg/2016-11-06T21-32Z/manifest.json", "INVENTORY_KEY_TOO_FEW_SEGMENTS"),
            ("manifest.json", "INVENTORY_KEY_TOO_FEW_SEGMENTS"),
            ("inv/src/cfg/2016-11-06/manifest.json", "INVENTORY_KEY_BAD_TIMESTAMP"),
            ("inv/src/cfg/2016-13-06T21-32Z/manifest.json", "INVENTORY_KEY_BAD_TIMESTAMP"),
            ("inv/src/cfg/2016-1-6T21-32Z/manifest.json", "INVENTORY_KEY_BAD_TIMESTAMP"),
            ("inv/src//2016-11-06T21-32Z/manifest.json", "INVENTORY_KEY_EMPTY_SEGMENT"),
            ("inv//cfg/2016-11-06T21-32Z/manifest.json", "INVENTORY_KEY_EMPTY_SEGMENT"),
        ];
        for (key, code) in cases {
            assert_eq!(ReportLocation::parse(key).unwrap_err().code(), *code, "{key}");
        }
    }

    #[test]
    fn classifies_destination_keys() {
        let loc = ReportLocation::parse("inv/src/cfg/2016-11-06T21-32Z/manifest.json").unwrap().0;
        let cases: &[(&str, InventoryKey)] = &[
            ("inv/src/cfg/2016-11-06T21-32Z/manifest.json", InventoryKey::Manifest(loc.clone())),
            ("inv/src/cfg/2016-11-06T21-32Z/manifest.checksum", InventoryKey::Checksum(loc.clone())),
            ("inv/src/cfg/hive/dt=2016-11-06-21-32/symlink.txt", InventoryKey::HiveSymlink),
            ("inv/src/cfg/data/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz", InventoryKey::DataFile),
            ("inv/src/cfg/data/", InventoryKey::Other),
            ("inv/src/cfg/hive/symlink.txt", InventoryKey::Other),
            ("random/key.csv", InventoryKey::Other),
        ];
        for (key, kind) in cases {
            let got = InventoryKey::classify(key);
            assert_eq!(&got, kind, "{key}");
            assert_eq!(got.is_ignored(), matches!(kind, InventoryKey::HiveSymlink | InventoryKey::DataFile));
        }
    }

    #[test]
    fn completeness_and_ordering() {
        let keys = [
            "inv/src/cfg/2024-01-02T00-00Z/manifest.json",
            "inv/src/cfg/2024-01-02T00-00Z/manifest.checksum",
            "inv/src/cfg/2024-01-01T00-00Z/manifest.checksum",
            "inv/src/cfg/2024-01-01T00-00Z/manifest.json",
            // In delivery: no checksum yet.
            "inv/src/cfg/2024-01-03T00-00Z/manifest.json",
            // Checksum without manifest.
            "inv/src/cfg/2024-01-04T00-00Z/manifest.checksum",
            "inv/src/cfg/data/x.csv.gz",
            "inv/src/cfg/hive/dt=2024-01-02-00-00/symlink.txt",
        ];
        let reports = complete_reports(keys);
        let stamps: Vec<_> = reports.iter().map(|r| r.timestamp).collect();
        assert_eq!(stamps, vec![at(2024, 1, 1, 0, 0), at(2024, 1, 2, 0, 0)]);
        let pending = ReportLocation::parse(keys[4]).unwrap().0;
        assert!(!pending.is_complete(keys));
        assert!(reports[1].is_complete(keys));
        let mut sorted = vec![reports[1].clone(), pending.clone(), reports[0].clone()];
        sorted.sort();
        assert_eq!(sorted, vec![reports[0].clone(), reports[1].clone(), pending]);
    }

    proptest! {
        #[test]
        fn parse_format_round_trips(
            prefix in proptest::collection::vec("[a-zA-Z0-9_.=-]{1,8}", 0..4),
            bucket in "[a-z0-9][a-z0-9.-]{2,20}",
            config in "[a-zA-Z0-9_.-]{1,20}",
            minutes in 0i64..(200 * 365 * 24 * 60),
            checksum in any::<bool>(),
        ) {
            let timestamp = DateTime::<Utc>::from_timestamp(minutes * 60, 0).unwrap();
            let location = ReportLocation { prefix: prefix.iter().map(|p| format!("{p}/")).collect(), source_bucket: bucket, config_id: config, timestamp };
            let file = if checksum { ReportFile::Checksum } else { ReportFile::Manifest };
            let key = location.key(file);
            prop_assert_eq!(ReportLocation::parse(&key).unwrap(), (location, file));
        }

        #[test]
        fn parse_never_panics(key in ".{0,80}") {
            if let Ok((location, file)) = ReportLocation::parse(&key) {
                prop_assert_eq!(location.key(file), key.clone());
            }
            let _ = InventoryKey::classify(&key);
        }

        #[test]
        fn keys_round_trip_exactly(prefix in ".{0,12}", bucket in "[a-z0-9.-]{1,12}", config in "[^/]{1,12}", minutes in 0i64..100_000_000) {
            let stamp = DateTime::<Utc>::from_timestamp(minutes * 60, 0).unwrap().format(TIMESTAMP_FORMAT);
            let key = format!("{prefix}{bucket}/{config}/{stamp}/manifest.json");
            let (location, file) = ReportLocation::parse(&key).unwrap();
            prop_assert_eq!(location.key(file), key);
            prop_assert_eq!(location.config_id, config);
        }
    }
}
