//! Dealing rows into the key ranges of the previous snapshot: a distribution sort.
//!
//! A day's report holds mostly the keys of the day before, so the previous snapshot's keys at
//! a fixed stride ([`read_splitters`](super::super::read_splitters)) cut the new rows into
//! ranges of about [`SPLITTER_STRIDE`](super::super::SPLITTER_STRIDE) rows. Rows are appended,
//! unsorted and as they arrive, to chunks of one arena, each chunk holding rows of one range;
//! when the arena holds a run's worth it is written out, on a background thread, as one spill
//! file with a segment per range. The final pass takes the ranges in key order, each read back,
//! sorted and reduced on its own a thread ahead of the join: a range's rows fit in cache, where
//! a whole run's do not, and the ranges need no k-way merge. A range that grew past a run (a
//! day that added far more keys somewhere than were there before) is sorted through spilled
//! runs, as an undistributed build is. The splitters only steer the work: any increasing keys
//! give the same snapshot.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::super::format::{EntryFields, F_DELETE_MARKER, FlatEntry, common_prefix_from, encode_fields};
use super::super::format::{PREFETCH_BATCH, Prefetch};
use super::super::page_cache::{DISCARD_SPAN, discard};
use super::{
    Batches, BuildError, Flat, MAX_RESERVED_ROWS, MAX_RUN_BYTES, RunBuffer, RunFile, RunMerge, RunWriter,
    TYPICAL_ENTRY_BYTES, batches, join_writer, key_chunk, spill_err,
};
use crate::inventory::record::SnapshotRow;

/// One range's rows in a flush file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    len: u64,
    rows: usize,
    /// CRC-32 of the segment's bytes: rows are read back without parsing their fields, so a
    /// damaged byte anywhere in them is found here.
    crc: u32,
}

/// Before each row in a [`Dealt`] arena and its flush files: the entry's length (u32) and its
/// last-modified time (i64, 0 when it has none), little-endian. Rows are read back by these,
/// without parsing their fields: that parse was a tenth of a day-2 run's CPU.
const ROW_HEADER: usize = 12;

/// The ranges' rows written out at once: one file, a segment per range.
struct Flush {
    file: RunFile,
    /// The file, opened once for all its segments.
    reader: File,
    segments: Vec<Segment>,
    /// Bytes before this offset were discarded (ranges are read in order, so what was read
    /// is always the file's front).
    discarded: Cell<u64>,
}

/// Arena bytes a range takes at a time, at most: with many ranges, less (down to
/// [`MIN_CHUNK_BYTES`]), so that the chunks being filled stay a small part of a run's arena.
const CHUNK_BYTES: usize = 32 * 1024;
const MIN_CHUNK_BYTES: usize = 4 * 1024;

/// A piece of the arena holding rows of one range.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    range: u32,
    start: usize,
    len: usize,
    capacity: usize,
    rows: usize,
}

/// Rows as flat entries (the spill format, no key prefix shared) after a [`ROW_HEADER`], in
/// chunks of one arena that each hold rows of one range: a flush writes each range's chunks as
/// they are, and the memory is that of a sort run without its row index. (A growing buffer per
/// range cost far more memory: hundreds of allocations of their own.)
#[derive(Debug, Default)]
struct Dealt {
    arena: Vec<u8>,
    chunks: Vec<Chunk>,
    /// Per range: 1 + the index of its chunk being filled, or 0.
    open: Vec<u32>,
    rows: usize,
    chunk_bytes: usize,
}

impl Dealt {
    fn new(ranges: usize, run_len: usize) -> Self {
        let bytes = (run_len.min(MAX_RESERVED_ROWS) * TYPICAL_ENTRY_BYTES).min(MAX_RUN_BYTES);
        let chunk_bytes = (bytes / 8 / ranges.max(1)).clamp(MIN_CHUNK_BYTES, CHUNK_BYTES);
        // Address space until rows are written.
        Dealt {
            arena: Vec::with_capacity(bytes + ranges * chunk_bytes),
            chunks: Vec::new(),
            open: vec![0; ranges],
            rows: 0,
            chunk_bytes,
        }
    }

