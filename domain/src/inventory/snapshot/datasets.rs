//! Object changes rolled up to datasets, with the same grouping as extraction
//! ([`crate::dataset::classify`]), so an incremental run names the datasets a full run would.
//!
//! Memory is one small accumulator per dataset seen (either side), never per object.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::diff::{DiffEntry, ObjectChange};
use super::format::{SnapshotError, SnapshotReader, decode_flat};
use crate::dataset::{DatasetAggregate, DatasetKey, DatasetPlacer, Grouper, GroupingConfig};
use crate::inventory::record::EncryptionStatus;
use crate::model::ObjectMeta;

/// Whether a dataset appeared, disappeared or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetChangeKind {
    /// No data objects in the old snapshot.
    Added,
    /// No data objects in the new snapshot.
    Removed,
    /// Objects on both sides, some added, removed or changed.
    Changed,
}

impl DatasetChangeKind {
    /// Stable name used in change records.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetChangeKind::Added => "ADDED",
            DatasetChangeKind::Removed => "REMOVED",
            DatasetChangeKind::Changed => "CHANGED",
        }
    }
}

/// One side's totals of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatasetSide {
    /// Data objects.
    pub objects: u64,
    /// Their bytes (saturating).
    pub bytes: u64,
    /// Objects per encryption status (`UNKNOWN` when the report has no such column).
    pub encryption: BTreeMap<String, u64>,
}

/// A [`DatasetSide`] being counted: every object of a day-over-day pass is counted, so the
/// statuses AWS defines are counted in an array, not looked up by name.
#[derive(Debug, Default)]
struct SideCounts {
    objects: u64,
    bytes: u64,
    /// Per status of [`EncryptionStatus::KNOWN`], then objects without a status (`UNKNOWN`).
    known: [u64; EncryptionStatus::KNOWN.len() + 1],
    other: BTreeMap<String, u64>,
}

impl SideCounts {
    fn add(&mut self, size: Option<u64>, encryption_status: Option<&EncryptionStatus>) {
        self.objects += 1;
        self.bytes = self.bytes.saturating_add(size.unwrap_or(0));
        let slot = match encryption_status {
            None => EncryptionStatus::KNOWN.len(),
            Some(status) => match status.known_index() {
                Some(i) => i,
                None => {
                    // Look up first: only a status's first object allocates.
                    match self.other.get_mut(status.as_str()) {
                        Some(n) => *n += 1,
                        None => {
                            self.other.insert(status.as_str().to_string(), 1);
                        }
                    }
                    return;
                }
            },
        };
        self.known[slot] += 1;
    }

    /// This side with `more` counted in too, as a [`DatasetSide`].
    fn plus(&self, more: &SideCounts) -> DatasetSide {
        let mut encryption = self.other.clone();
        for (status, n) in &more.other {
            *encryption.entry(status.clone()).or_default() += n;
        }
        let names = EncryptionStatus::KNOWN.iter().map(EncryptionStatus::as_str).chain(["UNKNOWN"]);
        for ((name, n), m) in names.zip(self.known).zip(more.known) {
            if n + m > 0 {
                *encryption.entry(name.to_string()).or_default() += n + m;
            }
        }
        DatasetSide {
            objects: self.objects + more.objects,
            bytes: self.bytes.saturating_add(more.bytes),
            encryption,
        }
    }
}

/// How one dataset changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetChange {
    /// The dataset (root prefix and format).
    pub dataset: DatasetKey,
    /// Display name, as in extraction records.
    pub name: String,
    /// Added, removed or changed.
    pub kind: DatasetChangeKind,
    /// Objects only in the new snapshot.
    pub objects_added: u64,
    /// Objects only in the old snapshot.
    pub objects_removed: u64,
    /// Objects in both with different fields.
    pub objects_changed: u64,
    /// Totals in the old snapshot.
    pub before: DatasetSide,
    /// Totals in the new snapshot.
    pub after: DatasetSide,
}

impl DatasetChange {
    /// Bytes after minus bytes before.
    pub fn bytes_delta(&self) -> i128 {
        i128::from(self.after.bytes) - i128::from(self.before.bytes)
    }

