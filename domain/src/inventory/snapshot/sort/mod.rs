//! Building a snapshot from an unsorted stream of inventory rows with bounded memory.
//!
//! Rows are encoded into an arena up to `run_len` rows, then sorted (by 8-byte key chunks),
//! reduced and spilled as a run file in the spill directory on a background thread. The
//! last run is sorted and merged from memory (a report that fits in one run spills nothing).
//! [`SnapshotBuilder::finish`] k-way merges the runs (in several passes when there are more
//! than [`MAX_FAN_IN`]) straight into the snapshot writer; [`SnapshotBuilder::finish_with_diff`]
//! does the same and merge-joins the result against the previous snapshot in that pass, and
//! [`SnapshotBuilder::finish_with_rollup`] also rolls the join up to datasets (from the
//! previous snapshot's stored totals when it has them) and stores the new totals. Peak
//! memory is two runs of `run_len` rows plus the rows decoded ahead of the merge (bounded by
//! `MERGE_PREFETCH_ROWS`) and one buffer per open run.
//!
//! With the previous snapshot's splitters ([`SnapshotBuilder::distribute_by`]) rows are dealt
//! into its key ranges instead, and sorted range by range in the final pass
//! (the private `distribute` module).
//!
//! All-versions rows reduce like [`crate::inventory::reduce::current_objects`]: non-latest
//! rows are dropped; among competing latest rows for a key the newest wins, then the delete
//! marker, then the greatest kept fields (so the result does not depend on row order); a key
//! whose winner is a delete marker is absent.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::datasets::DatasetDiffAggregator;
use super::diff::{ChangedFields, DiffEntry, ObjectChange};
use super::format::{
    EntryDecoder, EntryFields, F_DELETE_MARKER, FlatEntry, ObjectView, PREFETCH_BATCH, PREFETCH_DEPTH,
    Prefetch, SnapshotError, SnapshotHeader, SnapshotInfo, SnapshotReader, SnapshotWriter, decode_flat,
    decode_unchanged, encode_fields, read_dataset_totals, reencode_entry, temp_sibling, varint_len,
};
use crate::inventory::record::{InventoryRecord, SnapshotRow};

mod distribute;

/// Default rows per in-memory run (about 100–200 MB of rows for typical keys).
pub const DEFAULT_RUN_LEN: usize = 1_000_000;
/// Most runs merged at once; more runs are merged in passes, bounding open files.
pub const MAX_FAN_IN: usize = 64;

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A row of another bucket than the snapshot's source bucket.
    #[error("row for s3://{found}/{key} in a snapshot of bucket {expected}")]
    BucketMismatch {
        /// The snapshot's source bucket.
        expected: String,
        /// The row's bucket.
        found: String,
        /// The row's key.
        key: String,
    },
    /// A spill run file could not be written or read back.
    #[error("spill run {path}: {detail}")]
    Spill {
        /// The run file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Writing the snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

impl BuildError {
    /// Stable code for records and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::BucketMismatch { .. } => "SNAPSHOT_BUCKET_MISMATCH",
            BuildError::Spill { .. } => "SNAPSHOT_SPILL",
            BuildError::Snapshot(e) => e.code(),
        }
    }
}

/// A spill run on disk, removed when dropped.
struct RunFile {
    path: PathBuf,
}

impl Drop for RunFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn spill_err(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::Spill { path: path.to_path_buf(), detail: e.to_string() }
}

/// Writes sorted, per-key-reduced rows into a new run file.
struct RunWriter {
    file: RunFile,
    out: BufWriter<File>,
    prev_key: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes written so far: where the next entry starts.
    written: u64,
}

impl RunWriter {
    /// A new spill file named after `stem` in `spill_dir`.
    fn create(spill_dir: &Path, stem: &str) -> Result<Self, BuildError> {
        let path = temp_sibling(&spill_dir.join(format!("{stem}.spill")));
        let file = File::create(&path).map_err(|e| spill_err(&path, e))?;
        // Not compressed: runs are short-lived and read once, and their keys already share
        // prefixes; compressing them cost more CPU than the rest of the spill.
        let out = BufWriter::with_capacity(RUN_IO_BUFFER, file);
        Ok(RunWriter { file: RunFile { path }, out, prev_key: Vec::new(), buf: Vec::new(), written: 0 })
    }

    /// Appends a flat entry (see [`FlatEntry`]), delete-marker flag included.
    fn push(&mut self, row: Flat<'_>) -> Result<(), BuildError> {
        self.buf.clear();
        reencode_entry(&mut self.buf, &self.prev_key, row.entry(), row.key_start(), row.key_end());
        self.out.write_all(&self.buf).map_err(|e| spill_err(&self.file.path, e))?;
        self.written += self.buf.len() as u64;
        self.prev_key.clear();
        self.prev_key.extend_from_slice(row.key());
        Ok(())
    }

    /// Appends bytes as they are (rows of another layout, whose reader knows it).
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), BuildError> {
        self.out.write_all(bytes).map_err(|e| spill_err(&self.file.path, e))?;
        self.written += bytes.len() as u64;
        self.prev_key.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<RunFile, BuildError> {
        self.out.flush().map_err(|e| spill_err(&self.file.path, e))?;
        Ok(self.file)
    }
}

/// Where one buffered row lies in its [`RunBuffer`]'s arena.
#[derive(Debug, Clone, Copy)]
struct RowRef {
    start: usize,
    key_start: u32,
    key_end: u32,
    end: u32,
    last_modified_ms: Option<i64>,
    delete_marker: bool,
}

/// The rows of one run, encoded back to back in one arena (entry format, no prefix sharing):
/// a handful of allocations per run instead of several per row, and cheap to sort and spill.
#[derive(Debug, Default)]
struct RunBuffer {
    arena: Vec<u8>,
    rows: Vec<RowRef>,
}

impl RunBuffer {
    fn push(&mut self, record: &SnapshotRow<'_>) {
        let start = self.arena.len();
        let delete_marker = record.is_delete_marker == Some(true);
        let flags = if delete_marker { F_DELETE_MARKER } else { 0 };
        encode_fields(&mut self.arena, &[], EntryFields::from(record), flags);
        // flags byte, shared length 0 (one byte), key length varint, key.
        let key_start = 2 + varint_len(record.key.len() as u64);
        let key_end = key_start + record.key.len();
        let end = self.arena.len() - start;
        self.rows.push(RowRef {
            start,
            key_start: key_start as u32,
            key_end: key_end as u32,
            end: end as u32,
            last_modified_ms: record.last_modified_ms,
            delete_marker,
        });
    }

    fn entry(&self, row: &RowRef) -> &[u8] {
        &self.arena[row.start..row.start + row.end as usize]
    }

    fn key(&self, row: &RowRef) -> &[u8] {
        &self.arena[row.start + row.key_start as usize..row.start + row.key_end as usize]
    }

    /// Adds the row of a flat entry just appended to the arena.
    fn add_row(&mut self, entry: FlatEntry) {
        self.rows.push(RowRef {
            start: entry.start,
            key_start: entry.key_start,
            key_end: entry.key_end,
            end: entry.end,
            last_modified_ms: entry.last_modified_ms,
            delete_marker: entry.flags & F_DELETE_MARKER != 0,
        });
    }

    /// Appends a copy of another buffer's row.
    fn push_copy(&mut self, row: Flat<'_>) {
        let start = self.arena.len();
        self.arena.extend_from_slice(row.entry());
        self.rows.push(RowRef { start, ..*row.row });
    }

