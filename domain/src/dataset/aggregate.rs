//! Per-dataset statistics and candidate selection, in memory bounded by the candidate counts
//! and the distinct partition values (never by the object count).

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};

use super::{
    DEFAULT_ENCRYPTION_PROBES, DEFAULT_SCHEMA_CANDIDATES, DatasetKey, GroupingConfig, PartitionStyle,
    Placement,
};
use crate::model::{Compression, EncryptionType, ObjectMeta};

/// Statistics of one partition key across a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKeyStats {
    /// The partition key (`dt`, `region`, `year`, ...).
    pub key: String,
    /// Number of distinct values seen.
    pub distinct_values: u64,
    /// Smallest value: numeric order when every value is an integer, else lexical.
    pub min: String,
    /// Largest value, ordered like `min`.
    pub max: String,
}

// DefaultHasher::new() uses fixed keys, so ranks are stable across runs and processes built
// with the same toolchain (std may change the algorithm between releases); that makes the
// sample reproducible without an RNG or a full listing.
fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Total order for sampling: hash of the key first (spread), then the larger file (a tie-break
/// only), then the key itself so that equal hashes still order deterministically.
type Rank = (u64, Reverse<u64>, String);

/// A partition as (hash of its tuple, the tuple): the hash orders partitions pseudo-randomly,
/// the tuple keeps distinct partitions apart when hashes collide.
type PartitionSlot = (u64, Vec<(String, String)>);

fn rank(obj: &ObjectMeta) -> Rank {
    (stable_hash(obj.key.as_str()), Reverse(obj.size), obj.key.clone())
}

/// Server-side encryption of one object as an S3 Inventory report lists it
/// (`EncryptionStatus`, `BucketKeyStatus`): no key ARN, which the inventory does not carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedEncryption {
    /// The status as an encryption type; `None` when the report has no such column (counted as
    /// [`EncryptionType::Unknown`]).
    pub kind: Option<EncryptionType>,
    /// `BucketKeyStatus`: `ENABLED` → true, `DISABLED` → false, absent → `None`.
    pub bucket_key_enabled: Option<bool>,
}

/// Per-object encryption counts over every file of a dataset, from an inventory report
/// (unlike the sampled observations of reads and HEAD probes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedEncryptionCounts {
    /// Objects counted.
    pub objects: u64,
    /// Objects per encryption type (`Unknown`: no status in the report, or an unknown value).
    pub by_type: BTreeMap<EncryptionType, u64>,
    /// Objects with the S3 Bucket Key enabled.
    pub bucket_key_enabled: u64,
    /// Objects with the S3 Bucket Key disabled.
    pub bucket_key_disabled: u64,
}

