//! Streaming a listing into datasets.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{DatasetAggregate, FolderClassifier, GroupingConfig, JunkReason, ListedEncryption};
use crate::model::{FileFormat, ObjectMeta};

/// Bucket-wide counters over every object seen, junk included.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketTally {
    /// Objects seen.
    pub object_count: u64,
    /// Bytes of all objects seen (saturating).
    pub total_bytes: u64,
    /// Junk objects per reason.
    pub junk: BTreeMap<JunkReason, u64>,
    /// Bytes of junk objects (saturating).
    pub junk_bytes: u64,
    /// Objects placed in a dataset.
    pub data_objects: u64,
    /// Bytes of objects placed in a dataset (saturating).
    pub data_bytes: u64,
}

impl BucketTally {
    /// Total junk objects over all reasons.
    pub fn junk_objects(&self) -> u64 {
        self.junk.values().sum()
    }
}

/// Groups a bucket's objects into datasets as they are listed.
///
/// Memory is O(open datasets): each [`DatasetAggregate`] is bounded, and datasets leave as soon
/// as [`take_complete_under`](Self::take_complete_under) proves them complete.
#[derive(Debug, Clone)]
pub struct Grouper {
    bucket: String,
    cfg: GroupingConfig,
    // Keyed by root prefix, so the datasets under a shard prefix form one contiguous range;
    // formats sharing a root sit together under it.
    open: BTreeMap<String, BTreeMap<FileFormat, DatasetAggregate>>,
    tally: BucketTally,
    classifier: FolderClassifier,
}

impl Grouper {
    /// A grouper for `bucket`.
    pub fn new(bucket: &str, cfg: GroupingConfig) -> Self {
        Grouper {
            bucket: bucket.to_string(),
            cfg,
            open: BTreeMap::new(),
            tally: BucketTally::default(),
            classifier: FolderClassifier::default(),
        }
    }

    /// Classify and account for one listed object.
    pub fn add(&mut self, obj: ObjectMeta) {
        self.add_inner(obj, None);
    }

    /// Classify and account for one object of an inventory report, counting the encryption
    /// the report lists for it in its dataset
    /// ([`DatasetAggregate::listed_encryption`]).
    pub fn add_with_encryption(&mut self, obj: ObjectMeta, encryption: ListedEncryption) {
        self.add_inner(obj, Some(encryption));
    }

    fn add_inner(&mut self, obj: ObjectMeta, encryption: Option<ListedEncryption>) {
        self.tally.object_count += 1;
        self.tally.total_bytes = self.tally.total_bytes.saturating_add(obj.size);
        match self.classifier.classify(&self.bucket, &obj, &self.cfg) {
            Err(reason) => {
                *self.tally.junk.entry(reason).or_insert(0) += 1;
                self.tally.junk_bytes = self.tally.junk_bytes.saturating_add(obj.size);
            }
            Ok(placement) => {
                self.tally.data_objects += 1;
                self.tally.data_bytes = self.tally.data_bytes.saturating_add(obj.size);
                let dataset = &placement.dataset;
                // Look up before inserting so the common case does not clone the prefix.
                if !self.open.contains_key(&dataset.prefix) {
                    self.open.insert(dataset.prefix.clone(), BTreeMap::new());
                }
                if let Some(by_format) = self.open.get_mut(&dataset.prefix) {
                    let aggregate = by_format.entry(dataset.format).or_insert_with(|| {
                        DatasetAggregate::with_config(&self.bucket, dataset.clone(), &self.cfg)
                    });
                    aggregate.add(&obj, placement);
                    if let Some(encryption) = &encryption {
                        aggregate.add_listed_encryption(encryption);
                    }
                }
            }
        }
    }

    /// Datasets whose root prefix lies inside `shard_prefix` (a listing shard like `"sales/"`)
    /// are complete once that shard's listing is done: remove and return them, ordered by key.
    ///
    /// A dataset's objects all start with its root prefix, so a root starting with the shard
    /// prefix cannot receive objects from another shard. A root shorter than the shard prefix
    /// (the bucket root of top-level `year=2024/` partitions, say) spans shards and stays open.
    pub fn take_complete_under(&mut self, shard_prefix: &str) -> Vec<DatasetAggregate> {
        let prefixes: Vec<String> = self
            .open
            .range::<str, _>((Bound::Included(shard_prefix), Bound::Unbounded))
            .map(|(prefix, _)| prefix)
            .take_while(|prefix| prefix.starts_with(shard_prefix))
            .cloned()
            .collect();
        prefixes
            .iter()
            .filter_map(|prefix| self.open.remove(prefix))
            .flat_map(BTreeMap::into_values)
            .collect()
    }

    /// The end of the listing: remove and return every open dataset, ordered by key.
    pub fn take_all(&mut self) -> Vec<DatasetAggregate> {
        std::mem::take(&mut self.open).into_values().flat_map(BTreeMap::into_values).collect()
    }

    /// Number of datasets still open.
    pub fn open_datasets(&self) -> usize {
        self.open.values().map(BTreeMap::len).sum()
    }

    /// Bucket-wide counters so far.
    pub fn tally(&self) -> &BucketTally {
        &self.tally
    }
}