    /// Appends one flat entry, last modified at `last_modified_ms`, to `range`.
    fn push(&mut self, range: u32, entry: &[u8], last_modified_ms: Option<i64>) {
        let row_len = ROW_HEADER + entry.len();
        let open = self.open[range as usize] as usize;
        let fits = open > 0 && {
            let chunk = &self.chunks[open - 1];
            chunk.len + row_len <= chunk.capacity
        };
        if !fits {
            let capacity = self.chunk_bytes.max(row_len);
            let start = self.arena.len();
            self.arena.resize(start + capacity, 0);
            self.chunks.push(Chunk { range, start, len: 0, capacity, rows: 0 });
            // Fewer chunks than u32::MAX: a run's arena is at most MAX_RUN_BYTES plus one chunk.
            self.open[range as usize] = self.chunks.len() as u32;
        }
        let chunk = &mut self.chunks[self.open[range as usize] as usize - 1];
        let at = chunk.start + chunk.len;
        // Entries are far shorter than 4 GiB (fields are bounded by MAX_FIELD_LEN).
        self.arena[at..at + 4].copy_from_slice(&(entry.len() as u32).to_le_bytes());
        self.arena[at + 4..at + ROW_HEADER].copy_from_slice(&last_modified_ms.unwrap_or(0).to_le_bytes());
        self.arena[at + ROW_HEADER..at + row_len].copy_from_slice(entry);
        chunk.len += row_len;
        chunk.rows += 1;
        self.rows += 1;
    }

    /// The chunk indices grouped by range (in arrival order within a range), and where each
    /// range's group starts (`ranges + 1` bounds): a counting sort of the chunks.
    fn by_range(&self) -> (Vec<u32>, Vec<usize>) {
        let mut starts = vec![0usize; self.open.len() + 1];
        for chunk in &self.chunks {
            starts[chunk.range as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut order = vec![0u32; self.chunks.len()];
        for (i, chunk) in self.chunks.iter().enumerate() {
            order[next[chunk.range as usize]] = i as u32;
            next[chunk.range as usize] += 1;
        }
        (order, starts)
    }

    fn bytes(&self, chunk: &Chunk) -> &[u8] {
        &self.arena[chunk.start..chunk.start + chunk.len]
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.chunks.clear();
        self.open.fill(0);
        self.rows = 0;
    }
}

/// The number of `sorted` values below `value`, without a branch per step (a binary search's
/// branches are taken at random).
fn count_below(sorted: &[u64], value: u64) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    let (mut base, mut size) = (0, sorted.len());
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = if sorted[mid] < value { mid } else { base };
        size -= half;
    }
    base + usize::from(sorted[base] < value)
}

/// Bytes into the keys past which [`ChunkNode`]s have no children.
const MAX_TREE_OFFSET: usize = 256;

/// The splitters, told apart by 8-byte chunks of their keys (big-endian, zero-padded): a
/// node holds the distinct chunks at `offset` of splitters that share their first `offset`
/// bytes, and for a chunk that several long enough splitters share, a child node at the first
/// byte where those differ. Finding a key's range takes a few branch-free searches of small
/// arrays instead of a binary search over whole keys, whose branches mispredicted at every
/// step: 34 ns a key instead of 43 over a 5M-object snapshot's 76 splitters, where the search
/// was 7% of a Parquet day 2's CPU.
#[derive(Debug)]
struct ChunkNode {
    offset: usize,
    /// Increasing.
    chunks: Vec<u64>,
    /// Chunk `i`'s splitters are `starts[i]..starts[i + 1]` (indices into all splitters).
    starts: Vec<usize>,
    children: Vec<Option<Box<ChunkNode>>>,
}

impl ChunkNode {
    /// The node of `splitters[first..end]`, which share their first `offset` bytes.
    fn build(splitters: &[Vec<u8>], first: usize, end: usize, offset: usize) -> ChunkNode {
        let mut node = ChunkNode { offset, chunks: Vec::new(), starts: vec![first], children: Vec::new() };
        let mut at = first;
        while at < end {
            let chunk = key_chunk(&splitters[at], offset);
            let group_end =
                at + splitters[at..end].iter().take_while(|s| key_chunk(s, offset) == chunk).count();
            let group = &splitters[at..group_end];
            // Told apart further only when every key of the group has all 8 bytes of the chunk
            // (zero padding ties otherwise), in a child that starts where they differ; not past
            // MAX_TREE_OFFSET bytes, where crafted keys could make the tree as deep as there
            // are splitters (the rest is searched key by key).
            let differ = common_prefix_from(&group[0], &group[group.len() - 1], offset + 8);
            let child =
                (group.len() > 1 && group.iter().all(|s| s.len() > offset + 8) && differ < MAX_TREE_OFFSET)
                    .then(|| Box::new(ChunkNode::build(splitters, at, group_end, differ)));
            node.chunks.push(chunk);
            node.starts.push(group_end);
            node.children.push(child);
            at = group_end;
        }
        node
    }
}

/// A written flush and the buffer it emptied.
type Flushed = (Flush, Dealt);

