//! Full extraction from an inventory report (`extract --from-inventory`): the report's current
//! objects folded straight into the [`Grouper`] a bucket listing feeds, with the encryption the
//! report lists for each object.
//!
//! Rows are folded as they stream, in any order, one batch at a time: memory is the grouper's
//! (one bounded aggregate per dataset), never the object count. All-versions rows are reduced
//! row by row ([`InventoryRecord::is_current`]: noncurrent versions and delete markers are
//! skipped). Unlike the incremental snapshot, which sorts, a fold cannot see two rows of one
//! key: a report that lists a key twice as current (S3 documents inventory as eventually
//! consistent) counts it twice.

use super::record::InventoryRecord;
use super::snapshot::BuildError;
use crate::dataset::{Grouper, ListedEncryption};
use crate::model::ObjectMeta;

/// Counts of one fold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldCounts {
    /// Rows seen.
    pub rows: u64,
    /// Rows that are current objects.
    pub current: u64,
    /// Current objects folded into the grouper (in scope).
    pub folded: u64,
}

impl FoldCounts {
    /// Adds another fold's counts.
    pub fn add(&mut self, other: FoldCounts) {
        self.rows += other.rows;
        self.current += other.current;
        self.folded += other.folded;
    }
}

/// The object of a row as a listing would describe it, and the encryption the row lists.
pub fn listed_object(record: InventoryRecord) -> (ObjectMeta, ListedEncryption) {
    let encryption = ListedEncryption {
        kind: record.encryption_status.as_ref().map(|s| s.encryption_type()),
        bucket_key_enabled: record.bucket_key_enabled,
    };
    let meta = ObjectMeta {
        key: record.key,
        size: record.size.unwrap_or(0),
        last_modified_ms: record.last_modified_ms,
        etag: record.etag,
        storage_class: record.storage_class,
    };
    (meta, encryption)
}

