//! Streaming diff of two snapshots: a merge-join over two key-sorted streams, so memory is
//! constant in the number of objects.

use std::fmt;

use super::format::{SnapshotError, SnapshotObject};

/// One compared field of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangedField {
    /// Size.
    Size,
    /// ETag (a rewrite, or a re-encryption under SSE-KMS).
    Etag,
    /// Last-modified time.
    LastModified,
    /// Storage class.
    StorageClass,
    /// Server-side encryption status.
    EncryptionStatus,
    /// S3 Bucket Key status.
    BucketKey,
}

impl ChangedField {
    /// Every field, in reporting order.
    pub const ALL: [ChangedField; 6] = [
        ChangedField::Size,
        ChangedField::Etag,
        ChangedField::LastModified,
        ChangedField::StorageClass,
        ChangedField::EncryptionStatus,
        ChangedField::BucketKey,
    ];

    /// Stable name used in change records.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangedField::Size => "SIZE",
            ChangedField::Etag => "ETAG",
            ChangedField::LastModified => "LAST_MODIFIED",
            ChangedField::StorageClass => "STORAGE_CLASS",
            ChangedField::EncryptionStatus => "ENCRYPTION_STATUS",
            ChangedField::BucketKey => "BUCKET_KEY",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`ChangedField`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChangedFields(u8);

impl ChangedFields {
    /// The fields in which `old` and `new` differ.
    pub fn between(old: &SnapshotObject, new: &SnapshotObject) -> Self {
        let mut set = ChangedFields::default();
        let mut mark = |field: ChangedField, differs: bool| {
            if differs {
                set.0 |= field.bit();
            }
        };
        mark(ChangedField::Size, old.size != new.size);
        mark(ChangedField::Etag, old.etag != new.etag);
        mark(ChangedField::LastModified, old.last_modified_ms != new.last_modified_ms);
        mark(ChangedField::StorageClass, old.storage_class != new.storage_class);
        mark(ChangedField::EncryptionStatus, old.encryption_status != new.encryption_status);
        mark(ChangedField::BucketKey, old.bucket_key_enabled != new.bucket_key_enabled);
        set
    }

    /// True when no field changed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `field` changed.
    pub fn contains(self, field: ChangedField) -> bool {
        self.0 & field.bit() != 0
    }

    /// The changed fields in reporting order.
    pub fn iter(self) -> impl Iterator<Item = ChangedField> {
        ChangedField::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl fmt::Debug for ChangedFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(ChangedField::as_str)).finish()
    }
}

/// How one object differs between the old and the new snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectChange {
    /// Only in the new snapshot.
    Added(SnapshotObject),
    /// Only in the old snapshot.
    Removed(SnapshotObject),
    /// In both, with different fields.
    Changed {
        /// The old object.
        old: SnapshotObject,
        /// The new object.
        new: SnapshotObject,
        /// What differs.
        fields: ChangedFields,
    },
}

impl ObjectChange {
    /// The object key.
    pub fn key(&self) -> &str {
        match self {
            ObjectChange::Added(o) | ObjectChange::Removed(o) => &o.key,
            ObjectChange::Changed { new, .. } => &new.key,
        }
    }
}

/// One step of the merge-join: a change, or an object equal in both snapshots. Dataset
/// aggregation needs the unchanged objects too (to know whether a dataset is new or gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffEntry {
    /// Present and identical in both.
    Unchanged(SnapshotObject),
    /// A change.
    Change(ObjectChange),
}

/// Merge-join of two key-sorted object streams (typically [`super::SnapshotReader`]s).
///
/// Yields every object of either side once, in key order; the first error ends the stream.
/// The inputs must be strictly increasing by key (snapshot readers check this themselves).
pub struct MergeJoin<O, N> {
    old: O,
    new: N,
    old_head: Option<SnapshotObject>,
    new_head: Option<SnapshotObject>,
    started: bool,
    failed: bool,
}

impl<O, N> fmt::Debug for MergeJoin<O, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergeJoin")
            .field("old_head", &self.old_head)
            .field("new_head", &self.new_head)
            .finish()
    }
}

/// Every object of both streams, changed or not.
pub fn merge_join<O, N>(old: O, new: N) -> MergeJoin<O::IntoIter, N::IntoIter>
where
    O: IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
    N: IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
{
    MergeJoin {
        old: old.into_iter(),
        new: new.into_iter(),
        old_head: None,
        new_head: None,
        started: false,
        failed: false,
    }
}

/// Only the changes between two key-sorted streams.
pub fn diff<O, N>(old: O, new: N) -> impl Iterator<Item = Result<ObjectChange, SnapshotError>>
where
    O: IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
    N: IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
{
    merge_join(old, new).filter_map(|entry| match entry {
        Ok(DiffEntry::Unchanged(_)) => None,
        Ok(DiffEntry::Change(change)) => Some(Ok(change)),
        Err(e) => Some(Err(e)),
    })
}

