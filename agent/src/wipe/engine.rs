//! The overwrite and read-back engine, written against [`BlockDevice`] so that tests can inject faults
//! at the I/O boundary.
//!
//! A pass streams the pattern over the device in 4 MiB aligned chunks: one thread generates, two
//! threads write (two requests in flight keep the device busy), a few buffers circulate through
//! bounded channels (peak memory stays a few chunks). A read-back streams regions through four reader
//! threads: each reads a piece, regenerates the expected bytes 64 KiB at a time and compares them
//! while the data is in its cache, and for a full read-back hashes the piece as a BLAKE3 subtree in
//! the same sweep. The calling thread puts the pieces back in device order and joins the subtree
//! hashes ([`SubtreeJoin`]); sampled read-backs are hashed in order by the calling thread. A chunk that
//! fails is split in halves down to single logical sectors, so every bad sector is found and recorded
//! exactly, and the pass goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use lapterop_certificate::{ErrorRange, RangeOp};

use super::pattern::Fill;

/// Bytes per I/O.
pub const CHUNK: usize = 4 << 20;
/// Buffers in flight per stage.
const BUFFERS: usize = 3;
/// Concurrent writers in a pass.
const WRITERS: usize = 2;
/// Concurrent readers in a read-back.
const READERS: usize = 4;

/// A piece read back: sequence number, offset, length, buffer, unreadable sectors (lba, errno),
/// mismatched sectors, and its BLAKE3 chaining value when the reader hashed it (see [`SubtreeJoin`]).
type Piece = (
    usize,
    u64,
    usize,
    AlignedBuf,
    Vec<(u64, u32)>,
    Vec<u64>,
    Option<ChainingValue>,
);

/// Bytes a reader compares and hashes at a time, while they are still in its cache.
const CHECK_BLOCK: usize = 64 << 10;

/// Compares a piece read at device offset `off` with the pattern, block by block, and (`tree`) hashes
/// it as a BLAKE3 subtree in the same sweep. Returns the mismatched sectors (unreadable ones, listed
/// in `bad`, are not counted twice) and the chaining value. `exp` is the reader's scratch block.
fn check_piece(
    data: &[u8],
    off: u64,
    ss: u64,
    expect: Option<&Fill>,
    bad: &[(u64, u32)],
    tree: bool,
    exp: &mut [u8],
) -> (Vec<u64>, Option<ChainingValue>) {
    let ssz = usize::try_from(ss).unwrap_or(512);
    let mut mism = Vec::new();
    let mut h = tree.then(|| {
        let mut h = blake3::Hasher::new();
        h.set_input_offset(off);
        h
    });
    for (k, block) in data.chunks(exp.len()).enumerate() {
        let at = off + (k * exp.len()) as u64;
        if let Some(fill) = expect {
            let want = &mut exp[..block.len()];
            fill.fill(at, want);
            if block != &want[..] {
                for (i, (got, w)) in block.chunks(ssz).zip(want.chunks(ssz)).enumerate() {
                    let lba = at / ss + i as u64;
                    if got != w && !bad.iter().any(|b| b.0 == lba) {
                        mism.push(lba);
                    }
                }
            }
        }
        if let Some(h) = h.as_mut() {
            h.update(block);
        }
    }
    (mism, h.map(|h| h.finalize_non_root()))
}

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode};

/// Joins the chaining values of a stream's pieces, given in stream order, into the root hash: what
/// `blake3::hash` of the whole stream gives, with the pieces hashed by whichever thread read them. A
/// piece at a stream offset that is a multiple of its size, a power of two of whole 1 KiB chunks, is a
/// subtree of the BLAKE3 tree (BLAKE3 paper §2.1); only the last piece may be shorter. The merge is
/// the reference implementation's chaining-value stack, with a piece in place of a chunk.
#[derive(Debug, Default)]
pub struct SubtreeJoin {
    stack: Vec<ChainingValue>,
    done: u64,
    held: Option<ChainingValue>,
}

