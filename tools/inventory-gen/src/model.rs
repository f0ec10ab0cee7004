//! The object universe: what exists on day 1 and day 2, decided by a seeded hash of the
//! object's index, so any object can be computed on its own (no state, any order, any size).

use std::collections::{BTreeMap, BTreeSet};

/// Which report of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Day {
    /// The first report: objects `0..objects`.
    One,
    /// The second report: day 1 with the delta applied.
    Two,
}

/// Fractions of day 1's objects that the delta touches (each object gets at most one fate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delta {
    /// New objects on day 2, as a fraction of day 1's count.
    pub added: f64,
    /// Objects gone on day 2.
    pub removed: f64,
    /// Objects rewritten on day 2 (size, ETag, last-modified).
    pub changed: f64,
    /// Objects re-encrypted on day 2 (encryption status, bucket key, ETag, last-modified).
    pub reencrypted: f64,
}

impl Default for Delta {
    fn default() -> Self {
        Delta { added: 0.01, removed: 0.01, changed: 0.01, reencrypted: 0.005 }
    }
}

/// The universe of one generated report pair.
#[derive(Debug, Clone)]
pub struct Universe {
    /// Seed of every decision.
    pub seed: u64,
    /// Objects on day 1.
    pub objects: u64,
    /// Day-2 delta.
    pub delta: Delta,
    /// Source bucket (the `Bucket` column).
    pub source_bucket: String,
}

/// One object version as a report row describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    /// Decoded key.
    pub key: String,
    /// Version id.
    pub version_id: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag (hex, unquoted).
    pub etag: String,
    /// Last-modified, milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// Storage class.
    pub storage_class: &'static str,
    /// `NOT-SSE`, `SSE-S3`, `SSE-KMS`.
    pub encryption_status: &'static str,
    /// `ENABLED` / `DISABLED`.
    pub bucket_key_status: &'static str,
}

/// What happened to one object between the two days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Kept,
    Removed,
    Changed,
    Reencrypted,
}

/// 2024-01-01T00:00:00Z.
const DAY_ONE_MS: i64 = 1_704_067_200_000;
const DAY_MS: i64 = 86_400_000;

