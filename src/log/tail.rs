//! The tail cache: the messages a log wrote last, kept in memory so that a
//! consumer near the end reads them without touching a file or leaving its
//! async worker.
//!
//! **What it holds.** A contiguous run of offsets ending at the log's next
//! offset: every flush (see `Log::flush`) hands it the entries it has just
//! made readable, decoded into messages, before scanners are woken. The
//! payloads are slices of one allocation per flush (a copy of the write
//! buffer, or the plain messages of a compressed set), so filling it costs
//! one allocation and one copy per flush, not per message. An entry is only
//! ever added after it was written (and, with `fsync = always`, fsynced) and
//! published, so the cache never shows a reader anything the log would not.
//!
//! **Bounds.** A cache is a queue of blocks, one per flush (plus one per
//! compressed set): the allocation its messages share and a small table of
//! where each message lies. It counts what it really holds: each block's
//! bytes (frames included), [`MESSAGE_OVERHEAD`] bytes per message and a
//! little per block. Each log's cache holds at most [`TAIL_CACHE_BYTES`]
//! (default 2 MiB) and every log of the process together at most
//! [`TAIL_CACHE_TOTAL_BYTES`] (default 128 MiB). Past its own bound a cache
//! drops its oldest blocks; past the total, the cache being filled drops its
//! own oldest until the total fits (idle topics keep theirs, so a busy topic
//! cannot flush out everyone else's), and caches nothing if it cannot. A
//! flush larger than [`MAX_CACHED_FLUSH`] (16 KiB) or the per-log bound
//! empties the cache instead of being cached (large batches are read from
//! the page cache, many messages per read). Filling costs one copy per flush and no atomic operation per
//! message; a read clones the handles of the messages it returns.
//!
//! **Reading.** A lookup takes the cache's read lock for as long as it
//! takes to clone a few `Bytes` handles (reference counts, no copy). Offsets
//! below the cache (older data, or a run cut by retention) are the log's to
//! read, from disk, on the blocking pool.

use std::collections::VecDeque;
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use crate::lock::Recover;
use crate::message::Message;

/// Default bound of one log's tail cache: 2 MiB of payload and overhead.
pub const TAIL_CACHE_BYTES: usize = 2 << 20;
/// Default bound of every tail cache of the process together: 128 MiB.
pub const TAIL_CACHE_TOTAL_BYTES: usize = 128 << 20;
/// Bytes counted per cached message on top of the bytes it shares (its
/// position, length, CRC and format, padded), and per flush for its
/// bookkeeping.
pub const MESSAGE_OVERHEAD: usize = 16;
const BLOCK_OVERHEAD: usize = 64;

static PER_LOG: AtomicUsize = AtomicUsize::new(TAIL_CACHE_BYTES);
static TOTAL_CAP: AtomicUsize = AtomicUsize::new(TAIL_CACHE_TOTAL_BYTES);
static TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Sets the per-log and process-wide bounds (0 turns the cache off); the
/// config calls it at start-up. Takes effect at the next flush.
pub fn set_tail_cache_limits(per_log: usize, total: usize) {
    PER_LOG.store(per_log, Ordering::Relaxed);
    TOTAL_CAP.store(total, Ordering::Relaxed);
}

/// Bytes held by every tail cache of the process now, as counted against
/// the total bound.
pub fn tail_cache_bytes() -> usize {
    TOTAL.load(Ordering::Relaxed)
}

/// Largest flush the cache takes: 16 KiB. Copying larger ones cost batch
/// publishes 6% of their throughput, and their consumers gain little from
/// it: a reader reads a large flush from the page cache in one go.
pub const MAX_CACHED_FLUSH: usize = 16 << 10;

/// Whether a flush of `len` bytes may go to a cache at all (at most
/// [`MAX_CACHED_FLUSH`] and the per-log bound): a larger one is not even
/// copied, and empties the cache.
pub(crate) fn cacheable(len: usize) -> bool {
    len <= MAX_CACHED_FLUSH.min(PER_LOG.load(Ordering::Relaxed))
}