impl SubtreeJoin {
    /// Adds the next piece's chaining value.
    pub fn push(&mut self, cv: ChainingValue) {
        if let Some(mut left_done) = self.held.replace(cv) {
            // The held piece was not the last: each trailing zero bit of the count of finished
            // pieces closes one subtree.
            self.done += 1;
            let mut total = self.done;
            while total & 1 == 0 {
                let Some(left) = self.stack.pop() else { break };
                left_done = merge_subtrees_non_root(&left, &left_done, Mode::Hash);
                total >>= 1;
            }
            self.stack.push(left_done);
        }
    }

    /// The root hash; `None` unless at least two pieces were pushed (one piece is its own root and
    /// must be hashed with `blake3::hash`).
    pub fn finish(self) -> Option<blake3::Hash> {
        let mut right = self.held?;
        let (bottom, rest) = self.stack.split_first()?;
        for left in rest.iter().rev() {
            right = merge_subtrees_non_root(left, &right, Mode::Hash);
        }
        Some(merge_subtrees_root(bottom, &right, Mode::Hash))
    }
}

/// The indexes in a chunk buffer starting at device offset `base` of the bytes `o..o + l`.
fn sub(base: u64, o: u64, l: u64) -> std::ops::Range<usize> {
    // Both are within one chunk (at most CHUNK bytes), so they fit in usize.
    let from = usize::try_from(o - base).unwrap_or(0);
    from..from + usize::try_from(l).unwrap_or(0)
}
/// Most ranges recorded per list; beyond that the rest is folded into one covering range.
pub const MAX_RANGES: usize = 512;

/// The I/O boundary of the engine: a block device of fixed size.
///
/// Offsets and lengths are always multiples of the sector size and buffers are aligned to 4096 bytes
/// (what `O_DIRECT` needs). Errors are the kernel's errno.
pub trait BlockDevice: Sync {
    /// Size in bytes.
    fn capacity(&self) -> u64;
    /// Logical sector size in bytes.
    fn sector_size(&self) -> u32;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), u32>;
    /// Fills all of `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), u32>;
    /// Makes written data durable (`fdatasync`).
    fn sync(&self) -> Result<(), u32>;
    /// Discards the whole device (`BLKDISCARD`); devices that cannot say `EOPNOTSUPP`.
    fn discard_all(&self) -> Result<(), u32> {
        Err(95)
    }
}

impl BlockDevice for crate::disk::Claimed {
    fn capacity(&self) -> u64 {
        self.capacity_bytes
    }
    fn sector_size(&self) -> u32 {
        self.logical_sector_size
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), u32> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset).map_err(|e| crate::sys::io_errno(&e))
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), u32> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset).map_err(|e| crate::sys::io_errno(&e))
    }
    fn sync(&self) -> Result<(), u32> {
        self.file.sync_data().map_err(|e| crate::sys::io_errno(&e))
    }
    fn discard_all(&self) -> Result<(), u32> {
        crate::sys::discard(&self.file, 0, self.capacity_bytes).map_err(|e| e.errno as u32)
    }
}

/// A heap buffer whose usable part starts on a 4096-byte boundary (for `O_DIRECT`).
pub struct AlignedBuf {
    v: Vec<u8>,
    off: usize,
    len: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

impl AlignedBuf {
    /// Alignment of every buffer.
    pub const ALIGN: usize = 4096;

    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> Self {
        let v = vec![0u8; len + Self::ALIGN];
        let off = v.as_ptr().align_offset(Self::ALIGN);
        Self { v, off, len }
    }

    /// The first `n` bytes.
    pub fn get(&self, n: usize) -> &[u8] {
        &self.v[self.off..self.off + n.min(self.len)]
    }

