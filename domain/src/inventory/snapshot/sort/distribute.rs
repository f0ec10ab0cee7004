//! Dealing rows into the key ranges of the previous snapshot: a distribution sort.
//!
//! A day's report holds mostly the keys of the day before, so the previous snapshot's keys
//! at a fixed stride ([`read_splitters`](super::super::read_splitters)) cut the new rows into
//! ranges of about [`SPLITTER_STRIDE`](super::super::SPLITTER_STRIDE) rows. Rows are appended to their range's buffer as they arrive, unsorted; when the buffers
//! hold a run's worth they are written out, on a background thread, as one spill file with a
//! segment per range. The final pass takes the ranges in key order, each read back, sorted and
//! reduced on its own a thread ahead of the join: a range's rows fit in cache, where a whole
//! run's do not, and the ranges need no k-way merge. A range that grew past a run (a day that
//! added far more keys somewhere than were there before) is sorted through spilled runs, as an
//! undistributed build is. The splitters only steer the work: any increasing keys give the
//! same snapshot.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::super::format::{EntryDecoder, PREFETCH_BATCH, Prefetch};
use super::{
    Batches, BuildError, Flat, MAX_RUN_BYTES, RUN_IO_BUFFER, RunBuffer, RunFile, RunMerge, RunWriter, batches,
    key_chunk, spill_err,
};
use crate::inventory::record::SnapshotRow;

/// One range's rows in a flush file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    len: u64,
    rows: usize,
}

/// The ranges' buffers written out at once: one file, a segment per range.
struct Flush {
    file: RunFile,
    segments: Vec<Segment>,
}

/// Rows dealt into key ranges (see the module documentation).
pub(super) struct Distribution {
    /// Strictly increasing; range `i` holds the keys with `i` splitters at or below them.
    splitters: Vec<Vec<u8>>,
    /// Each splitter's first 8 bytes ([`key_chunk`]): most rows find their range on these.
    prefixes: Vec<u64>,
    ranges: Vec<RunBuffer>,
    rows: usize,
    bytes: usize,
    flushing: Option<JoinHandle<Result<(Flush, Vec<RunBuffer>), BuildError>>>,
    /// The buffers of the last flush, emptied with their capacity, for the flush after next.
    spare: Option<Vec<RunBuffer>>,
    flushes: Vec<Flush>,
    spill_dir: PathBuf,
    flush_seq: usize,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Splitters are keys: counted, not printed.
        f.debug_struct("Distribution")
            .field("ranges", &self.ranges.len())
            .field("flushes", &self.flushes.len())
            .finish()
    }
}

impl Distribution {
    /// Ranges cut at `splitters`, or `None` when they are empty or not strictly increasing
    /// (then the build sorts runs as without them).
    pub(super) fn new(splitters: Vec<Vec<u8>>, spill_dir: &Path) -> Option<Self> {
        if splitters.is_empty() || splitters.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let prefixes = splitters.iter().map(|s| key_chunk(s, 0)).collect();
        let ranges = (0..=splitters.len()).map(|_| RunBuffer::default()).collect();
        Some(Distribution {
            splitters,
            prefixes,
            ranges,
            rows: 0,
            bytes: 0,
            flushing: None,
            spare: None,
            flushes: Vec::new(),
            spill_dir: spill_dir.to_path_buf(),
            flush_seq: 0,
        })
    }

    /// The range of `key`: the number of splitters at or below it.
    fn range_of(&self, key: &[u8]) -> usize {
        // Zero-padded prefixes order as the keys do, so only splitters sharing the key's
        // prefix need a full comparison.
        let prefix = key_chunk(key, 0);
        let below = self.prefixes.partition_point(|&p| p < prefix);
        let tied = self.prefixes[below..].partition_point(|&p| p == prefix);
        below + self.splitters[below..below + tied].partition_point(|s| s.as_slice() <= key)
    }