impl ListedEncryptionCounts {
    /// Counts one object.
    pub fn add(&mut self, encryption: &ListedEncryption) {
        self.objects += 1;
        *self.by_type.entry(encryption.kind.unwrap_or(EncryptionType::Unknown)).or_insert(0) += 1;
        match encryption.bucket_key_enabled {
            Some(true) => self.bucket_key_enabled += 1,
            Some(false) => self.bucket_key_disabled += 1,
            None => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct KeyValues {
    // Lowest index at which the key appeared in any object's partition list, so that the
    // reported order is path order and does not depend on arrival order.
    first_position: usize,
    values: BTreeSet<String>,
}

/// Everything the catalog needs to know about one dataset, built one object at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetAggregate {
    name: String,
    key: DatasetKey,
    schema_limit: usize,
    probe_limit: usize,
    file_count: u64,
    total_bytes: u64,
    min_last_modified_ms: Option<i64>,
    max_last_modified_ms: Option<i64>,
    compressions: BTreeMap<Compression, u64>,
    styles: BTreeMap<PartitionStyle, u64>,
    partition_keys: BTreeMap<String, KeyValues>,
    // Hashes of distinct partition tuples: 8 bytes each instead of the tuples themselves.
    partition_tuples: HashSet<u64>,
    // Bottom-k objects by rank over the whole dataset.
    pool: BTreeMap<Rank, ObjectMeta>,
    // Bottom-k partitions by tuple hash, each with its own best-ranked object; this is what
    // spreads candidates across partitions instead of following the object distribution.
    by_partition: BTreeMap<PartitionSlot, (Rank, ObjectMeta)>,
    // The oldest and the newest non-empty object (by last-modified, then key), read first for
    // the schema: schemas evolve and encryption changes (a new default key, a re-encryption
    // job) over time, so both ends show a change wherever it fell, which random picks miss.
    oldest: Option<ObjectMeta>,
    newest: Option<ObjectMeta>,
    // Inventory-listed encryption of every object; `None` for a bucket listing, which does
    // not report encryption.
    listed_encryption: Option<ListedEncryptionCounts>,
}

impl DatasetAggregate {
    /// An empty aggregate with the default candidate counts.
    pub fn new(bucket: &str, key: DatasetKey) -> Self {
        Self::with_limits(bucket, key, DEFAULT_SCHEMA_CANDIDATES, DEFAULT_ENCRYPTION_PROBES)
    }

    /// An empty aggregate with the candidate counts of `cfg`.
    pub fn with_config(bucket: &str, key: DatasetKey, cfg: &GroupingConfig) -> Self {
        Self::with_limits(bucket, key, cfg.schema_candidates, cfg.encryption_probes)
    }

    /// An empty aggregate keeping up to `schema_candidates` + `encryption_probes` candidates.
    pub fn with_limits(
        bucket: &str,
        key: DatasetKey,
        schema_candidates: usize,
        encryption_probes: usize,
    ) -> Self {
        DatasetAggregate {
            name: key.display_name(bucket),
            key,
            schema_limit: schema_candidates,
            probe_limit: encryption_probes,
            file_count: 0,
            total_bytes: 0,
            min_last_modified_ms: None,
            max_last_modified_ms: None,
            compressions: BTreeMap::new(),
            styles: BTreeMap::new(),
            partition_keys: BTreeMap::new(),
            partition_tuples: HashSet::new(),
            pool: BTreeMap::new(),
            by_partition: BTreeMap::new(),
            oldest: None,
            newest: None,
            listed_encryption: None,
        }
    }

    fn capacity(&self) -> usize {
        self.schema_limit.saturating_add(self.probe_limit)
    }

    /// Account for one object placed in this dataset.
    pub fn add(&mut self, obj: &ObjectMeta, placement: &Placement) {
        self.file_count += 1;
        self.total_bytes = self.total_bytes.saturating_add(obj.size);
        if let Some(ms) = obj.last_modified_ms {
            self.min_last_modified_ms = Some(self.min_last_modified_ms.map_or(ms, |m| m.min(ms)));
            self.max_last_modified_ms = Some(self.max_last_modified_ms.map_or(ms, |m| m.max(ms)));
        }
        *self.compressions.entry(placement.compression).or_insert(0) += 1;
        *self.styles.entry(placement.style).or_insert(0) += 1;
        for (position, (k, v)) in placement.partitions.iter().enumerate() {
            let entry = self
                .partition_keys
                .entry(k.clone())
                .or_insert_with(|| KeyValues { first_position: position, values: BTreeSet::new() });
            entry.first_position = entry.first_position.min(position);
            if !entry.values.contains(v) {
                entry.values.insert(v.clone());
            }
        }
        let partition = stable_hash(&placement.partitions);
        self.partition_tuples.insert(partition);
        // Empty objects have no schema to read and are normally junk already.
        if obj.size > 0 {
            self.offer(obj, partition, &placement.partitions);
            if self.capacity() > 0 {
                self.track_ends(obj);
            }
        }
    }

    fn track_ends(&mut self, obj: &ObjectMeta) {
        let Some(ms) = obj.last_modified_ms else {
            return;
        };
        let at = (ms, obj.key.as_str());
        if self.oldest.as_ref().is_none_or(|held| at < moment(held)) {
            assign(&mut self.oldest, obj);
        }
        if self.newest.as_ref().is_none_or(|held| at > moment(held)) {
            assign(&mut self.newest, obj);
        }
    }

    /// Counts the encryption an inventory report lists for an object added with
    /// [`add`](Self::add).
    pub fn add_listed_encryption(&mut self, encryption: &ListedEncryption) {
        self.listed_encryption.get_or_insert_with(ListedEncryptionCounts::default).add(encryption);
    }

    /// Per-object encryption counts from an inventory report (`None` for a listing).
    pub fn listed_encryption(&self) -> Option<&ListedEncryptionCounts> {
        self.listed_encryption.as_ref()
    }

    fn offer(&mut self, obj: &ObjectMeta, partition: u64, tuple: &[(String, String)]) {
        let cap = self.capacity();
        if cap == 0 {
            return;
        }
        // Most objects of a large dataset qualify for neither sample: reject them before
        // allocating a rank or a partition slot.
        let hash = stable_hash(obj.key.as_str());
        let out_of_pool =
            self.pool.len() >= cap && self.pool.last_key_value().is_some_and(|(worst, _)| hash > worst.0);
        let out_of_partitions = self.by_partition.len() >= cap
            && self
                .by_partition
                .last_key_value()
                .is_some_and(|((hash, values), _)| (partition, tuple) > (*hash, values.as_slice()));
        if out_of_pool && out_of_partitions {
            return;
        }
        let r = rank(obj);
        // A key listed twice (e.g. inventory plus listing) keeps its first copy.
        let better = self.pool.len() < cap || self.pool.last_key_value().is_some_and(|(worst, _)| r < *worst);
        if better && !self.pool.contains_key(&r) {
            self.pool.insert(r.clone(), obj.clone());
            if self.pool.len() > cap {
                self.pool.pop_last();
            }
        }
        let slot = (partition, tuple.to_vec());
        match self.by_partition.get_mut(&slot) {
            Some(best) => {
                if r < best.0 {
                    *best = (r, obj.clone());
                }
            }
            None => {
                if self.by_partition.len() < cap
                    || self.by_partition.last_key_value().is_some_and(|(worst, _)| slot < *worst)
                {
                    self.by_partition.insert(slot, (r, obj.clone()));
                    if self.by_partition.len() > cap {
                        self.by_partition.pop_last();
                    }
                }
            }
        }
    }

    /// Candidates in selection order: the newest and the oldest object (when the listing gives
    /// times), one object per partition (partitions in hash order), then the rest of the sample
    /// by rank. Distinct keys only.
    fn ordered_candidates(&self) -> Vec<&ObjectMeta> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        let ends = [self.newest.as_ref(), self.oldest.as_ref()].into_iter().flatten();
        let reps = self.by_partition.values().map(|(_, o)| o);
        let rest = self.pool.values();
        for obj in ends.chain(reps).chain(rest) {
            if seen.insert(obj.key.as_str()) {
                out.push(obj);
            }
        }
        out
    }

    /// Objects currently held for candidate selection (bounded by twice the candidate counts
    /// plus the two ends, whatever the number of objects added).
    pub fn retained_objects(&self) -> usize {
        self.pool.len()
            + self.by_partition.len()
            + usize::from(self.oldest.is_some())
            + usize::from(self.newest.is_some())
    }

    /// The dataset's display name: the last prefix segment, or the bucket for the root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dataset's identity.
    pub fn key(&self) -> &DatasetKey {
        &self.key
    }

    /// Number of data objects added.
    pub fn file_count(&self) -> u64 {
        self.file_count
    }

    /// Sum of the objects' sizes (saturating).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Earliest last-modified time among objects that had one.
    pub fn min_last_modified_ms(&self) -> Option<i64> {
        self.min_last_modified_ms
    }

    /// Latest last-modified time among objects that had one.
    pub fn max_last_modified_ms(&self) -> Option<i64> {
        self.max_last_modified_ms
    }

    /// Object counts per compression.
    pub fn compressions(&self) -> &BTreeMap<Compression, u64> {
        &self.compressions
    }

    /// The most specific partition style seen (`Template` > `Hive` > `DateFolders` > `None`);
    /// a dataset with some partitioned files is partitioned.
    pub fn partition_style(&self) -> PartitionStyle {
        self.styles.keys().next_back().copied().unwrap_or(PartitionStyle::None)
    }

    /// Object counts per partition style, for spotting inconsistently laid-out datasets.
    pub fn partition_styles(&self) -> &BTreeMap<PartitionStyle, u64> {
        &self.styles
    }

    /// Per-key partition statistics in path order.
    pub fn partitions(&self) -> Vec<PartitionKeyStats> {
        let mut keys: Vec<(&String, &KeyValues)> = self.partition_keys.iter().collect();
        keys.sort_by(|a, b| (a.1.first_position, a.0).cmp(&(b.1.first_position, b.0)));
        keys.into_iter()
            .map(|(key, kv)| {
                let (min, max) = min_max(&kv.values);
                PartitionKeyStats { key: key.clone(), distinct_values: kv.values.len() as u64, min, max }
            })
            .collect()
    }

    /// Number of distinct partition tuples (1 for an unpartitioned dataset with files).
    pub fn partition_count(&self) -> u64 {
        self.partition_tuples.len() as u64
    }

    /// Up to `schema_candidates` non-empty objects to infer the schema from, chosen
    /// deterministically: the newest and the oldest object when the listing gives times, then
    /// spread across partitions (without times, the first two come from different partitions
    /// whenever the dataset has two).
    pub fn schema_candidates(&self) -> Vec<ObjectMeta> {
        self.ordered_candidates().into_iter().take(self.schema_limit).cloned().collect()
    }

    /// Up to `encryption_probes` objects chosen the same way, disjoint from
    /// [`schema_candidates`](Self::schema_candidates) (which start with the dataset's two ends)
    /// when the dataset has enough objects; otherwise topped up with schema candidates so that
    /// small datasets are still probed.
    pub fn encryption_probe_candidates(&self) -> Vec<ObjectMeta> {
        let ordered = self.ordered_candidates();
        let split = self.schema_limit.min(ordered.len());
        let (schema, others) = ordered.split_at(split);
        others.iter().chain(schema.iter()).take(self.probe_limit).map(|o| (*o).clone()).collect()
    }
}

/// When an object was written, ties broken by key (held objects always have a time).
fn moment(obj: &ObjectMeta) -> (i64, &str) {
    (obj.last_modified_ms.unwrap_or_default(), obj.key.as_str())
}

/// Makes `slot` a copy of `obj`, reusing the held key's buffer: in a dataset listed in time
/// order the newest object changes with nearly every object added.
fn assign(slot: &mut Option<ObjectMeta>, obj: &ObjectMeta) {
    match slot {
        Some(held) => {
            let ObjectMeta { key, size, last_modified_ms, etag, storage_class } = held;
            key.clone_from(&obj.key);
            *size = obj.size;
            *last_modified_ms = obj.last_modified_ms;
            etag.clone_from(&obj.etag);
            storage_class.clone_from(&obj.storage_class);
        }
        None => *slot = Some(obj.clone()),
    }
}

/// Min and max of a value set: numeric when every value parses as an integer.
fn min_max(values: &BTreeSet<String>) -> (String, String) {
    let numeric: Option<Vec<(i128, &String)>> =
        values.iter().map(|v| v.parse::<i128>().ok().map(|n| (n, v))).collect();
    match numeric {
        Some(nums) => {
            // Ties such as "01" and "1" fall back to the lexical order, so the result is stable.
            let min = nums.iter().min().map(|(_, v)| (*v).clone()).unwrap_or_default();
            let max = nums.iter().max().map(|(_, v)| (*v).clone()).unwrap_or_default();
            (min, max)
        }
        None => (values.first().cloned().unwrap_or_default(), values.last().cloned().unwrap_or_default()),
    }
}
