//! Letting go of the page cache of files a run reads once and then deletes.
//!
//! Deleting a file frees its cached pages there and then: for the previous snapshot (200 MB
//! at 5M objects) and the flush files (400 MB), 15 ms each on the benchmark machine, on a
//! thread the end of the run waits for. Freed as they are read instead, the pages go while
//! the other threads still have work, and the deletions find nothing left to free.
//!
//! Both are hints: where the file system or OS does not take them, the pages go with the
//! file, as before.

use std::fs::File;
use std::io::{self, Read};

/// Bytes read between two hints to drop what was read.
const DROP_EVERY: u64 = 8 << 20;

/// Bytes discarded at once, at least: on ext4, holes of 1.2 MB in a 92 MB spill file cost 2–3
/// times what deleting it does, holes of 8 MB the same. (256 bytes in tests, so that their
/// small spill files are discarded too, a few segments at a time, while they are read: a hole
/// in the wrong place fails their read-back checks.)
pub(crate) const DISCARD_SPAN: u64 = if cfg!(test) { 256 } else { 8 << 20 };

/// Discards bytes `offset..offset + len` of `file`, written and read back for the last time:
/// their pages (dirty ones too, never written out) and blocks go, the file keeps its length.
pub(crate) fn discard(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::FallocateFlags;
        let _ =
            rustix::fs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// A file read front to back once, whose pages are dropped from the cache behind the reader.
/// Only for files on disk whole (not being written): dropping the pages of a clean file loses
/// nothing, a later read fetches them again.
pub(crate) struct DropBehind {
    file: File,
    /// Offset of the next byte read.
    at: u64,
    /// Pages before this offset were dropped.
    dropped: u64,
}

impl DropBehind {
    /// Reads `file` from its current offset, `at`.
    pub(crate) fn new(file: File, at: u64) -> Self {
        DropBehind { file, at, dropped: 0 }
    }
}

impl Read for DropBehind {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.at += n as u64;
        if self.at - self.dropped >= DROP_EVERY {
            #[cfg(target_os = "linux")]
            {
                use std::num::NonZeroU64;
                let len = NonZeroU64::new(self.at - self.dropped);
                let _ = rustix::fs::fadvise(&self.file, self.dropped, len, rustix::fs::Advice::DontNeed);
            }
            self.dropped = self.at;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The reader gives the file's bytes whatever it drops behind itself, read in pieces of any
    /// size across the hints.
    #[test]
    fn a_file_read_while_its_pages_are_dropped_reads_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..(DROP_EVERY as usize * 2 + 12_345)).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut file = File::open(&path).unwrap();
        let mut head = [0u8; 100];
        file.read_exact(&mut head).unwrap();
        let mut reader = DropBehind::new(file, 100);
        let mut read = head.to_vec();
        let mut piece = vec![0u8; 1_000_003];
        loop {
            let n = reader.read(&mut piece).unwrap();
            if n == 0 {
                break;
            }
            read.extend_from_slice(&piece[..n]);
        }
        assert!(reader.dropped > 0, "the reader never dropped pages");
        assert!(read == bytes, "the file read back differs");
    }

    /// A discarded span reads as zeros (or is refused, where holes are not supported); the
    /// rest of the file and its length stay.
    #[test]
    fn a_discarded_span_leaves_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        let bytes = vec![7u8; 3 * 4096];
        file.write_all(&bytes).unwrap();
        discard(&file, 4096, 4096);
        let read = std::fs::read(&path).unwrap();
        assert_eq!(read.len(), bytes.len());
        assert!(read[..4096].iter().chain(&read[8192..]).all(|&b| b == 7), "bytes outside the span changed");
        assert!(read[4096..8192].iter().all(|&b| b == 7 || b == 0));
        #[cfg(target_os = "linux")]
        assert!(read[4096..8192].iter().all(|&b| b == 0), "the span was not discarded on this file system");
    }
}