    /// Whether the set of encryption statuses present differs (a dataset gaining its first
    /// unencrypted or SSE-KMS object, say).
    pub fn encryption_mix_changed(&self) -> bool {
        !self.before.encryption.keys().eq(self.after.encryption.keys())
    }

    /// Whether schemas need inferring again: new or changed files.
    pub fn needs_schema_inference(&self) -> bool {
        self.objects_added > 0 || self.objects_changed > 0
    }
}

#[derive(Debug, Default)]
struct Accumulator {
    added: u64,
    removed: u64,
    changed: u64,
    /// Objects only before, or different before.
    before: SideCounts,
    /// Objects only after, or different after.
    after: SideCounts,
    /// Objects the same on both sides (nearly all of them), counted once.
    unchanged: SideCounts,
}

/// Bumped whenever what a dataset roll-up counts can change for the same objects: grouping
/// (placement, partitions, junk rules, formats) or the counting itself. Totals a snapshot stores
/// under another revision are not used (`grouping_revision_is_pinned` in the tests pins the
/// grouping of a set of keys to this number).
pub const GROUPING_REVISION: u32 = 1;

/// What dataset totals were counted under: the revision and the templates (the only part of
/// the configuration that moves objects between datasets).
fn grouping_fingerprint(cfg: &GroupingConfig) -> String {
    format!("revision {GROUPING_REVISION}; templates {:?}", cfg.templates)
}

/// Every dataset's totals over one snapshot, as stored in it (JSON, small: one entry per
/// dataset) for the next run.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredTotals {
    grouping: String,
    datasets: Vec<StoredDataset>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredDataset {
    prefix: String,
    format: String,
    objects: u64,
    bytes: u64,
    encryption: BTreeMap<String, u64>,
}

/// `base` less `minus` plus `plus`, entry by entry; statuses left at zero are dropped.
fn rebalance(base: &DatasetSide, minus: &DatasetSide, plus: &DatasetSide) -> DatasetSide {
    let mut encryption = base.encryption.clone();
    for (status, n) in &minus.encryption {
        let left = encryption.get(status).copied().unwrap_or(0).saturating_sub(*n);
        encryption.insert(status.clone(), left);
    }
    for (status, n) in &plus.encryption {
        *encryption.entry(status.clone()).or_default() += n;
    }
    encryption.retain(|_, n| *n > 0);
    DatasetSide {
        objects: base.objects.saturating_sub(minus.objects) + plus.objects,
        bytes: base.bytes.saturating_sub(minus.bytes).saturating_add(plus.bytes),
        encryption,
    }
}

/// Aggregates the steps of a merge-join into datasets. Each step counts, unchanged objects
/// included, unless the previous snapshot's totals were taken ([`Self::take_previous_totals`]):
/// then only the changes are counted, and each changed dataset's totals are the previous ones
/// moved by its changes.
#[derive(Debug)]
pub struct DatasetDiffAggregator {
    bucket: String,
    cfg: GroupingConfig,
    datasets: BTreeMap<DatasetKey, Accumulator>,
    /// The dataset last accounted for, out of `datasets`: objects come in key order, so runs
    /// of one dataset skip the map.
    current: Option<(DatasetKey, Accumulator)>,
    placer: DatasetPlacer,
    /// Every dataset's totals in the previous snapshot, when it stored them under this grouping.
    previous: Option<BTreeMap<DatasetKey, DatasetSide>>,
}

impl DatasetDiffAggregator {
    /// An aggregator for `bucket` with extraction's grouping configuration.
    pub fn new(bucket: &str, cfg: GroupingConfig) -> Self {
        DatasetDiffAggregator {
            bucket: bucket.to_string(),
            cfg,
            datasets: BTreeMap::new(),
            current: None,
            placer: DatasetPlacer::default(),
            previous: None,
        }
    }