/// Rows dealt into key ranges (see the module documentation).
pub(super) struct Distribution {
    /// Strictly increasing; range `i` holds the keys with `i` splitters at or below them.
    splitters: Vec<Vec<u8>>,
    /// The splitters' chunk tree ([`ChunkNode`]).
    tree: ChunkNode,
    dealt: Dealt,
    flushing: Option<JoinHandle<Result<Flushed, BuildError>>>,
    /// The buffer of the last flush, emptied with its capacity, for the flush after next.
    spare: Option<Dealt>,
    flushes: Vec<Flush>,
    spill_dir: PathBuf,
    flush_seq: usize,
    /// An entry encoded by [`Self::push`].
    encoded: Vec<u8>,
}

impl std::fmt::Debug for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Splitters are keys: counted, not printed.
        f.debug_struct("Distribution")
            .field("ranges", &self.range_count())
            .field("flushes", &self.flushes.len())
            .finish()
    }
}

impl Distribution {
    /// Ranges cut at `splitters`, or `None` when they are empty or not strictly increasing
    /// (then the build sorts runs as without them).
    pub(super) fn new(splitters: Vec<Vec<u8>>, spill_dir: &Path, run_len: usize) -> Option<Self> {
        if splitters.is_empty()
            || splitters.windows(2).any(|w| w[0] >= w[1])
            || splitters.len() >= u32::MAX as usize
        {
            return None;
        }
        let dealt = Dealt::new(splitters.len() + 1, run_len);
        let tree = ChunkNode::build(&splitters, 0, splitters.len(), 0);
        Some(Distribution {
            tree,
            splitters,
            dealt,
            flushing: None,
            spare: None,
            flushes: Vec::new(),
            spill_dir: spill_dir.to_path_buf(),
            flush_seq: 0,
            encoded: Vec::new(),
        })
    }

    fn range_count(&self) -> usize {
        self.splitters.len() + 1
    }

    /// The range of `key`: the number of splitters at or below it. Found down the splitters'
    /// chunk tree ([`ChunkNode`]); among splitters it cannot tell apart, by
    /// [`Self::search_between`].
    fn range_of(&self, key: &[u8]) -> u32 {
        let mut node = &self.tree;
        loop {
            let chunk = key_chunk(key, node.offset);
            let i = count_below(&node.chunks, chunk);
            if node.chunks.get(i) != Some(&chunk) {
                // Chunks that differ order keys as their bytes do: the key lies between the
                // splitters of chunk i - 1 and those of chunk i.
                return node.starts[i] as u32;
            }
            let (first, end) = (node.starts[i], node.starts[i + 1]);
            if end - first == 1 {
                // One splitter: at or below the key, or not (a comparison, not a branch).
                return (first + usize::from(self.splitters[first].as_slice() <= key)) as u32;
            }
            // A key that ends within the chunk ties with zero padding: compared whole.
            let child = node.children[i].as_deref().filter(|_| key.len() > node.offset + 8);
            let Some(child) = child else { return self.search_between(key, first, end, node.offset) };
            // The group's splitters share their bytes up to the child's offset: the key's
            // range is before or after them all unless it shares those bytes too.
            let shared = self.splitters[first].get(..child.offset).unwrap_or_default();
            let common = common_prefix_from(key, shared, node.offset + 8);
            if common < child.offset {
                let below = key.get(common).is_some_and(|k| *k > shared[common]);
                return if below { end as u32 } else { first as u32 };
            }
            node = child;
        }
    }

    /// The number of splitters at or below `key`, which lies between splitters `below - 1`
    /// and `above` and shares their first `shared` bytes. A binary search that skips the bytes
    /// `key` shares with both bounds: the splitters between two bounds share them too (they
    /// are sorted), so a long prefix common to keys is compared once, not at every step.
    fn search_between(&self, key: &[u8], below: usize, above: usize, shared: usize) -> u32 {
        let (mut below, mut above) = (below, above);
        let (mut shared_below, mut shared_above) = (shared, shared);
        while below < above {
            let mid = below + (above - below) / 2;
            let splitter = self.splitters[mid].as_slice();
            let shared = common_prefix_from(key, splitter, shared_below.min(shared_above));
            let at_or_below = key.get(shared).is_some_and(|k| splitter.get(shared).is_none_or(|s| s < k))
                || shared == splitter.len();
            if at_or_below {
                below = mid + 1;
                shared_below = shared;
            } else {
                above = mid;
                shared_above = shared;
            }
        }
        // Fewer than u32::MAX splitters (checked in `new`).
        below as u32
    }

    /// Adds a row encoded elsewhere.
    pub(super) fn push_copy(&mut self, row: Flat<'_>) {
        let range = self.range_of(row.key());
        self.dealt.push(range, row.entry(), row.row.last_modified_ms);
    }

