//! A group's bookkeeping in memory: which offsets are done, which are out
//! on a lease or waiting to go out again, and the rules that move them.
//!
//! Pure and synchronous: no clock of its own (every call is given `now`),
//! no file, no topic. `Group` (in `mod.rs`) holds it under a mutex and
//! writes a journal record for each change it makes; replaying those
//! records through [`State::replay`] rebuilds it after a restart.
//!
//! The model (see `consumer-groups.md`): every offset below the lowest
//! pending one and below `next` is done; `next` is the lowest offset never
//! delivered; `pending` holds the rest, each entry leased (until its
//! deadline) or waiting (until it may go out again). A lease names one
//! delivery, `offset.deliveries.generation.tag`: it is current while its entry is
//! pending with the same delivery count; a seek makes every lease issued
//! before it stale. Two indexes keep the hot operations logarithmic at a
//! million pending entries: `timers` orders the deadlines and the times
//! waiting entries become available, `ready` the waiting entries whose time
//! has come.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::clock::Tick;

/// Longest lease text accepted (the spec's bound on the opaque string).
pub(crate) const MAX_LEASE_LEN: usize = 512;

/// A parsed lease: which delivery of which offset, in which group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) offset: u64,
    pub(crate) deliveries: u32,
    pub(crate) generation: u32,
    pub(crate) tag: String,
}

impl Lease {
    /// Reads `offset.deliveries.generation.tag`; `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Lease> {
        if text.len() > MAX_LEASE_LEN {
            return None;
        }
        let mut parts = text.split('.');
        fn number(p: Option<&str>) -> Option<&str> {
            p.filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        }
        let offset = number(parts.next())?.parse().ok()?;
        let deliveries = number(parts.next())?.parse().ok()?;
        let generation = number(parts.next())?.parse().ok()?;
        let tag = parts.next()?;
        if parts.next().is_some()
            || deliveries == 0
            || tag.is_empty()
            || !tag.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        Some(Lease {
            offset,
            deliveries,
            generation,
            tag: tag.to_string(),
        })
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Lease {
    /// The lease as its clients see it, `offset.deliveries.generation.tag`,
    /// made without the formatting machinery (one per delivered message).
    pub(crate) fn text(&self) -> String {
        let mut digits = itoa::Buffer::new();
        let mut out = String::with_capacity(32 + self.tag.len());
        out.push_str(digits.format(self.offset));
        out.push('.');
        out.push_str(digits.format(self.deliveries));
        out.push('.');
        out.push_str(digits.format(self.generation));
        out.push('.');
        out.push_str(&self.tag);
        out
    }
}

/// Where a pending entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pend {
    /// Out on a lease until its deadline.
    Leased,
    /// Back from a nack or an expiry, available from its time on.
    Waiting,
    /// To be dead-lettered; the write failed and is retried.
    Parked,
    /// Ordering by key: another offset of its key is pending; it becomes
    /// waiting when that one is done.
    Blocked,
}

impl Pend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Pend::Leased => "leased",
            Pend::Waiting => "waiting",
            Pend::Parked => "parked",
            Pend::Blocked => "blocked",
        }
    }
}

/// One pending offset.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    /// Times delivered so far.
    pub(crate) deliveries: u32,
    /// The generation its last delivery was made in.
    pub(crate) generation: u32,
    pub(crate) state: Pend,
    /// The deadline (leased) or the time it becomes available (waiting).
    pub(crate) at: Tick,
    /// When the current delivery was made (for `max_lease_time`).
    pub(crate) since: Tick,
}

/// What happened to one settled lease (the `result` of the answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acked,
    AckedLate,
    Done,
    Nacked,
    Extended {
        clamped: bool,
    },
    /// To be dead-lettered by the caller (it moved to `Parked`).
    DeadLetter,
    Dropped,
    /// Not current: delivered again since (the replacing delivery count),
    /// or issued before a seek (`None`).
    Expired(Option<u32>),
    /// Never delivered, or another group's.
    NotFound,
}

impl Outcome {
    /// The result word of the answer.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::AckedLate => "acked_late",
            Outcome::Done => "done",
            Outcome::Nacked => "nacked",
            Outcome::Extended { .. } => "extended",
            Outcome::DeadLetter => "dead_lettered",
            Outcome::Dropped => "dropped",
            Outcome::Expired(_) => "expired",
            Outcome::NotFound => "not_found",
        }
    }
}

/// Counters of a group's life (group info and metrics).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Counters {
    pub(crate) delivered: u64,
    pub(crate) redelivered: u64,
    pub(crate) acked: u64,
    pub(crate) acked_late: u64,
    pub(crate) nacked: u64,
    pub(crate) expired: u64,
    pub(crate) extended: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) dropped: u64,
    pub(crate) lost_to_retention: u64,
    /// Messages that failed their checksum, set aside.
    pub(crate) damaged: u64,
    /// Dead letters by reason (`dead_lettered` is their sum).
    #[serde(skip)]
    pub(crate) dead_max_deliveries: u64,
    #[serde(skip)]
    pub(crate) dead_rejected: u64,
    #[serde(skip)]
    pub(crate) dead_damaged: u64,
}

/// Why a message is dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    MaxDeliveries,
    Rejected,
    /// It fails its checksum: the letter carries no value.
    Damaged,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::MaxDeliveries => "max_deliveries",
            Reason::Rejected => "rejected",
            Reason::Damaged => "damaged",
        }
    }
}

