//! MD5 of several data files at once, for files held whole in memory (Parquet, ORC).
//!
//! MD5 is one chain of dependent steps: hashing a single stream leaves most of a core's
//! adders waiting (about 700 MB/s on the benchmark machine, the md-5 crate's speed too).
//! Stepping two to four streams together fills them: about 1.5 GB/s for two and 2 GB/s for
//! four, in plain Rust the compiler keeps in registers (`bench/README.md`). The md-5 crate has
//! no such multi-stream mode; it still hashes streamed (CSV) files, and checks this module in
//! the tests.
//!
//! [`Md5Lanes`] is a thread that hashes the files handed to it, up to [`MAX_LANES`] together:
//! readers hand a file over and decode it meanwhile, then wait for its digest. It gathers a
//! file of each reader before it starts ([`Md5Lanes::spawn`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};

use bytes::Bytes;
use md5::{Digest, Md5};

/// Streams hashed together at most. Past four, the states no longer fit in registers and the
/// lanes slow each other down.
pub const MAX_LANES: usize = 4;

/// Blocks a lane hashes between two looks at the queue (256 KiB): files handed over meanwhile
/// join soon, and an abandoned one is dropped soon.
const STEP_BLOCKS: usize = 4096;

const INITIAL_STATE: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];

// The four rounds' functions of b, c and d (RFC 1321, 3.4).
macro_rules! f {
    ($b:expr, $c:expr, $d:expr) => {
        ($b & $c) | (!$b & $d)
    };
}
macro_rules! g {
    ($b:expr, $c:expr, $d:expr) => {
        ($d & $b) | (!$d & $c)
    };
}
macro_rules! h {
    ($b:expr, $c:expr, $d:expr) => {
        $b ^ $c ^ $d
    };
}
macro_rules! i {
    ($b:expr, $c:expr, $d:expr) => {
        $c ^ ($b | !$d)
    };
}