    /// Adds a parsed row.
    pub(super) fn push(&mut self, record: &SnapshotRow<'_>) {
        let range = self.range_of(record.key.as_bytes());
        self.encoded.clear();
        let flags = if record.is_delete_marker == Some(true) { F_DELETE_MARKER } else { 0 };
        encode_fields(&mut self.encoded, &[], EntryFields::from(record), flags);
        self.dealt.push(range, &self.encoded, record.last_modified_ms);
    }

    /// Writes the rows out (in the background) once they are `run_len` or [`MAX_RUN_BYTES`].
    pub(super) fn flush_if_full(&mut self, run_len: usize) -> Result<(), BuildError> {
        if self.dealt.rows < run_len && self.dealt.arena.len() < MAX_RUN_BYTES {
            return Ok(());
        }
        self.join_flush()?;
        let empty = self.spare.take().unwrap_or_else(|| Dealt::new(self.range_count(), run_len));
        let full = std::mem::replace(&mut self.dealt, empty);
        let (dir, seq) = (self.spill_dir.clone(), self.flush_seq);
        self.flush_seq += 1;
        let spawned = std::thread::Builder::new()
            .name("snapshot-flush".into())
            .spawn(move || flush(full, &dir, seq))
            .map_err(|e| spill_err(&self.spill_dir, e))?;
        self.flushing = Some(spawned);
        Ok(())
    }

    /// Waits for the flush being written, if any.
    fn join_flush(&mut self) -> Result<(), BuildError> {
        if let Some((flush, emptied)) = join_writer(self.flushing.take(), &self.spill_dir, "flush")? {
            self.flushes.push(flush);
            self.spare = Some(emptied);
        }
        Ok(())
    }

    /// Every range's winning rows in key order, sorted a thread ahead of the caller; ranges
    /// of more than `run_len` rows go through spilled runs.
    pub(super) fn into_sorted(self, run_len: usize) -> Result<Batches, BuildError> {
        let spill_dir = self.spill_dir.clone();
        let ranges = self.into_ranges(run_len)?;
        // Two ranges ready ahead of the join, one being sorted.
        let ahead = Prefetch::spawn("snapshot-ranges", ranges, 1, 2).map_err(|e| spill_err(&spill_dir, e))?;
        Ok(Box::new(ahead))
    }