/// What settles and deliveries may do, from the group's settings.
#[derive(Clone, Debug)]
pub(crate) struct Rules {
    pub(crate) lease_time: Duration,
    pub(crate) max_lease_time: Duration,
    /// 0: unlimited.
    pub(crate) max_deliveries: u32,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) max_pending: usize,
    /// Whether failures go to a dead-letter topic (else they are dropped).
    pub(crate) dead_letter: bool,
    /// `ordering = "key"`: one message per key pending at a time.
    pub(crate) by_key: bool,
}

impl Rules {
    /// The wait after the `deliveries`-th failed delivery.
    pub(crate) fn backoff(&self, deliveries: u32) -> Duration {
        match self.backoff.len() {
            0 => Duration::ZERO,
            n => self.backoff[(deliveries.max(1) as usize).min(n) - 1],
        }
    }

    /// Whether a message delivered `deliveries` times has used them all.
    fn exhausted(&self, deliveries: u32) -> bool {
        self.max_deliveries > 0 && deliveries >= self.max_deliveries
    }
}

/// A group's state. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) next: u64,
    pub(crate) generation: u32,
    /// Leases of a generation below this were issued before a seek.
    pub(crate) seek_generation: u32,
    pending: Pending,
    timers: BTreeSet<(Tick, u64)>,
    ready: BTreeSet<u64>,
    /// Ordering by key: who holds each key, and who waits for it.
    keys: KeyOrder,
    /// Why each parked entry is parked (rejected, damaged; else out of
    /// deliveries), with the error text to carry, if any. In memory only:
    /// after a restart a parked entry's letter says `max_deliveries`.
    reasons: BTreeMap<u64, (Reason, Option<Box<str>>)>,
    pub(crate) counters: Counters,
}

/// The pending entries by offset, with how many are in each [`Pend`]
/// state, kept as they change: the counts are read on every empty receive,
/// group info and metrics scrape, which must not walk a million entries.
#[derive(Debug, Default)]
struct Pending {
    entries: BTreeMap<u64, Entry>,
    by_state: [usize; 4],
}

impl Pending {
    fn insert(&mut self, offset: u64, entry: Entry) -> Option<Entry> {
        self.by_state[entry.state as usize] += 1;
        let old = self.entries.insert(offset, entry);
        if let Some(old) = &old {
            self.by_state[old.state as usize] -= 1;
        }
        old
    }

    fn remove(&mut self, offset: &u64) -> Option<Entry> {
        let old = self.entries.remove(offset)?;
        self.by_state[old.state as usize] -= 1;
        Some(old)
    }

    /// The entry at `offset`, to change; its state is counted again when
    /// the handle goes.
    fn get_mut(&mut self, offset: &u64) -> Option<EntryMut<'_>> {
        let entry = self.entries.get_mut(offset)?;
        let was = entry.state;
        Some(EntryMut {
            entry,
            was,
            by_state: &mut self.by_state,
        })
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.by_state = [0; 4];
    }
}

impl std::ops::Deref for Pending {
    type Target = BTreeMap<u64, Entry>;
    fn deref(&self) -> &BTreeMap<u64, Entry> {
        &self.entries
    }
}

/// A pending entry being changed (see [`Pending::get_mut`]).
struct EntryMut<'a> {
    entry: &'a mut Entry,
    was: Pend,
    by_state: &'a mut [usize; 4],
}

impl std::ops::Deref for EntryMut<'_> {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        self.entry
    }
}

impl std::ops::DerefMut for EntryMut<'_> {
    fn deref_mut(&mut self) -> &mut Entry {
        self.entry
    }
}

impl Drop for EntryMut<'_> {
    fn drop(&mut self) {
        if self.entry.state != self.was {
            self.by_state[self.was as usize] -= 1;
            self.by_state[self.entry.state as usize] += 1;
        }
    }
}

/// Ordering by key, for the pending entries whose key is known (a key is
/// known once its message has been read: on receive, or when the group
/// opens). Keys are kept as 64-bit hashes; two keys sharing a hash are
/// ordered together, which is safe. Empty for groups without it.
#[derive(Debug, Default)]
struct KeyOrder {
    /// Key hash of each pending offset that has a key.
    key_of: HashMap<u64, u64>,
    /// Per key: the offset that holds it (the lowest pending one), and the
    /// blocked offsets after it, lowest first.
    lines: HashMap<u64, (u64, VecDeque<u64>)>,
}

/// A record of the journal, as the state sees it (`journal.rs` encodes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The state restarts here: everything below `next` and not pending is done.
    Base {
        next: u64,
    },
    Deliver {
        offset: u64,
        deliveries: u32,
        generation: u32,
        lease_ms: u64,
    },
    Ack {
        offset: u64,
    },
    Nack {
        offset: u64,
        delay_ms: u64,
    },
    Extend {
        offset: u64,
        lease_ms: u64,
    },
    /// Gone to the dead-letter topic.
    Dead {
        offset: u64,
    },
    /// Rejected without a dead-letter topic.
    Drop {
        offset: u64,
    },
    /// Removed by retention before it was done.
    Lost {
        offset: u64,
    },
    /// Handed back undelivered (cut from an answer by its byte bound).
    Release {
        offset: u64,
        deliveries: u32,
    },
    /// Pending cleared, everything from `to` on undelivered.
    Seek {
        to: u64,
        generation: u32,
    },
    /// Retention removed everything below `to` before it was delivered.
    Skip {
        to: u64,
    },
}

