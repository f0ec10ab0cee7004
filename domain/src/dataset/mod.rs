//! Grouping objects into logical datasets.
//!
//! A bucket listing is a flat stream of keys. A data engineer reads it as tables: a directory of
//! same-format files, possibly split into Hive (`k=v`) or date-folder partitions, surrounded by
//! job litter (`_SUCCESS`, `.crc`, `_temporary/`). [`classify`] turns one key into either junk or
//! a [`Placement`] in a dataset; [`Grouper`] streams a listing into per-dataset
//! [`DatasetAggregate`]s whose memory does not grow with the object count.
//!
//! Rules, in order:
//! 1. Junk ([`JunkReason`]) is recognised first and never forms a dataset.
//! 2. The first configured [`PathTemplate`] that matches the key decides the placement.
//! 3. Otherwise the heuristics apply: the dataset root is the key's directory cut at the first
//!    partition segment (Hive `k=v`, a date run `YYYY/MM[/DD[/HH]]`, or `YYYY-MM-DD`).
//!
//! Heuristic details:
//! - A Hive segment is any directory segment containing `=` with a non-empty key; key and value
//!   are percent-decoded as UTF-8 (`+` stays literal, undecodable text stays raw).
//! - A date run is `YYYY/MM`, `YYYY/MM/DD` or `YYYY/MM/DD/HH` as consecutive directories, with
//!   two-digit month 01–12, day 01–31, hour 00–23 and a year in 1900–2199; it yields the keys
//!   `year`, `month`, `day`, `hour`. A lone `YYYY` directory is not a date. One `YYYY-MM-DD`
//!   directory yields the key `date`.
//! - Every directory below the cut still belongs to the dataset; further Hive segments and date
//!   runs there are partitions too, in path order. Other directories there are ignored.
//! - Format and compression come from the file name; the dataset is (root, format), so
//!   `a.csv` and `b.csv.gz` share a dataset, `a.csv` and `b.parquet` do not, and files of
//!   unknown format form their own `Unknown` dataset.

mod aggregate;
mod grouper;
mod heuristics;
mod junk;
mod template;

pub use aggregate::{DatasetAggregate, ListedEncryption, ListedEncryptionCounts, PartitionKeyStats};
pub use grouper::{BucketTally, Grouper};
pub use junk::JunkReason;
pub use template::{PathTemplate, TemplateError};

use crate::model::{Compression, FileFormat, ObjectMeta};

/// Default number of schema candidates per dataset.
pub const DEFAULT_SCHEMA_CANDIDATES: usize = 4;
/// Default number of encryption probe candidates per dataset.
pub const DEFAULT_ENCRYPTION_PROBES: usize = 8;

/// How objects are grouped and how many candidates each dataset keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupingConfig {
    /// Path templates tried in order before the heuristics; the first match wins.
    pub templates: Vec<PathTemplate>,
    /// How many objects per dataset to offer for schema inference (default 4).
    pub schema_candidates: usize,
    /// How many further objects per dataset to offer for encryption probing (default 8).
    pub encryption_probes: usize,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        GroupingConfig {
            templates: Vec::new(),
            schema_candidates: DEFAULT_SCHEMA_CANDIDATES,
            encryption_probes: DEFAULT_ENCRYPTION_PROBES,
        }
    }
}

/// Identity of a dataset within a bucket: its root prefix and its file format.
///
/// Different formats under one root are different datasets; compression is not part of the key
/// (`a.csv` and `b.csv.gz` belong together).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DatasetKey {
    /// The root prefix: `""` for the bucket root, otherwise ending with `/`.
    pub prefix: String,
    /// The file format shared by the dataset's files.
    pub format: FileFormat,
}

impl DatasetKey {
    /// The display name: the last non-empty segment of the prefix, or `bucket` for the root.
    pub fn display_name(&self, bucket: &str) -> String {
        // The last non-empty segment, so that `a//` (an empty folder name S3 allows) reads `a`.
        match self.prefix.rsplit('/').find(|s| !s.is_empty()) {
            Some(last) => last.to_string(),
            None => bucket.to_string(),
        }
    }
}

/// How a dataset's partitions were recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionStyle {
    /// No partition segments.
    None,
    /// Date-shaped folders (`YYYY/MM/DD[/HH]`, `YYYY-MM-DD`).
    DateFolders,
    /// Hive-style `key=value` segments.
    Hive,
    /// Partitions described by a configured [`PathTemplate`].
    Template,
}

impl PartitionStyle {
    /// Stable lowercase name used in records and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionStyle::None => "none",
            PartitionStyle::DateFolders => "date_folders",
            PartitionStyle::Hive => "hive",
            PartitionStyle::Template => "template",
        }
    }
}

/// Where one data object belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The dataset the object belongs to.
    pub dataset: DatasetKey,
    /// The object's whole-file compression.
    pub compression: Compression,
    /// Partition `(key, decoded value)` pairs in path order.
    pub partitions: Vec<(String, String)>,
    /// How the partitions were recognised.
    pub style: PartitionStyle,
}

/// The outcome of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    /// Not data: a marker, checksum, temporary or hidden file, or empty.
    Junk(JunkReason),
    /// A data object and its place.
    Data(Placement),
}