    /// The ranges to sort, once the last flush is written.
    fn into_ranges(mut self, run_len: usize) -> Result<Ranges, BuildError> {
        self.join_flush()?;
        self.spare = None;
        let memory = std::mem::take(&mut self.dealt);
        let (memory_order, memory_starts) = memory.by_range();
        // Range i holds the keys from splitter i - 1 up to splitter i: they all begin with the
        // bytes those two share. The first and last ranges are open.
        let shared = (0..self.range_count())
            .map(|i| match (i.checked_sub(1).and_then(|lo| self.splitters.get(lo)), self.splitters.get(i)) {
                (Some(lo), Some(hi)) => common_prefix_from(lo, hi, 0),
                _ => 0,
            })
            .collect();
        Ok(Ranges {
            shared,
            flushes: std::mem::take(&mut self.flushes),
            memory,
            memory_order,
            memory_starts,
            next: 0,
            run_len: run_len.max(1),
            spill_dir: self.spill_dir.clone(),
            merging: None,
            failed: false,
            scratch: Vec::new(),
        })
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

/// Writes each range's chunks, in arrival order, as one segment of a new spill file; returns
/// the flush and the buffer, emptied with its capacity.
fn flush(mut dealt: Dealt, spill_dir: &Path, seq: usize) -> Result<Flushed, BuildError> {
    let mut writer = RunWriter::create(spill_dir, &format!("flush-{seq}"))?;
    let (order, starts) = dealt.by_range();
    let mut segments = Vec::with_capacity(dealt.open.len());
    for range in 0..dealt.open.len() {
        let (offset, mut rows, mut crc) = (writer.written, 0, crc32fast::Hasher::new());
        for &i in &order[starts[range]..starts[range + 1]] {
            let chunk = &dealt.chunks[i as usize];
            crc.update(dealt.bytes(chunk));
            writer.write_bytes(dealt.bytes(chunk))?;
            rows += chunk.rows;
        }
        segments.push(Segment { offset, len: writer.written - offset, rows, crc: crc.finalize() });
    }
    let file = writer.finish()?;
    // Writable too: its segments are discarded as they are read back.
    let reader =
        OpenOptions::new().read(true).write(true).open(&file.path).map_err(|e| spill_err(&file.path, e))?;
    dealt.clear();
    Ok((Flush { file, reader, segments, discarded: Cell::new(0) }, dealt))
}

/// Appends the rows of `bytes` (each a [`ROW_HEADER`] and a flat entry; from `path`, for
/// errors) to `into`; returns how many. Only the key of each is located: the join decodes
/// every row it keeps.
fn read_rows(mut bytes: &[u8], into: &mut RunBuffer, path: &Path) -> Result<usize, BuildError> {
    let mut read = 0;
    while let Some((header, rest)) = bytes.split_first_chunk::<ROW_HEADER>() {
        let [l0, l1, l2, l3, time @ ..] = *header;
        let (len, time) = (u32::from_le_bytes([l0, l1, l2, l3]) as usize, i64::from_le_bytes(time));
        if len > rest.len() {
            return Err(spill_err(path, format!("row {read}: {len} bytes, {} left", rest.len())));
        }
        let (entry, rest) = rest.split_at(len);
        let row = FlatEntry::located(entry, into.arena.len(), time)
            .map_err(|d| spill_err(path, format!("row {read}: {d}")))?;
        into.arena.extend_from_slice(entry);
        into.add_row(row);
        bytes = rest;
        read += 1;
    }
    if !bytes.is_empty() {
        return Err(spill_err(path, format!("row {read}: a row header cut short")));
    }
    Ok(read)
}

/// Appends segment `range` of `flush` to `into`, read whole through `scratch` (one buffer for
/// every segment: a range has a segment in each flush).
fn read_segment(
    flush: &Flush,
    range: usize,
    into: &mut RunBuffer,
    scratch: &mut Vec<u8>,
) -> Result<(), BuildError> {
    let segment = flush.segments[range];
    if segment.rows == 0 {
        return Ok(());
    }
    let path = &flush.file.path;
    let mut file = &flush.reader;
    file.seek(SeekFrom::Start(segment.offset)).map_err(|e| spill_err(path, e))?;
    scratch.clear();
    file.take(segment.len).read_to_end(scratch).map_err(|e| spill_err(path, e))?;
    if scratch.len() as u64 != segment.len || crc32fast::hash(scratch) != segment.crc {
        return Err(spill_err(
            path,
            format!(
                "range {range}: {} bytes read back do not match the {} written",
                scratch.len(),
                segment.len
            ),
        ));
    }
    // Read for the last time: its pages go now, not all at once when the file is deleted. In
    // spans of several segments: a hole a segment (120 KB at 50M objects) cost several times
    // what deleting the file does.
    let (from, end) = (flush.discarded.get(), segment.offset + segment.len);
    if end - from >= DISCARD_SPAN {
        discard(&flush.reader, from, end - from);
        flush.discarded.set(end);
    }
    let read = read_rows(scratch, into, path)?;
    if read != segment.rows {
        return Err(spill_err(
            path,
            format!("range {range}: {read} rows read back, {} written", segment.rows),
        ));
    }
    Ok(())
}

/// The sorted ranges, one batch per range (several for a range merged from runs); ends after
/// its first error.
struct Ranges {
    flushes: Vec<Flush>,
    /// The rows not flushed, of every range ...
    memory: Dealt,
    /// ... their chunks grouped by range ([`Dealt::by_range`]) ...
    memory_order: Vec<u32>,
    /// ... and where each range's group starts.
    memory_starts: Vec<usize>,
    next: usize,
    run_len: usize,
    spill_dir: PathBuf,
    /// The batches of a range sorted through runs, until they are all out.
    merging: Option<Batches>,
    failed: bool,
    /// Bytes of the segment being read.
    scratch: Vec<u8>,
    /// Per range: the bytes its keys all begin with (its bounds share them).
    shared: Vec<usize>,
}

/// One range, sorted.
enum SortedRange {
    /// Sorted and reduced in memory.
    Whole(RunBuffer),
    /// Too large for memory: merged from spilled runs.
    Merged(Batches),
}

impl Ranges {
    fn sort(&mut self, range: usize) -> Result<SortedRange, BuildError> {
        let in_memory: usize = self.memory_chunks(range).map(|c| c.rows).sum();
        let flushed: usize = self.flushes.iter().map(|f| f.segments[range].rows).sum();
        if flushed + in_memory <= self.run_len {
            let mut rows = RunBuffer::batch(flushed + in_memory);
            for flush in &self.flushes {
                read_segment(flush, range, &mut rows, &mut self.scratch)?;
            }
            self.copy_memory_rows(range, &mut rows)?;
            return Ok(SortedRange::Whole(rows.into_memory_run_sharing(self.shared[range])));
        }
        // At most one run in memory: a segment holds at most a run's rows, so the buffer is
        // spilled before a segment would take it past one.
        let mut runs = Vec::new();
        let mut rows = RunBuffer::default();
        for flush in &self.flushes {
            if rows.len() + flush.segments[range].rows > self.run_len {
                let (run, emptied) =
                    rows.spill(&self.spill_dir, &format!("range-{range}-run-{}", runs.len()))?;
                runs.push(run);
                rows = emptied;
            }
            read_segment(flush, range, &mut rows, &mut self.scratch)?;
        }
        if rows.len() + in_memory > self.run_len {
            let (run, emptied) = rows.spill(&self.spill_dir, &format!("range-{range}-run-{}", runs.len()))?;
            runs.push(run);
            rows = emptied;
        }
        self.copy_memory_rows(range, &mut rows)?;
        let mut merge = RunMerge::open(&runs, Some(rows.into_memory_run()))?;
        Ok(SortedRange::Merged(batches(PREFETCH_BATCH, move |batch| {
            // The run files live as long as their merge.
            let _runs = &runs;
            Ok(merge.next_winner()?.map(|row| batch.push_copy(row)).is_some())
        })))
    }

    /// The chunks of `range` not flushed.
    fn memory_chunks(&self, range: usize) -> impl Iterator<Item = &Chunk> {
        let order = &self.memory_order[self.memory_starts[range]..self.memory_starts[range + 1]];
        order.iter().map(|&i| &self.memory.chunks[i as usize])
    }

    /// Appends the rows of `range` not flushed to `into`.
    fn copy_memory_rows(&self, range: usize, into: &mut RunBuffer) -> Result<(), BuildError> {
        for chunk in self.memory_chunks(range) {
            read_rows(self.memory.bytes(chunk), into, &self.spill_dir)?;
        }
        Ok(())
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
            let range = self.next;
            if range + 1 >= self.memory_starts.len() {
                return None;
            }
            self.next += 1;
            match self.sort(range) {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::SnapshotBuilder;
    use super::*;
    use crate::inventory::record::InventoryRecord;
    use crate::inventory::reduce::current_objects;
    use crate::inventory::snapshot::SnapshotInfo;
    use crate::inventory::snapshot::format::{SnapshotObject, SnapshotReader};
    use crate::inventory::snapshot::test_support::{
        OwnedEntry, arb_key, arb_records, header, write_snapshot,
    };

    /// Keys sharing prefixes of every length, up to past `MAX_TREE_OFFSET` bytes, with NUL
    /// bytes and ends inside chunks.
    const DEEP_KEY: &str =
        "((sales/orders/region=eu/dt=2024-01-0|x{250}|x{300}|t/)[12]?/){0,3}[a\u{0}b]{0,10}";

    /// Keys sharing 8, 16 and more bytes, some ending at a chunk's end.
    const LONG_SHARED_KEY: &str = "sales/or(ders/re(gion=eu/(dt=2024-01-0[12]/(part-[0-9]{0,3})?)?)?)?";

    fn row(key: &str, size: u64) -> InventoryRecord {
        InventoryRecord { bucket: "src".into(), key: key.into(), size: Some(size), ..Default::default() }
    }

    /// Spill files by kind (`flush`, `range`, `run`) in `dir`.
    fn spill_files(dir: &Path, kind: &str) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(&format!("-{kind}-")))
            .count()
    }

    /// The snapshot and diff entries of `records` against `old`, dealt by `splitters` (none:
    /// sorted in runs), pushed in batches of `batch_len` (0: one by one). Every spill file is
    /// gone at the end.
    fn diffed(
        old: &[SnapshotObject],
        records: &[InventoryRecord],
        splitters: &[String],
        run_len: usize,
        batch_len: usize,
    ) -> (Vec<SnapshotObject>, Vec<OwnedEntry>) {
        let dir = tempfile::tempdir().unwrap();
        let old = SnapshotReader::open(&write_snapshot(dir.path(), "old.snap", old)).unwrap();
        let spill = dir.path().join("spill");
        std::fs::create_dir(&spill).unwrap();
        let mut b = SnapshotBuilder::new(header(), &spill, run_len);
        assert_eq!(
            b.distribute_by(splitters.iter().map(|s| s.as_bytes().to_vec()).collect()),
            !splitters.is_empty()
        );
        if batch_len == 0 {
            records.iter().for_each(|r| b.push(r).unwrap());
        } else {
            for chunk in records.chunks(batch_len) {
                let mut batch = b.row_batch();
                chunk.iter().for_each(|r| batch.push(r).unwrap());
                b.push_batch(batch).unwrap();
            }
        }
        let mut entries = Vec::new();
        let info: SnapshotInfo = b
            .finish_with_diff(&dir.path().join("s.snap"), Some(old), |e| {
                entries.push(OwnedEntry::from(e));
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(std::fs::read_dir(&spill).unwrap().count(), 0, "no spill file left");
        let objs = SnapshotReader::open(&info.path).unwrap().collect::<Result<_, _>>().unwrap();
        (objs, entries)
    }

    /// Rows dealt by `splitters` with runs of `run_len`, each pushed and flushed as the builder does.
    fn dealt(dir: &Path, splitters: &[&str], run_len: usize, records: &[InventoryRecord]) -> Ranges {
        let splitters = splitters.iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut ranges = Distribution::new(splitters, dir, run_len).unwrap();
        for r in records {
            ranges.push(&SnapshotRow::from(r));
            ranges.flush_if_full(run_len).unwrap();
        }
        ranges.into_ranges(run_len).unwrap()
    }

    /// Key and size of every row of `batches`, in order.
    fn rows_of(batches: impl Iterator<Item = Result<RunBuffer, BuildError>>) -> Vec<(String, Option<u64>)> {
        let mut rows = Vec::new();
        for batch in batches {
            let batch = batch.unwrap();
            for row in &batch.rows {
                let object = Flat { buffer: &batch, row }.view().unwrap().to_object();
                rows.push((object.key, object.size));
            }
        }
        rows
    }

    #[test]
    fn a_range_larger_than_a_run_is_merged_from_runs() {
        // Every row falls below the one splitter: one range of 100 rows, runs of 10.
        let records: Vec<_> = (0..100u64).map(|i| row(&format!("k{:03}", (i * 37) % 100), i)).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut ranges = dealt(dir.path(), &["z"], 10, &records);
        assert_eq!(ranges.flushes.len(), 10);
        let Ok(SortedRange::Merged(batches)) = ranges.sort(0) else { panic!("not merged from runs") };
        assert_eq!(spill_files(dir.path(), "run"), 9, "nine runs of 10 rows spilled, the last 10 in memory");
        let expected: Vec<_> = (0..100u64).map(|k| (format!("k{k:03}"), Some((k * 73) % 100))).collect();
        assert_eq!(rows_of(batches), expected);
        assert_eq!(spill_files(dir.path(), "run"), 0, "its runs are removed with its merge");
    }

    #[test]
    fn full_buffers_are_flushed_and_read_back() {
        // Every key twice; the second row, newer, is kept.
        let records: Vec<_> = (0..600u64)
            .map(|i| InventoryRecord {
                last_modified_ms: Some((i / 300) as i64),
                ..row(&format!("k{:03}", (i * 7) % 300), i)
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let ranges = dealt(dir.path(), &["k050", "k100", "k150", "k200", "k250"], 64, &records);
        assert_eq!(ranges.flushes.len(), 9, "600 rows in buffers of 64: nine flushes, 24 rows in memory");
        assert_eq!(spill_files(dir.path(), "flush"), 9);
        let rows = rows_of(ranges);
        assert_eq!(spill_files(dir.path(), "flush"), 0, "flushes are removed once read");
        let expected: Vec<_> =
            (0..300u64).map(|k| (format!("k{k:03}"), Some((k * 43) % 300 + 300))).collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn a_damaged_flush_file_is_a_spill_error_naming_it_and_ends_the_ranges() {
        let records: Vec<_> = (0..40u64).map(|i| row(&format!("k{:02}", (i * 7) % 40), i)).collect();
        let dir = tempfile::tempdir().unwrap();
        let ranges = dealt(dir.path(), &["k20"], 16, &records);
        let path = ranges.flushes[0].file.path.clone();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let mut outcomes: Vec<_> = ranges.collect();
        let Some(Err(err)) = outcomes.pop() else { panic!("the last item is the error") };
        assert_eq!(err.code(), "SNAPSHOT_SPILL", "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(outcomes.iter().all(Result::is_ok), "nothing after the error");
    }

    #[test]
    fn a_flipped_byte_in_a_flushed_field_is_a_spill_error_naming_the_file() {
        let records: Vec<_> = (0..40u64).map(|i| row(&format!("k{:02}", (i * 7) % 40), 1000 + i)).collect();
        let dir = tempfile::tempdir().unwrap();
        let ranges = dealt(dir.path(), &["k20"], 16, &records);
        let path = ranges.flushes[0].file.path.clone();
        // A size's varint byte: the entry still parses, only its value is wrong.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 1;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let mut outcomes: Vec<_> = ranges.collect();
        let Some(Err(err)) = outcomes.pop() else { panic!("the last item is the error") };
        assert_eq!(err.code(), "SNAPSHOT_SPILL", "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(err.to_string().contains("do not match"), "{err}");
    }

    #[test]
    fn splitters_out_of_order_or_late_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = SnapshotBuilder::new(header(), dir.path(), 10);
        assert!(!b.distribute_by(vec![b"b".to_vec(), b"a".to_vec()]));
        assert!(!b.distribute_by(vec![b"a".to_vec(), b"a".to_vec()]));
        b.push(&row("x", 1)).unwrap();
        assert!(!b.distribute_by(vec![b"m".to_vec()]), "rows already went into a run");
        assert!(b.distribution.is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// A key's range is the number of splitters at or below it, whatever prefixes they
        /// share (keys shorter than a chunk, NUL bytes, shared 8-byte chunks).
        #[test]
        fn a_key_falls_in_its_range(
            splitters in proptest::collection::btree_set("(sales/or|sales/orders/|ab|a)?[a\u{0}b/]{0,10}", 1..12),
            keys in proptest::collection::vec("(sales/or|sales/orders/|ab|a)?[a\u{0}b/]{0,10}", 1..40),
        ) {
            let splitters: Vec<Vec<u8>> = splitters.into_iter().map(String::into_bytes).collect();
            let ranges = Distribution::new(splitters.clone(), Path::new("."), 10).unwrap();
            for key in keys {
                let expected = splitters.iter().filter(|s| s.as_slice() <= key.as_bytes()).count();
                prop_assert_eq!(ranges.range_of(key.as_bytes()) as usize, expected, "{:?}", key);
            }
            for (i, splitter) in splitters.iter().enumerate() {
                prop_assert_eq!(ranges.range_of(splitter) as usize, i + 1, "{:?}", splitter);
            }
        }

        /// The same with many splitters sharing long prefixes, several chunks deep and past
        /// `MAX_TREE_OFFSET`: the chunk tree's levels and its key-by-key search agree.
        #[test]
        fn a_key_falls_in_its_range_under_deep_shared_prefixes(
            splitters in proptest::collection::btree_set(DEEP_KEY, 1..80),
            keys in proptest::collection::vec(DEEP_KEY, 1..60),
        ) {
            let splitters: Vec<Vec<u8>> = splitters.into_iter().map(String::into_bytes).collect();
            let ranges = Distribution::new(splitters.clone(), Path::new("."), 10).unwrap();
            for key in keys.iter().map(String::as_bytes).chain(splitters.iter().map(Vec::as_slice)) {
                let expected = splitters.iter().filter(|s| s.as_slice() <= key).count();
                prop_assert_eq!(ranges.range_of(key) as usize, expected, "{:?}", String::from_utf8_lossy(key));
            }
        }

        /// Ranges whose bounds share long prefixes (whose sort starts past them) give what
        /// sorting in runs gives: keys ending at, inside and after the shared bytes, repeated
        /// keys, bounds that are keys.
        #[test]
        fn ranges_with_long_shared_bounds_sort_as_runs(
            keys in proptest::collection::vec(LONG_SHARED_KEY, 1..60),
            sizes in proptest::collection::vec(0u64..3, 60),
            splitters in proptest::collection::btree_set(LONG_SHARED_KEY, 1..6),
            run_len in 2usize..40,
        ) {
            let records: Vec<InventoryRecord> = keys.iter().zip(&sizes).map(|(k, s)| row(k, *s)).collect();
            let old: Vec<SnapshotObject> = current_objects(records.iter().step_by(2).cloned().collect::<Vec<_>>())
                .iter()
                .map(SnapshotObject::from)
                .collect();
            let splitters: Vec<String> = splitters.into_iter().collect();
            let expected = diffed(&old, &records, &[], run_len, 0);
            prop_assert_eq!(diffed(&old, &records, &splitters, run_len, 0), expected);
        }

        /// Dealt into ranges, the rows give the snapshot and the diff entries that sorting
        /// them in runs gives, whatever the splitters, run and batch sizes (buffers flushed,
        /// ranges outgrowing a run).
        #[test]
        fn distributed_builds_equal_sorted_runs(
            old_records in arb_records(40),
            records in arb_records(80),
            splitters in proptest::collection::btree_set(arb_key(), 1..8),
            run_len in 1usize..12,
            batch_len in 0usize..9,
        ) {
            let old: Vec<SnapshotObject> =
                current_objects(old_records).iter().map(SnapshotObject::from).collect();
            let splitters: Vec<String> = splitters.into_iter().collect();
            let expected = diffed(&old, &records, &[], run_len, batch_len);
            let expected_objects: Vec<SnapshotObject> =
                current_objects(records.clone()).iter().map(SnapshotObject::from).collect();
            prop_assert_eq!(&expected.0, &expected_objects);
            prop_assert_eq!(diffed(&old, &records, &splitters, run_len, batch_len), expected);
        }
    }
}