/// Messages that share one allocation (a flush's copy of the write buffer,
/// or a compressed set's plain messages), with consecutive offsets.
pub(crate) struct Block {
    data: Bytes,
    /// `(position, length, crc)` of each message's payload in `data`.
    msgs: Vec<(u32, u32, u32, u8)>,
}

impl Block {
    /// A block over `data`, to which [`Block::push`] adds messages.
    pub(crate) fn new(data: Bytes) -> Block {
        Block {
            data,
            msgs: Vec::new(),
        }
    }

    /// Adds the message whose payload is `data[at..at + len]`; `None` if it
    /// lies outside `data`.
    pub(crate) fn push(&mut self, at: usize, len: usize, crc: u32, format: u8) -> Option<()> {
        let end = at.checked_add(len)?;
        if end > self.data.len() {
            return None;
        }
        self.msgs.push((
            u32::try_from(at).ok()?,
            u32::try_from(len).ok()?,
            crc,
            format,
        ));
        Some(())
    }

    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    fn cost(&self) -> usize {
        self.data.len() + self.msgs.len() * MESSAGE_OVERHEAD + BLOCK_OVERHEAD
    }

    fn message(&self, i: usize, offset: u64) -> Message {
        let (at, len, crc, format) = self.msgs[i];
        let at = at as usize;
        Message {
            offset,
            crc,
            payload: self.data.slice(at..at + len as usize),
            format,
        }
    }
}

#[derive(Default)]
struct Run {
    /// Offset of the first message of `blocks[0]`.
    start: u64,
    /// Offset of each block's first message, beside `blocks`.
    firsts: VecDeque<u64>,
    blocks: VecDeque<Block>,
    /// Offset after the last message.
    end: u64,
    bytes: usize,
}

impl Run {
    fn pop_front(&mut self) -> bool {
        match self.blocks.pop_front() {
            Some(b) => {
                let cost = b.cost();
                self.bytes -= cost;
                TOTAL.fetch_sub(cost, Ordering::Relaxed);
                self.firsts.pop_front();
                self.start = self.firsts.front().copied().unwrap_or(self.end);
                true
            }
            None => false,
        }
    }

    fn clear(&mut self, at: u64) {
        TOTAL.fetch_sub(self.bytes, Ordering::Relaxed);
        self.blocks.clear();
        self.firsts.clear();
        self.bytes = 0;
        self.start = at;
        self.end = at;
    }
}

/// One log's tail cache. See the module docs.
#[derive(Default)]
pub(crate) struct TailCache {
    run: RwLock<Run>,
}

/// The messages of one flush, in offset order, for [`TailCache::extend`].
pub(crate) struct Fill {
    /// Offset of the first message.
    pub(crate) first: u64,
    pub(crate) blocks: Vec<Block>,
}

impl TailCache {
    /// Adds the messages of one flush, which start where the log ended
    /// before it. A fill that does not follow the cached run (a flush that
    /// could not be decoded came between) restarts the run; `None` (the
    /// flush is not cacheable) empties it at `next`, the log's new end.
    pub(crate) fn extend(&self, fill: Option<Fill>, next: u64) {
        let per_log = PER_LOG.load(Ordering::Relaxed);
        let mut run = self.run.write().recover();
        let mut fill = match fill {
            Some(f) if per_log > 0 => f,
            _ => return run.clear(next),
        };
        fill.blocks.retain(|b| b.len() > 0);
        let cost: usize = fill.blocks.iter().map(Block::cost).sum();
        if cost > per_log {
            return run.clear(next);
        }
        if run.end != fill.first {
            run.clear(fill.first);
        }
        // Room in this log's own bound, then in the process's.
        while run.bytes + cost > per_log && run.pop_front() {}
        let total_cap = TOTAL_CAP.load(Ordering::Relaxed);
        while TOTAL.load(Ordering::Relaxed) + cost > total_cap && run.pop_front() {}
        if TOTAL.load(Ordering::Relaxed) + cost > total_cap {
            return run.clear(next);
        }
        TOTAL.fetch_add(cost, Ordering::Relaxed);
        run.bytes += cost;
        let mut first = fill.first;
        for block in fill.blocks {
            if run.blocks.is_empty() {
                run.start = first;
            }
            run.firsts.push_back(first);
            first += block.len() as u64;
            run.blocks.push_back(block);
        }
        run.end = first;
        debug_assert_eq!(run.end, next);
    }

