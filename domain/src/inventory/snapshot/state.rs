//! The local state directory: the last processed snapshot per (source bucket, configuration).
//!
//! ```text
//! <state dir>/<bucket>/<configuration id>/current.json     pointer (format version, file, report, id)
//! <state dir>/<bucket>/<configuration id>/snapshot-<report ms>.snap
//! ```
//!
//! Path segments are percent-encoded (dots too), so no bucket or configuration id can escape
//! the directory. The pointer is the only thing that moves state forward: a new snapshot may
//! be written next to the old one, but until [`StateStore::advance`] renames a new pointer
//! into place, readers and reruns see the previous state. One writer per (bucket,
//! configuration) at a time is assumed.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::format::{
    SnapshotError, SnapshotHeader, SnapshotInfo, SnapshotReader, read_splitters, temp_sibling,
};

/// Current pointer format version.
pub const STATE_FORMAT_VERSION: u32 = 1;
const POINTER_FILE: &str = "current.json";
// Pointer files are tiny; refuse to parse anything large.
const MAX_POINTER_LEN: u64 = 64 * 1024;
// Keep `-` and `_` readable; encode everything else, dots included (no `..`).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The pointer file's content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePointer {
    /// [`STATE_FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The snapshot file name, inside the same directory.
    pub snapshot_file: String,
    /// The report's creation timestamp, milliseconds since the Unix epoch.
    pub report_timestamp_ms: i64,
    /// The snapshot's id ([`SnapshotInfo::snapshot_id`]).
    pub snapshot_id: String,
}

/// Why the state cannot be read or advanced. Every variant names the file or the report.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An I/O error.
    #[error("state {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The pointer file is not valid JSON of the expected shape, or names a bad file.
    #[error("state {path}: invalid pointer: {detail}")]
    InvalidPointer {
        /// The pointer file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Written by another format version.
    #[error("state {path}: format version {found}, expected {expected}")]
    UnsupportedVersion {
        /// The pointer file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The report is older than the one the state already holds.
    #[error(
        "report {report_timestamp_ms} of s3://{bucket} (configuration {configuration_id}) is older than the processed report {current_timestamp_ms}"
    )]
    OlderReport {
        /// Source bucket.
        bucket: String,
        /// Configuration id.
        configuration_id: String,
        /// The refused report.
        report_timestamp_ms: i64,
        /// The report in the state.
        current_timestamp_ms: i64,
    },
    /// The snapshot handed to `advance` is not for this bucket and configuration, or not in
    /// the state directory.
    #[error("snapshot {path} does not belong to s3://{bucket} configuration {configuration_id}")]
    ForeignSnapshot {
        /// The snapshot.
        path: PathBuf,
        /// Source bucket.
        bucket: String,
        /// Configuration id.
        configuration_id: String,
    },
    /// The snapshot file the pointer names is unreadable.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl StateError {
    fn io(path: &Path, source: io::Error) -> Self {
        StateError::Io { path: path.to_path_buf(), source }
    }

    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Io { .. } => "STATE_IO",
            StateError::InvalidPointer { .. } => "STATE_INVALID_POINTER",
            StateError::UnsupportedVersion { .. } => "STATE_UNSUPPORTED_VERSION",
            StateError::OlderReport { .. } => "STATE_OLDER_REPORT",
            StateError::ForeignSnapshot { .. } => "STATE_FOREIGN_SNAPSHOT",
            StateError::Snapshot(e) => e.code(),
        }
    }
}

/// What to do with a report, from [`StateStore::begin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportDisposition {
    /// Newer than the state (or no state yet): build its snapshot at `snapshot_path`, diff
    /// against `previous`, then [`StateStore::advance`].
    Process {
        /// Where to write the new snapshot.
        snapshot_path: PathBuf,
        /// The current pointer, if any.
        previous: Option<StatePointer>,
    },
    /// This report is the one already processed: nothing to emit.
    AlreadyProcessed(StatePointer),
}

/// A state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    root: PathBuf,
}

fn fsync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StateError::io(dir, e))
}

impl StateStore {
    /// Opens (creating if needed) the state directory.
    pub fn open(root: &Path) -> Result<Self, StateError> {
        fs::create_dir_all(root).map_err(|e| StateError::io(root, e))?;
        Ok(StateStore { root: root.to_path_buf() })
    }