/// splitmix64: a fast, well-mixed hash of (seed, index, salt).
fn mix(seed: u64, index: u64, salt: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(seed: u64, index: u64, salt: u64) -> f64 {
    (mix(seed, index, salt) >> 11) as f64 / (1u64 << 53) as f64
}

const DATASETS: &[&str] = &[
    "sales/orders/region={region}/dt=2024-01-{day:02}/part-{i:09}.snappy.parquet",
    "sales/customers/part-{i:09}.csv.gz",
    "logs/app/2024/01/{day:02}/events-{i:09}.json.gz",
    "raw/clicks/year=2024/month=01/day={day:02}/clicks-{i:09}.jsonl",
    "warehouse/inventory/snapshot={day:02}/inv-{i:09}.orc",
    "exports/finance/ledger-{i:09}.tsv",
];

const ODD: &[&str] = &[
    "odd names/with space {i}.csv",
    "odd names/plus+sign+{i}.csv",
    "odd names/percent%20literal%{i}.csv",
    "odd names/unicod\u{e9}-\u{65e5}\u{672c}-{i}.csv",
    "odd names/a=b&c?d#{i}.csv",
    "_temporary/attempt-{i}/part.parquet",
];

const REGIONS: &[&str] = &["eu", "us", "ap", "sa"];

impl Universe {
    /// Day-2 additions: indices `objects..objects + added_count()`.
    pub fn added_count(&self) -> u64 {
        (self.objects as f64 * self.delta.added).round() as u64
    }

    fn fate(&self, i: u64) -> Fate {
        let u = unit(self.seed, i, 1);
        let d = self.delta;
        if u < d.removed {
            Fate::Removed
        } else if u < d.removed + d.changed {
            Fate::Changed
        } else if u < d.removed + d.changed + d.reencrypted {
            Fate::Reencrypted
        } else {
            Fate::Kept
        }
    }

    /// Decoded key of object `i` (unique per index).
    pub fn key(&self, i: u64) -> String {
        let h = mix(self.seed, i, 2);
        let template = if h.is_multiple_of(53) {
            ODD[(h / 53 % ODD.len() as u64) as usize]
        } else {
            DATASETS[(h / 7 % DATASETS.len() as u64) as usize]
        };
        template
            .replace("{region}", REGIONS[(h / 11 % REGIONS.len() as u64) as usize])
            .replace("{day:02}", &format!("{:02}", 1 + h / 13 % 28))
            .replace("{i:09}", &format!("{i:09}"))
            .replace("{i}", &i.to_string())
    }

    /// The current version of object `i` on `day`, if it exists.
    pub fn current(&self, i: u64, day: Day) -> Option<ObjectState> {
        let added = i >= self.objects;
        if added && (day == Day::One || i >= self.objects + self.added_count()) {
            return None;
        }
        let fate = if added { Fate::Kept } else { self.fate(i) };
        if day == Day::Two && fate == Fate::Removed {
            return None;
        }
        let h = mix(self.seed, i, 3);
        let mut state = ObjectState {
            key: self.key(i),
            version_id: format!("v1-{:016x}", mix(self.seed, i, 4)),
            size: h % 5_000_000,
            etag: format!("{:016x}{:016x}", mix(self.seed, i, 5), mix(self.seed, i, 6)),
            last_modified_ms: DAY_ONE_MS - (h % 1_000) as i64 * 60_000,
            storage_class: ["STANDARD", "STANDARD", "STANDARD", "INTELLIGENT_TIERING", "GLACIER_IR"]
                [(h / 5 % 5) as usize],
            encryption_status: ["SSE-S3", "SSE-KMS", "SSE-KMS", "NOT-SSE"][(h / 17 % 4) as usize],
            bucket_key_status: "DISABLED",
        };
        if state.encryption_status == "SSE-KMS" && h.is_multiple_of(2) {
            state.bucket_key_status = "ENABLED";
        }
        if added {
            state.last_modified_ms = DAY_ONE_MS + DAY_MS / 2;
        }
        if day == Day::Two {
            match fate {
                Fate::Changed => {
                    state.version_id = format!("v2-{:016x}", mix(self.seed, i, 7));
                    state.size += 1 + mix(self.seed, i, 8) % 1000;
                    state.etag = format!("{:016x}{:016x}", mix(self.seed, i, 9), mix(self.seed, i, 10));
                    state.last_modified_ms = DAY_ONE_MS + DAY_MS / 2;
                }
                Fate::Reencrypted => {
                    // A copy-in-place under another encryption: same bytes, new version.
                    state.version_id = format!("v2-{:016x}", mix(self.seed, i, 7));
                    state.etag = format!("{:016x}{:016x}", mix(self.seed, i, 11), mix(self.seed, i, 12));
                    state.last_modified_ms = DAY_ONE_MS + DAY_MS / 2;
                    if state.encryption_status == "SSE-KMS" {
                        state.encryption_status = "SSE-S3";
                        state.bucket_key_status = "DISABLED";
                    } else {
                        state.encryption_status = "SSE-KMS";
                        state.bucket_key_status = "ENABLED";
                    }
                }
                Fate::Kept | Fate::Removed => {}
            }
        }
        Some(state)
    }

    /// Every row an all-versions report of `day` has for object `i`: the current version (or
    /// a delete marker when removed on day 2) and the older versions, newest first.
    pub fn versions(&self, i: u64, day: Day) -> Vec<VersionRow> {
        let mut rows = Vec::new();
        let day_one = self.current(i, Day::One);
        match (day, self.current(i, day)) {
            (_, Some(now)) => {
                let replaced =
                    day == Day::Two && day_one.as_ref().is_some_and(|old| old.version_id != now.version_id);
                rows.push(VersionRow { state: now, is_latest: true, is_delete_marker: false });
                if replaced {
                    rows.push(VersionRow {
                        state: day_one.clone().unwrap(),
                        is_latest: false,
                        is_delete_marker: false,
                    });
                }
            }
            (Day::Two, None) => {
                if let Some(old) = day_one.clone() {
                    let marker = ObjectState {
                        version_id: format!("dm-{:016x}", mix(self.seed, i, 13)),
                        size: 0,
                        etag: String::new(),
                        last_modified_ms: DAY_ONE_MS + DAY_MS / 2,
                        ..old.clone()
                    };
                    rows.push(VersionRow { state: marker, is_latest: true, is_delete_marker: true });
                    rows.push(VersionRow { state: old, is_latest: false, is_delete_marker: false });
                }
            }
            (Day::One, None) => {}
        }
        // Some objects carry an old noncurrent version on both days.
        if !rows.is_empty() && mix(self.seed, i, 14).is_multiple_of(13) {
            let base = day_one.unwrap_or_else(|| rows[0].state.clone());
            rows.push(VersionRow {
                state: ObjectState {
                    version_id: format!("v0-{:016x}", mix(self.seed, i, 15)),
                    size: base.size / 2,
                    etag: format!("{:016x}", mix(self.seed, i, 16)),
                    last_modified_ms: base.last_modified_ms - DAY_MS * 30,
                    ..base
                },
                is_latest: false,
                is_delete_marker: false,
            });
        }
        rows
    }

    /// Indices that can appear on either day.
    pub fn index_range(&self) -> std::ops::Range<u64> {
        0..self.objects + self.added_count()
    }

    /// The changes a correct diff of day 1 → day 2 reports. Holds every changed key: for
    /// tests and modest benchmarks.
    pub fn expected_changes(&self) -> ExpectedChanges {
        let mut out = ExpectedChanges::default();
        for i in self.index_range() {
            match (self.current(i, Day::One), self.current(i, Day::Two)) {
                (None, Some(new)) => {
                    out.added.insert(new.key);
                }
                (Some(old), None) => {
                    out.removed.insert(old.key);
                }
                (Some(old), Some(new)) if old != new => {
                    let mut fields = BTreeSet::new();
                    if old.size != new.size {
                        fields.insert("SIZE");
                    }
                    if old.etag != new.etag {
                        fields.insert("ETAG");
                    }
                    if old.last_modified_ms != new.last_modified_ms {
                        fields.insert("LAST_MODIFIED");
                    }
                    if old.storage_class != new.storage_class {
                        fields.insert("STORAGE_CLASS");
                    }
                    if old.encryption_status != new.encryption_status {
                        fields.insert("ENCRYPTION_STATUS");
                    }
                    if old.bucket_key_status != new.bucket_key_status {
                        fields.insert("BUCKET_KEY");
                    }
                    out.changed.insert(new.key, fields);
                }
                _ => {}
            }
        }
        out
    }
}

/// One row of an all-versions report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// The version.
    pub state: ObjectState,
    /// `IsLatest`.
    pub is_latest: bool,
    /// `IsDeleteMarker`.
    pub is_delete_marker: bool,
}