    /// An empty batch for `rows` rows of typical size.
    fn batch(rows: usize) -> RunBuffer {
        RunBuffer { arena: Vec::with_capacity(rows * TYPICAL_ENTRY_BYTES), rows: Vec::with_capacity(rows) }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    /// The indices of `rows` (this buffer's, whose keys share their first `offset` bytes) in
    /// the merge's order ([`Flat::merge_order`]). Keys are sorted by 8-byte chunks (big-endian,
    /// zero-padded, so chunk order is key order but for ties), each beside its row's index:
    /// the sort moves 16 bytes a row and reads no arena per comparison. Each group of equal
    /// chunks is sorted again by its next chunk, so a long shared prefix is read once per
    /// chunk rather than once per comparison. A group where some key ends within the chunk,
    /// or past [`MAX_CHUNK_DEPTH`], is sorted by full comparison.
    fn sorted_order(&self, rows: &[RowRef], offset: usize) -> Vec<(u64, usize)> {
        let mut order: Vec<(u64, usize)> =
            rows.iter().enumerate().map(|(i, row)| (key_chunk(self.key(row), offset), i)).collect();
        self.sort_by_chunks(rows, &mut order, offset);
        order
    }

    /// Sorts `order` (chunks at `offset` of `rows`' keys, and the rows' indices); see
    /// [`Self::sorted_order`].
    fn sort_by_chunks(&self, rows: &[RowRef], order: &mut [(u64, usize)], offset: usize) {
        order.sort_unstable_by_key(|&(chunk, _)| chunk);
        let mut start = 0;
        while start < order.len() {
            let chunk = order[start].0;
            let len = order[start..].iter().take_while(|&&(c, _)| c == chunk).count();
            let group = &mut order[start..start + len];
            start += len;
            if group.len() < 2 {
                continue;
            }
            let next = offset + 8;
            if next >= MAX_CHUNK_DEPTH || group.iter().any(|&(_, i)| self.key(&rows[i]).len() <= next) {
                group.sort_unstable_by(|&(_, a), &(_, b)| {
                    Flat { buffer: self, row: &rows[a] }.merge_order(Flat { buffer: self, row: &rows[b] })
                });
            } else {
                for (chunk, i) in group.iter_mut() {
                    *chunk = key_chunk(self.key(&rows[*i]), next);
                }
                self.sort_by_chunks(rows, group, next);
            }
        }
    }

    /// An empty buffer for the first run, reserved for `run_len` rows of typical size: growing
    /// by doubling would copy the arena and fault its pages in again at every step. The
    /// reservation is address space only until rows are written.
    fn for_run(run_len: usize) -> RunBuffer {
        let rows = run_len.min(MAX_RESERVED_ROWS);
        RunBuffer { arena: Vec::with_capacity(rows * TYPICAL_ENTRY_BYTES), rows: Vec::with_capacity(rows) }
    }

    /// An empty buffer with the capacity of `full`: the second run does not regrow from
    /// nothing (its capacity, not its length: a run a few bytes longer than the first would
    /// double the arena, copying it and faulting in fresh pages).
    fn with_capacity_of(full: &RunBuffer) -> RunBuffer {
        RunBuffer {
            arena: Vec::with_capacity(full.arena.capacity()),
            rows: Vec::with_capacity(full.rows.capacity()),
        }
    }

    /// Sorts and keeps each key's winner, in memory: the last run of a build is merged from
    /// here instead of being written and read back (for a report that fits in one run, no
    /// spill file at all).
    fn into_memory_run(self) -> RunBuffer {
        self.into_memory_run_sharing(0)
    }

    /// [`Self::into_memory_run`] of rows whose keys all share their first `shared` bytes (a
    /// key range's, whose bounds share them): the sort starts at the chunk holding byte
    /// `shared`, not with a pass per 8 bytes of a prefix every row has.
    ///
    /// The winners are copied into a new arena in key order: the join then reads it front to
    /// back, where it read the rows in arrival order all over the arena (its key comparisons
    /// waited on memory). Each row is touched once here anyway, to compare it with the last
    /// winner, which is the last row copied.
    fn into_memory_run_sharing(mut self, shared: usize) -> RunBuffer {
        let rows = std::mem::take(&mut self.rows);
        let order = self.sorted_order(&rows, shared / 8 * 8);
        let mut sorted =
            RunBuffer { arena: Vec::with_capacity(self.arena.len()), rows: Vec::with_capacity(rows.len()) };
        let mut last_chunk = None;
        for &(chunk, i) in &order {
            let row = &rows[i];
            // Rows of one key end the sort with the same chunk: another chunk is another key.
            let same_key = last_chunk == Some(chunk)
                && sorted.rows.last().is_some_and(|last| sorted.key(last) == self.key(row));
            last_chunk = Some(chunk);
            if !same_key {
                let start = sorted.arena.len();
                sorted.arena.extend_from_slice(self.entry(row));
                sorted.rows.push(RowRef { start, ..*row });
            }
        }
        sorted
    }

    /// Sorts, keeps each key's winner and writes the run; returns the run and this buffer,
    /// emptied but with its capacity, for the next run (no regrowth, no fresh pages).
    fn spill(mut self, spill_dir: &Path, stem: &str) -> Result<(RunFile, RunBuffer), BuildError> {
        let mut rows = std::mem::take(&mut self.rows);
        let order = self.sorted_order(&rows, 0);
        let mut writer = RunWriter::create(spill_dir, stem)?;
        let mut prev: Option<&RowRef> = None;
        for row in order.iter().map(|&(_, i)| &rows[i]) {
            if prev.is_none_or(|p| self.key(p) != self.key(row)) {
                writer.push(Flat { buffer: &self, row })?;
            }
            prev = Some(row);
        }
        let run = writer.finish()?;
        rows.clear();
        self.rows = rows;
        self.arena.clear();
        Ok((run, self))
    }
}

/// What the spill writer thread of `handle`, if any, returned; `what` names the writer if the
/// thread panicked.
fn join_writer<T>(
    handle: Option<std::thread::JoinHandle<Result<T, BuildError>>>,
    spill_dir: &Path,
    what: &str,
) -> Result<Option<T>, BuildError> {
    let Some(handle) = handle else { return Ok(None) };
    let written = handle.join().map_err(|_| BuildError::Spill {
        path: spill_dir.to_path_buf(),
        detail: format!("the {what} writer thread panicked"),
    })?;
    written.map(Some)
}

/// Key bytes sorted chunk by chunk before a group falls back to full comparisons (bounds the
/// passes over keys that share very long prefixes).
const MAX_CHUNK_DEPTH: usize = 128;

/// The 8 key bytes at `offset`, big-endian, zero-padded past the key's end. Zero padding keeps
/// chunk order consistent with key order; keys that end within the chunk may tie, and are then
/// compared in full.
fn key_chunk(key: &[u8], offset: usize) -> u64 {
    let tail = key.get(offset..).unwrap_or_default();
    // One load for a whole chunk: the sort takes a chunk of every row at every level, and a
    // copy of variable length is a call into `memmove`.
    if let Some(whole) = tail.first_chunk::<8>() {
        return u64::from_be_bytes(*whole);
    }
    let mut chunk = [0u8; 8];
    chunk[..tail.len()].copy_from_slice(tail);
    u64::from_be_bytes(chunk)
}

/// Rows a merge decodes ahead, over all its threads (per thread: two queued batches and one
/// being filled).
const MERGE_PREFETCH_ROWS: usize = 64 * 1024;

/// Rows a first run reserves room for at most, and the entry size it assumes (key of about 60
/// bytes, ETag, size, time, storage class, flags).
const MAX_RESERVED_ROWS: usize = 1 << 20;
const TYPICAL_ENTRY_BYTES: usize = 128;

/// Buffer of a run file's writer and readers.
const RUN_IO_BUFFER: usize = 256 * 1024;

/// Arena bytes after which a run is spilled whatever its row count.
const MAX_RUN_BYTES: usize = 256 << 20;

/// One row of a [`RunBuffer`]: a flat entry and what the sort knows of it.
#[derive(Debug, Clone, Copy)]
struct Flat<'a> {
    buffer: &'a RunBuffer,
    row: &'a RowRef,
}