    /// Takes the previous snapshot's stored totals ([`Self::totals_payload`] of the run that
    /// wrote it) if they were counted under this grouping; returns whether it did. Once taken,
    /// unchanged objects need not be [`add`](Self::add)ed (they are ignored). A payload of
    /// another grouping, or one that does not parse, is not taken: every object is counted.
    pub fn take_previous_totals(&mut self, payload: &[u8]) -> bool {
        let Ok(stored) = serde_json::from_slice::<StoredTotals>(payload) else { return false };
        if stored.grouping != grouping_fingerprint(&self.cfg) {
            return false;
        }
        let mut previous = BTreeMap::new();
        for d in stored.datasets {
            let Some(format) = crate::model::FileFormat::from_name(&d.format) else { return false };
            let side = DatasetSide { objects: d.objects, bytes: d.bytes, encryption: d.encryption };
            previous.insert(DatasetKey { prefix: d.prefix, format }, side);
        }
        self.previous = Some(previous);
        true
    }

    /// Whether the previous snapshot's totals were taken: unchanged objects are not needed.
    pub fn has_previous_totals(&self) -> bool {
        self.previous.is_some()
    }

    /// The accumulators of every dataset seen so far, the current one included.
    fn accumulators(&self) -> impl Iterator<Item = (&DatasetKey, &Accumulator)> {
        self.datasets.iter().chain(self.current.as_ref().map(|(key, acc)| (key, acc)))
    }

    /// One dataset's totals before and after, from its accumulator (and the previous totals,
    /// when taken).
    fn sides(&self, dataset: &DatasetKey, acc: &Accumulator) -> (DatasetSide, DatasetSide) {
        let empty = SideCounts::default();
        match &self.previous {
            None => (acc.before.plus(&acc.unchanged), acc.after.plus(&acc.unchanged)),
            Some(previous) => {
                let before = previous.get(dataset).cloned().unwrap_or_default();
                let after = rebalance(&before, &acc.before.plus(&empty), &acc.after.plus(&empty));
                (before, after)
            }
        }
    }

