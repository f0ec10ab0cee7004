//! Snapshots of processed reports and the day-over-day diff.
//!
//! Flow of one incremental run: [`StateStore::begin`] decides whether the report is new →
//! [`SnapshotBuilder`] sorts its rows (any order, all versions; encoded where they are read,
//! [`RowBatch`]) with bounded memory: dealt into the previous snapshot's key ranges
//! ([`StateStore::current_splitters`]) or into spilled runs → [`SnapshotBuilder::finish_with_rollup`]
//! takes the sorted ranges or merges the runs into the new snapshot file and, in the same pass, joins it against the
//! previous snapshot as encoded entries (the join [`merge_join`] does on owned objects),
//! feeding [`DiffEntry`]s to the consumer and [`DatasetDiffAggregator`] → once every change was
//! delivered, [`StateStore::advance`] switches the pointer. A crash anywhere before that
//! leaves the previous state, and the rerun produces the same snapshot id
//! ([`SnapshotHeader::snapshot_id`], which names the report) and changes.

pub mod datasets;
pub mod diff;
mod direct;
pub mod format;
mod page_cache;
pub mod sort;
pub mod state;

pub use datasets::{
    DatasetChange, DatasetChangeKind, DatasetDiffAggregator, DatasetSide, aggregate_datasets,
};
pub use diff::{ChangedField, ChangedFields, DiffEntry, ObjectChange, UnchangedObject, merge_join};
pub use format::{
    ObjectView, SNAPSHOT_FORMAT_VERSION, SPLITTER_STRIDE, SnapshotError, SnapshotHeader, SnapshotInfo,
    SnapshotObject, SnapshotReader, SnapshotWriter, read_splitters,
};
pub use sort::{BuildError, DEFAULT_RUN_LEN, MAX_FAN_IN, RowBatch, SnapshotBuilder, build_snapshot};
pub use state::{ReportDisposition, STATE_FORMAT_VERSION, StateError, StatePointer, StateStore};

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;

    use super::*;
    use crate::inventory::record::{EncryptionStatus, InventoryRecord};

    pub(crate) fn header() -> SnapshotHeader {
        SnapshotHeader {
            source_bucket: "src".into(),
            configuration_id: "daily".into(),
            report_timestamp_ms: 1_704_067_200_000,
        }
    }

    /// Awkward keys: spaces, `+`, `%`, unicode, partitions, junk, shared prefixes.
    pub(crate) fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "a b.csv",
                "a+b.csv",
                "a%20b.csv",
                "\u{e9}t\u{e9}/x.json",
                "\u{65e5}\u{672c}/f.parquet",
                "t/dt=2024-01-01/p.parquet",
                "t/dt=2024-01-02/p.parquet",
                "t/_SUCCESS",
                "logs/2024/01/02/l.gz",
                "z",
                "",
            ])
            .prop_map(String::from),
            "[ab/ +%\u{e9}=.]{0,8}(\\.csv|\\.parquet)?",
        ]
    }

    fn arb_status() -> impl Strategy<Value = Option<EncryptionStatus>> {
        prop::option::of(prop_oneof![
            Just(EncryptionStatus::SseS3),
            Just(EncryptionStatus::SseKms),
            Just(EncryptionStatus::NotSse),
            Just(EncryptionStatus::Other("X".into())),
        ])
    }

    pub(crate) fn arb_object() -> impl Strategy<Value = SnapshotObject> {
        (
            arb_key(),
            prop::option::of(0u64..3),
            // MD5 ETags are stored as bytes, the others as text.
            prop::option::of(prop::sample::select(vec![
                "e1",
                "e2-2",
                "0123456789abcdef0123456789abcdef",
                "fedcba98765432100123456789abcdef",
                "0123456789ABCDEF0123456789ABCDEF",
            ])),
            prop::option::of(-1i64..2),
            // Known storage classes are stored as a code, others as text.
            prop::option::of(prop::sample::select(vec!["STANDARD", "GLACIER", "FUTURE_CLASS", ""])),
            arb_status(),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(key, size, etag, modified, class, status, bucket_key)| SnapshotObject {
                key,
                size,
                etag: etag.map(String::from),
                last_modified_ms: modified,
                storage_class: class.map(String::from),
                encryption_status: status,
                bucket_key_enabled: bucket_key,
            })
    }

    /// A valid snapshot content: unique keys, sorted.
    pub(crate) fn arb_objects(max: usize) -> impl Strategy<Value = Vec<SnapshotObject>> {
        prop::collection::vec(arb_object(), 0..max).prop_map(|objs| {
            let by_key: std::collections::BTreeMap<_, _> =
                objs.into_iter().map(|o| (o.key.clone(), o)).collect();
            by_key.into_values().collect()
        })
    }

    /// Unsorted all-versions rows with repeated keys. Timestamps are distinct so that
    /// competing latest rows have one clear winner (the tie-break by other fields differs from
    /// `reduce` by design and is tested separately).
    pub(crate) fn arb_records(max: usize) -> impl Strategy<Value = Vec<InventoryRecord>> {
        prop::collection::vec(
            (arb_object(), prop::option::of(any::<bool>()), prop::option::of(any::<bool>())),
            0..max,
        )
        .prop_map(|rows| {
            rows.into_iter()
                .enumerate()
                .map(|(i, (o, latest, marker))| InventoryRecord {
                    bucket: "src".into(),
                    key: o.key,
                    is_latest: latest,
                    is_delete_marker: marker,
                    size: o.size,
                    last_modified_ms: Some(((i as i64) * 7919) % 1009),
                    etag: o.etag,
                    storage_class: o.storage_class,
                    encryption_status: o.encryption_status,
                    bucket_key_enabled: o.bucket_key_enabled,
                    ..InventoryRecord::default()
                })
                .collect()
        })
    }

    /// A merge-join step with the unchanged object owned, to compare runs.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum OwnedEntry {
        /// Key, size and encryption status: what an unchanged step carries.
        Unchanged(String, Option<u64>, Option<EncryptionStatus>),
        Change(ObjectChange),
    }

    impl OwnedEntry {
        /// The step of `object` unchanged.
        pub(crate) fn unchanged(object: &SnapshotObject) -> Self {
            OwnedEntry::from(DiffEntry::Unchanged(UnchangedObject::from(object)))
        }
    }

    impl From<DiffEntry<'_>> for OwnedEntry {
        fn from(e: DiffEntry<'_>) -> Self {
            match e {
                DiffEntry::Unchanged(o) => {
                    OwnedEntry::Unchanged(o.key.to_owned(), o.size, o.encryption_status)
                }
                DiffEntry::Change(change) => OwnedEntry::Change(change),
            }
        }
    }

    /// The latest-version row of `o` in bucket `src`.
    pub(crate) fn record_of(o: &SnapshotObject) -> InventoryRecord {
        InventoryRecord {
            bucket: "src".into(),
            key: o.key.clone(),
            size: o.size,
            etag: o.etag.clone(),
            last_modified_ms: o.last_modified_ms,
            storage_class: o.storage_class.clone(),
            encryption_status: o.encryption_status.clone(),
            bucket_key_enabled: o.bucket_key_enabled,
            ..InventoryRecord::default()
        }
    }

    pub(crate) fn write_snapshot(dir: &Path, name: &str, objs: &[SnapshotObject]) -> PathBuf {
        let mut w = SnapshotWriter::create(&dir.join(name), header()).unwrap();
        for o in objs {
            w.push(o).unwrap();
        }
        w.finish().unwrap().path
    }
}