    /// Adds a row encoded elsewhere.
    pub(super) fn push_copy(&mut self, row: Flat<'_>) {
        let range = self.range_of(row.key());
        self.ranges[range].push_copy(row);
        self.rows += 1;
        self.bytes += row.entry().len();
    }

    /// Adds a parsed row.
    pub(super) fn push(&mut self, record: &SnapshotRow<'_>) {
        let range = self.range_of(record.key.as_bytes());
        let buffer = &mut self.ranges[range];
        let before = buffer.arena.len();
        buffer.push(record);
        self.rows += 1;
        self.bytes += buffer.arena.len() - before;
    }

    /// Writes the buffers out (in the background) once they hold `run_len` rows or
    /// [`MAX_RUN_BYTES`].
    pub(super) fn flush_if_full(&mut self, run_len: usize) -> Result<(), BuildError> {
        if self.rows < run_len && self.bytes < MAX_RUN_BYTES {
            return Ok(());
        }
        self.join_flush()?;
        let empty = self.spare.take().unwrap_or_else(|| (0..self.ranges.len()).map(|_| RunBuffer::default()).collect());
        let full = std::mem::replace(&mut self.ranges, empty);
        let (dir, seq) = (self.spill_dir.clone(), self.flush_seq);
        self.flush_seq += 1;
        self.rows = 0;
        self.bytes = 0;
        let spawned = std::thread::Builder::new()
            .name("snapshot-flush".into())
            .spawn(move || flush(full, &dir, seq))
            .map_err(|e| spill_err(&self.spill_dir, e))?;
        self.flushing = Some(spawned);
        Ok(())
    }

    /// Waits for the flush being written, if any.
    fn join_flush(&mut self) -> Result<(), BuildError> {
        if let Some(handle) = self.flushing.take() {
            let (flush, emptied) = handle.join().map_err(|_| BuildError::Spill {
                path: self.spill_dir.clone(),
                detail: "the flush writer thread panicked".into(),
            })??;
            self.flushes.push(flush);
            self.spare = Some(emptied);
        }
        Ok(())
    }

    /// Every range's winning rows in key order, sorted a thread ahead of the caller; ranges
    /// of more than `run_len` rows go through spilled runs.
    pub(super) fn into_sorted(mut self, run_len: usize) -> Result<Batches, BuildError> {
        self.join_flush()?;
        self.spare = None;
        let ranges = Ranges {
            flushes: std::mem::take(&mut self.flushes),
            memory: std::mem::take(&mut self.ranges).into_iter(),
            next: 0,
            run_len: run_len.max(1),
            spill_dir: self.spill_dir.clone(),
            merging: None,
            failed: false,
        };
        // Two ranges ready ahead of the join, one being sorted.
        let ahead = Prefetch::spawn("snapshot-ranges", ranges, 1, 2).map_err(|e| spill_err(&self.spill_dir, e))?;
        Ok(Box::new(ahead))
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        // The flush being written is removed with its RunFile once the thread ends.
        if let Some(handle) = self.flushing.take() {
            let _ = handle.join();
        }
    }
}

/// Writes every range's rows, in arrival order, as one segment each of a new spill file;
/// returns the flush and the buffers, emptied with their capacity.
fn flush(mut ranges: Vec<RunBuffer>, spill_dir: &Path, seq: usize) -> Result<(Flush, Vec<RunBuffer>), BuildError> {
    let mut writer = RunWriter::create(spill_dir, seq)?;
    let mut segments = Vec::with_capacity(ranges.len());
    for range in &mut ranges {
        let offset = writer.written;
        // Each segment is decoded on its own: no key prefix shared across segments.
        writer.prev_key.clear();
        let buffer: &RunBuffer = range;
        for row in &buffer.rows {
            writer.push(Flat { buffer, row })?;
        }
        segments.push(Segment { offset, len: writer.written - offset, rows: range.len() });
        range.rows.clear();
        range.arena.clear();
    }
    Ok((Flush { file: writer.finish()?, segments }, ranges))
}