impl<'a> Flat<'a> {
    fn entry(self) -> &'a [u8] {
        self.buffer.entry(self.row)
    }

    fn key(self) -> &'a [u8] {
        self.buffer.key(self.row)
    }

    fn key_start(self) -> usize {
        self.row.key_start as usize
    }

    fn key_end(self) -> usize {
        self.row.key_end as usize
    }

    fn view(self) -> Result<ObjectView<'a>, String> {
        decode_flat(self.entry())
    }

    /// Key ascending, then the winning version of a key first: the newest, then the delete
    /// marker, then the greatest fields (so the winner does not depend on row order).
    fn merge_order(self, other: Flat<'_>) -> Ordering {
        self.key().cmp(other.key()).then_with(|| {
            let (a, b) = (self.row, other.row);
            (b.last_modified_ms, b.delete_marker).cmp(&(a.last_modified_ms, a.delete_marker)).then_with(
                || {
                    // Rare: two latest rows of one key and time. Both were encoded by this build.
                    let object = |row: Flat<'_>| row.view().map(|v| v.to_object()).unwrap_or_default();
                    object(other).cmp(&object(self))
                },
            )
        })
    }

    /// Whether two entries of one key hold the same object: the encoding is canonical, so
    /// equal flags and field bytes mean equal fields.
    fn same_object(self, other: Flat<'_>) -> bool {
        let (a, b) = (self.entry(), other.entry());
        a[0] == b[0] && a[self.key_end()..] == b[other.key_end()..]
    }
}

/// Batches of flat entries in key order; the source ends after its first error.
type Batches = Box<dyn Iterator<Item = Result<RunBuffer, BuildError>> + Send>;

/// Batches of up to `rows` entries, each appended by `next` (false at the end).
fn batches(
    rows: usize,
    mut next: impl FnMut(&mut RunBuffer) -> Result<bool, BuildError> + Send + 'static,
) -> Batches {
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut batch = RunBuffer::batch(rows);
        while batch.len() < rows {
            match next(&mut batch) {
                Ok(true) => {}
                Ok(false) => {
                    done = true;
                    break;
                }
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
        (batch.len() > 0).then_some(Ok(batch))
    }))
}

/// A spilled run's entries, read back in batches.
fn run_batches(run: &RunFile, rows: usize) -> Result<Batches, BuildError> {
    let path = run.path.clone();
    let file = File::open(&path).map_err(|e| spill_err(&path, e))?;
    let mut entries = EntryDecoder::new(BufReader::with_capacity(RUN_IO_BUFFER, file));
    Ok(batches(rows, move |batch| {
        match entries.next_flat(&mut batch.arena).map_err(|d| spill_err(&path, d))? {
            Some(entry) => {
                batch.add_row(entry);
                Ok(true)
            }
            None => Ok(false),
        }
    }))
}

/// The previous snapshot's entries, read ahead on their own thread (order and count checked
/// by the reader).
fn old_snapshot_batches(mut reader: SnapshotReader) -> Result<Batches, BuildError> {
    let path = reader.info().path.clone();
    let source = batches(PREFETCH_BATCH, move |batch| match reader.next_flat(&mut batch.arena)? {
        Some(entry) => {
            batch.add_row(entry);
            Ok(true)
        }
        None => Ok(false),
    });
    let ahead = Prefetch::spawn("snapshot-read", source, 1, PREFETCH_DEPTH)
        .map_err(|e| BuildError::Snapshot(SnapshotError::io(&path, e)))?;
    Ok(Box::new(ahead))
}

/// A key-sorted stream of flat entries, one batch in hand.
struct Cursor {
    batch: RunBuffer,
    at: usize,
    rest: Option<Batches>,
}

impl Cursor {
    /// A cursor on `rest`'s first entry.
    fn new(rest: Batches) -> Result<Self, BuildError> {
        let mut cursor = Cursor { batch: RunBuffer::default(), at: 0, rest: Some(rest) };
        cursor.refill()?;
        Ok(cursor)
    }

    /// A cursor over one sorted batch.
    fn of(batch: RunBuffer) -> Self {
        Cursor { batch, at: 0, rest: None }
    }

    fn head(&self) -> Option<Flat<'_>> {
        self.batch.rows.get(self.at).map(|row| Flat { buffer: &self.batch, row })
    }

    fn advance(&mut self) -> Result<(), BuildError> {
        self.at += 1;
        self.refill()
    }

    fn refill(&mut self) -> Result<(), BuildError> {
        while self.at >= self.batch.len() {
            let Some(rest) = &mut self.rest else { return Ok(()) };
            match rest.next() {
                Some(batch) => {
                    self.batch = batch?;
                    self.at = 0;
                }
                None => self.rest = None,
            }
        }
        Ok(())
    }
}

/// Threads that decode (and, for many runs, pre-merge) runs ahead of the final merge.
const MERGE_THREADS: usize = 4;

/// The winning row of each key of several cursors, in key order. Entries stay in their
/// batches: the merge compares and hands out bytes, and decodes nothing.
struct RunMerge {
    cursors: Vec<Cursor>,
    /// One cursor whose keys are distinct and in order (sorted ranges): handed out as they
    /// come, with no ordering or key comparisons.
    distinct: bool,
    /// Cursors with a head, the greatest head first (the next row is popped off the end).
    by_head: Vec<usize>,
    last_key: Option<Vec<u8>>,
    /// The cursor whose head was handed out last, advanced on the next call.
    taken: Option<usize>,
}

impl RunMerge {
    /// Decoding rows is most of a merge's work, so it runs ahead on up to [`MERGE_THREADS`]
    /// threads: one per run for a few runs; for more, each thread merges a group of runs
    /// (keeping each key's winner within the group, which is safe: a row that loses in its
    /// group loses overall), and this merge only combines the groups. The in-memory run is
    /// read where it is.
    fn open(runs: &[RunFile], memory: Option<RunBuffer>) -> Result<Self, BuildError> {
        // Rows decoded ahead are bounded in total: three batches per thread.
        let rows = (MERGE_PREFETCH_ROWS / runs.len().clamp(1, MERGE_THREADS)).min(PREFETCH_BATCH);
        let mut cursors = Vec::with_capacity(MERGE_THREADS + 1);
        for group in runs.chunks(runs.len().div_ceil(MERGE_THREADS).max(1)) {
            let Some(first) = group.first() else { continue };
            let source = match group {
                [run] => run_batches(run, rows)?,
                runs => {
                    let cursors = runs.iter().map(|run| Cursor::new(run_batches(run, rows)?));
                    let mut merge = RunMerge::new(cursors.collect::<Result<_, _>>()?);
                    batches(rows, move |batch| {
                        Ok(merge.next_winner()?.map(|row| batch.push_copy(row)).is_some())
                    })
                }
            };
            let ahead =
                Prefetch::spawn("snapshot-merge", source, 1, 2).map_err(|e| spill_err(&first.path, e))?;
            cursors.push(Cursor::new(Box::new(ahead))?);
        }
        cursors.extend(memory.map(Cursor::of));
        Ok(RunMerge::new(cursors))
    }

    /// The winners of one cursor already holding each key once, in order.
    fn of_distinct(cursor: Cursor) -> Self {
        RunMerge { cursors: vec![cursor], distinct: true, by_head: Vec::new(), last_key: None, taken: None }
    }

    fn new(cursors: Vec<Cursor>) -> Self {
        let mut merge =
            RunMerge { cursors, distinct: false, by_head: Vec::new(), last_key: None, taken: None };
        for i in 0..merge.cursors.len() {
            merge.insert(i);
        }
        merge
    }