    /// Up to `max` messages from `offset`, stopping after the message that
    /// reaches `max_bytes` of payload; `None` when the cache does not hold
    /// `offset`.
    pub(crate) fn read(&self, offset: u64, max: usize, max_bytes: usize) -> Option<Vec<Message>> {
        let run = self.run.read().recover();
        if offset < run.start || offset >= run.end {
            return None;
        }
        let b = run.firsts.partition_point(|&f| f <= offset) - 1;
        let mut out = Vec::with_capacity(max.clamp(1, 1024));
        let (mut bytes, mut at) = (0, offset);
        for (block, &first) in run.blocks.iter().zip(run.firsts.iter()).skip(b) {
            let mut i = (at - first) as usize;
            while i < block.len() {
                if out.len() >= max.max(1) || (!out.is_empty() && bytes >= max_bytes) {
                    return Some(out);
                }
                let m = block.message(i, at);
                bytes += m.payload.len();
                out.push(m);
                at += 1;
                i += 1;
            }
        }
        Some(out)
    }

    /// Whether the cache holds `offset`.
    #[cfg(test)]
    fn holds(&self, offset: u64) -> bool {
        let run = self.run.read().recover();
        offset >= run.start && offset < run.end
    }
}

impl Drop for TailCache {
    fn drop(&mut self) {
        let run = self.run.get_mut().recover();
        TOTAL.fetch_sub(run.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(first: u64, payloads: &[&'static [u8]]) -> Option<Fill> {
        let data = Bytes::from(payloads.concat());
        let mut block = Block::new(data);
        let mut at = 0;
        for p in payloads {
            block.push(at, p.len(), crc32fast::hash(p), 0).unwrap();
            at += p.len();
        }
        Some(Fill {
            first,
            blocks: vec![block],
        })
    }

    /// Reads answer only for offsets the run holds, with the right offsets
    /// and payloads, and stop at the count and byte bounds.
    #[test]
    fn reads_what_it_holds_and_nothing_else() {
        let c = TailCache::default();
        c.extend(fill(10, &[b"a", b"bb", b"ccc"]), 13);
        assert!(c.read(9, 10, 100).is_none());
        assert!(c.read(13, 10, 100).is_none());
        let all = c.read(10, 10, 100).unwrap();
        let got: Vec<_> = all.iter().map(|m| (m.offset, &m.payload[..])).collect();
        assert_eq!(got, vec![(10, &b"a"[..]), (11, b"bb"), (12, b"ccc")]);
        assert_eq!(all[1].crc, crc32fast::hash(b"bb"));
        assert_eq!(c.read(11, 1, 100).unwrap().len(), 1);
        assert_eq!(
            c.read(10, 10, 3).unwrap().len(),
            2,
            "stops at the byte bound"
        );
        // A fill that does not follow restarts the run.
        c.extend(fill(20, &[b"x"]), 21);
        assert!(c.read(12, 10, 100).is_none());
        assert_eq!(&c.read(20, 10, 100).unwrap()[0].payload[..], b"x");
        // An uncacheable flush empties it.
        c.extend(None, 25);
        assert!(!c.holds(20));
    }

    /// A log's cache keeps to its bound by dropping its oldest messages.
    #[test]
    fn keeps_to_its_bound() {
        let c = TailCache::default();
        let per = PER_LOG.load(Ordering::Relaxed);
        static BIG: [u8; 4096] = [7; 4096];
        let n = per / BIG.len() + 10;
        for i in 0..n as u64 {
            c.extend(fill(i, &[&BIG]), i + 1);
        }
        let run = c.run.read().unwrap();
        assert!(run.bytes <= per, "{} > {per}", run.bytes);
        assert_eq!(run.end, n as u64);
        assert!(run.start > 0);
    }
}