/// Appends segment `range` of `flush` to `into`.
fn read_segment(flush: &Flush, range: usize, into: &mut RunBuffer) -> Result<(), BuildError> {
    let segment = flush.segments[range];
    if segment.rows == 0 {
        return Ok(());
    }
    let path = &flush.file.path;
    let mut file = File::open(path).map_err(|e| spill_err(path, e))?;
    file.seek(SeekFrom::Start(segment.offset)).map_err(|e| spill_err(path, e))?;
    let mut entries = EntryDecoder::new(BufReader::with_capacity(RUN_IO_BUFFER, file.take(segment.len)));
    let mut read = 0;
    while let Some(entry) = entries.next_flat(&mut into.arena).map_err(|d| spill_err(path, d))? {
        into.add_row(entry);
        read += 1;
    }
    if read != segment.rows {
        return Err(spill_err(path, format!("range {range}: {read} rows read back, {} written", segment.rows)));
    }
    Ok(())
}

/// The sorted ranges, one batch per range (several for a range merged from runs); ends after
/// its first error.
struct Ranges {
    flushes: Vec<Flush>,
    /// Each range's rows not flushed, in range order.
    memory: std::vec::IntoIter<RunBuffer>,
    next: usize,
    run_len: usize,
    spill_dir: PathBuf,
    /// The batches of a range sorted through runs, until they are all out.
    merging: Option<Batches>,
    failed: bool,
}

/// One range, sorted.
enum SortedRange {
    /// Sorted and reduced in memory.
    Whole(RunBuffer),
    /// Too large for memory: merged from spilled runs.
    Merged(Batches),
}

impl Ranges {
    fn sort(&self, range: usize, memory: RunBuffer) -> Result<SortedRange, BuildError> {
        let flushed: usize = self.flushes.iter().map(|f| f.segments[range].rows).sum();
        if flushed + memory.len() <= self.run_len {
            let mut rows = memory;
            for flush in &self.flushes {
                read_segment(flush, range, &mut rows)?;
            }
            return Ok(SortedRange::Whole(rows.into_memory_run()));
        }
        // At most one run in memory: a segment holds at most a run's rows, so the buffer is
        // spilled before a segment would take it past one.
        let mut runs = Vec::new();
        let mut rows = RunBuffer::default();
        for flush in &self.flushes {
            if rows.len() + flush.segments[range].rows > self.run_len {
                let (run, emptied) = rows.spill(&self.spill_dir, runs.len())?;
                runs.push(run);
                rows = emptied;
            }
            read_segment(flush, range, &mut rows)?;
        }
        if rows.len() + memory.len() > self.run_len {
            let (run, _) = rows.spill(&self.spill_dir, runs.len())?;
            runs.push(run);
            rows = memory;
        } else {
            for row in &memory.rows {
                rows.push_copy(Flat { buffer: &memory, row });
            }
        }
        let mut merge = RunMerge::open(&runs, Some(rows.into_memory_run()))?;
        Ok(SortedRange::Merged(batches(PREFETCH_BATCH, move |batch| {
            // The run files live as long as their merge.
            let _runs = &runs;
            Ok(merge.next_winner()?.map(|row| batch.push_copy(row)).is_some())
        })))
    }
}

impl Iterator for Ranges {
    type Item = Result<RunBuffer, BuildError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(merging) = &mut self.merging {
                match merging.next() {
                    Some(Ok(batch)) => return Some(Ok(batch)),
                    Some(Err(e)) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                    None => self.merging = None,
                }
            }
            let memory = self.memory.next()?;
            let range = self.next;
            self.next += 1;
            match self.sort(range, memory) {
                Ok(SortedRange::Whole(rows)) if rows.len() == 0 => {}
                Ok(SortedRange::Whole(rows)) => return Some(Ok(rows)),
                Ok(SortedRange::Merged(batches)) => self.merging = Some(batches),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