/// MD5's compression function on one block of each of `N` streams, step by step together.
#[inline(always)]
fn compress<const N: usize>(states: &mut [[u32; 4]; N], blocks: &[&[u8; 64]; N]) {
    let mut m = [[0u32; 16]; N];
    for (words, block) in m.iter_mut().zip(blocks) {
        for (word, bytes) in words.iter_mut().zip(block.as_chunks::<4>().0) {
            *word = u32::from_le_bytes(*bytes);
        }
    }
    let (mut a, mut b, mut c, mut d) = ([0u32; N], [0u32; N], [0u32; N], [0u32; N]);
    for lane in 0..N {
        [a[lane], b[lane], c[lane], d[lane]] = states[lane];
    }
    // One step in every lane: a = b + ((a + fn(b, c, d) + k + m[w]) <<< s). The roles of a, b,
    // c and d turn by one at each step. One macro call per step, flat: the same steps nested
    // four to a macro compiled to code that ran two lanes at half this speed.
    macro_rules! step {
        ($fn:ident, $a:ident, $b:ident, $c:ident, $d:ident, $w:expr, $s:expr, $k:expr) => {
            for lane in 0..N {
                let f = $fn!($b[lane], $c[lane], $d[lane]);
                $a[lane] = $b[lane].wrapping_add(
                    $a[lane].wrapping_add(f).wrapping_add($k).wrapping_add(m[lane][$w]).rotate_left($s),
                );
            }
        };
    }
    step!(f, a, b, c, d, 0, 7, 0xd76aa478);
    step!(f, d, a, b, c, 1, 12, 0xe8c7b756);
    step!(f, c, d, a, b, 2, 17, 0x242070db);
    step!(f, b, c, d, a, 3, 22, 0xc1bdceee);
    step!(f, a, b, c, d, 4, 7, 0xf57c0faf);
    step!(f, d, a, b, c, 5, 12, 0x4787c62a);
    step!(f, c, d, a, b, 6, 17, 0xa8304613);
    step!(f, b, c, d, a, 7, 22, 0xfd469501);
    step!(f, a, b, c, d, 8, 7, 0x698098d8);
    step!(f, d, a, b, c, 9, 12, 0x8b44f7af);
    step!(f, c, d, a, b, 10, 17, 0xffff5bb1);
    step!(f, b, c, d, a, 11, 22, 0x895cd7be);
    step!(f, a, b, c, d, 12, 7, 0x6b901122);
    step!(f, d, a, b, c, 13, 12, 0xfd987193);
    step!(f, c, d, a, b, 14, 17, 0xa679438e);
    step!(f, b, c, d, a, 15, 22, 0x49b40821);
    step!(g, a, b, c, d, 1, 5, 0xf61e2562);
    step!(g, d, a, b, c, 6, 9, 0xc040b340);
    step!(g, c, d, a, b, 11, 14, 0x265e5a51);
    step!(g, b, c, d, a, 0, 20, 0xe9b6c7aa);
    step!(g, a, b, c, d, 5, 5, 0xd62f105d);
    step!(g, d, a, b, c, 10, 9, 0x02441453);
    step!(g, c, d, a, b, 15, 14, 0xd8a1e681);
    step!(g, b, c, d, a, 4, 20, 0xe7d3fbc8);
    step!(g, a, b, c, d, 9, 5, 0x21e1cde6);
    step!(g, d, a, b, c, 14, 9, 0xc33707d6);
    step!(g, c, d, a, b, 3, 14, 0xf4d50d87);
    step!(g, b, c, d, a, 8, 20, 0x455a14ed);
    step!(g, a, b, c, d, 13, 5, 0xa9e3e905);
    step!(g, d, a, b, c, 2, 9, 0xfcefa3f8);
    step!(g, c, d, a, b, 7, 14, 0x676f02d9);
    step!(g, b, c, d, a, 12, 20, 0x8d2a4c8a);
    step!(h, a, b, c, d, 5, 4, 0xfffa3942);
    step!(h, d, a, b, c, 8, 11, 0x8771f681);
    step!(h, c, d, a, b, 11, 16, 0x6d9d6122);
    step!(h, b, c, d, a, 14, 23, 0xfde5380c);
    step!(h, a, b, c, d, 1, 4, 0xa4beea44);
    step!(h, d, a, b, c, 4, 11, 0x4bdecfa9);
    step!(h, c, d, a, b, 7, 16, 0xf6bb4b60);
    step!(h, b, c, d, a, 10, 23, 0xbebfbc70);
    step!(h, a, b, c, d, 13, 4, 0x289b7ec6);
    step!(h, d, a, b, c, 0, 11, 0xeaa127fa);
    step!(h, c, d, a, b, 3, 16, 0xd4ef3085);
    step!(h, b, c, d, a, 6, 23, 0x04881d05);
    step!(h, a, b, c, d, 9, 4, 0xd9d4d039);
    step!(h, d, a, b, c, 12, 11, 0xe6db99e5);
    step!(h, c, d, a, b, 15, 16, 0x1fa27cf8);
    step!(h, b, c, d, a, 2, 23, 0xc4ac5665);
    step!(i, a, b, c, d, 0, 6, 0xf4292244);
    step!(i, d, a, b, c, 7, 10, 0x432aff97);
    step!(i, c, d, a, b, 14, 15, 0xab9423a7);
    step!(i, b, c, d, a, 5, 21, 0xfc93a039);
    step!(i, a, b, c, d, 12, 6, 0x655b59c3);
    step!(i, d, a, b, c, 3, 10, 0x8f0ccc92);
    step!(i, c, d, a, b, 10, 15, 0xffeff47d);
    step!(i, b, c, d, a, 1, 21, 0x85845dd1);
    step!(i, a, b, c, d, 8, 6, 0x6fa87e4f);
    step!(i, d, a, b, c, 15, 10, 0xfe2ce6e0);
    step!(i, c, d, a, b, 6, 15, 0xa3014314);
    step!(i, b, c, d, a, 13, 21, 0x4e0811a1);
    step!(i, a, b, c, d, 4, 6, 0xf7537e82);
    step!(i, d, a, b, c, 11, 10, 0xbd3af235);
    step!(i, c, d, a, b, 2, 15, 0x2ad7d2bb);
    step!(i, b, c, d, a, 9, 21, 0xeb86d391);
    for (lane, state) in states.iter_mut().enumerate() {
        for (word, add) in state.iter_mut().zip([a[lane], b[lane], c[lane], d[lane]]) {
            *word = word.wrapping_add(add);
        }
    }
}

/// One stream being hashed: its bytes, how far its whole blocks are hashed, and the state.
struct Lane<T> {
    bytes: T,
    at: usize,
    state: [u32; 4],
}

impl<T: AsRef<[u8]>> Lane<T> {
    fn new(bytes: T) -> Self {
        Lane { bytes, at: 0, state: INITIAL_STATE }
    }

    fn whole_blocks_left(&self) -> usize {
        (self.bytes.as_ref().len() - self.at) / 64
    }