impl State {
    /// A fresh group whose first offset is `from`.
    pub(crate) fn new(from: u64, generation: u32) -> State {
        State {
            next: from,
            generation,
            ..State::default()
        }
    }

    /// Every offset below this is done.
    pub(crate) fn floor(&self) -> u64 {
        self.pending.keys().next().copied().unwrap_or(self.next)
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Pending entries by state: leased, waiting, parked.
    pub(crate) fn pending_by_state(&self) -> [usize; 4] {
        self.pending.by_state
    }

    /// The lowest pending offset and when its current delivery was made.
    pub(crate) fn oldest_pending(&self) -> Option<(u64, Tick)> {
        self.pending.iter().next().map(|(o, e)| (*o, e.since))
    }

    /// The entries from `from` on, at most `max`.
    pub(crate) fn pending_from(&self, from: u64, max: usize) -> Vec<(u64, Entry)> {
        self.pending
            .range(from..)
            .take(max)
            .map(|(o, e)| (*o, e.clone()))
            .collect()
    }

    fn set_timer(&mut self, offset: u64, at: Tick) {
        self.timers.insert((at, offset));
    }

    fn clear_timer(&mut self, offset: u64, entry: &Entry) {
        self.timers.remove(&(entry.at, offset));
        self.ready.remove(&offset);
    }

    fn remove(&mut self, offset: u64) -> Option<Entry> {
        let entry = self.pending.remove(&offset)?;
        self.clear_timer(offset, &entry);
        self.release_key(offset);
        Some(entry)
    }

    /// `offset` (with `key`, a hash; `None`: no key) was picked for
    /// delivery: whether it may go out. Under ordering by key it may not
    /// while a lower offset of its key is pending; it is then blocked
    /// (after the caller has released it) until that one is done.
    pub(crate) fn admit(&mut self, offset: u64, key: Option<u64>) -> bool {
        let Some(key) = key else {
            return true;
        };
        self.keys.key_of.insert(offset, key);
        match self.keys.lines.get_mut(&key) {
            None => {
                self.keys.lines.insert(key, (offset, VecDeque::new()));
                true
            }
            Some((holder, _)) if *holder == offset => true,
            Some((holder, queue)) => {
                if offset < *holder {
                    // Known late (at open, in offset order this cannot
                    // happen; kept safe anyway): the lower one holds.
                    queue.push_front(*holder);
                    *holder = offset;
                    return true;
                }
                if !queue.contains(&offset) {
                    let at = queue.partition_point(|&o| o < offset);
                    queue.insert(at, offset);
                }
                false
            }
        }
    }

    /// Marks `offset` blocked (see [`State::admit`]): out of the ready set
    /// and the timers, until its key is free.
    pub(crate) fn block(&mut self, offset: u64) {
        let Some(mut entry) = self.pending.remove(&offset) else {
            return;
        };
        self.clear_timer(offset, &entry);
        self.ready.remove(&offset);
        entry.state = Pend::Blocked;
        self.pending.insert(offset, entry);
    }

    /// `offset` is done: if it held its key, the next blocked offset of the
    /// key holds it now and becomes available.
    fn release_key(&mut self, offset: u64) {
        let Some(key) = self.keys.key_of.remove(&offset) else {
            return;
        };
        let Some((holder, queue)) = self.keys.lines.get_mut(&key) else {
            return;
        };
        if *holder != offset {
            queue.retain(|&o| o != offset);
            return;
        }
        while let Some(next) = queue.pop_front() {
            if let Some(mut entry) = self.pending.get_mut(&next) {
                *holder = next;
                if entry.state == Pend::Blocked {
                    entry.state = Pend::Waiting;
                    self.ready.insert(next);
                }
                return;
            }
        }
        self.keys.lines.remove(&key);
    }

    /// Puts `offset` back to waiting, available at `at`.
    fn wait(&mut self, offset: u64, at: Tick, now: Tick) {
        let Some(mut entry) = self.pending.remove(&offset) else {
            return;
        };
        self.clear_timer(offset, &entry);
        entry.state = Pend::Waiting;
        entry.at = at;
        if at <= now {
            self.ready.insert(offset);
        } else {
            self.set_timer(offset, at);
        }
        self.pending.insert(offset, entry);
    }

    /// When the soonest timer (a lease's end, a nack's or backoff's delay)
    /// runs out, if any is set.
    pub(crate) fn next_due(&self) -> Option<Tick> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Moves what is due at `now`: leases past their deadline expire (to
    /// waiting after their backoff, or to be dead-lettered when out of
    /// deliveries: returned), waiting entries whose time came become ready.
    /// Returns the offsets to dead-letter and how many became available.
    pub(crate) fn tick(&mut self, now: Tick, rules: &Rules) -> (Vec<u64>, usize) {
        let mut dead = Vec::new();
        let mut freed = 0;
        while let Some(&(at, offset)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            let Some(entry) = self.pending.get(&offset) else {
                continue;
            };
            if entry.at != at {
                continue;
            }
            let deliveries = entry.deliveries;
            match entry.state {
                Pend::Leased if rules.exhausted(deliveries) => {
                    self.counters.expired += 1;
                    if let Some(mut entry) = self.pending.get_mut(&offset) {
                        entry.state = Pend::Parked;
                    }
                    dead.push(offset);
                }
                Pend::Leased => {
                    self.counters.expired += 1;
                    let available = now + rules.backoff(deliveries);
                    self.wait(offset, available, now);
                    if available <= now {
                        freed += 1;
                    }
                }
                Pend::Waiting => {
                    self.ready.insert(offset);
                    freed += 1;
                }
                Pend::Parked | Pend::Blocked => {}
            }
        }
        (dead, freed)
    }

    /// Picks up to `max` offsets to deliver now: waiting ones whose time
    /// has come, lowest first, then new ones from `next` below `end` while
    /// fewer than `max_pending` are pending. Each is leased until
    /// `now + lease` and returned with its change for the journal.
    pub(crate) fn deliver(
        &mut self,
        max: usize,
        end: u64,
        lease: Duration,
        now: Tick,
        rules: &Rules,
    ) -> Vec<(Lease, Change)> {
        self.tick(now, rules);
        let mut out = Vec::new();
        let lease_ms = lease.as_millis() as u64;
        while out.len() < max {
            let offset = match self.ready.pop_first() {
                Some(offset) => offset,
                None if self.next < end && self.pending.len() < rules.max_pending => {
                    self.next += 1;
                    self.pending.insert(
                        self.next - 1,
                        Entry {
                            deliveries: 0,
                            generation: self.generation,
                            state: Pend::Waiting,
                            at: now,
                            since: now,
                        },
                    );
                    self.next - 1
                }
                None => break,
            };
            let generation = self.generation;
            let Some(mut entry) = self.pending.get_mut(&offset) else {
                continue;
            };
            let at = now + lease;
            entry.deliveries = entry.deliveries.saturating_add(1);
            entry.generation = generation;
            entry.state = Pend::Leased;
            entry.at = at;
            entry.since = now;
            let deliveries = entry.deliveries;
            self.timers.insert((at, offset));
            if deliveries == 1 {
                self.counters.delivered += 1;
            } else {
                self.counters.redelivered += 1;
            }
            out.push((
                Lease {
                    offset,
                    deliveries,
                    generation,
                    tag: String::new(),
                },
                Change::Deliver {
                    offset,
                    deliveries,
                    generation,
                    lease_ms,
                },
            ));
        }
        out
    }

    /// Hands back a delivery that was never answered (cut by a byte bound):
    /// its count goes back and it is available at once.
    pub(crate) fn release(&mut self, offset: u64, now: Tick) -> Option<Change> {
        let deliveries = {
            let mut entry = self.pending.get_mut(&offset)?;
            entry.deliveries = entry.deliveries.saturating_sub(1);
            entry.deliveries
        };
        if deliveries == 0 {
            self.counters.delivered = self.counters.delivered.saturating_sub(1);
        } else {
            self.counters.redelivered = self.counters.redelivered.saturating_sub(1);
        }
        self.wait(offset, now, now);
        Some(Change::Release { offset, deliveries })
    }

    /// Whether `lease` names the current delivery of a pending entry: its
    /// outcome when it does not.
    fn current(&self, lease: &Lease) -> Result<(), Outcome> {
        if lease.generation < self.seek_generation {
            return Err(Outcome::Expired(None));
        }
        match self.pending.get(&lease.offset) {
            Some(e) if e.deliveries == lease.deliveries => Ok(()),
            Some(e) if e.deliveries > lease.deliveries => Err(Outcome::Expired(Some(e.deliveries))),
            // A count above the entry's was never handed out.
            Some(_) => Err(Outcome::NotFound),
            None if lease.offset < self.next => Err(Outcome::Done),
            None => Err(Outcome::NotFound),
        }
    }

    /// Acks `lease`.
    pub(crate) fn ack(&mut self, lease: &Lease) -> (Outcome, Option<Change>) {
        let offset = lease.offset;
        match self.current(lease) {
            Ok(()) => {
                self.remove(offset);
                self.counters.acked += 1;
                (Outcome::Acked, Some(Change::Ack { offset }))
            }
            Err(Outcome::Expired(Some(_))) => {
                // Applied: another worker may be processing it too.
                self.remove(offset);
                self.counters.acked_late += 1;
                (Outcome::AckedLate, Some(Change::Ack { offset }))
            }
            Err(other) => (other, None),
        }
    }

    /// Nacks `lease`: waiting for `delay` (default: the backoff), or out of
    /// deliveries (to be dead-lettered or dropped by the caller).
    pub(crate) fn nack(
        &mut self,
        lease: &Lease,
        delay: Option<Duration>,
        now: Tick,
        rules: &Rules,
    ) -> (Outcome, Option<Change>) {
        let offset = lease.offset;
        if let Err(outcome) = self.current(lease) {
            let outcome = match outcome {
                Outcome::Done => Outcome::Expired(None),
                other => other,
            };
            return (outcome, None);
        }
        self.counters.nacked += 1;
        if rules.exhausted(lease.deliveries) {
            return self.fail(offset, rules, Reason::MaxDeliveries, None);
        }
        let delay = delay.unwrap_or_else(|| rules.backoff(lease.deliveries));
        self.wait(offset, now + delay, now);
        let delay_ms = delay.as_millis() as u64;
        (Outcome::Nacked, Some(Change::Nack { offset, delay_ms }))
    }

    /// Extends `lease` by `lease_time` from now, held at most
    /// `max_lease_time` from its delivery. Allowed while the message has not
    /// gone out again, even past the deadline.
    pub(crate) fn extend(
        &mut self,
        lease: &Lease,
        lease_time: Duration,
        now: Tick,
        rules: &Rules,
    ) -> (Outcome, Option<Change>) {
        let offset = lease.offset;
        if let Err(outcome) = self.current(lease) {
            let outcome = match outcome {
                Outcome::Done => Outcome::Expired(None),
                other => other,
            };
            return (outcome, None);
        }
        let Some(mut entry) = self.pending.remove(&offset) else {
            return (Outcome::NotFound, None);
        };
        if entry.state == Pend::Parked {
            self.pending.insert(offset, entry);
            return (Outcome::Expired(None), None);
        }
        self.clear_timer(offset, &entry);
        let limit = entry.since + rules.max_lease_time;
        let wanted = now + lease_time;
        let clamped = wanted > limit;
        entry.at = wanted.min(limit).max(now);
        entry.state = Pend::Leased;
        self.timers.insert((entry.at, offset));
        let lease_ms = entry.at.duration_since(now).as_millis() as u64;
        self.pending.insert(offset, entry);
        self.counters.extended += 1;
        (
            Outcome::Extended { clamped },
            Some(Change::Extend { offset, lease_ms }),
        )
    }

    /// Rejects `lease`: dead-lettered (by the caller) or dropped.
    pub(crate) fn reject(
        &mut self,
        lease: &Lease,
        rules: &Rules,
        error: Option<&str>,
    ) -> (Outcome, Option<Change>) {
        if let Err(outcome) = self.current(lease) {
            let outcome = match outcome {
                Outcome::Done => Outcome::Expired(None),
                other => other,
            };
            return (outcome, None);
        }
        self.fail(lease.offset, rules, Reason::Rejected, error)
    }

    /// A delivery that will never succeed: parked for the dead-letter
    /// write, or dropped when there is no dead-letter topic.
    fn fail(
        &mut self,
        offset: u64,
        rules: &Rules,
        reason: Reason,
        error: Option<&str>,
    ) -> (Outcome, Option<Change>) {
        if rules.dead_letter {
            self.reasons.insert(offset, (reason, error.map(Box::from)));
            if let Some(mut entry) = self.pending.remove(&offset) {
                self.clear_timer(offset, &entry);
                entry.state = Pend::Parked;
                self.pending.insert(offset, entry);
            }
            (Outcome::DeadLetter, None)
        } else {
            self.remove(offset);
            self.counters.dropped += 1;
            (Outcome::Dropped, Some(Change::Drop { offset }))
        }
    }

    /// The dead-letter write of `offset` succeeded.
    pub(crate) fn dead(&mut self, offset: u64) -> Option<Change> {
        self.remove(offset)?;
        self.counters.dead_lettered += 1;
        match self.reasons.remove(&offset).map(|(r, _)| r) {
            None | Some(Reason::MaxDeliveries) => self.counters.dead_max_deliveries += 1,
            Some(Reason::Rejected) => self.counters.dead_rejected += 1,
            Some(Reason::Damaged) => self.counters.dead_damaged += 1,
        }
        Some(Change::Dead { offset })
    }

    /// Why `offset` is parked, and the error text its letter carries.
    pub(crate) fn reason(&self, offset: u64) -> (Reason, Option<&str>) {
        self.reasons
            .get(&offset)
            .map_or((Reason::MaxDeliveries, None), |(r, e)| (*r, e.as_deref()))
    }

    /// Offsets parked for a dead-letter write.
    pub(crate) fn parked(&self) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, e)| e.state == Pend::Parked)
            .map(|(o, _)| *o)
            .collect()
    }

    /// `offset` was removed by retention before it was done.
    pub(crate) fn lost(&mut self, offset: u64) -> Option<Change> {
        self.remove(offset)?;
        self.counters.lost_to_retention += 1;
        Some(Change::Lost { offset })
    }

    /// Retention removed everything below `oldest`: undelivered offsets
    /// below it are lost, and delivery goes on from it.
    pub(crate) fn skip_to(&mut self, oldest: u64) -> Option<Change> {
        if self.next >= oldest {
            return None;
        }
        self.counters.lost_to_retention += oldest - self.next;
        self.next = oldest;
        Some(Change::Skip { to: oldest })
    }

    /// `offset` fails its checksum (`error` says how): set aside (counted),
    /// so one damaged message never stops the group; dead-lettered as
    /// `damaged` when the group has a dead-letter topic.
    pub(crate) fn damaged(&mut self, offset: u64, rules: &Rules, error: &str) -> Option<Change> {
        if !self.pending.contains_key(&offset) {
            return None;
        }
        self.counters.damaged += 1;
        self.fail(offset, rules, Reason::Damaged, Some(error)).1
    }

    /// Clears everything pending and starts over at `to`, in a new
    /// generation: older leases answer `expired`.
    pub(crate) fn seek(&mut self, to: u64) -> Change {
        self.pending.clear();
        self.timers.clear();
        self.ready.clear();
        self.keys = KeyOrder::default();
        self.next = to;
        self.generation = self.generation.saturating_add(1);
        self.seek_generation = self.generation;
        Change::Seek {
            to,
            generation: self.generation,
        }
    }

    /// The changes that rebuild this state from nothing: a base, then each
    /// pending entry as a delivery (leases keep at most their own length),
    /// and the waiting and parked ones as what put them there.
    pub(crate) fn snapshot(&self, now: Tick) -> Vec<Change> {
        let mut out = vec![Change::Base { next: self.next }];
        if self.seek_generation > 0 {
            out.push(Change::Seek {
                to: self.next,
                generation: self.seek_generation,
            });
        }
        for (&offset, e) in self.pending.iter() {
            let left = e.at.saturating_duration_since(now).as_millis() as u64;
            out.push(Change::Deliver {
                offset,
                deliveries: e.deliveries,
                generation: e.generation,
                lease_ms: left,
            });
            match e.state {
                Pend::Leased => {}
                Pend::Waiting => out.push(Change::Nack {
                    offset,
                    delay_ms: left,
                }),
                Pend::Parked => out.push(Change::Release {
                    offset,
                    deliveries: u32::MAX,
                }),
                // Waiting, blocked again when the group opens.
                Pend::Blocked => out.push(Change::Nack {
                    offset,
                    delay_ms: 0,
                }),
            }
        }
        out
    }

    /// Applies a journal record at start-up (`now` is the restart).
    pub(crate) fn replay(&mut self, change: Change, now: Tick) {
        let ms = Duration::from_millis;
        match change {
            Change::Base { next } => {
                self.pending.clear();
                self.timers.clear();
                self.ready.clear();
                self.next = next;
            }
            Change::Deliver {
                offset,
                deliveries,
                generation,
                lease_ms,
            } => {
                if let Some(old) = self.pending.remove(&offset) {
                    self.clear_timer(offset, &old);
                }
                let at = now + ms(lease_ms);
                self.pending.insert(
                    offset,
                    Entry {
                        deliveries,
                        generation,
                        state: Pend::Leased,
                        at,
                        since: now,
                    },
                );
                self.timers.insert((at, offset));
                self.next = self.next.max(offset.saturating_add(1));
            }
            Change::Ack { offset }
            | Change::Dead { offset }
            | Change::Drop { offset }
            | Change::Lost { offset } => {
                self.remove(offset);
            }
            Change::Nack { offset, delay_ms } => self.wait(offset, now + ms(delay_ms), now),
            Change::Extend { offset, lease_ms } => {
                if let Some(mut e) = self.pending.remove(&offset) {
                    self.clear_timer(offset, &e);
                    e.state = Pend::Leased;
                    e.at = now + ms(lease_ms);
                    self.timers.insert((e.at, offset));
                    self.pending.insert(offset, e);
                }
            }
            // A snapshot's parked entry.
            Change::Release {
                offset,
                deliveries: u32::MAX,
            } => {
                if let Some(mut e) = self.pending.remove(&offset) {
                    self.clear_timer(offset, &e);
                    e.state = Pend::Parked;
                    self.pending.insert(offset, e);
                }
            }
            Change::Release { offset, deliveries } => {
                if let Some(mut e) = self.pending.get_mut(&offset) {
                    e.deliveries = deliveries;
                }
                self.wait(offset, now, now);
            }
            Change::Skip { to } => self.next = self.next.max(to),
            Change::Seek { to, generation } => {
                self.pending.clear();
                self.timers.clear();
                self.ready.clear();
                self.next = to;
                self.generation = self.generation.max(generation);
                self.seek_generation = generation;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            lease_time: Duration::from_secs(30),
            max_lease_time: Duration::from_secs(60),
            max_deliveries: 0,
            backoff: Vec::new(),
            max_pending: 100,
            dead_letter: false,
            by_key: false,
        }
    }

    fn lease(l: &(Lease, Change)) -> Lease {
        l.0.clone()
    }

    /// Key lines: the lowest pending offset of a key holds it; the others
    /// are blocked and freed one at a time, in offset order, when the
    /// holder is done; a nacked holder keeps its key; a seek forgets all.
    #[test]
    fn keys_are_held_one_offset_at_a_time() {
        let r = Rules {
            by_key: true,
            ..rules()
        };
        let now = Tick::now();
        let mut s = State::new(0, 0);
        let got = s.deliver(4, 4, r.lease_time, now, &r);
        let keys = [Some(7), Some(7), None, Some(7)];
        for (l, key) in got.iter().zip(keys) {
            let offset = l.0.offset;
            if !s.admit(offset, key) {
                s.release(offset, now);
                s.block(offset);
            }
        }
        assert_eq!(
            s.pending_by_state(),
            [2, 0, 0, 2],
            "0 and 2 out; 1 and 3 blocked"
        );
        assert!(s.deliver(4, 4, r.lease_time, now, &r).is_empty());
        // A nack keeps the key with offset 0.
        let (outcome, _) = s.nack(&lease(&got[0]), Some(Duration::ZERO), now, &r);
        assert_eq!(outcome, Outcome::Nacked);
        let again = s.deliver(4, 4, r.lease_time, now, &r);
        assert_eq!(again.iter().map(|l| l.0.offset).collect::<Vec<_>>(), [0]);
        assert!(s.admit(0, Some(7)));
        s.ack(&lease(&again[0]));
        let next = s.deliver(4, 4, r.lease_time, now, &r);
        assert_eq!(
            next.iter().map(|l| l.0.offset).collect::<Vec<_>>(),
            [1],
            "3 still waits for 1"
        );
        assert!(s.admit(1, Some(7)));
        s.seek(4);
        assert_eq!(s.pending_by_state(), [0, 0, 0, 0]);
        assert!(s.admit(9, Some(7)), "a seek forgets every key");
    }

    #[test]
    fn leases_read_back_and_odd_ones_are_refused() {
        let l = Lease::parse("1200.3.7.9f86d081").expect("a lease");
        assert_eq!((l.offset, l.deliveries, l.generation), (1200, 3, 7));
        assert_eq!(l.to_string(), "1200.3.7.9f86d081");
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "a.1.1.ff",
            "1.0.1.ff",
            "1.1.1.zz",
            "1.1.1.",
            "-1.1.1.ff",
            "1.1.99999999999.ff",
            "99999999999999999999999.1.1.ff",
        ] {
            assert_eq!(Lease::parse(bad), None, "{bad}");
        }
        assert_eq!(Lease::parse(&format!("1.1.1.{}", "f".repeat(600))), None);
    }

    #[test]
    fn ack_is_once_then_done_and_a_superseded_lease_acks_late() {
        let (r, now) = (rules(), Tick::now());
        let mut s = State::new(0, 1);
        let got = s.deliver(2, 10, r.lease_time, now, &r);
        assert_eq!(got.len(), 2);
        let first = lease(&got[0]);
        assert_eq!(s.ack(&first).0, Outcome::Acked);
        assert_eq!(s.ack(&first).0, Outcome::Done, "a double ack");
        // The second expires and goes out again: its first lease is late.
        let second = lease(&got[1]);
        s.tick(now + Duration::from_secs(31), &r);
        let again = s.deliver(1, 10, r.lease_time, now + Duration::from_secs(31), &r);
        assert_eq!(again[0].0.offset, 1);
        assert_eq!(again[0].0.deliveries, 2);
        assert_eq!(s.nack(&second, None, now, &r).0, Outcome::Expired(Some(2)));
        assert_eq!(s.ack(&second).0, Outcome::AckedLate);
        assert_eq!(s.floor(), 2);
        assert_eq!(s.counters.acked_late, 1);
    }

    #[test]
    fn an_ack_after_expiry_but_before_redelivery_counts() {
        let (r, now) = (rules(), Tick::now());
        let mut s = State::new(5, 1);
        let got = s.deliver(1, 10, r.lease_time, now, &r);
        s.tick(now + Duration::from_secs(40), &r);
        assert_eq!(s.pending_by_state(), [0, 1, 0, 0]);
        assert_eq!(s.ack(&lease(&got[0])).0, Outcome::Acked);
        assert_eq!(s.floor(), 6);
    }

    #[test]
    fn unknown_and_future_leases_are_not_found() {
        let (r, now) = (rules(), Tick::now());
        let mut s = State::new(0, 1);
        s.deliver(1, 10, r.lease_time, now, &r);
        let never = Lease::parse("7.1.1.ff").expect("lease");
        assert_eq!(s.ack(&never).0, Outcome::NotFound);
        let too_many = Lease::parse("0.5.1.ff").expect("lease");
        assert_eq!(s.ack(&too_many).0, Outcome::NotFound);
    }

    #[test]
    fn nack_waits_for_its_delay_and_the_backoff() {
        let mut r = rules();
        r.backoff = vec![Duration::from_secs(1), Duration::from_secs(10)];
        let now = Tick::now();
        let mut s = State::new(0, 1);
        let got = s.deliver(1, 1, r.lease_time, now, &r);
        assert_eq!(s.nack(&lease(&got[0]), None, now, &r).0, Outcome::Nacked);
        assert!(s.deliver(1, 1, r.lease_time, now, &r).is_empty());
        let later = now + Duration::from_secs(1);
        let again = s.deliver(1, 1, r.lease_time, later, &r);
        assert_eq!(again.len(), 1);
        // The second failure waits the second step, then the last one.
        s.nack(&lease(&again[0]), None, later, &r);
        assert!(
            s.deliver(1, 1, r.lease_time, later + Duration::from_secs(9), &r)
                .is_empty()
        );
        let third = s.deliver(1, 1, r.lease_time, later + Duration::from_secs(10), &r);
        assert_eq!(third[0].0.deliveries, 3);
        // An explicit delay wins over the backoff.
        let t = later + Duration::from_secs(10);
        s.nack(&lease(&third[0]), Some(Duration::ZERO), t, &r);
        assert_eq!(s.deliver(1, 1, r.lease_time, t, &r).len(), 1);
    }

    #[test]
    fn max_deliveries_parks_for_the_dead_letter_topic_or_drops() {
        let mut r = rules();
        r.max_deliveries = 2;
        r.dead_letter = true;
        let now = Tick::now();
        let mut s = State::new(0, 1);
        let one = s.deliver(1, 1, r.lease_time, now, &r);
        assert_eq!(
            s.nack(&lease(&one[0]), Some(Duration::ZERO), now, &r).0,
            Outcome::Nacked
        );
        let two = s.deliver(1, 1, r.lease_time, now, &r);
        assert_eq!(
            s.nack(&lease(&two[0]), None, now, &r).0,
            Outcome::DeadLetter
        );
        assert_eq!(s.parked(), vec![0]);
        assert_eq!(s.floor(), 0, "a parked entry holds the floor");
        assert!(s.dead(0).is_some());
        assert_eq!(s.floor(), 1);
        // Expiry at the limit parks too; without a dead-letter topic, reject drops.
        r.dead_letter = false;
        let mut s = State::new(0, 1);
        let one = s.deliver(1, 1, r.lease_time, now, &r);
        assert_eq!(s.reject(&lease(&one[0]), &r, None).0, Outcome::Dropped);
        assert_eq!(s.counters.dropped, 1);
    }

    #[test]
    fn extend_is_clamped_by_max_lease_time() {
        let (r, now) = (rules(), Tick::now());
        let mut s = State::new(0, 1);
        let got = s.deliver(1, 1, r.lease_time, now, &r);
        let l = lease(&got[0]);
        let t = now + Duration::from_secs(20);
        assert_eq!(
            s.extend(&l, Duration::from_secs(30), t, &r).0,
            Outcome::Extended { clamped: false }
        );
        let t = now + Duration::from_secs(45);
        assert_eq!(
            s.extend(&l, Duration::from_secs(30), t, &r).0,
            Outcome::Extended { clamped: true }
        );
        // Held at most 60 s from the delivery: it expires then.
        s.tick(now + Duration::from_secs(59), &r);
        assert_eq!(s.pending_by_state(), [1, 0, 0, 0]);
        s.tick(now + Duration::from_secs(60), &r);
        assert_eq!(s.pending_by_state(), [0, 1, 0, 0]);
    }

    #[test]
    fn max_pending_holds_new_deliveries() {
        let mut r = rules();
        r.max_pending = 2;
        let now = Tick::now();
        let mut s = State::new(0, 1);
        let got = s.deliver(10, 100, r.lease_time, now, &r);
        assert_eq!(got.len(), 2);
        assert!(s.deliver(10, 100, r.lease_time, now, &r).is_empty());
        s.ack(&lease(&got[0]));
        assert_eq!(s.deliver(10, 100, r.lease_time, now, &r).len(), 1);
    }

    #[test]
    fn seek_makes_older_leases_expire() {
        let (r, now) = (rules(), Tick::now());
        let mut s = State::new(0, 1);
        let got = s.deliver(3, 10, r.lease_time, now, &r);
        s.seek(1);
        assert_eq!(s.ack(&lease(&got[0])).0, Outcome::Expired(None));
        let again = s.deliver(1, 10, r.lease_time, now, &r);
        assert_eq!(again[0].0.offset, 1);
        assert_eq!(again[0].0.generation, 2);
    }

    #[test]
    fn a_snapshot_replays_to_the_same_state() {
        let mut r = rules();
        r.dead_letter = true;
        r.max_deliveries = 1;
        let now = Tick::now();
        let mut s = State::new(3, 1);
        let got = s.deliver(5, 20, r.lease_time, now, &r);
        s.ack(&lease(&got[0]));
        s.nack(&lease(&got[1]), Some(Duration::from_secs(5)), now, &r);
        s.reject(&lease(&got[2]), &r, None);
        let mut back = State::new(0, 1);
        for change in s.snapshot(now) {
            back.replay(change, now);
        }
        assert_eq!(back.next, s.next);
        assert_eq!(back.floor(), s.floor());
        assert_eq!(back.pending_by_state(), s.pending_by_state());
        assert_eq!(back.parked(), s.parked());
    }

    /// The counts by state, kept as entries change, equal a count of the
    /// entries after every step of a long pseudo-random run of every
    /// operation (key lines, expiry, releases, seeks, replays included).
    #[test]
    fn counts_by_state_follow_every_change() {
        let mut r = rules();
        r.by_key = true;
        r.dead_letter = true;
        r.max_deliveries = 3;
        r.backoff = vec![Duration::from_millis(300)];
        let mut s = State::new(0, 1);
        let mut now = Tick::now();
        let mut leases: Vec<Lease> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for step in 0..20_000 {
            let end = 200 + step / 50;
            match rand(10) {
                0..=2 => {
                    for (l, _) in s.deliver(rand(5) as usize + 1, end, r.lease_time, now, &r) {
                        if s.admit(l.offset, Some(l.offset % 7)) {
                            leases.push(l);
                        } else {
                            s.release(l.offset, now);
                            s.block(l.offset);
                        }
                    }
                }
                3 | 4 if !leases.is_empty() => {
                    let l = leases.swap_remove(rand(leases.len() as u64) as usize);
                    s.ack(&l);
                }
                5 if !leases.is_empty() => {
                    let l = leases.swap_remove(rand(leases.len() as u64) as usize);
                    s.nack(&l, None, now, &r);
                }
                6 if !leases.is_empty() => {
                    let l = &leases[rand(leases.len() as u64) as usize];
                    s.extend(l, Duration::from_secs(5), now, &r);
                }
                7 if !leases.is_empty() => {
                    let l = leases.swap_remove(rand(leases.len() as u64) as usize);
                    if s.reject(&l, &r, None).0 == Outcome::DeadLetter {
                        s.dead(l.offset);
                    }
                }
                8 => {
                    now = now + Duration::from_millis(rand(40_000));
                    let (dead, _) = s.tick(now, &r);
                    for offset in dead {
                        s.dead(offset);
                    }
                }
                _ if rand(200) == 0 => {
                    s.seek(rand(end));
                    leases.clear();
                }
                _ if rand(100) == 0 => {
                    let mut back = State::new(0, 1);
                    for change in s.snapshot(now) {
                        back.replay(change, now);
                    }
                    s = back;
                    leases.clear();
                }
                _ => {}
            }
            let mut recount = [0; 4];
            for e in s.pending.values() {
                recount[e.state as usize] += 1;
            }
            assert_eq!(s.pending_by_state(), recount, "after step {step}");
        }
        assert!(s.pending_len() > 0, "the run kept entries pending");
    }

    #[test]
    fn a_million_pending_entries_stay_cheap() {
        let mut r = rules();
        r.max_pending = 1_000_000;
        let now = Tick::now();
        let mut s = State::new(0, 1);
        let got = s.deliver(1_000_000, 2_000_000, r.lease_time, now, &r);
        assert_eq!(got.len(), 1_000_000);
        let start = std::time::Instant::now();
        for l in got.iter().step_by(1000) {
            s.ack(&l.0);
        }
        s.tick(now + Duration::from_secs(1), &r);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