impl<O, N> MergeJoin<O, N>
where
    O: Iterator<Item = Result<SnapshotObject, SnapshotError>>,
    N: Iterator<Item = Result<SnapshotObject, SnapshotError>>,
{
    fn step(&mut self) -> Result<Option<DiffEntry>, SnapshotError> {
        if !self.started {
            self.started = true;
            self.old_head = self.old.next().transpose()?;
            self.new_head = self.new.next().transpose()?;
        }
        let entry = match (self.old_head.take(), self.new_head.take()) {
            (None, None) => return Ok(None),
            (Some(old), None) => {
                self.old_head = self.old.next().transpose()?;
                DiffEntry::Change(ObjectChange::Removed(old))
            }
            (None, Some(new)) => {
                self.new_head = self.new.next().transpose()?;
                DiffEntry::Change(ObjectChange::Added(new))
            }
            (Some(old), Some(new)) => match old.key.cmp(&new.key) {
                std::cmp::Ordering::Less => {
                    self.new_head = Some(new);
                    self.old_head = self.old.next().transpose()?;
                    DiffEntry::Change(ObjectChange::Removed(old))
                }
                std::cmp::Ordering::Greater => {
                    self.old_head = Some(old);
                    self.new_head = self.new.next().transpose()?;
                    DiffEntry::Change(ObjectChange::Added(new))
                }
                std::cmp::Ordering::Equal => {
                    self.old_head = self.old.next().transpose()?;
                    self.new_head = self.new.next().transpose()?;
                    let fields = ChangedFields::between(&old, &new);
                    if fields.is_empty() {
                        DiffEntry::Unchanged(new)
                    } else {
                        DiffEntry::Change(ObjectChange::Changed { old, new, fields })
                    }
                }
            },
        };
        Ok(Some(entry))
    }
}

impl<O, N> Iterator for MergeJoin<O, N>
where
    O: Iterator<Item = Result<SnapshotObject, SnapshotError>>,
    N: Iterator<Item = Result<SnapshotObject, SnapshotError>>,
{
    type Item = Result<DiffEntry, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let step = self.step();
        if step.is_err() {
            self.failed = true;
        }
        step.transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::EncryptionStatus;
    use crate::inventory::snapshot::SnapshotReader;
    use crate::inventory::snapshot::test_support::{arb_objects, write_snapshot};
    use std::collections::BTreeMap;

    fn naive(old: &[SnapshotObject], new: &[SnapshotObject]) -> Vec<ObjectChange> {
        let old: BTreeMap<_, _> = old.iter().map(|o| (o.key.clone(), o.clone())).collect();
        let new: BTreeMap<_, _> = new.iter().map(|o| (o.key.clone(), o.clone())).collect();
        let mut keys: Vec<_> = old.keys().chain(new.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter_map(|k| match (old.get(&k), new.get(&k)) {
                (Some(o), None) => Some(ObjectChange::Removed(o.clone())),
                (None, Some(n)) => Some(ObjectChange::Added(n.clone())),
                (Some(o), Some(n)) if o != n => Some(ObjectChange::Changed {
                    old: o.clone(),
                    new: n.clone(),
                    fields: ChangedFields::between(o, n),
                }),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reencryption_is_a_change() {
        let old = SnapshotObject {
            key: "a".into(),
            encryption_status: Some(EncryptionStatus::SseS3),
            ..Default::default()
        };
        let new = SnapshotObject {
            encryption_status: Some(EncryptionStatus::SseKms),
            bucket_key_enabled: Some(true),
            ..old.clone()
        };
        let changes: Vec<_> = diff([Ok(old.clone())], [Ok(new.clone())]).collect::<Result<_, _>>().unwrap();
        let ObjectChange::Changed { fields, .. } = &changes[0] else { panic!("{changes:?}") };
        let names: Vec<_> = fields.iter().map(ChangedField::as_str).collect();
        assert_eq!(names, ["ENCRYPTION_STATUS", "BUCKET_KEY"]);
        assert_eq!(format!("{fields:?}"), r#"{"ENCRYPTION_STATUS", "BUCKET_KEY"}"#);
    }

    #[test]
    fn error_ends_the_stream() {
        let err = SnapshotError::Corrupt { path: "old.snap".into(), detail: "x".into() };
        let a = SnapshotObject { key: "a".into(), ..Default::default() };
        let items: Vec<_> = diff(vec![Ok(a.clone()), Err(err)], vec![Ok(a)]).collect();
        assert_eq!(items.len(), 1);
        assert!(items[0].as_ref().unwrap_err().to_string().contains("old.snap"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The streaming diff of two snapshot files equals a naive in-memory diff.
        #[test]
        fn streaming_equals_naive(old in arb_objects(40), new in arb_objects(40)) {
            let dir = tempfile::tempdir().unwrap();
            let old_path = write_snapshot(dir.path(), "old.snap", &old);
            let new_path = write_snapshot(dir.path(), "new.snap", &new);
            let streamed: Vec<_> = diff(
                SnapshotReader::open(&old_path).unwrap(),
                SnapshotReader::open(&new_path).unwrap(),
            )
            .collect::<Result<_, _>>()
            .unwrap();
            proptest::prop_assert_eq!(streamed, naive(&old, &new));
        }
    }
}