    /// Puts cursor `i` in its place by head, if it has one; ties go by cursor, so the merge
    /// is deterministic.
    fn insert(&mut self, i: usize) {
        let Some(head) = self.cursors[i].head() else { return };
        let at = self.by_head.partition_point(|&j| {
            self.cursors[j].head().is_some_and(|other| other.merge_order(head).then(j.cmp(&i)).is_gt())
        });
        self.by_head.insert(at, i);
    }

    /// The next key's winning row, valid until the next call.
    fn next_winner(&mut self) -> Result<Option<Flat<'_>>, BuildError> {
        Ok(self.next_index()?.and_then(|i| self.cursors[i].head()))
    }

    /// The cursor whose head is the next key's winning row.
    fn next_index(&mut self) -> Result<Option<usize>, BuildError> {
        if self.distinct {
            if self.taken.take().is_some() {
                self.cursors[0].advance()?;
            }
            self.taken = self.cursors[0].head().map(|_| 0);
            return Ok(self.taken);
        }
        if let Some(i) = self.taken.take() {
            self.cursors[i].advance()?;
            self.insert(i);
        }
        while let Some(i) = self.by_head.pop() {
            let Some(head) = self.cursors[i].head() else { continue };
            // Heads of one key arrive winner first; later rows of the same key lose.
            if self.last_key.as_deref() == Some(head.key()) {
                self.cursors[i].advance()?;
                self.insert(i);
                continue;
            }
            let last = self.last_key.get_or_insert_with(Vec::new);
            last.clear();
            last.extend_from_slice(head.key());
            self.taken = Some(i);
            return Ok(Some(i));
        }
        Ok(None)
    }

    /// The next winning row that is an object (not a delete marker), as a cursor index.
    fn next_object(&mut self) -> Result<Option<usize>, BuildError> {
        while let Some(i) = self.next_index()? {
            if self.cursors[i].head().is_some_and(|row| !row.row.delete_marker) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// Why the fused final pass stopped early.
enum Stop<E> {
    Build(BuildError),
    Consumer(E),
}

impl<E> From<BuildError> for Stop<E> {
    fn from(e: BuildError) -> Self {
        Stop::Build(e)
    }
}

impl<E> From<SnapshotError> for Stop<E> {
    fn from(e: SnapshotError) -> Self {
        Stop::Build(BuildError::Snapshot(e))
    }
}

/// Which side(s) of the join hold the least key.
enum Least<'a, 'b> {
    Old(Flat<'a>),
    New(Flat<'b>),
    Both(Flat<'a>, Flat<'b>),
}

fn least<'a, 'b>(old: Option<Flat<'a>>, new: Option<Flat<'b>>) -> Option<Least<'a, 'b>> {
    Some(match (old, new) {
        (None, None) => return None,
        (Some(o), None) => Least::Old(o),
        (None, Some(n)) => Least::New(n),
        (Some(o), Some(n)) => match o.key().cmp(n.key()) {
            Ordering::Less => Least::Old(o),
            Ordering::Greater => Least::New(n),
            Ordering::Equal => Least::Both(o, n),
        },
    })
}

/// Whether the join hands unchanged objects on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unchanged {
    /// Decoded ([`UnchangedObject`]) and handed on.
    Decoded,
    /// Neither decoded nor handed on: the consumer counts from stored totals.
    Skipped,
}

/// The old snapshot's cursor and its file, for errors.
struct OldSide {
    path: PathBuf,
    cursor: Cursor,
}

/// Merge-joins the merge's objects (written to `writer` as they pass) against `old`, calling
/// `on_entry` in key order. Entries are compared as bytes; only changed, added and removed
/// objects are decoded into owned objects, unchanged ones are handed out as views.
fn join_into<E>(
    merge: &mut RunMerge,
    old: Option<OldSide>,
    writer: &mut SnapshotWriter,
    spill_dir: &Path,
    unchanged_steps: Unchanged,
    on_entry: &mut impl FnMut(DiffEntry<'_>) -> Result<(), E>,
) -> Result<(), Stop<E>> {
    let (old_path, mut old) = old.map_or((PathBuf::new(), None), |o| (o.path, Some(o.cursor)));
    let old_object =
        |row: Flat<'_>| row.view().map(|v| v.to_object()).map_err(|d| SnapshotError::corrupt(&old_path, d));
    fn new_view<'a>(row: Flat<'a>, spill_dir: &Path) -> Result<ObjectView<'a>, BuildError> {
        row.view().map_err(|d| spill_err(spill_dir, d))
    }
    fn unchanged<'a>(row: Flat<'a>, spill_dir: &Path) -> Result<DiffEntry<'a>, BuildError> {
        decode_unchanged(row.entry()).map(DiffEntry::Unchanged).map_err(|d| spill_err(spill_dir, d))
    }
    let mut new_at = merge.next_object()?;
    loop {
        let new = new_at.and_then(|i| merge.cursors[i].head());
        let Some(least) = least(old.as_ref().and_then(Cursor::head), new) else { return Ok(()) };
        let (old_moves, new_moves) = match least {
            Least::Old(o) => {
                on_entry(DiffEntry::Change(ObjectChange::Removed(old_object(o)?))).map_err(Stop::Consumer)?;
                (true, false)
            }
            Least::New(n) => {
                writer.push_flat(n.entry(), n.key_start(), n.key_end())?;
                on_entry(DiffEntry::Change(ObjectChange::Added(new_view(n, spill_dir)?.to_object())))
                    .map_err(Stop::Consumer)?;
                (false, true)
            }
            Least::Both(o, n) => {
                writer.push_flat(n.entry(), n.key_start(), n.key_end())?;
                let entry = if o.same_object(n) {
                    match unchanged_steps {
                        Unchanged::Decoded => Some(unchanged(n, spill_dir)?),
                        Unchanged::Skipped => None,
                    }
                } else {
                    let (old, new) = (old_object(o)?, new_view(n, spill_dir)?.to_object());
                    let fields = ChangedFields::between(&old, &new);
                    if !fields.is_empty() {
                        Some(DiffEntry::Change(ObjectChange::Changed { old, new, fields }))
                    } else if unchanged_steps == Unchanged::Decoded {
                        Some(unchanged(n, spill_dir)?)
                    } else {
                        None
                    }
                };
                if let Some(entry) = entry {
                    on_entry(entry).map_err(Stop::Consumer)?;
                }
                (true, true)
            }
        };
        if let Some(cursor) = old.as_mut().filter(|_| old_moves) {
            cursor.advance()?;
        }
        if new_moves {
            new_at = merge.next_object()?;
        }
    }
}

/// Whether `record` goes into a snapshot of `bucket`: non-latest versions do not; a row of
/// another bucket is an error.
fn admit(bucket: &str, record: &SnapshotRow<'_>) -> Result<bool, BuildError> {
    if !same_bytes(record.bucket.as_bytes(), bucket.as_bytes()) {
        return Err(BuildError::BucketMismatch {
            expected: bucket.to_string(),
            found: record.bucket.to_string(),
            key: record.key.to_string(),
        });
    }
    Ok(record.is_latest != Some(false))
}

/// `a == b` without a call: every row's bucket is compared, and the call into `memcmp` cost
/// more than comparing its few bytes (4% of a Parquet reading thread).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |differ, (x, y)| differ | (x ^ y)) == 0
}

/// Rows a [`RowBatch`] is sized for.
const ROW_BATCH_ROWS: usize = 4096;

/// Rows encoded for a [`SnapshotBuilder`] on the thread that parsed them
/// ([`SnapshotBuilder::row_batch`]): the parsed rows are dropped where they were allocated, and
/// the builder's thread only copies bytes ([`SnapshotBuilder::push_batch`]).
#[derive(Debug)]
pub struct RowBatch {
    bucket: std::sync::Arc<str>,
    buffer: RunBuffer,
    rows_seen: u64,
}