/// The object-level changes between the two days, by decoded key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedChanges {
    /// Keys present only on day 2.
    pub added: BTreeSet<String>,
    /// Keys present only on day 1.
    pub removed: BTreeSet<String>,
    /// Keys present on both days whose row differs, with the fields that differ (names as
    /// `ObjectChange.changed_fields` spells them).
    pub changed: BTreeMap<String, BTreeSet<&'static str>>,
}

/// Which of `files` data files object `i`'s rows go to (scattered, as AWS's are).
pub(crate) fn file_of(seed: u64, i: u64, files: u64) -> u64 {
    mix(seed, i, 20) % files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn universe(objects: u64) -> Universe {
        Universe { seed: 7, objects, delta: Delta::default(), source_bucket: "src".into() }
    }

    #[test]
    fn keys_are_unique_and_include_awkward_ones() {
        let u = universe(20_000);
        let keys: BTreeSet<String> = u.index_range().map(|i| u.key(i)).collect();
        assert_eq!(keys.len() as u64, u.index_range().end);
        for needle in [" ", "+", "%", "\u{65e5}", "\u{e9}"] {
            assert!(keys.iter().any(|k| k.contains(needle)), "no key with {needle:?}");
        }
    }

    #[test]
    fn delta_has_every_kind_in_proportion() {
        let u = universe(100_000);
        let e = u.expected_changes();
        assert_eq!(e.added.len() as u64, u.added_count());
        for (n, expected) in [(e.removed.len(), 1000.0), (e.changed.len(), 1500.0)] {
            assert!((n as f64 - expected).abs() < expected * 0.15, "{n} vs {expected}");
        }
        let reencrypted = e.changed.values().filter(|f| f.contains("ENCRYPTION_STATUS")).count();
        assert!((reencrypted as f64 - 500.0).abs() < 100.0, "{reencrypted}");
        assert!(e.changed.values().all(|f| !f.is_empty()));
    }

    #[test]
    fn all_versions_rows_reduce_to_current() {
        let u = universe(5_000);
        for day in [Day::One, Day::Two] {
            for i in u.index_range() {
                let rows = u.versions(i, day);
                let latest: Vec<_> = rows.iter().filter(|r| r.is_latest).collect();
                assert!(latest.len() <= 1);
                let current = latest.first().filter(|r| !r.is_delete_marker).map(|r| r.state.clone());
                assert_eq!(current, u.current(i, day), "object {i}");
            }
        }
    }
}