    /// The first `n` bytes, writable.
    pub fn get_mut(&mut self, n: usize) -> &mut [u8] {
        &mut self.v[self.off..self.off + n.min(self.len)]
    }
}

/// Writes `fill`'s bytes over `regions` (byte offset, length; sector-aligned), one region after the
/// other, and makes them durable. For the few MiB of sample positions, not for a whole disk.
pub fn write_regions(dev: &dyn BlockDevice, regions: &[(u64, u64)], fill: &Fill) -> Result<(), String> {
    let mut buf = AlignedBuf::new(CHUNK);
    for &(start, len) in regions {
        let mut at = start;
        while at < start + len {
            let n = usize::try_from((start + len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            let b = buf.get_mut(n);
            fill.fill(at, b);
            dev.write_at(buf.get(n), at)
                .map_err(|errno| format!("writing {n} bytes at {at}: errno {errno}"))?;
            at += n as u64;
        }
    }
    dev.sync().map_err(|errno| format!("fdatasync: errno {errno}"))
}

/// Result of one overwrite pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassResult {
    /// Bytes written without error.
    pub bytes_written: u64,
    /// Sectors that could not be written.
    pub errors: Vec<ErrorRange>,
    /// `fdatasync` failed with this errno.
    pub sync_errno: Option<u32>,
    /// Stopped by a signal before the end.
    pub interrupted: bool,
}

/// Result of reading regions back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Bytes read without error.
    pub bytes_read: u64,
    /// Unreadable sectors (`read`) and sectors with other content (`mismatch`).
    pub errors: Vec<ErrorRange>,
    /// Sectors that did not match (counted before any folding of ranges).
    pub mismatched_sectors: u64,
    /// blake3 of the regions' bytes in order; unreadable sectors count as zero bytes.
    pub blake3: String,
    /// Stopped by a signal before the end.
    pub interrupted: bool,
}

/// Bad sectors as (lba, errno), turned into merged ranges.
#[derive(Debug, Default)]
struct BadSectors(Vec<(u64, u32)>);

impl BadSectors {
    fn ranges(mut self, op: RangeOp) -> Vec<ErrorRange> {
        self.0.sort_unstable();
        let mut out: Vec<ErrorRange> = Vec::new();
        for (lba, errno) in self.0 {
            match out.last_mut() {
                Some(r) if r.lba + r.count == lba && r.errno == errno => r.count += 1,
                _ => out.push(ErrorRange {
                    op,
                    lba,
                    count: 1,
                    errno,
                }),
            }
        }
        fold(out)
    }
}

/// Keeps the certificate bounded: ranges past [`MAX_RANGES`] are folded into one covering range.
fn fold(mut v: Vec<ErrorRange>) -> Vec<ErrorRange> {
    if v.len() > MAX_RANGES {
        let tail = v.split_off(MAX_RANGES - 1);
        let first = &tail[0];
        let end = tail.iter().map(|r| r.lba + r.count).max().unwrap_or(first.lba + 1);
        v.push(ErrorRange {
            op: first.op,
            lba: first.lba,
            count: end - first.lba,
            errno: first.errno,
        });
    }
    v
}

/// Retries a failed range in halves down to single sectors; calls `bad` for every sector that fails
/// and returns the bytes that succeeded.
fn bisect(
    offset: u64,
    len: u64,
    sector: u64,
    errno: u32,
    op: &mut dyn FnMut(u64, u64) -> Result<(), u32>,
    bad: &mut dyn FnMut(u64, u32),
) -> u64 {
    if len <= sector {
        bad(offset / sector, errno);
        return 0;
    }
    let half = (len / sector / 2) * sector;
    let mut ok = 0;
    for (o, l) in [(offset, half), (offset + half, len - half)] {
        match op(o, l) {
            Ok(()) => ok += l,
            Err(e) => ok += bisect(o, l, sector, e, op, bad),
        }
    }
    ok
}

/// Splits byte regions into pieces of at most [`CHUNK`] bytes.
fn pieces(regions: &[(u64, u64)]) -> impl Iterator<Item = (u64, usize)> + '_ {
    let chunk = CHUNK as u64;
    regions.iter().flat_map(move |&(start, len)| {
        (0..len.div_ceil(chunk)).map(move |i| {
            let o = start + i * chunk;
            // At most CHUNK, so it fits in usize.
            (o, usize::try_from((len - i * chunk).min(chunk)).unwrap_or(CHUNK))
        })
    })
}