impl RowBatch {
    /// Adds one row, as [`SnapshotBuilder::push`] would.
    pub fn push(&mut self, record: &InventoryRecord) -> Result<(), BuildError> {
        self.push_row(&SnapshotRow::from(record))
    }

    /// Adds one row given by the columns a snapshot keeps, as [`push`](Self::push) would.
    pub fn push_row(&mut self, row: &SnapshotRow<'_>) -> Result<(), BuildError> {
        self.rows_seen += 1;
        if admit(&self.bucket, row)? {
            self.buffer.push(row);
        }
        Ok(())
    }

    /// Rows pushed, kept or not.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// An empty batch for the same builder.
    pub fn empty_like(&self) -> RowBatch {
        RowBatch { bucket: self.bucket.clone(), buffer: RunBuffer::batch(ROW_BATCH_ROWS), rows_seen: 0 }
    }
}

/// Builds a snapshot from inventory rows in any order.
///
/// Runs are sorted and written on a background thread while the next run fills, so the
/// caller's thread only encodes rows; at most two runs are in memory.
pub struct SnapshotBuilder {
    header: SnapshotHeader,
    spill_dir: PathBuf,
    run_len: usize,
    buffer: RunBuffer,
    spilling: Option<std::thread::JoinHandle<Result<(RunFile, RunBuffer), BuildError>>>,
    /// The buffer of the last run written, emptied, for the run after the current one.
    spare: Option<RunBuffer>,
    runs: Vec<RunFile>,
    run_seq: usize,
    rows_seen: u64,
    /// Set by [`Self::distribute_by`]: rows go into key ranges instead of runs.
    distribution: Option<distribute::Distribution>,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("header", &self.header)
            .field("spill_dir", &self.spill_dir)
            .field("run_len", &self.run_len)
            .field("runs", &self.runs.len())
            .field("rows_seen", &self.rows_seen)
            .finish()
    }
}

impl SnapshotBuilder {
    /// A builder for the snapshot described by `header`, spilling runs of `run_len` rows (at
    /// least 1) into `spill_dir`, which must exist. Run files are removed when the builder
    /// finishes or is dropped.
    pub fn new(header: SnapshotHeader, spill_dir: &Path, run_len: usize) -> Self {
        SnapshotBuilder {
            header,
            spill_dir: spill_dir.to_path_buf(),
            run_len: run_len.max(1),
            buffer: RunBuffer::for_run(run_len.max(1)),
            spilling: None,
            spare: None,
            runs: Vec::new(),
            run_seq: 0,
            rows_seen: 0,
            distribution: None,
        }
    }

    /// Deals the rows into the key ranges between `splitters` (the previous snapshot's,
    /// [`super::read_splitters`]) instead of sorting runs of them (a distribution sort: the
    /// ranges are sorted one by one in the final pass, with no k-way merge). Only before the
    /// first row; splitters that are empty or not strictly increasing are ignored. The
    /// snapshot is the same either way. Returns whether the rows will be dealt.
    pub fn distribute_by(&mut self, splitters: Vec<Vec<u8>>) -> bool {
        if self.rows_seen == 0 && self.distribution.is_none() {
            self.distribution = distribute::Distribution::new(splitters, &self.spill_dir, self.run_len);
            if self.distribution.is_some() {
                // The run buffer's reservation is not needed.
                self.buffer = RunBuffer::default();
            }
        }
        self.distribution.is_some()
    }

    /// Adds one row. Non-latest versions are dropped at once; rows of another bucket are an
    /// error.
    pub fn push(&mut self, record: &InventoryRecord) -> Result<(), BuildError> {
        let record = SnapshotRow::from(record);
        self.rows_seen += 1;
        if admit(&self.header.source_bucket, &record)? {
            match &mut self.distribution {
                Some(ranges) => {
                    ranges.push(&record);
                    ranges.flush_if_full(self.run_len)?;
                }
                None => {
                    self.buffer.push(&record);
                    self.spill_if_full()?;
                }
            }
        }
        Ok(())
    }

    /// An empty batch for this builder's rows, to fill where they are read.
    pub fn row_batch(&self) -> RowBatch {
        RowBatch {
            bucket: self.header.source_bucket.as_str().into(),
            buffer: RunBuffer::batch(ROW_BATCH_ROWS),
            rows_seen: 0,
        }
    }

    /// Adds a batch of rows encoded elsewhere ([`RowBatch::push`]): only their bytes are
    /// copied here. Runs are cut at `run_len` rows as with [`push`](Self::push).
    pub fn push_batch(&mut self, batch: RowBatch) -> Result<(), BuildError> {
        self.rows_seen += batch.rows_seen;
        if let Some(ranges) = &mut self.distribution {
            for row in &batch.buffer.rows {
                ranges.push_copy(Flat { buffer: &batch.buffer, row });
                ranges.flush_if_full(self.run_len)?;
            }
            return Ok(());
        }
        for row in &batch.buffer.rows {
            self.buffer.push_copy(Flat { buffer: &batch.buffer, row });
            self.spill_if_full()?;
        }
        Ok(())
    }