    /// The directory of one (bucket, configuration).
    pub fn config_dir(&self, bucket: &str, configuration_id: &str) -> PathBuf {
        self.root
            .join(utf8_percent_encode(bucket, SEGMENT).to_string())
            .join(utf8_percent_encode(configuration_id, SEGMENT).to_string())
    }

    /// The current pointer, or `None` before the first advance.
    pub fn current(&self, bucket: &str, configuration_id: &str) -> Result<Option<StatePointer>, StateError> {
        let path = self.config_dir(bucket, configuration_id).join(POINTER_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_POINTER_LEN + 1), &mut bytes)
            .map_err(|e| StateError::io(&path, e))?;
        if bytes.len() as u64 > MAX_POINTER_LEN {
            return Err(StateError::InvalidPointer { path, detail: "too large".into() });
        }
        let pointer: StatePointer = serde_json::from_slice(&bytes)
            .map_err(|e| StateError::InvalidPointer { path: path.clone(), detail: e.to_string() })?;
        if pointer.format_version != STATE_FORMAT_VERSION {
            return Err(StateError::UnsupportedVersion {
                path,
                found: pointer.format_version,
                expected: STATE_FORMAT_VERSION,
            });
        }
        if !is_plain_file_name(&pointer.snapshot_file) {
            return Err(StateError::InvalidPointer {
                path,
                detail: format!("snapshot file {:?} is not a plain file name", pointer.snapshot_file),
            });
        }
        Ok(Some(pointer))
    }

    /// Opens the current snapshot (verified), or `None` before the first advance.
    pub fn current_snapshot(
        &self,
        bucket: &str,
        configuration_id: &str,
    ) -> Result<Option<SnapshotReader>, StateError> {
        let Some(pointer) = self.current(bucket, configuration_id)? else { return Ok(None) };
        let path = self.config_dir(bucket, configuration_id).join(&pointer.snapshot_file);
        Ok(Some(SnapshotReader::open(&path)?))
    }

    /// The current snapshot's splitters ([`read_splitters`]): empty without a state or for a
    /// snapshot written before snapshots carried them. The checksum is not verified here:
    /// [`current_snapshot`](Self::current_snapshot) does, and the splitters only steer how
    /// the next snapshot is built.
    pub fn current_splitters(
        &self,
        bucket: &str,
        configuration_id: &str,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        let Some(pointer) = self.current(bucket, configuration_id)? else { return Ok(Vec::new()) };
        let path = self.config_dir(bucket, configuration_id).join(&pointer.snapshot_file);
        Ok(read_splitters(&path)?)
    }

    /// Decides what to do with the report of `header`: refuse it (older than the state),
    /// skip it (already processed) or process it. Creates the directory for the snapshot.
    pub fn begin(&self, header: &SnapshotHeader) -> Result<ReportDisposition, StateError> {
        let previous = self.current(&header.source_bucket, &header.configuration_id)?;
        if let Some(p) = &previous {
            check_order(header, p)?;
            if p.report_timestamp_ms == header.report_timestamp_ms {
                return Ok(ReportDisposition::AlreadyProcessed(p.clone()));
            }
        }
        let dir = self.config_dir(&header.source_bucket, &header.configuration_id);
        fs::create_dir_all(&dir).map_err(|e| StateError::io(&dir, e))?;
        Ok(ReportDisposition::Process {
            snapshot_path: dir.join(snapshot_file_name(header.report_timestamp_ms)),
            previous,
        })
    }

    /// Makes `snapshot` the current state: writes the new pointer to a temporary file, fsyncs
    /// it, renames it over the old one and fsyncs the directory; then deletes every other
    /// file in the directory (old snapshots, leftovers of crashed runs). Call it only after
    /// the change stream was fully delivered. Returns `false` when the state already pointed
    /// at this report (nothing changed).
    pub fn advance(&self, snapshot: &SnapshotInfo) -> Result<bool, StateError> {
        let header = &snapshot.header;
        let dir = self.config_dir(&header.source_bucket, &header.configuration_id);
        let foreign = || StateError::ForeignSnapshot {
            path: snapshot.path.clone(),
            bucket: header.source_bucket.clone(),
            configuration_id: header.configuration_id.clone(),
        };
        let file_name = snapshot
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| is_plain_file_name(n))
            .ok_or_else(foreign)?
            .to_string();
        if snapshot.path.parent() != Some(dir.as_path()) {
            return Err(foreign());
        }
        if let Some(p) = self.current(&header.source_bucket, &header.configuration_id)? {
            check_order(header, &p)?;
            if p.report_timestamp_ms == header.report_timestamp_ms {
                return Ok(false);
            }
        }
        // The file must still be the snapshot that was diffed. Its identity (header, count,
        // recorded checksum) is enough here: every read of it verifies the body, and hashing
        // the whole file again would stall the end of each run.
        if SnapshotInfo::read(&snapshot.path)? != *snapshot {
            return Err(foreign());
        }
        let pointer = StatePointer {
            format_version: STATE_FORMAT_VERSION,
            snapshot_file: file_name.clone(),
            report_timestamp_ms: header.report_timestamp_ms,
            snapshot_id: snapshot.snapshot_id(),
        };
        let pointer_path = dir.join(POINTER_FILE);
        let tmp = temp_sibling(&pointer_path);
        let json = serde_json::to_vec_pretty(&pointer)
            .map_err(|e| StateError::InvalidPointer { path: pointer_path.clone(), detail: e.to_string() })?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(StateError::io(&tmp, e));
        }
        fs::rename(&tmp, &pointer_path).map_err(|e| StateError::io(&pointer_path, e))?;
        fsync_dir(&dir)?;
        self.remove_stale(&dir, &file_name)?;
        Ok(true)
    }

    /// Deletes everything but the pointer and the current snapshot.
    fn remove_stale(&self, dir: &Path, keep: &str) -> Result<(), StateError> {
        for entry in fs::read_dir(dir).map_err(|e| StateError::io(dir, e))? {
            let entry = entry.map_err(|e| StateError::io(dir, e))?;
            let name = entry.file_name();
            if name == POINTER_FILE || name == keep {
                continue;
            }
            let path = entry.path();
            if entry.file_type().map_err(|e| StateError::io(&path, e))?.is_file() {
                fs::remove_file(&path).map_err(|e| StateError::io(&path, e))?;
            }
        }
        Ok(())
    }
}