/// Classify one object of `bucket`: junk, or data placed in a dataset.
///
/// Never panics, whatever the key.
pub fn classify(bucket: &str, obj: &ObjectMeta, cfg: &GroupingConfig) -> Classification {
    if let Some(reason) = junk::junk_reason(&obj.key, obj.size) {
        return Classification::Junk(reason);
    }
    for template in &cfg.templates {
        if let Some(placement) = template.place(bucket, &obj.key) {
            return Classification::Data(placement);
        }
    }
    Classification::Data(heuristics::place(&obj.key))
}

/// [`classify`] with the folder's work done once per folder: consecutive keys of a listing or
/// a snapshot mostly share their folder, and a folder's junk reason and, without path
/// templates, a placement's dataset root, partitions and style depend on the folder alone (the
/// format and compression on the file name). Same answers as [`classify`]; the placement is
/// lent, not rebuilt.
#[derive(Debug, Clone, Default)]
pub(crate) struct FolderClassifier {
    /// The folder (up to and with its last `/`: `a` and `/a` are in different folders) the
    /// fields below are for.
    folder: Option<String>,
    /// Its junk reason ([`junk::folder_reason`]).
    folder_reason: Option<JunkReason>,
    /// The last placement: by the heuristics for `folder` when `heuristic`, else a template's.
    placement: Option<Placement>,
    heuristic: bool,
}

impl FolderClassifier {
    /// `obj`'s placement, or why it is junk.
    pub(crate) fn classify(
        &mut self,
        bucket: &str,
        obj: &ObjectMeta,
        cfg: &GroupingConfig,
    ) -> Result<&Placement, JunkReason> {
        let key = obj.key.as_str();
        let slash = key.as_bytes().iter().rposition(|&b| b == b'/');
        let (folder, file) = slash.map_or(("", key), |i| (&key[..=i], &key[i + 1..]));
        if self.folder.as_deref() != Some(folder) {
            self.folder = Some(folder.to_string());
            self.folder_reason = junk::folder_reason(slash.map_or("", |i| &key[..i]));
            self.heuristic = false;
        }
        if let Some(reason) = junk::junk_reason_in(key, file, obj.size, || self.folder_reason) {
            return Err(reason);
        }
        if !cfg.templates.is_empty() {
            return match classify(bucket, obj, cfg) {
                Classification::Data(placement) => {
                    self.heuristic = false;
                    Ok(self.placement.insert(placement))
                }
                Classification::Junk(reason) => Err(reason),
            };
        }
        let placement = match self.placement.take() {
            Some(mut placement) if self.heuristic => {
                (placement.dataset.format, placement.compression) = heuristics::format_from_file(file);
                placement
            }
            _ => {
                self.heuristic = true;
                heuristics::place(key)
            }
        };
        Ok(self.placement.insert(placement))
    }
}

/// The dataset of each object of a key-ordered stream, computing the partition scan once per
/// folder: consecutive keys mostly share their folder, and without path templates a dataset
/// depends only on the folder and the file's extension. Same answers as [`classify`].
#[derive(Debug, Default)]
pub struct DatasetPlacer {
    folder: String,
    /// Whether `folder` is temporary or hidden (its objects are all junk).
    folder_is_junk: bool,
    prefix: String,
    /// The last prefix a path template gave (templates are not cached by folder).
    template_prefix: String,
}

impl DatasetPlacer {
    /// The dataset of `key` (of `size` bytes); `None` for junk.
    pub fn dataset(
        &mut self,
        bucket: &str,
        key: &str,
        size: u64,
        cfg: &GroupingConfig,
    ) -> Option<DatasetKey> {
        self.place(bucket, key, size, cfg)
            .map(|(prefix, format)| DatasetKey { prefix: prefix.to_string(), format })
    }

    /// Like [`dataset`](Self::dataset), with the prefix borrowed: nothing is allocated for an
    /// object in the folder of the one before.
    pub fn place(
        &mut self,
        bucket: &str,
        key: &str,
        size: u64,
        cfg: &GroupingConfig,
    ) -> Option<(&str, FileFormat)> {
        if !cfg.templates.is_empty() {
            let meta = ObjectMeta {
                key: key.to_string(),
                size,
                last_modified_ms: None,
                etag: None,
                storage_class: None,
            };
            return match classify(bucket, &meta, cfg) {
                Classification::Data(placement) => {
                    self.template_prefix = placement.dataset.prefix;
                    Some((&self.template_prefix, placement.dataset.format))
                }
                Classification::Junk(_) => None,
            };
        }
        // A byte search from the end: the file name is short, and `rfind(char)` cost more
        // per key than the rest of the placement.
        let (folder, file) =
            key.as_bytes().iter().rposition(|&b| b == b'/').map_or(("", key), |i| key.split_at(i + 1));
        if junk::junk_file(key, file, size) {
            return None;
        }
        if folder != self.folder {
            self.folder.clear();
            self.folder.push_str(folder);
            self.folder_is_junk = junk::junk_folder(folder);
            if self.folder_is_junk {
                return None;
            }
            let placement = heuristics::place(key);
            self.prefix = placement.dataset.prefix;
            return Some((&self.prefix, placement.dataset.format));
        }
        if self.folder_is_junk {
            return None;
        }
        let (format, _) = heuristics::format_from_file(file);
        Some((&self.prefix, format))
    }
}

#[cfg(test)]
mod tests;