/// Folds a batch of rows of `bucket`'s report into `grouper`: current objects whose key `keep`
/// accepts. A row of another bucket is refused (`SNAPSHOT_BUCKET_MISMATCH`, as for the
/// incremental snapshot); rows before it stay folded, the caller stops the run.
pub fn fold_rows(
    grouper: &mut Grouper,
    bucket: &str,
    rows: impl IntoIterator<Item = InventoryRecord>,
    keep: impl Fn(&str) -> bool,
) -> Result<FoldCounts, BuildError> {
    let mut counts = FoldCounts::default();
    for record in rows {
        counts.rows += 1;
        if record.bucket != bucket {
            return Err(BuildError::BucketMismatch {
                expected: bucket.to_string(),
                found: record.bucket,
                key: record.key,
            });
        }
        if !record.is_current() {
            continue;
        }
        counts.current += 1;
        if !keep(&record.key) {
            continue;
        }
        counts.folded += 1;
        let (meta, encryption) = listed_object(record);
        grouper.add_with_encryption(meta, encryption);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::GroupingConfig;
    use crate::inventory::EncryptionStatus;
    use crate::model::EncryptionType;

    fn row(
        key: &str,
        size: u64,
        status: Option<EncryptionStatus>,
        bucket_key: Option<bool>,
    ) -> InventoryRecord {
        InventoryRecord {
            bucket: "src".into(),
            key: key.into(),
            size: Some(size),
            last_modified_ms: Some(1_704_067_200_000 + size as i64),
            etag: Some(format!("e{size}")),
            storage_class: Some("STANDARD".into()),
            encryption_status: status,
            bucket_key_enabled: bucket_key,
            ..InventoryRecord::default()
        }
    }

    fn meta(r: &InventoryRecord) -> ObjectMeta {
        listed_object(r.clone()).0
    }

    #[test]
    fn folding_rows_gives_the_aggregates_of_a_listing_plus_encryption_counts() {
        let rows = vec![
            row("sales/dt=2024-01-01/a.csv", 10, Some(EncryptionStatus::SseS3), Some(false)),
            row("sales/dt=2024-01-02/b.csv", 20, Some(EncryptionStatus::SseKms), Some(true)),
            row("sales/dt=2024-01-02/c.csv.gz", 30, Some(EncryptionStatus::SseKms), Some(true)),
            row("sales/_SUCCESS", 0, Some(EncryptionStatus::SseS3), None),
            row("logs/x.json", 5, None, None),
            row("logs/y.json", 6, Some(EncryptionStatus::Other("AES-512".into())), None),
        ];
        let mut listed = Grouper::new("src", GroupingConfig::default());
        for r in &rows {
            listed.add(meta(r));
        }
        let mut folded = Grouper::new("src", GroupingConfig::default());
        // Two batches in another order: the fold does not depend on row order.
        let (first, second) = rows.split_at(3);
        let mut counts = fold_rows(&mut folded, "src", second.to_vec(), |_| true).unwrap();
        counts.add(fold_rows(&mut folded, "src", first.iter().rev().cloned(), |_| true).unwrap());
        assert_eq!(counts, FoldCounts { rows: 6, current: 6, folded: 6 });
        assert_eq!(folded.tally(), listed.tally(), "same bucket counts, junk included");
        let (listed, folded) = (listed.take_all(), folded.take_all());
        assert_eq!(listed.len(), 2);
        for (l, f) in listed.iter().zip(&folded) {
            assert_eq!(l.key(), f.key());
            assert_eq!((l.file_count(), l.total_bytes()), (f.file_count(), f.total_bytes()));
            assert_eq!(l.partitions(), f.partitions());
            assert_eq!(l.compressions(), f.compressions());
            assert_eq!(l.min_last_modified_ms(), f.min_last_modified_ms());
            assert_eq!(l.schema_candidates(), f.schema_candidates(), "same files read for the schema");
            assert_eq!(l.listed_encryption(), None, "a listing has no per-object encryption");
        }
        let logs = folded[0].listed_encryption().unwrap();
        assert_eq!(folded[0].key().prefix, "logs/");
        assert_eq!(
            (logs.objects, logs.by_type[&EncryptionType::Unknown]),
            (2, 2),
            "absent or unknown status"
        );
        assert_eq!((logs.bucket_key_enabled, logs.bucket_key_disabled), (0, 0));
        let sales = folded[1].listed_encryption().unwrap();
        assert_eq!(sales.objects, 3, "the _SUCCESS marker is junk, not counted");
        assert_eq!(sales.by_type[&EncryptionType::SseS3], 1);
        assert_eq!(sales.by_type[&EncryptionType::SseKms], 2);
        assert_eq!((sales.bucket_key_enabled, sales.bucket_key_disabled), (2, 1));
    }

    #[test]
    fn noncurrent_versions_and_delete_markers_are_skipped_and_scope_applies() {
        let mut old = row("t/a.csv", 3, Some(EncryptionStatus::NotSse), None);
        old.is_latest = Some(false);
        let mut marker = row("t/gone.csv", 0, None, None);
        (marker.is_latest, marker.is_delete_marker, marker.size) = (Some(true), Some(true), None);
        let mut current = row("t/a.csv", 4, Some(EncryptionStatus::SseKms), Some(true));
        current.is_latest = Some(true);
        let other = row("u/b.csv", 5, Some(EncryptionStatus::SseS3), None);
        let mut grouper = Grouper::new("src", GroupingConfig::default());
        let counts =
            fold_rows(&mut grouper, "src", [old, marker, current, other], |k| k.starts_with("t/")).unwrap();
        assert_eq!(counts, FoldCounts { rows: 4, current: 2, folded: 1 });
        let datasets = grouper.take_all();
        assert_eq!(datasets.len(), 1);
        assert_eq!((datasets[0].file_count(), datasets[0].total_bytes()), (1, 4));
        let enc = datasets[0].listed_encryption().unwrap();
        assert_eq!(enc.by_type.iter().collect::<Vec<_>>(), vec![(&EncryptionType::SseKms, &1)]);
    }

    #[test]
    fn a_row_of_another_bucket_is_refused() {
        let mut grouper = Grouper::new("src", GroupingConfig::default());
        let mut stray = row("k.csv", 1, None, None);
        stray.bucket = "elsewhere".into();
        let err = fold_rows(&mut grouper, "src", [stray], |_| true).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_BUCKET_MISMATCH");
        assert!(err.to_string().contains("elsewhere"), "{err}");
    }
}
