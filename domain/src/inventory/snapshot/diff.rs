//! Streaming diff of two snapshots: a merge-join over two key-sorted streams, so memory is
//! constant in the number of objects.

use std::fmt;

use super::format::{SnapshotError, SnapshotObject};
use crate::inventory::record::EncryptionStatus;

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

/// What dataset aggregation counts of an object that is the same in both snapshots: its
/// placement (key and size) and its encryption. Unchanged objects are nearly all of a day's,
/// so only these fields are decoded (the whole entry's decode was a tenth of a day-2 run's
/// CPU), and the key is borrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnchangedObject<'a> {
    /// Object key.
    pub key: &'a str,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Server-side encryption status (owned: only [`EncryptionStatus::Other`] allocates).
    pub encryption_status: Option<EncryptionStatus>,
}

impl<'a> From<&'a SnapshotObject> for UnchangedObject<'a> {
    fn from(o: &'a SnapshotObject) -> Self {
        UnchangedObject { key: &o.key, size: o.size, encryption_status: o.encryption_status.clone() }
    }
}

/// One step of the merge-join: a change, or an object equal in both snapshots. Dataset
/// aggregation needs the unchanged objects too (to know whether a dataset is new or gone).
// Steps are built where the join makes them and handed to a generic closure: a change is
// not boxed, which would allocate for each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffEntry<'a> {
    /// Present and identical in both.
    Unchanged(UnchangedObject<'a>),
    /// A change.
    Change(ObjectChange),
}

/// Merge-join of two key-sorted streams of owned objects, calling `on_entry` with every
/// object of either side once, in key order. The first error of either stream ends the join
/// (the inner error); an error of `on_entry` ends it too (the outer error). The inputs must be
/// strictly increasing by key (snapshot readers check this themselves).
///
/// The incremental run does not use this: its final pass joins encoded entries
/// ([`super::SnapshotBuilder::finish_with_rollup`]). This is the plain form of the same join.
pub fn merge_join<E>(
    old: impl IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
    new: impl IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
    mut on_entry: impl FnMut(DiffEntry<'_>) -> Result<(), E>,
) -> Result<Result<(), SnapshotError>, E> {
    use std::cmp::Ordering;
    let (mut old, mut new) = (old.into_iter(), new.into_iter());
    let read = |head: &mut Option<SnapshotObject>,
                side: &mut dyn Iterator<Item = Result<SnapshotObject, SnapshotError>>| {
        side.next().transpose().map(|next| *head = next)
    };
    let (mut old_head, mut new_head) = (None, None);
    if let Err(e) = read(&mut old_head, &mut old).and_then(|()| read(&mut new_head, &mut new)) {
        return Ok(Err(e));
    }
    loop {
        let read = match (old_head.take(), new_head.take()) {
            (None, None) => return Ok(Ok(())),
            (Some(o), None) => {
                on_entry(DiffEntry::Change(ObjectChange::Removed(o)))?;
                read(&mut old_head, &mut old)
            }
            (None, Some(n)) => {
                on_entry(DiffEntry::Change(ObjectChange::Added(n)))?;
                read(&mut new_head, &mut new)
            }
            (Some(o), Some(n)) => match o.key.cmp(&n.key) {
                Ordering::Less => {
                    new_head = Some(n);
                    on_entry(DiffEntry::Change(ObjectChange::Removed(o)))?;
                    read(&mut old_head, &mut old)
                }
                Ordering::Greater => {
                    old_head = Some(o);
                    on_entry(DiffEntry::Change(ObjectChange::Added(n)))?;
                    read(&mut new_head, &mut new)
                }
                Ordering::Equal => {
                    let fields = ChangedFields::between(&o, &n);
                    if fields.is_empty() {
                        on_entry(DiffEntry::Unchanged(UnchangedObject::from(&n)))?;
                    } else {
                        on_entry(DiffEntry::Change(ObjectChange::Changed { old: o, new: n, fields }))?;
                    }
                    read(&mut old_head, &mut old).and_then(|()| read(&mut new_head, &mut new))
                }
            },
        };
        if let Err(e) = read {
            return Ok(Err(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::EncryptionStatus;
    use crate::inventory::snapshot::SnapshotReader;
    use crate::inventory::snapshot::test_support::{arb_objects, write_snapshot};
    use std::collections::BTreeMap;

    /// Only the changes of a merge-join.
    fn changes(
        old: impl IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
        new: impl IntoIterator<Item = Result<SnapshotObject, SnapshotError>>,
    ) -> Result<Vec<ObjectChange>, SnapshotError> {
        let mut changes = Vec::new();
        merge_join(old, new, |e| {
            if let DiffEntry::Change(c) = e {
                changes.push(c);
            }
            Ok::<_, std::convert::Infallible>(())
        })
        .unwrap_or_else(|never| match never {})?;
        Ok(changes)
    }

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
        let changes = changes([Ok(old.clone())], [Ok(new.clone())]).unwrap();
        let ObjectChange::Changed { fields, .. } = &changes[0] else { panic!("{changes:?}") };
        let names: Vec<_> = fields.iter().map(ChangedField::as_str).collect();
        assert_eq!(names, ["ENCRYPTION_STATUS", "BUCKET_KEY"]);
        assert_eq!(format!("{fields:?}"), r#"{"ENCRYPTION_STATUS", "BUCKET_KEY"}"#);
    }

    #[test]
    fn error_ends_the_stream() {
        let err = SnapshotError::Corrupt { path: "old.snap".into(), detail: "x".into() };
        let a = SnapshotObject { key: "a".into(), ..Default::default() };
        let z = SnapshotObject { key: "z".into(), ..Default::default() };
        let mut seen = Vec::new();
        let outcome = merge_join(vec![Ok(a.clone()), Err(err)], vec![Ok(a), Ok(z)], |e| {
            seen.push(format!("{e:?}"));
            Ok::<_, ()>(())
        });
        assert!(outcome.unwrap().unwrap_err().to_string().contains("old.snap"));
        assert_eq!(seen.len(), 1, "`a` is judged, then the error ends the join before `z`: {seen:?}");
    }

    #[test]
    fn a_consumer_error_ends_the_join() {
        let objs: Vec<_> =
            ["a", "b", "c"].map(|k| SnapshotObject { key: k.into(), ..Default::default() }).into();
        let mut seen = 0;
        let outcome = merge_join(Vec::new(), objs.into_iter().map(Ok), |_| {
            seen += 1;
            if seen == 2 { Err("closed") } else { Ok(()) }
        });
        assert_eq!(outcome.err(), Some("closed"));
        assert_eq!(seen, 2);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The streaming diff of two snapshot files equals a naive in-memory diff.
        #[test]
        fn streaming_equals_naive(old in arb_objects(40), new in arb_objects(40)) {
            let dir = tempfile::tempdir().unwrap();
            let old_path = write_snapshot(dir.path(), "old.snap", &old);
            let new_path = write_snapshot(dir.path(), "new.snap", &new);
            let streamed = changes(
                SnapshotReader::open(&old_path).unwrap(),
                SnapshotReader::open(&new_path).unwrap(),
            )
            .unwrap();
            proptest::prop_assert_eq!(streamed, naive(&old, &new));
        }
    }
}