    fn spill_if_full(&mut self) -> Result<(), BuildError> {
        if self.buffer.len() >= self.run_len || self.buffer.arena.len() >= MAX_RUN_BYTES {
            self.spill_in_background()?;
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub fn rows_seen(&self) -> u64 {
        self.rows_seen
    }

    /// Waits for the run being written, if any.
    fn join_spill(&mut self) -> Result<(), BuildError> {
        if let Some((run, spare)) = join_writer(self.spilling.take(), &self.spill_dir, "run")? {
            self.runs.push(run);
            self.spare = Some(spare);
        }
        Ok(())
    }

    fn spill_in_background(&mut self) -> Result<(), BuildError> {
        self.join_spill()?;
        let next = self.spare.take().unwrap_or_else(|| RunBuffer::with_capacity_of(&self.buffer));
        let buffer = std::mem::replace(&mut self.buffer, next);
        let (dir, seq) = (self.spill_dir.clone(), self.run_seq);
        self.run_seq += 1;
        let spawned = std::thread::Builder::new()
            .name("snapshot-run".into())
            .spawn(move || buffer.spill(&dir, &format!("run-{seq}")))
            .map_err(|e| spill_err(&self.spill_dir, e))?;
        self.spilling = Some(spawned);
        Ok(())
    }

    /// Merges everything into a snapshot at `path` (written atomically).
    pub fn finish(mut self, path: &Path) -> Result<SnapshotInfo, BuildError> {
        let mut merge = self.final_merge()?;
        let mut snapshot = SnapshotWriter::create(path, self.header.clone())?;
        while let Some(i) = merge.next_object()? {
            if let Some(row) = merge.cursors[i].head() {
                snapshot.push_flat(row.entry(), row.key_start(), row.key_end())?;
            }
        }
        drop(merge);
        self.runs.clear();
        Ok(snapshot.finish()?)
    }

    /// Like [`finish`](Self::finish), and in the same pass merge-joins the new snapshot's
    /// objects against `old` (the previous snapshot), calling `on_entry` with every
    /// [`DiffEntry`] in key order: the new snapshot is never read back. The snapshot appears
    /// at `path` only after the last entry was accepted; an error of `on_entry` (the outer
    /// error) or of the build or the old snapshot leaves no file there.
    pub fn finish_with_diff<E>(
        self,
        path: &Path,
        old: Option<SnapshotReader>,
        on_entry: impl FnMut(DiffEntry<'_>) -> Result<(), E>,
    ) -> Result<Result<SnapshotInfo, BuildError>, E> {
        Ok(self
            .join_unsealed(path, old, Unchanged::Decoded, on_entry)?
            .and_then(|writer| Ok(writer.finish()?)))
    }

    /// Like [`finish_with_diff`](Self::finish_with_diff), with the dataset roll-up done here:
    /// `rollup` takes the previous snapshot's stored dataset totals when it can
    /// ([`DatasetDiffAggregator::take_previous_totals`]), and then unchanged objects (nearly all
    /// of them) are neither decoded nor counted; `on_change` gets each change. The new
    /// snapshot stores `rollup`'s totals for the next run.
    pub fn finish_with_rollup<E>(
        self,
        path: &Path,
        old: Option<SnapshotReader>,
        rollup: &mut DatasetDiffAggregator,
        mut on_change: impl FnMut(&ObjectChange) -> Result<(), E>,
    ) -> Result<Result<SnapshotInfo, BuildError>, E> {
        if let Some(reader) = &old {
            match read_dataset_totals(&reader.info().path) {
                Ok(Some(payload)) => {
                    rollup.take_previous_totals(&payload);
                }
                Ok(None) => {}
                Err(e) => return Ok(Err(e.into())),
            }
        }
        let unchanged = if rollup.has_previous_totals() { Unchanged::Skipped } else { Unchanged::Decoded };
        let joined = self.join_unsealed(path, old, unchanged, |entry| {
            rollup.add(&entry);
            match &entry {
                DiffEntry::Change(change) => on_change(change),
                DiffEntry::Unchanged(_) => Ok(()),
            }
        })?;
        Ok(joined.and_then(|mut writer| {
            writer.set_dataset_totals(rollup.totals_payload());
            Ok(writer.finish()?)
        }))
    }

    /// The final pass, joined against `old`, up to the new snapshot's sealing.
    fn join_unsealed<E>(
        self,
        path: &Path,
        old: Option<SnapshotReader>,
        unchanged: Unchanged,
        on_entry: impl FnMut(DiffEntry<'_>) -> Result<(), E>,
    ) -> Result<Result<SnapshotWriter, BuildError>, E> {
        let old = old.map(|reader| {
            let path = reader.info().path.clone();
            Ok(OldSide { path, cursor: Cursor::new(old_snapshot_batches(reader)?)? })
        });
        match old.transpose() {
            Ok(old) => self.join_sides(path, old, unchanged, on_entry),
            Err(e) => Ok(Err(e)),
        }
    }

    fn join_sides<E>(
        mut self,
        path: &Path,
        old: Option<OldSide>,
        unchanged: Unchanged,
        mut on_entry: impl FnMut(DiffEntry<'_>) -> Result<(), E>,
    ) -> Result<Result<SnapshotWriter, BuildError>, E> {
        let prepared = self.final_merge().and_then(|merge| {
            let writer = SnapshotWriter::create(path, self.header.clone())?;
            Ok((merge, writer))
        });
        let (mut merge, mut writer) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e)),
        };
        match join_into(&mut merge, old, &mut writer, &self.spill_dir, unchanged, &mut on_entry) {
            Ok(()) => {}
            Err(Stop::Build(e)) => return Ok(Err(e)),
            Err(Stop::Consumer(e)) => return Err(e),
        }
        drop(merge);
        self.runs.clear();
        Ok(Ok(writer))
    }

    /// The winning rows in key order: the sorted ranges of a distributed build, or the merge
    /// of the runs.
    fn final_merge(&mut self) -> Result<RunMerge, BuildError> {
        if let Some(ranges) = self.distribution.take() {
            return Ok(RunMerge::of_distinct(Cursor::new(ranges.into_sorted(self.run_len)?)?));
        }
        let memory = self.prepare_final_merge()?;
        RunMerge::open(&self.runs, memory)
    }

    /// Sorts the last buffer into a run kept in memory (returned) and merges the spilled runs
    /// in passes until at most [`MAX_FAN_IN`] are left.
    fn prepare_final_merge(&mut self) -> Result<Option<RunBuffer>, BuildError> {
        self.join_spill()?;
        self.spare = None;
        let memory = (self.buffer.len() > 0).then(|| std::mem::take(&mut self.buffer).into_memory_run());
        while self.runs.len() > MAX_FAN_IN {
            let mut next = Vec::new();
            for group in std::mem::take(&mut self.runs).chunks(MAX_FAN_IN) {
                let mut writer = RunWriter::create(&self.spill_dir, &format!("run-{}", self.run_seq))?;
                self.run_seq += 1;
                let mut merge = RunMerge::open(group, None)?;
                while let Some(row) = merge.next_winner()? {
                    writer.push(row)?;
                }
                next.push(writer.finish()?);
            }
            self.runs = next;
        }
        Ok(memory)
    }
}

impl Drop for SnapshotBuilder {
    fn drop(&mut self) {
        // The run being written is removed with its RunFile once the thread ends.
        if let Some(handle) = self.spilling.take() {
            let _ = handle.join();
        }
    }
}

/// Convenience: a snapshot at `path` from `records`, spilling into `spill_dir`.
pub fn build_snapshot<E>(
    header: SnapshotHeader,
    records: impl IntoIterator<Item = Result<InventoryRecord, E>>,
    spill_dir: &Path,
    run_len: usize,
    path: &Path,
) -> Result<Result<SnapshotInfo, BuildError>, E> {
    let mut builder = SnapshotBuilder::new(header, spill_dir, run_len);
    for record in records {
        if let Err(e) = builder.push(&record?) {
            return Ok(Err(e));
        }
    }
    Ok(builder.finish(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::reduce::current_objects;
    use crate::inventory::snapshot::format::SnapshotObject;
    use crate::inventory::snapshot::format::SnapshotReader;
    use crate::inventory::snapshot::merge_join;
    use crate::inventory::snapshot::test_support::{
        OwnedEntry, arb_records, header, record_of, write_snapshot,
    };

    fn build(records: &[InventoryRecord], run_len: usize) -> (tempfile::TempDir, Vec<SnapshotObject>) {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), run_len);
        for r in records {
            b.push(r).unwrap();
        }
        let info = b.finish(&dir.path().join("s.snap")).unwrap();
        let objs: Vec<_> = SnapshotReader::open(&info.path).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(info.object_count, objs.len() as u64);
        // Only the snapshot remains: runs and temporaries are gone.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("s.snap")]);
        (dir, objs)
    }

    #[test]
    fn other_bucket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), 4);
        let r = InventoryRecord { bucket: "other".into(), key: "k".into(), ..Default::default() };
        let err = b.push(&r).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_BUCKET_MISMATCH");
        assert!(err.to_string().contains("s3://other/k"), "{err}");
    }

    proptest::proptest! {
        /// The inline comparison of every row's bucket is `==`: buckets of one length that
        /// differ in any byte, and names one byte longer or shorter.
        #[test]
        fn buckets_compare_as_bytes(a in "[a-z0-9.-]{0,40}", flip in 0usize..48, bit in 0u8..8, cut in proptest::bool::ANY) {
            let mut b = a.clone().into_bytes();
            if let Some(byte) = b.get_mut(flip) {
                *byte ^= 1 << bit;
            } else if cut {
                b.pop();
            } else {
                b.push(b'x');
            }
            proptest::prop_assert_eq!(same_bytes(a.as_bytes(), &b), a.as_bytes() == b.as_slice());
            proptest::prop_assert!(same_bytes(a.as_bytes(), a.as_bytes()));
        }
    }

    #[test]
    fn a_batch_refuses_another_bucket_too() {
        let dir = tempfile::tempdir().unwrap();
        let b = SnapshotBuilder::new(header(), dir.path(), 4);
        let mut batch = b.row_batch().empty_like();
        batch.push(&InventoryRecord { bucket: "src".into(), key: "a".into(), ..Default::default() }).unwrap();
        let r = InventoryRecord { bucket: "other".into(), key: "k".into(), ..Default::default() };
        let err = batch.push(&r).unwrap_err();
        assert_eq!(err.code(), "SNAPSHOT_BUCKET_MISMATCH");
        assert!(err.to_string().contains("s3://other/k"), "{err}");
    }

    #[test]
    fn versions_reduce_like_reduce_module() {
        let row = |key: &str, latest: Option<bool>, marker: Option<bool>, modified: i64, size: u64| {
            InventoryRecord {
                bucket: "src".into(),
                key: key.into(),
                is_latest: latest,
                is_delete_marker: marker,
                last_modified_ms: Some(modified),
                size: Some(size),
                ..Default::default()
            }
        };
        let records = vec![
            // Same time: the delete marker wins, so the key is gone.
            row("a", Some(true), Some(false), 5, 1),
            row("a", Some(true), Some(true), 5, 0),
            // A newer non-current version is ignored.
            row("b", Some(false), Some(false), 9, 2),
            row("b", Some(true), Some(false), 3, 3),
            // Only non-current versions: gone.
            row("c", Some(false), Some(false), 1, 4),
            // Current-only report rows.
            row("d", None, None, 1, 5),
            // Two latest rows: the newer wins, whatever the order.
            row("e", Some(true), None, 8, 6),
            row("e", Some(true), None, 2, 7),
        ];
        for run_len in [1, 2, 100] {
            let (_dir, objs) = build(&records, run_len);
            let expected: Vec<SnapshotObject> =
                current_objects(records.clone()).iter().map(SnapshotObject::from).collect();
            assert_eq!(objs, expected);
            let sizes: Vec<_> = objs.iter().map(|o| (o.key.as_str(), o.size)).collect();
            assert_eq!(sizes, [("b", Some(3)), ("d", Some(5)), ("e", Some(6))]);
        }
    }

    #[test]
    fn reader_errors_pass_through() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<Result<InventoryRecord, &str>> = vec![
            Ok(InventoryRecord { bucket: "src".into(), key: "k".into(), ..Default::default() }),
            Err("bad row"),
        ];
        let outcome = build_snapshot(header(), rows, dir.path(), 4, &dir.path().join("s.snap"));
        assert_eq!(outcome.err(), Some("bad row"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn many_runs_merge_in_passes() {
        // 3 rows per run over 1000 rows: 334 runs, more than MAX_FAN_IN.
        let records: Vec<_> = (0..1000u64)
            .map(|i| InventoryRecord {
                bucket: "src".into(),
                key: format!("k{:04}", (i * 7919) % 1000),
                size: Some(i),
                ..Default::default()
            })
            .collect();
        let (_dir, objs) = build(&records, 3);
        let keys: Vec<_> = objs.iter().map(|o| o.key.clone()).collect();
        let expected: Vec<_> = (0..1000).map(|i| format!("k{i:04}")).collect();
        assert_eq!(keys, expected);
    }

    /// The fused final merge and diff of `records` against a snapshot of `old`.
    fn fused(
        old: &[SnapshotObject],
        records: &[InventoryRecord],
        run_len: usize,
    ) -> (tempfile::TempDir, SnapshotInfo, Vec<OwnedEntry>) {
        let dir = tempfile::tempdir().unwrap();
        let old = SnapshotReader::open(&write_snapshot(dir.path(), "old.snap", old)).unwrap();
        let spill = dir.path().join("spill");
        std::fs::create_dir(&spill).unwrap();
        let mut b = SnapshotBuilder::new(header(), &spill, run_len);
        for r in records {
            b.push(r).unwrap();
        }
        let mut entries = Vec::new();
        let info = b
            .finish_with_diff(&dir.path().join("s.snap"), Some(old), |e| {
                entries.push(OwnedEntry::from(e));
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        (dir, info, entries)
    }

    /// Totals stored under another grouping (other templates) are not taken: every object is
    /// counted, and the new snapshot stores totals under the grouping of this run.
    #[test]
    fn totals_of_another_grouping_are_not_taken() {
        use crate::dataset::{GroupingConfig, PathTemplate};
        let dir = tempfile::tempdir().unwrap();
        let objs: Vec<SnapshotObject> = ["sales/2024/a.csv", "sales/2025/b.csv"]
            .iter()
            .map(|k| SnapshotObject { key: k.to_string(), size: Some(5), ..SnapshotObject::default() })
            .collect();
        let day = |name: &str, cfg: GroupingConfig, old: Option<&SnapshotInfo>| {
            let mut b = SnapshotBuilder::new(header(), dir.path(), 4);
            for o in &objs {
                b.push(&record_of(o)).unwrap();
            }
            let mut rollup = DatasetDiffAggregator::new("src", cfg);
            let old = old.map(|i| SnapshotReader::open(&i.path).unwrap());
            let info = b
                .finish_with_rollup(&dir.path().join(name), old, &mut rollup, |_| Ok::<_, ()>(()))
                .unwrap()
                .unwrap();
            (info, rollup.has_previous_totals())
        };
        let (first, _) = day("1.snap", GroupingConfig::default(), None);
        let templated = GroupingConfig {
            templates: vec![PathTemplate::parse("s3://*/sales/{year}/*").unwrap()],
            ..GroupingConfig::default()
        };
        let (second, taken) = day("2.snap", templated.clone(), Some(&first));
        assert!(!taken, "totals of the default grouping taken under a template");
        let (_, taken) = day("3.snap", templated, Some(&second));
        assert!(taken, "totals of the same grouping not taken");
    }

    /// Spill files in `dir` while the final pass runs.
    fn runs_during_final_pass(records: usize, run_len: usize) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), run_len);
        for i in 0..records {
            // Two versions of every key, so the in-memory run must reduce them as a spill would.
            for modified in [1, 2] {
                let key = format!("k{:04}", (i * 7919) % records);
                let r = InventoryRecord {
                    bucket: "src".into(),
                    key,
                    last_modified_ms: Some(modified),
                    ..Default::default()
                };
                b.push(&r).unwrap();
            }
        }
        let mut files = Vec::new();
        let mut keys = Vec::new();
        b.finish_with_diff(&dir.path().join("s.snap"), None, |e| {
            if files.is_empty() {
                files = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains("run-"))
                    .collect();
            }
            // No old snapshot: every object is added.
            if let DiffEntry::Change(ObjectChange::Added(o)) = e {
                keys.push((o.key, o.last_modified_ms));
            }
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
        let expected: Vec<_> = (0..records).map(|i| (format!("k{i:04}"), Some(2))).collect();
        assert_eq!(keys, expected, "every key once, its newest version, in order");
        files
    }

    #[test]
    fn the_last_run_is_merged_from_memory() {
        // 200 rows in runs of 1,000: nothing is spilled.
        assert!(runs_during_final_pass(100, 1_000).is_empty());
        // 2,000 rows in runs of 600: three runs spilled, the last 200 rows stay in memory.
        assert_eq!(runs_during_final_pass(1_000, 600).len(), 3);
    }

    #[test]
    fn a_refused_entry_leaves_no_snapshot_and_no_runs() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), 2);
        for i in 0..10 {
            let key = format!("k{i}");
            b.push(&InventoryRecord { bucket: "src".into(), key, ..Default::default() }).unwrap();
        }
        let mut seen = 0;
        let outcome = b.finish_with_diff(&dir.path().join("s.snap"), None, |_| {
            seen += 1;
            if seen == 3 { Err("closed") } else { Ok(()) }
        });
        assert_eq!(outcome.err(), Some("closed"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no snapshot, no temporaries");
    }

    /// One batch of the old side, holding `keys`.
    fn old_batch(keys: &[&str]) -> RunBuffer {
        let mut batch = RunBuffer::default();
        for key in keys {
            batch.push(
                &(&InventoryRecord { bucket: "src".into(), key: (*key).into(), ..Default::default() }).into(),
            );
        }
        batch
    }

    #[test]
    fn equal_fields_in_other_bytes_are_unchanged() {
        let record =
            InventoryRecord { bucket: "src".into(), key: "k".into(), size: Some(5), ..Default::default() };
        // The old entry spells size 5 as a two-byte varint: valid, not how this build writes it.
        let mut old = RunBuffer::default();
        old.push(&(&record).into());
        assert_eq!(old.arena.pop(), Some(5));
        old.arena.extend_from_slice(&[0x85, 0x00]);
        old.rows[0].end += 1;
        let old = OldSide { path: "old.snap".into(), cursor: Cursor::of(old) };
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), 4);
        b.push(&record).unwrap();
        let mut entries = Vec::new();
        b.join_sides(&dir.path().join("s.snap"), Some(old), Unchanged::Decoded, |e| {
            entries.push(OwnedEntry::from(e));
            Ok::<_, ()>(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(entries, [OwnedEntry::unchanged(&SnapshotObject::from(&record))]);
    }

    #[test]
    fn an_old_side_error_ends_the_pass_without_a_snapshot() {
        let old: Vec<Result<RunBuffer, BuildError>> = vec![
            Ok(old_batch(&["a"])),
            Err(BuildError::Snapshot(SnapshotError::ChecksumMismatch { path: "old.snap".into() })),
            Ok(old_batch(&["z"])),
        ];
        let old =
            OldSide { path: "old.snap".into(), cursor: Cursor::new(Box::new(old.into_iter())).unwrap() };
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), 4);
        b.push(&InventoryRecord { bucket: "src".into(), key: "m".into(), ..Default::default() }).unwrap();
        let mut removed = 0;
        let outcome = b.join_sides(&dir.path().join("s.snap"), Some(old), Unchanged::Decoded, |e| {
            removed += usize::from(matches!(e, DiffEntry::Change(ObjectChange::Removed(_))));
            Ok::<_, ()>(())
        });
        let Err(err) = outcome.unwrap() else { panic!("the pass went on after the old side's error") };
        assert_eq!(err.code(), "SNAPSHOT_CHECKSUM_MISMATCH", "{err}");
        assert_eq!(removed, 1, "`a`, before the error, is judged; `z`, after it, is never reached");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The chunked sort equals the in-memory reduction when keys share long prefixes of
        /// every length around the 8-byte chunks, in one run and in many.
        #[test]
        fn chunked_sort_handles_long_shared_prefixes(
            records in arb_records(120),
            stems in proptest::collection::vec(0usize..6, 120),
            run_len in proptest::prop_oneof![proptest::strategy::Just(1000usize), 2usize..9],
        ) {
            const STEMS: [&str; 6] = ["", "sales/", "sales/ord", "sales/orders/region=s", "sales/orders/region=sa/dt=2024-01-0", "sales/orders/region=sa/dt=2024-01-0\u{0}"];
            let records: Vec<InventoryRecord> = records
                .into_iter()
                .zip(stems)
                .map(|(mut r, stem)| {
                    r.key = format!("{}{}", STEMS[stem], r.key);
                    r
                })
                .collect();
            let (_dir, objs) = build(&records, run_len);
            let expected: Vec<SnapshotObject> =
                current_objects(records.clone()).iter().map(SnapshotObject::from).collect();
            proptest::prop_assert_eq!(objs, expected);
        }

        /// The fused pass writes the same snapshot as `finish` and yields the same entries as a
        /// merge-join of the previous snapshot against it.
        #[test]
        fn fused_finish_equals_finish_then_merge_join(
            old_records in arb_records(40),
            records in arb_records(60),
            run_len in 1usize..8,
        ) {
            let old: Vec<SnapshotObject> =
                current_objects(old_records).iter().map(SnapshotObject::from).collect();
            let (_dir, objs) = build(&records, run_len);
            let mut expected = Vec::new();
            merge_join(old.iter().cloned().map(Ok), objs.iter().cloned().map(Ok), |e| {
                expected.push(OwnedEntry::from(e));
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
            let (_fdir, info, entries) = fused(&old, &records, run_len);
            proptest::prop_assert_eq!(&entries, &expected);
            let written: Vec<_> = SnapshotReader::open(&info.path).unwrap().collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(written, objs);
        }

        /// Day after day, the roll-up from stored totals gives the datasets counting every
        /// object gives, and each snapshot stores the totals counting would: the first day
        /// counts (no previous snapshot), every later one starts from the stored totals.
        #[test]
        fn rollup_from_stored_totals_equals_counting_every_object(
            days in proptest::collection::vec(crate::inventory::snapshot::test_support::arb_objects(24), 1..5),
            run_len in 1usize..6,
        ) {
            use crate::dataset::GroupingConfig;
            let dir = tempfile::tempdir().unwrap();
            let build = |objs: &[SnapshotObject]| {
                let mut b = SnapshotBuilder::new(header(), dir.path(), run_len);
                for o in objs {
                    b.push(&record_of(o)).unwrap();
                }
                b
            };
            let open = |info: &Option<SnapshotInfo>| info.as_ref().map(|i| SnapshotReader::open(&i.path).unwrap());
            let mut previous: Option<SnapshotInfo> = None;
            for (day, objs) in days.iter().enumerate() {
                let mut counted = DatasetDiffAggregator::new("src", GroupingConfig::default());
                build(objs)
                    .finish_with_diff(&dir.path().join(format!("counted-{day}.snap")), open(&previous), |e| {
                        counted.add(&e);
                        Ok::<_, ()>(())
                    })
                    .unwrap()
                    .unwrap();
                let mut rollup = DatasetDiffAggregator::new("src", GroupingConfig::default());
                let info = build(objs)
                    .finish_with_rollup(&dir.path().join(format!("day-{day}.snap")), open(&previous), &mut rollup, |_| {
                        Ok::<_, ()>(())
                    })
                    .unwrap()
                    .unwrap();
                proptest::prop_assert_eq!(rollup.has_previous_totals(), day > 0);
                proptest::prop_assert_eq!(read_dataset_totals(&info.path).unwrap(), Some(counted.totals_payload()));
                let (from_totals, from_counting) = (rollup.finish(), counted.finish());
                proptest::prop_assert_eq!(&from_totals, &from_counting);
                let written: Vec<_> = SnapshotReader::open(&info.path).unwrap().collect::<Result<_, _>>().unwrap();
                proptest::prop_assert_eq!(&written, objs);
                previous = Some(info);
            }
        }

        /// Rows pushed in batches encoded apart give the snapshot rows pushed one by one give,
        /// whatever the batch and run sizes (runs are cut inside batches).
        #[test]
        fn batches_build_what_single_rows_build(
            records in arb_records(80),
            batch_len in 1usize..12,
            run_len in 1usize..9,
        ) {
            let (_dir, expected) = build(&records, run_len);
            let dir = tempfile::tempdir().unwrap();
            let mut b = SnapshotBuilder::new(header(), dir.path(), run_len);
            for chunk in records.chunks(batch_len) {
                let mut batch = b.row_batch();
                for r in chunk {
                    batch.push(r).unwrap();
                }
                proptest::prop_assert_eq!(batch.rows_seen(), chunk.len() as u64);
                b.push_batch(batch).unwrap();
            }
            proptest::prop_assert_eq!(b.rows_seen(), records.len() as u64);
            let info = b.finish(&dir.path().join("s.snap")).unwrap();
            let objs: Vec<_> = SnapshotReader::open(&info.path).unwrap().collect::<Result<_, _>>().unwrap();
            proptest::prop_assert_eq!(objs, expected);
        }

        /// External sort with tiny runs equals the in-memory reduction.
        #[test]
        fn tiny_runs_equal_in_memory(records in arb_records(60), run_len in 1usize..8) {
            let (_dir, objs) = build(&records, run_len);
            let expected: Vec<SnapshotObject> =
                current_objects(records.clone()).iter().map(SnapshotObject::from).collect();
            proptest::prop_assert_eq!(objs, expected);
        }
    }
}