    /// Every dataset's totals over the new snapshot, encoded to be stored in it
    /// ([`crate::inventory::snapshot::SnapshotBuilder::finish_with_rollup`] does) and taken by
    /// the next run. Call it once every step was added.
    pub fn totals_payload(&self) -> Vec<u8> {
        let mut after: BTreeMap<&DatasetKey, DatasetSide> = BTreeMap::new();
        if let Some(previous) = &self.previous {
            after.extend(previous.iter().map(|(key, side)| (key, side.clone())));
        }
        for (key, acc) in self.accumulators() {
            after.insert(key, self.sides(key, acc).1);
        }
        let datasets = after
            .into_iter()
            .filter(|(_, side)| side.objects > 0)
            .map(|(key, side)| StoredDataset {
                prefix: key.prefix.clone(),
                format: key.format.as_str().to_string(),
                objects: side.objects,
                bytes: side.bytes,
                encryption: side.encryption,
            })
            .collect();
        let stored = StoredTotals { grouping: grouping_fingerprint(&self.cfg), datasets };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Applies `update` to the accumulator of the object's dataset, if it is data.
    fn account(&mut self, key: &str, size: Option<u64>, update: impl FnOnce(&mut Accumulator)) {
        let Some((prefix, format)) = self.placer.place(&self.bucket, key, size.unwrap_or(0), &self.cfg)
        else {
            return;
        };
        if self
            .current
            .as_ref()
            .is_none_or(|(current, _)| current.prefix != prefix || current.format != format)
        {
            let key = DatasetKey { prefix: prefix.to_string(), format };
            let acc = self.datasets.remove(&key).unwrap_or_default();
            if let Some((done, done_acc)) = self.current.replace((key, acc)) {
                self.datasets.insert(done, done_acc);
            }
        }
        if let Some((_, acc)) = &mut self.current {
            update(acc);
        }
    }

    /// Every dataset's accumulator, the current one back in the map.
    fn settle(&mut self) {
        if let Some((key, acc)) = self.current.take() {
            self.datasets.insert(key, acc);
        }
    }

    /// Accounts for one merge-join step.
    pub fn add(&mut self, entry: &DiffEntry<'_>) {
        match entry {
            // Counted in the previous totals already.
            DiffEntry::Unchanged(_) if self.previous.is_some() => {}
            DiffEntry::Unchanged(obj) => {
                // Same key and size on both sides, hence the same placement: classify once.
                let status = obj.encryption_status.as_ref();
                self.account(obj.key, obj.size, |acc| acc.unchanged.add(obj.size, status));
            }
            DiffEntry::Change(ObjectChange::Added(obj)) => self.account(&obj.key, obj.size, |acc| {
                acc.added += 1;
                acc.after.add(obj.size, obj.encryption_status.as_ref());
            }),
            DiffEntry::Change(ObjectChange::Removed(obj)) => self.account(&obj.key, obj.size, |acc| {
                acc.removed += 1;
                acc.before.add(obj.size, obj.encryption_status.as_ref());
            }),
            DiffEntry::Change(ObjectChange::Changed { old, new, .. }) => {
                let (before, after) = (old.encryption_status.as_ref(), new.encryption_status.as_ref());
                // A size change can turn an empty (junk) object into data or back, so each
                // side is placed on its own.
                let moved = self.placer.dataset(&self.bucket, &old.key, old.size.unwrap_or(0), &self.cfg)
                    != self.placer.dataset(&self.bucket, &new.key, new.size.unwrap_or(0), &self.cfg);
                if moved {
                    self.account(&old.key, old.size, |acc| {
                        acc.removed += 1;
                        acc.before.add(old.size, before);
                    });
                    self.account(&new.key, new.size, |acc| {
                        acc.added += 1;
                        acc.after.add(new.size, after);
                    });
                } else {
                    self.account(&new.key, new.size, |acc| {
                        acc.changed += 1;
                        acc.before.add(old.size, before);
                        acc.after.add(new.size, after);
                    });
                }
            }
        }
    }

    /// The datasets with at least one added, removed or changed object, ordered by key.
    pub fn finish(mut self) -> Vec<DatasetChange> {
        self.settle();
        let datasets = std::mem::take(&mut self.datasets);
        datasets
            .into_iter()
            .filter(|(_, acc)| acc.added + acc.removed + acc.changed > 0)
            .map(|(dataset, acc)| {
                let (before, after) = self.sides(&dataset, &acc);
                let kind = if before.objects == 0 {
                    DatasetChangeKind::Added
                } else if after.objects == 0 {
                    DatasetChangeKind::Removed
                } else {
                    DatasetChangeKind::Changed
                };
                DatasetChange {
                    name: dataset.display_name(&self.bucket),
                    dataset,
                    kind,
                    objects_added: acc.added,
                    objects_removed: acc.removed,
                    objects_changed: acc.changed,
                    before,
                    after,
                }
            })
            .collect()
    }
}

/// The aggregates of the datasets `needed` (for schema inference) over the snapshot at
/// `path`, grouped as extraction groups a listing. One pass in key order: each entry's dataset
/// is worked out from its bytes (once per folder, [`DatasetPlacer`]), and only the needed
/// datasets' objects are decoded and handed to the [`Grouper`]. The snapshot is verified as
/// [`SnapshotReader::open`] and iteration verify it.
pub fn aggregate_datasets(
    path: &Path,
    bucket: &str,
    cfg: &GroupingConfig,
    needed: &BTreeSet<DatasetKey>,
) -> Result<Vec<DatasetAggregate>, SnapshotError> {
    let mut reader = SnapshotReader::open(path)?;
    let mut grouper = Grouper::new(bucket, cfg.clone());
    let mut placer = DatasetPlacer::default();
    // The last dataset seen and whether it is needed: runs of one dataset skip the set.
    let mut last: Option<(DatasetKey, bool)> = None;
    let mut entry = Vec::new();
    while reader.next_flat(&mut entry)?.is_some() {
        let view = decode_flat(&entry).map_err(|d| SnapshotError::corrupt(path, d))?;
        if let Some((prefix, format)) = placer.place(bucket, view.key, view.size.unwrap_or(0), cfg) {
            let wanted = match &last {
                Some((dataset, wanted)) if dataset.prefix == prefix && dataset.format == format => *wanted,
                _ => {
                    let dataset = DatasetKey { prefix: prefix.to_string(), format };
                    let wanted = needed.contains(&dataset);
                    last = Some((dataset, wanted));
                    wanted
                }
            };
            if wanted {
                grouper.add(ObjectMeta::from(view.to_object()));
            }
        }
        entry.clear();
    }
    Ok(grouper.take_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Grouper;
    use crate::inventory::snapshot::format::SnapshotObject;
    use crate::inventory::snapshot::merge_join;
    use crate::inventory::snapshot::test_support::arb_objects;

    fn o(key: &str, size: u64, enc: EncryptionStatus) -> SnapshotObject {
        SnapshotObject {
            key: key.into(),
            size: Some(size),
            encryption_status: Some(enc),
            ..Default::default()
        }
    }

    fn join_into(agg: &mut DatasetDiffAggregator, old: &[SnapshotObject], new: &[SnapshotObject]) {
        merge_join(old.iter().cloned().map(Ok), new.iter().cloned().map(Ok), |e| {
            agg.add(&e);
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
    }

    fn run(old: &[SnapshotObject], new: &[SnapshotObject]) -> Vec<DatasetChange> {
        let mut agg = DatasetDiffAggregator::new("src", GroupingConfig::default());
        join_into(&mut agg, old, new);
        agg.finish()
    }

    #[test]
    fn previous_totals_give_the_counted_roll_up_and_other_revisions_are_refused() {
        use EncryptionStatus::*;
        let old = vec![o("sales/a.csv", 5, SseS3), o("sales/b.csv", 7, SseS3)];
        let new = vec![o("sales/a.csv", 5, SseS3), o("sales/b.csv", 9, SseKms)];
        let mut counted = DatasetDiffAggregator::new("src", GroupingConfig::default());
        join_into(&mut counted, &[], &old);
        let stored = counted.totals_payload();
        let mut rollup = DatasetDiffAggregator::new("src", GroupingConfig::default());
        assert!(rollup.take_previous_totals(&stored));
        // Handed every step, unchanged ones included (the builder skips them): the same result.
        join_into(&mut rollup, &old, &new);
        assert_eq!(rollup.finish(), run(&old, &new));
        let mut other = DatasetDiffAggregator::new("src", GroupingConfig::default());
        assert!(!other.take_previous_totals(b"{\"grouping\": \"revision 0\", \"datasets\": []}"));
        assert!(!other.take_previous_totals(b"not json"));
    }

    /// Pins the grouping that stored totals are counted under. When this fails, placement,
    /// partitions, junk rules or formats changed, and totals stored by earlier builds would
    /// count objects in the wrong datasets: bump [`GROUPING_REVISION`] and pin the new digest.
    #[test]
    fn grouping_revision_is_pinned() {
        use crate::dataset::PathTemplate;
        use sha2::Digest;
        use std::fmt::Write;
        let corpus: &[(&str, u64)] = &[
            ("top.csv", 1),
            ("a.CSV.GZ", 1),
            ("sales/orders/region=eu/dt=2024-01-02/part-0.snappy.parquet", 9),
            ("sales/orders/region=eu/dt=2024-01-02/_SUCCESS", 0),
            ("sales/orders/_temporary/0/part-0.parquet", 9),
            ("logs/2024/01/02/app.jsonl.zst", 3),
            ("logs/2024/01/02/.hidden.jsonl", 3),
            ("events/year=2024/month=01/e.avro", 4),
            ("events/year=2024/month=01/e.avro.crc", 4),
            ("warehouse/inv/snapshot=08/inv-1.orc", 5),
            ("warehouse/inv/snapshot=08/empty.orc", 0),
            ("data/x.tsv.bz2", 2),
            ("data/x.psv", 2),
            ("data/sub_$folder$", 0),
            ("data/sub/", 0),
            ("cse/part-0.csv.instruction", 412),
            ("\u{e9}t\u{e9}/caf\u{e9}.json", 6),
            ("mixed/a.csv", 1),
            ("mixed/b.parquet", 1),
            ("mixed/noext", 1),
            ("sales/2024/a.csv", 1),
        ];
        let template = PathTemplate::parse("s3://*/sales/{year}/*").unwrap();
        let configs = [
            GroupingConfig::default(),
            GroupingConfig { templates: vec![template], ..GroupingConfig::default() },
        ];
        let mut placed = String::new();
        for cfg in &configs {
            let mut placer = DatasetPlacer::default();
            for (key, size) in corpus {
                let dataset = placer.dataset("src", key, *size, cfg);
                writeln!(placed, "{key} {size} {dataset:?}").unwrap();
            }
        }
        let digest = crate::inventory::md5_reader::hex(&sha2::Sha256::digest(placed.as_bytes()));
        assert_eq!(
            (GROUPING_REVISION, digest.as_str()),
            (1, "1ca0a861d85bbbaa8d08cbab42ea062d98fefd0be1d4f977b4079daaef5f0381"),
            "grouping changed: bump GROUPING_REVISION and pin the new digest\n{placed}"
        );
    }

    #[test]
    fn kinds_counts_and_encryption_mix() {
        use EncryptionStatus::*;
        let old = vec![
            o("gone/a.csv", 5, SseS3),
            o("sales/dt=2024-01-01/p.parquet", 100, SseS3),
            o("sales/dt=2024-01-02/p.parquet", 100, SseS3),
            o("stable/x.json", 1, SseS3),
        ];
        let new = vec![
            o("fresh/b c.csv", 7, SseKms),
            o("sales/_SUCCESS", 0, SseS3),
            o("sales/dt=2024-01-01/p.parquet", 100, SseKms),
            o("sales/dt=2024-01-02/p.parquet", 100, SseS3),
            o("sales/dt=2024-01-03/p.parquet", 50, SseS3),
            o("stable/x.json", 1, SseS3),
        ];
        let changes = run(&old, &new);
        let summary: Vec<_> = changes
            .iter()
            .map(|c| {
                (
                    c.dataset.prefix.as_str(),
                    c.kind.as_str(),
                    c.objects_added,
                    c.objects_removed,
                    c.objects_changed,
                    c.bytes_delta(),
                    c.encryption_mix_changed(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("fresh/", "ADDED", 1, 0, 0, 7, true),
                ("gone/", "REMOVED", 0, 1, 0, -5, true),
                ("sales/", "CHANGED", 1, 0, 1, 50, true),
            ]
        );
        let reinfer: Vec<_> = changes.iter().map(DatasetChange::needs_schema_inference).collect();
        assert_eq!(reinfer, [true, false, true]);
        assert_eq!(changes[2].after.encryption.get("SSE-KMS"), Some(&1));
    }

    #[test]
    fn before_and_after_totals_count_every_object() {
        use EncryptionStatus::*;
        // Three datasets of 3,000 objects each, one object changed in each.
        let objs = |dir: &str, n: u64| -> Vec<SnapshotObject> {
            (0..n).map(|i| o(&format!("{dir}/f{i:05}.csv"), i + 1, SseKms)).collect()
        };
        let old: Vec<_> = [objs("a", 3_000), objs("b", 3_000), objs("c", 3_000)].concat();
        let mut new: Vec<_> = [objs("a", 3_001), objs("b", 3_000), objs("c", 2_999)].concat();
        new[4_000].encryption_status = Some(SseS3);
        let summary: Vec<_> = run(&old, &new)
            .iter()
            .map(|c| {
                let counts = (c.objects_added, c.objects_removed, c.objects_changed);
                (c.dataset.prefix.clone(), counts, c.before.objects, c.after.objects, c.bytes_delta())
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a/".to_string(), (1, 0, 0), 3_000, 3_001, 3_001),
                ("b/".to_string(), (0, 0, 1), 3_000, 3_000, 0),
                ("c/".to_string(), (0, 1, 0), 3_000, 2_999, -3_000),
            ]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Each side of every changed dataset holds that snapshot's own totals (objects,
        /// bytes, encryption statuses), however many of its objects are unchanged.
        #[test]
        fn sides_are_each_snapshots_own_totals(
            old in arb_objects(30),
            new in arb_objects(30),
            overlap in 0usize..3,
        ) {
            // New as drawn, the same as old, or old with new's objects laid over it.
            let new: Vec<SnapshotObject> = match overlap {
                0 => new,
                1 => old.clone(),
                _ => {
                    let mut by_key: BTreeMap<String, SnapshotObject> =
                        old.iter().map(|o| (o.key.clone(), o.clone())).collect();
                    by_key.extend(new.into_iter().map(|o| (o.key.clone(), o)));
                    by_key.into_values().collect()
                }
            };
            let totals = |objs: &[SnapshotObject]| {
                let mut placer = crate::dataset::DatasetPlacer::default();
                let mut sides: BTreeMap<DatasetKey, DatasetSide> = BTreeMap::new();
                for o in objs {
                    let cfg = GroupingConfig::default();
                    if let Some(key) = placer.dataset("src", &o.key, o.size.unwrap_or(0), &cfg) {
                        let side = sides.entry(key).or_default();
                        side.objects += 1;
                        side.bytes += o.size.unwrap_or(0);
                        let status = o.encryption_status.as_ref().map_or("UNKNOWN", EncryptionStatus::as_str);
                        *side.encryption.entry(status.to_string()).or_default() += 1;
                    }
                }
                sides
            };
            let (before, after) = (totals(&old), totals(&new));
            let mut agg = DatasetDiffAggregator::new("src", GroupingConfig::default());
            join_into(&mut agg, &old, &new);
            for change in agg.finish() {
                proptest::prop_assert_eq!(&change.before, &before.get(&change.dataset).cloned().unwrap_or_default());
                proptest::prop_assert_eq!(&change.after, &after.get(&change.dataset).cloned().unwrap_or_default());
            }
        }

        /// The needed datasets' aggregates over a snapshot file are the Grouper's over its
        /// objects, keeping only those datasets.
        #[test]
        fn snapshot_aggregates_are_the_groupers_for_the_needed_datasets(
            objects in arb_objects(40),
            pick in proptest::collection::vec(proptest::prelude::any::<bool>(), 8),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = crate::inventory::snapshot::test_support::write_snapshot(dir.path(), "s.snap", &objects);
            let meta = |obj: &SnapshotObject| ObjectMeta::from(obj.clone());
            let mut all = Grouper::new("src", GroupingConfig::default());
            objects.iter().for_each(|obj| all.add(meta(obj)));
            let all = all.take_all();
            let needed: BTreeSet<DatasetKey> = all
                .iter()
                .zip(pick.iter().cycle())
                .filter(|(_, picked)| **picked)
                .map(|(d, _)| d.key().clone())
                .collect();
            let mut expected = Grouper::new("src", GroupingConfig::default());
            for obj in &objects {
                let place = crate::dataset::classify("src", &meta(obj), &GroupingConfig::default());
                if matches!(&place, crate::dataset::Classification::Data(p) if needed.contains(&p.dataset)) {
                    expected.add(meta(obj));
                }
            }
            let got = aggregate_datasets(&path, "src", &GroupingConfig::default(), &needed).unwrap();
            proptest::prop_assert_eq!(got, expected.take_all());
        }

        /// The "after" side of every dataset matches what extraction's Grouper builds from the
        /// new snapshot alone: same grouping, same counts.
        #[test]
        fn after_side_matches_grouper(old in arb_objects(30), new in arb_objects(30)) {
            let mut agg = DatasetDiffAggregator::new("src", GroupingConfig::default());
            join_into(&mut agg, &old, &new);
            agg.settle();
            let sides: BTreeMap<DatasetKey, (u64, u64)> = agg
                .datasets
                .iter()
                .map(|(k, a)| (k, a.after.plus(&a.unchanged)))
                .filter(|(_, after)| after.objects > 0)
                .map(|(k, after)| (k.clone(), (after.objects, after.bytes)))
                .collect();
            let mut grouper = Grouper::new("src", GroupingConfig::default());
            for obj in &new {
                grouper.add(crate::model::ObjectMeta {
                    key: obj.key.clone(),
                    size: obj.size.unwrap_or(0),
                    last_modified_ms: obj.last_modified_ms,
                    etag: None,
                    storage_class: None,
                });
            }
            let expected: BTreeMap<DatasetKey, (u64, u64)> = grouper
                .take_all()
                .iter()
                .map(|d| (d.key().clone(), (d.file_count(), d.total_bytes())))
                .collect();
            proptest::prop_assert_eq!(sides, expected);
        }
    }
}
