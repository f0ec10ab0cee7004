//! JSON Lines output: one proto3-JSON `ExtractRecord` per line.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Where records go.
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, written as `<file>.partial` and renamed when the run completes, so that a
    /// scheduled job never leaves a half-written file under the final name. A path that
    /// exists and is not a regular file (`/dev/null`, a FIFO, a terminal) is written in
    /// place: renaming over a device would replace it with a regular file.
    File(PathBuf),
}

/// Writes records as JSON Lines.
pub struct JsonLinesWriter {
    out: Box<dyn Write + Send>,
    /// The open file, for fsync (file destinations).
    file: Option<File>,
    final_path: Option<(PathBuf, PathBuf)>,
    /// Records go to standard output (fsynced on commit when it is a file).
    to_stdout: bool,
    records: u64,
}

/// Whether `path` (symbolic links followed) is a regular file or does not exist yet: only
/// those are written through a partial file and a rename.
fn is_regular_or_missing(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => meta.file_type().is_file(),
        Err(_) => true,
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

impl JsonLinesWriter {
    /// Opens the destination.
    pub fn open(destination: &Destination) -> io::Result<Self> {
        match destination {
            Destination::Stdout => Ok(JsonLinesWriter {
                out: Box::new(BufWriter::new(io::stdout())),
                file: None,
                final_path: None,
                to_stdout: true,
                records: 0,
            }),
            Destination::File(path) if !is_regular_or_missing(path) => {
                let file = std::fs::OpenOptions::new().write(true).open(path)?;
                Ok(JsonLinesWriter {
                    file: None,
                    out: Box::new(BufWriter::new(file)),
                    final_path: None,
                    to_stdout: false,
                    records: 0,
                })
            }
            Destination::File(path) => {
                let partial = partial_path(path);
                let file = File::create(&partial)?;
                Ok(JsonLinesWriter {
                    file: Some(file.try_clone()?),
                    out: Box::new(BufWriter::new(file)),
                    final_path: Some((partial, path.clone())),
                    to_stdout: false,
                    records: 0,
                })
            }
        }
    }

    /// Writes one record (any proto3-JSON message: `ExtractRecord`, `ChangeRecord`).
    pub fn write<T: serde::Serialize>(&mut self, record: &T) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Makes everything written so far durable before the caller acts on it (incremental
    /// extraction advances its state after this): flushes, fsyncs (a file; stdout when it is a
    /// file, a pipe cannot be), and moves a file destination to its final name, so that what
    /// the state says was delivered is there under that name. Later records go to the same
    /// (renamed) file.
    pub fn commit(&mut self) -> io::Result<()> {
        self.out.flush()?;
        match &self.file {
            Some(file) => file.sync_all()?,
            None if self.to_stdout => sync_stdout(),
            // A device or FIFO: the reader has the bytes once they are written.
            None => {}
        }
        if let Some((partial, path)) = self.final_path.take() {
            std::fs::rename(&partial, &path)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// Gives up on a failed run: a file destination's partial file is removed.
    pub fn abandon(mut self) {
        if let Some((partial, _)) = self.final_path.take() {
            drop(self.out);
            let _ = std::fs::remove_file(partial);
        }
    }

    /// Flushes and, for files, moves the finished file into place.
    pub fn finish(mut self) -> io::Result<()> {
        self.out.flush()?;
        if let Some(file) = &self.file {
            file.sync_all()?;
        }
        drop(self.out);
        if let Some((partial, path)) = self.final_path.take() {
            std::fs::rename(partial, path)?;
        }
        Ok(())
    }
}

/// fsync of standard output when it is a regular file; pipes and terminals have nothing to
/// sync (the reader has the bytes once they are written), so errors are ignored.
fn sync_stdout() {
    use std::os::fd::AsFd;
    if let Ok(fd) = io::stdout().as_fd().try_clone_to_owned() {
        let _ = File::from(fd).sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_connector_proto::v1 as pb;

    #[test]
    fn file_output_appears_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut w = JsonLinesWriter::open(&Destination::File(path.clone())).unwrap();
        w.write(&pb::ExtractRecord {
            schema_version: "catalog.s3.v1".into(),
            run_id: "r".into(),
            record: None,
        })
        .unwrap();
        assert!(!path.exists());
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(v["runId"], "r");
    }

    #[test]
    fn commit_makes_the_file_visible_and_later_records_follow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("changes.jsonl");
        let mut w = JsonLinesWriter::open(&Destination::File(path.clone())).unwrap();
        let record =
            |id: &str| pb::ChangeRecord { schema_version: "v".into(), run_id: id.into(), record: None };
        w.write(&record("a")).unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1, "committed lines are on disk");
        w.write(&record("b")).unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!dir.path().join("changes.jsonl.partial").exists());
    }

    #[test]
    fn a_fifo_destination_is_written_in_place_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("records.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // The reader must be open before the writer's open returns, so it runs on a thread.
        let reader = std::thread::spawn({
            let fifo = fifo.clone();
            move || std::fs::read_to_string(fifo).unwrap()
        });
        let mut w = JsonLinesWriter::open(&Destination::File(fifo.clone())).unwrap();
        let record =
            |id: &str| pb::ChangeRecord { schema_version: "v".into(), run_id: id.into(), record: None };
        w.write(&record("a")).unwrap();
        w.commit().unwrap();
        w.write(&record("b")).unwrap();
        w.finish().unwrap();
        let text = reader.join().unwrap();
        assert_eq!(text.lines().count(), 2);
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "still a FIFO");
        assert!(!dir.path().join("records.fifo.partial").exists());
    }
}