    /// The digest: the last partial block and the padding (RFC 1321, 3.1-3.2) hashed alone.
    fn finish(&self) -> [u8; 16] {
        let bytes = self.bytes.as_ref();
        let tail = bytes.get(self.at..).unwrap_or_default();
        let mut last = [0u8; 128];
        last[..tail.len()].copy_from_slice(tail);
        last[tail.len()] = 0x80;
        let blocks = if tail.len() < 56 { 1 } else { 2 };
        let bits = (bytes.len() as u64).wrapping_mul(8);
        last[blocks * 64 - 8..blocks * 64].copy_from_slice(&bits.to_le_bytes());
        let mut state = [self.state];
        for block in last[..blocks * 64].as_chunks::<64>().0 {
            compress(&mut state, &[block]);
        }
        let mut digest = [0u8; 16];
        for (out, word) in digest.as_chunks_mut::<4>().0.iter_mut().zip(state[0]) {
            *out = word.to_le_bytes();
        }
        digest
    }
}

/// Hashes `blocks` whole blocks of each of `N` lanes together.
fn advance<T: AsRef<[u8]>, const N: usize>(lanes: &mut [&mut Lane<T>], blocks: usize) {
    let Some(lanes) = lanes.first_chunk_mut::<N>() else { return };
    let mut states: [[u32; 4]; N] = std::array::from_fn(|l| lanes[l].state);
    let rest: [&[[u8; 64]]; N] = std::array::from_fn(|l| {
        let bytes = lanes[l].bytes.as_ref();
        let span = bytes.get(lanes[l].at..lanes[l].at + blocks * 64).unwrap_or_default();
        span.as_chunks::<64>().0
    });
    // Every lane holds `blocks` whole blocks (the caller took the fewest any has).
    let hashed = rest.iter().map(|r| r.len()).min().unwrap_or(0);
    #[expect(clippy::needless_range_loop, reason = "block n of every lane, not of one slice")]
    for n in 0..hashed {
        compress(&mut states, &std::array::from_fn(|l| &rest[l][n]));
    }
    for (lane, state) in lanes.iter_mut().zip(states) {
        lane.state = state;
        lane.at += hashed * 64;
    }
}

/// Hashes up to `limit` whole blocks of the first [`MAX_LANES`] lanes together (all of them
/// the same count: the fewest any of them has left).
fn step<T: AsRef<[u8]>>(lanes: &mut [&mut Lane<T>], limit: usize) {
    let together = lanes.len().min(MAX_LANES);
    let lanes = &mut lanes[..together];
    let blocks = lanes.iter().map(|l| l.whole_blocks_left()).min().unwrap_or(0).min(limit);
    if blocks == 0 {
        return;
    }
    match together {
        1 => advance::<T, 1>(lanes, blocks),
        2 => advance::<T, 2>(lanes, blocks),
        3 => advance::<T, 3>(lanes, blocks),
        _ => advance::<T, 4>(lanes, blocks),
    }
}

/// The MD5 of each of `inputs`, hashed up to [`MAX_LANES`] at a time together.
pub fn md5_of_each(inputs: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut digests = vec![[0u8; 16]; inputs.len()];
    let mut lanes: Vec<(usize, Lane<&[u8]>)> = Vec::with_capacity(MAX_LANES);
    let mut next = inputs.iter().enumerate();
    loop {
        while lanes.len() < MAX_LANES {
            let Some((index, input)) = next.next() else { break };
            lanes.push((index, Lane::new(*input)));
        }
        if lanes.is_empty() {
            return digests;
        }
        step(&mut lanes.iter_mut().map(|(_, lane)| lane).collect::<Vec<_>>(), usize::MAX);
        lanes.retain(|(index, lane)| {
            let done = lane.whole_blocks_left() == 0;
            if done {
                digests[*index] = lane.finish();
            }
            !done
        });
    }
}

/// What became of a file handed to [`Md5Lanes`] (a [`Job::waiter`] value).
const PENDING: u8 = 0;
/// Its reader waits for the digest: hash it now, with whatever else is in hand.
const AWAITED: u8 = 1;
/// Nobody will ask for the digest: drop the file.
const ABANDONED: u8 = 2;

/// A file handed to [`Md5Lanes`], and where its digest goes.
struct Job {
    lane: Lane<Bytes>,
    reply: SyncSender<[u8; 16]>,
    /// [`PENDING`], [`AWAITED`] or [`ABANDONED`], set by the [`PendingMd5`].
    waiter: Arc<AtomicU8>,
}