fn check_order(header: &SnapshotHeader, current: &StatePointer) -> Result<(), StateError> {
    if header.report_timestamp_ms < current.report_timestamp_ms {
        return Err(StateError::OlderReport {
            bucket: header.source_bucket.clone(),
            configuration_id: header.configuration_id.clone(),
            report_timestamp_ms: header.report_timestamp_ms,
            current_timestamp_ms: current.report_timestamp_ms,
        });
    }
    Ok(())
}

fn snapshot_file_name(report_timestamp_ms: i64) -> String {
    format!("snapshot-{report_timestamp_ms}.snap")
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::record::InventoryRecord;
    use crate::inventory::snapshot::SnapshotBuilder;

    fn header(ts: i64) -> SnapshotHeader {
        SnapshotHeader {
            source_bucket: "src".into(),
            configuration_id: "daily/../x".into(),
            report_timestamp_ms: ts,
        }
    }

    /// Builds the snapshot of report `ts` at the place `begin` names.
    fn stage(store: &StateStore, ts: i64, keys: &[&str]) -> SnapshotInfo {
        let ReportDisposition::Process { snapshot_path, .. } = store.begin(&header(ts)).unwrap() else {
            panic!("report {ts} should be processed")
        };
        let spill = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(ts), spill.path(), 2);
        for k in keys {
            b.push(&InventoryRecord { bucket: "src".into(), key: (*k).into(), ..Default::default() })
                .unwrap();
        }
        b.finish(&snapshot_path).unwrap()
    }

    fn keys(store: &StateStore) -> Vec<String> {
        store
            .current_snapshot("src", "daily/../x")
            .unwrap()
            .map(|r| r.map(|o| o.unwrap().key).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_current_snapshots_splitters_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        assert!(store.current_splitters("src", "daily/../x").unwrap().is_empty(), "no state yet");
        let ReportDisposition::Process { snapshot_path, .. } = store.begin(&header(1)).unwrap() else {
            panic!("report 1 should be processed")
        };
        let mut w = crate::inventory::snapshot::SnapshotWriter::create(&snapshot_path, header(1))
            .unwrap()
            .with_splitter_stride(2);
        for key in ["a", "b", "c", "d", "e"] {
            w.push(&crate::inventory::snapshot::SnapshotObject { key: key.into(), ..Default::default() })
                .unwrap();
        }
        let info = w.finish().unwrap();
        assert!(
            store.current_splitters("src", "daily/../x").unwrap().is_empty(),
            "not current before advance"
        );
        store.advance(&info).unwrap();
        assert_eq!(store.current_splitters("src", "daily/../x").unwrap(), [b"c".to_vec(), b"e".to_vec()]);
    }

    #[test]
    fn crash_before_advance_leaves_state_and_rerun_converges() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let day1 = stage(&store, 1000, &["a", "b"]);
        assert!(store.advance(&day1).unwrap());
        let pointer1 = store.current("src", "daily/../x").unwrap().unwrap();

        // Day 2 is written but the process "crashes" before advance.
        let _day2 = stage(&store, 2000, &["a", "c"]);
        assert_eq!(store.current("src", "daily/../x").unwrap().unwrap(), pointer1);
        assert_eq!(keys(&store), ["a", "b"]);

        // The rerun rebuilds the same snapshot (same id) and advances.
        let day2 = stage(&store, 2000, &["c", "a"]);
        assert!(store.advance(&day2).unwrap());
        let pointer2 = store.current("src", "daily/../x").unwrap().unwrap();
        assert_eq!(pointer2.snapshot_id, _day2.snapshot_id());
        assert_eq!(keys(&store), ["a", "c"]);
        // The old snapshot is gone; the directory stays inside the state root.
        let cfg_dir = store.config_dir("src", "daily/../x");
        assert!(cfg_dir.starts_with(dir.path()));
        let mut names: Vec<_> =
            fs::read_dir(&cfg_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["current.json", "snapshot-2000.snap"]);
    }

    #[test]
    fn older_report_refused_same_report_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let day2 = stage(&store, 2000, &["a"]);
        store.advance(&day2).unwrap();

        let err = store.begin(&header(1000)).unwrap_err();
        assert_eq!(err.code(), "STATE_OLDER_REPORT");
        assert!(err.to_string().contains("s3://src"), "{err}");
        assert!(matches!(store.begin(&header(2000)).unwrap(), ReportDisposition::AlreadyProcessed(_)));
        assert!(!store.advance(&day2).unwrap());
        assert_eq!(keys(&store), ["a"]);
    }

    #[test]
    fn corrupt_pointer_and_snapshot_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let day1 = stage(&store, 1000, &["a"]);
        store.advance(&day1).unwrap();
        let cfg_dir = store.config_dir("src", "daily/../x");

        // A truncated snapshot behind a valid pointer.
        let bytes = fs::read(&day1.path).unwrap();
        fs::write(&day1.path, &bytes[..bytes.len() - 3]).unwrap();
        let err = store.current_snapshot("src", "daily/../x").unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_CHECKSUM_MISMATCH");

        fs::write(cfg_dir.join(POINTER_FILE), b"{\"format_version\":1").unwrap();
        assert_eq!(store.current("src", "daily/../x").unwrap_err().code(), "STATE_INVALID_POINTER");
        let escaping =
            r#"{"format_version":1,"snapshot_file":"../../etc","report_timestamp_ms":1,"snapshot_id":"x"}"#;
        fs::write(cfg_dir.join(POINTER_FILE), escaping).unwrap();
        assert_eq!(store.current("src", "daily/../x").unwrap_err().code(), "STATE_INVALID_POINTER");
        let future = r#"{"format_version":9,"snapshot_file":"s","report_timestamp_ms":1,"snapshot_id":"x"}"#;
        fs::write(cfg_dir.join(POINTER_FILE), future).unwrap();
        assert_eq!(store.current("src", "daily/../x").unwrap_err().code(), "STATE_UNSUPPORTED_VERSION");
    }

    #[test]
    fn snapshot_of_another_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut info = stage(&store, 1000, &["a"]);
        info.header.configuration_id = "other".into();
        assert_eq!(store.advance(&info).unwrap_err().code(), "STATE_FOREIGN_SNAPSHOT");
        assert_eq!(store.current("src", "daily/../x").unwrap(), None);
    }
}