/// Overwrites the whole device once with `fill`, then `fdatasync`s it. [`WRITERS`] threads write
/// concurrently (positional writes, so order does not matter) to keep the device's queue busy.
/// `progress` gets the bytes done so far.
pub fn write_pass(
    dev: &dyn BlockDevice,
    fill: &Fill,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> PassResult {
    let cap = dev.capacity();
    let ss = u64::from(dev.sector_size());
    let regions = [(0, cap)];
    let written = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let interrupted = AtomicBool::new(false);
    let bad = Mutex::new(BadSectors::default());
    std::thread::scope(|s| {
        let (free_tx, free_rx) = sync_channel::<AlignedBuf>(BUFFERS + WRITERS);
        let (full_tx, full_rx) = sync_channel::<(u64, usize, AlignedBuf)>(BUFFERS);
        for _ in 0..BUFFERS + WRITERS {
            let _ = free_tx.send(AlignedBuf::new(CHUNK));
        }
        let regions = &regions;
        s.spawn(move || {
            for (off, len) in pieces(regions) {
                let Ok(mut b) = free_rx.recv() else { return };
                if !fill.is_constant() {
                    fill.fill(off, b.get_mut(len));
                }
                if full_tx.send((off, len, b)).is_err() {
                    return;
                }
            }
        });
        // Each writer owns a handle on the queue; when the last one stops, the queue closes and the
        // generator ends too.
        let full_rx = Arc::new(Mutex::new(full_rx));
        for _ in 0..WRITERS {
            let (full_rx, free_tx) = (Arc::clone(&full_rx), free_tx.clone());
            let (written, done, interrupted, bad) = (&written, &done, &interrupted, &bad);
            s.spawn(move || loop {
                let next = full_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                let Ok((off, len, b)) = next else { return };
                if stop.load(Ordering::Relaxed) {
                    interrupted.store(true, Ordering::Relaxed);
                    return;
                }
                let data = b.get(len);
                let mut bad_here = Vec::new();
                let ok = match dev.write_at(data, off) {
                    Ok(()) => len as u64,
                    Err(e) => bisect(
                        off,
                        len as u64,
                        ss,
                        e,
                        &mut |o, l| dev.write_at(&data[sub(off, o, l)], o),
                        &mut |lba, errno| bad_here.push((lba, errno)),
                    ),
                };
                if !bad_here.is_empty() {
                    if let Ok(mut b) = bad.lock() {
                        b.0.extend(bad_here);
                    }
                }
                written.fetch_add(ok, Ordering::Relaxed);
                progress(done.fetch_add(len as u64, Ordering::Relaxed) + len as u64);
                // The generator may have finished already; then the buffer is simply dropped.
                let _ = free_tx.send(b);
            });
        }
        drop(full_rx);
        drop(free_tx);
    });
    let mut res = PassResult {
        bytes_written: written.into_inner(),
        errors: bad.into_inner().unwrap_or_default().ranges(RangeOp::Write),
        sync_errno: None,
        interrupted: interrupted.into_inner(),
    };
    if !res.interrupted {
        res.sync_errno = dev.sync().err();
    }
    res
}

/// Reads `regions` (byte ranges, sector aligned, in device order), hashes them in order and, with
/// `expect`, compares them with the pattern.
pub fn read_back(
    dev: &dyn BlockDevice,
    regions: &[(u64, u64)],
    expect: Option<&Fill>,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> ReadResult {
    let ss = u64::from(dev.sector_size());
    let mut hasher = blake3::Hasher::new();
    // One region from offset 0 in whole chunks but the last (a full read-back): the readers hash
    // their pieces as subtrees in parallel and the calling thread only joins them.
    let tree = regions.len() == 1 && regions[0].0 == 0 && regions[0].1 > CHUNK as u64;
    let mut join = SubtreeJoin::default();
    let mut unreadable = BadSectors::default();
    let mut mismatched = BadSectors::default();
    let mut bytes_read = 0u64;
    let mut interrupted = false;
    std::thread::scope(|s| {
        let (free_tx, free_rx) = sync_channel::<AlignedBuf>(BUFFERS + READERS);
        let (full_tx, full_rx) = sync_channel::<Piece>(BUFFERS + READERS);
        for _ in 0..BUFFERS + READERS {
            let _ = free_tx.send(AlignedBuf::new(CHUNK));
        }
        // Readers: each takes a free buffer, then the next numbered piece, and reads it; unreadable
        // sectors are zeroed and listed. A reader holds its buffer before it takes a piece, so every
        // piece taken completes and the consumer below can put them back in order.
        let free_rx = Arc::new(Mutex::new(free_rx));
        let jobs = Arc::new(Mutex::new(pieces(regions).enumerate()));
        for _ in 0..READERS {
            let (free_rx, jobs, full_tx) = (Arc::clone(&free_rx), Arc::clone(&jobs), full_tx.clone());
            s.spawn(move || {
                let mut exp = vec![0u8; CHECK_BLOCK];
                loop {
                    let Ok(Ok(mut b)) = free_rx.lock().map(|rx| rx.recv()) else {
                        return;
                    };
                    let Some((seq, (off, len))) = jobs.lock().ok().and_then(|mut j| j.next()) else {
                        return;
                    };
                    let mut bad_here = Vec::new();
                    let buf = b.get_mut(len);
                    if let Err(e) = dev.read_at(buf, off) {
                        let mut bad_lbas = Vec::new();
                        bisect(
                            off,
                            len as u64,
                            ss,
                            e,
                            &mut |o, l| dev.read_at(&mut buf[sub(off, o, l)], o),
                            &mut |lba, errno| bad_lbas.push((lba, errno)),
                        );
                        for (lba, errno) in bad_lbas {
                            buf[sub(off, lba * ss, ss)].fill(0);
                            bad_here.push((lba, errno));
                        }
                    }
                    let data = b.get(len);
                    let (mism, cv) = check_piece(data, off, ss, expect, &bad_here, tree, &mut exp);
                    if full_tx.send((seq, off, len, b, bad_here, mism, cv)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(full_tx);
        let mut done = 0;
        let mut next = 0;
        let mut pending = std::collections::BTreeMap::new();
        'receive: for piece in full_rx {
            pending.insert(piece.0, piece);
            while let Some((_, _, len, b, bad_here, mism, cv)) = pending.remove(&next) {
                next += 1;
                if stop.load(Ordering::Relaxed) {
                    interrupted = true;
                    break 'receive;
                }
                bytes_read += len as u64 - bad_here.len() as u64 * ss;
                unreadable.0.extend(bad_here);
                mismatched.0.extend(mism.into_iter().map(|lba| (lba, 0)));
                match cv {
                    Some(cv) => join.push(cv),
                    None => {
                        hasher.update(b.get(len));
                    }
                }
                done += len as u64;
                progress(done);
                // The readers may have finished already; then the buffer is simply dropped.
                let _ = free_tx.send(b);
            }
        }
        drop(free_tx);
    });
    let mismatched_sectors = mismatched.0.len() as u64;
    let mut errors = unreadable.ranges(RangeOp::Read);
    errors.extend(mismatched.ranges(RangeOp::Mismatch));
    ReadResult {
        bytes_read,
        errors,
        mismatched_sectors,
        blake3: if tree {
            join.finish().unwrap_or_else(|| hasher.finalize())
        } else {
            hasher.finalize()
        }
        .to_hex()
        .to_string(),
        interrupted,
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    /// The chaining value of one piece of a stream at stream offset `offset`: a subtree of the BLAKE3
    /// tree when `offset` is a multiple of the piece size, a power of two of whole 1 KiB chunks (BLAKE3
    /// paper §2.1). Only the last piece may be shorter.
    fn piece_cv(offset: u64, data: &[u8]) -> ChainingValue {
        let mut h = blake3::Hasher::new();
        h.set_input_offset(offset);
        h.update(data);
        h.finalize_non_root()
    }

    /// Pieces hashed apart and joined give `blake3::hash` of the whole, for piece counts that exercise
    /// every shape of the stack (powers of two, one more, one less, a short last piece).
    #[test]
    fn joined_subtree_hashes_equal_the_plain_hash() {
        let piece = 8 * blake3::CHUNK_LEN;
        let data: Vec<u8> = (0..40 * piece).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
        for len in [
            piece + 1,
            2 * piece,
            2 * piece + 1,
            3 * piece,
            4 * piece - 1,
            4 * piece,
            5 * piece,
            7 * piece + 100,
            8 * piece,
            9 * piece,
            17 * piece + 1023,
            40 * piece,
        ] {
            let mut join = SubtreeJoin::default();
            for (i, p) in data[..len].chunks(piece).enumerate() {
                join.push(piece_cv((i * piece) as u64, p));
            }
            assert_eq!(join.finish(), Some(blake3::hash(&data[..len])), "{len} bytes");
        }
        let mut one = SubtreeJoin::default();
        one.push(piece_cv(0, &data[..piece]));
        assert_eq!(one.finish(), None, "a single piece is its own root");
    }
}