/// What the hashing thread receives.
enum Message {
    File(Job),
    /// A file's waiter changed: look again.
    Wake,
}

/// A thread hashing the files handed to it, up to [`MAX_LANES`] together. Dropping it lets the
/// thread end once the files in hand are hashed.
pub struct Md5Lanes {
    queue: Sender<Message>,
}

impl std::fmt::Debug for Md5Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Md5Lanes").finish_non_exhaustive()
    }
}

impl Md5Lanes {
    /// Starts the hashing thread, for files handed over by up to `readers` threads at once.
    ///
    /// The thread gathers files before it hashes: it starts once it holds one file of each
    /// reader (up to [`MAX_LANES`]), or once a reader waits for a digest. Hashing each file as
    /// it came ran one lane most of the time, at half the speed of two: the files of two
    /// readers arrive far apart, and one lane is done long before the next file comes.
    pub fn spawn(readers: usize) -> std::io::Result<Self> {
        let (queue, messages) = std::sync::mpsc::channel();
        let gather = readers.clamp(1, MAX_LANES);
        std::thread::Builder::new()
            .name("inventory-md5".into())
            .spawn(move || hash_jobs(messages, gather, |_| {}))?;
        Ok(Md5Lanes { queue })
    }

    /// [`Self::spawn`], telling `steps` how many files each step hashed together.
    #[cfg(test)]
    fn spawn_observed(readers: usize, steps: Sender<usize>) -> Self {
        let (queue, messages) = std::sync::mpsc::channel();
        let gather = readers.clamp(1, MAX_LANES);
        std::thread::spawn(move || {
            hash_jobs(messages, gather, |together| {
                let _ = steps.send(together);
            })
        });
        Md5Lanes { queue }
    }

    /// Hands `bytes` over; the digest comes with [`PendingMd5::wait`].
    pub fn digest(&self, bytes: Bytes) -> PendingMd5 {
        let (reply, digest) = std::sync::mpsc::sync_channel(1);
        let waiter = Arc::new(AtomicU8::new(PENDING));
        let job = Job { lane: Lane::new(bytes.clone()), reply, waiter: waiter.clone() };
        // Were the thread gone (it does not panic, but if it did), `wait` would hash the bytes.
        let _ = self.queue.send(Message::File(job));
        PendingMd5 { bytes, digest, waiter, queue: self.queue.clone() }
    }
}

/// The digest of a file handed to [`Md5Lanes`]. Dropped unwaited, the file is not hashed (or
/// no further).
pub struct PendingMd5 {
    /// The bytes, hashed by `wait` itself if the thread gave no digest.
    bytes: Bytes,
    digest: Receiver<[u8; 16]>,
    waiter: Arc<AtomicU8>,
    queue: Sender<Message>,
}

impl std::fmt::Debug for PendingMd5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingMd5").finish_non_exhaustive()
    }
}

impl PendingMd5 {
    /// Waits for the digest.
    pub fn wait(self) -> [u8; 16] {
        self.tell(AWAITED);
        self.digest.recv().unwrap_or_else(|_| Md5::digest(&self.bytes).into())
    }

    fn tell(&self, waiter: u8) {
        if self.waiter.swap(waiter, Ordering::AcqRel) != waiter {
            // Sent after the file itself (same sender thread): the thread holds the file when
            // it reads this. Release: seeing the new value, it also sees the files sent before.
            let _ = self.queue.send(Message::Wake);
        }
    }
}

impl Drop for PendingMd5 {
    fn drop(&mut self) {
        // After `wait` the file is done: the thread no longer holds it.
        if self.waiter.load(Ordering::Acquire) == PENDING {
            self.tell(ABANDONED);
        }
    }
}

