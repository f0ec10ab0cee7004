//! All-versions reports reduced to the current objects.

use std::collections::BTreeMap;

use super::record::InventoryRecord;

/// The current objects among `records`: for each `(bucket, key)`, the row with `IsLatest` true
/// (or absent, in current-only reports), unless it is a delete marker. Sorted by bucket and key.
///
/// Rows are not sorted in inventory files, and an eventually consistent snapshot may hold two
/// "latest" rows for one key; the newest (then the delete marker, then the greatest row) wins,
/// so the result does not depend on row order.
pub fn current_objects(records: impl IntoIterator<Item = InventoryRecord>) -> Vec<InventoryRecord> {
    let mut latest: BTreeMap<(String, String), InventoryRecord> = BTreeMap::new();
    for record in records {
        if record.is_latest == Some(false) {
            continue;
        }
        let slot = (record.bucket.clone(), record.key.clone());
        match latest.get(&slot) {
            Some(kept) if rank(kept) >= rank(&record) => {}
            _ => {
                latest.insert(slot, record);
            }
        }
    }
    latest.into_values().filter(|r| r.is_delete_marker != Some(true)).collect()
}

/// Total order of competing "latest" rows for one key.
fn rank(r: &InventoryRecord) -> (Option<i64>, bool, &InventoryRecord) {
    (r.last_modified_ms, r.is_delete_marker == Some(true), r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(
        key: &str,
        version: &str,
        latest: Option<bool>,
        marker: Option<bool>,
        modified: i64,
    ) -> InventoryRecord {
        InventoryRecord {
            bucket: "src".into(),
            key: key.into(),
            version_id: Some(version.into()),
            is_latest: latest,
            is_delete_marker: marker,
            last_modified_ms: Some(modified),
            ..InventoryRecord::default()
        }
    }

    fn keys(records: &[InventoryRecord]) -> Vec<(&str, &str)> {
        records.iter().map(|r| (r.key.as_str(), r.version_id.as_deref().unwrap_or(""))).collect()
    }

    #[test]
    fn reduces_versions() {
        let rows = vec![
            rec("a", "a2", Some(true), Some(false), 2),
            rec("a", "a1", Some(false), Some(false), 1),
            // Deleted: its latest version is a delete marker.
            rec("b", "b2", Some(true), Some(true), 2),
            rec("b", "b1", Some(false), Some(false), 1),
            // Only non-current versions left.
            rec("c", "c1", Some(false), Some(false), 1),
            // Current-only report rows: no IsLatest / IsDeleteMarker.
            rec("d", "d1", None, None, 1),
            // Two "latest" rows (eventual consistency): the newer wins.
            rec("e", "e1", Some(true), Some(false), 1),
            rec("e", "e2", Some(true), Some(false), 3),
            // Same time: the delete marker wins.
            rec("f", "f1", Some(true), Some(false), 5),
            rec("f", "f2", Some(true), Some(true), 5),
        ];
        let current = current_objects(rows.clone());
        assert_eq!(keys(&current), vec![("a", "a2"), ("d", "d1"), ("e", "e2")]);
        let mut reversed = rows;
        reversed.reverse();
        assert_eq!(current_objects(reversed), current);
    }

    proptest! {
        #[test]
        fn independent_of_row_order(
            rows in proptest::collection::vec(
                ("[abc]", "[xyz]", proptest::option::of(any::<bool>()), proptest::option::of(any::<bool>()), 0i64..4),
                0..30,
            ),
            seed in any::<u64>(),
        ) {
            let records: Vec<InventoryRecord> =
                rows.iter().map(|(k, v, l, m, t)| rec(k, v, *l, *m, *t)).collect();
            let mut shuffled = records.clone();
            // Deterministic Fisher-Yates from the seed.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let current = current_objects(records.clone());
            prop_assert_eq!(&current_objects(shuffled), &current);
            for r in &current {
                prop_assert!(r.is_current());
            }
        }
    }
}
