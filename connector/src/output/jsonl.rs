//! JSON Lines output: one proto3-JSON `ExtractRecord` per line.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use s3_connector_proto::v1 as pb;

/// Where records go.
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, written as `<file>.partial` and renamed when the run completes, so that a
    /// scheduled job never leaves a half-written file under the final name.
    File(PathBuf),
}

/// Writes records as JSON Lines.
pub struct JsonLinesWriter {
    out: Box<dyn Write + Send>,
    final_path: Option<(PathBuf, PathBuf)>,
    records: u64,
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
                final_path: None,
                records: 0,
            }),
            Destination::File(path) => {
                let partial = partial_path(path);
                let file = File::create(&partial)?;
                Ok(JsonLinesWriter {
                    out: Box::new(BufWriter::new(file)),
                    final_path: Some((partial, path.clone())),
                    records: 0,
                })
            }
        }
    }

    /// Writes one record.
    pub fn write(&mut self, record: &pb::ExtractRecord) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record).map_err(io::Error::other)?;
        self.out.write_all(b"\n")?;
        self.records += 1;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
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
        drop(self.out);
        if let Some((partial, path)) = self.final_path.take() {
            std::fs::rename(partial, path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