/// The hashing thread: gathers files (see [`Md5Lanes::spawn`]), steps up to [`MAX_LANES`] of
/// them together, answers each as it ends.
fn hash_jobs(messages: Receiver<Message>, gather: usize, mut on_step: impl FnMut(usize)) {
    let mut active: Vec<Job> = Vec::with_capacity(MAX_LANES);
    let mut open = true;
    loop {
        active.retain(|job| job.waiter.load(Ordering::Acquire) != ABANDONED);
        let ready = !active.is_empty()
            && (!open
                || active.len() >= gather
                || active.iter().any(|job| job.waiter.load(Ordering::Acquire) == AWAITED));
        if !ready {
            if !open {
                return;
            }
            match messages.recv() {
                Ok(Message::File(job)) => active.push(job),
                Ok(Message::Wake) => {}
                // Every file is in hand: hash them all.
                Err(_) => open = false,
            }
            continue;
        }
        while active.len() < MAX_LANES {
            match messages.try_recv() {
                Ok(Message::File(job)) => active.push(job),
                Ok(Message::Wake) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        on_step(active.len().min(MAX_LANES));
        step(&mut active.iter_mut().map(|job| &mut job.lane).collect::<Vec<_>>(), STEP_BLOCKS);
        active.retain(|job| {
            if job.lane.whole_blocks_left() > 0 {
                return true;
            }
            // The waiter may be gone: nothing to tell it then.
            let _ = job.reply.send(job.lane.finish());
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(bytes: &[u8]) -> [u8; 16] {
        Md5::digest(bytes).into()
    }

    #[test]
    fn known_digests() {
        let hex = |d: [u8; 16]| crate::inventory::md5_reader::hex(&d);
        let digests = md5_of_each(&[b"", b"abc", &[b'a'; 1_000_000]]);
        assert_eq!(hex(digests[0]), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(digests[1]), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(digests[2]), "7707d6ae4e027c70eea2a935c2296f21");
    }

    /// Lengths around the padding's edges (55, 56, 63, 64 bytes past a block) and longer.
    fn arb_input() -> impl Strategy<Value = Vec<u8>> {
        let len = prop_oneof![
            0usize..200,
            (0usize..40).prop_map(|b| b * 64 + 55),
            (0usize..40).prop_map(|b| b * 64 + 56),
            0usize..20_000
        ];
        len.prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any number of inputs of any lengths, hashed together, hash as the md-5 crate
        /// hashes each alone.
        #[test]
        fn lanes_hash_as_one_stream_does(inputs in proptest::collection::vec(arb_input(), 0..9)) {
            let slices: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
            let expected: Vec<[u8; 16]> = slices.iter().map(|s| reference(s)).collect();
            prop_assert_eq!(md5_of_each(&slices), expected);
        }
    }

    /// Files handed over from several threads at once, longer than a step, each get their own
    /// digest.
    #[test]
    fn the_thread_answers_each_file_with_its_digest() {
        let lanes = Md5Lanes::spawn(2).unwrap();
        let files: Vec<Bytes> = (0..7u8)
            .map(|seed| {
                let len = STEP_BLOCKS * 64 * usize::from(seed % 3) + 1000 * usize::from(seed) + 17;
                Bytes::from(
                    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>(),
                )
            })
            .collect();
        std::thread::scope(|scope| {
            for file in &files {
                let lanes = &lanes;
                scope.spawn(move || {
                    assert_eq!(lanes.digest(file.clone()).wait(), reference(file));
                });
            }
        });
    }

    /// Files of two readers are gathered and hashed together from their first block, however
    /// late the second comes: hashing the first alone meanwhile would leave a core's adders
    /// half idle.
    #[test]
    fn the_files_of_all_readers_are_hashed_together() {
        let (steps, stepped) = std::sync::mpsc::channel();
        let lanes = Md5Lanes::spawn_observed(2, steps);
        let first = Bytes::from(vec![1u8; STEP_BLOCKS * 64 * 3]);
        let second = Bytes::from(vec![2u8; STEP_BLOCKS * 64 * 3]);
        let pending_first = lanes.digest(first.clone());
        let pending_second = lanes.digest(second.clone());
        assert_eq!(pending_first.wait(), reference(&first));
        assert_eq!(pending_second.wait(), reference(&second));
        drop(lanes);
        let together: Vec<usize> = stepped.iter().collect();
        assert_eq!(together, vec![2; 3], "three steps of both files");
    }

    /// A reader that waits has its file hashed even when the other readers' files never come.
    #[test]
    fn a_waiting_reader_is_answered_without_the_others() {
        let lanes = Md5Lanes::spawn(4).unwrap();
        let file = Bytes::from(vec![3u8; STEP_BLOCKS * 64 + 5]);
        assert_eq!(lanes.digest(file.clone()).wait(), reference(&file));
    }

    /// After a file whose digest nobody waits for any more, the next file still gets its own.
    #[test]
    fn after_an_abandoned_file_the_next_gets_its_digest() {
        let lanes = Md5Lanes::spawn(2).unwrap();
        let big = Bytes::from(vec![7u8; STEP_BLOCKS * 64 * 64]);
        let abandoned = lanes.digest(big);
        drop(abandoned);
        let small = Bytes::from_static(b"abc");
        assert_eq!(lanes.digest(small.clone()).wait(), reference(&small));
    }
}
