//! Consumer groups: many workers share a topic, each message leased to one
//! of them at a time, acked when done, delivered again when its lease runs
//! out, and moved to a dead-letter topic when it can never succeed (see
//! `consumer-groups.md`).
//!
//! A [`Group`] belongs to one topic. Its bookkeeping is a [`state::State`]
//! under a mutex, and every change goes to its journal (`journal.rs`) in
//! the same critical section, before the answer that depends on it; the
//! journal is a `write` to the page cache, so a killed broker loses nothing
//! it answered. The mutex is held for that one `write` (a page-cache copy of
//! 32 bytes a change) and for in-memory work only: the fsync of
//! `fsync = "always"` runs after it is released, on the blocking pool and
//! before the answer ([`Group::durable`]), and messages are read, and dead
//! letters published, outside it.
//!
//! A lease carries everything needed to settle it (offset, delivery count,
//! generation, and the group's random tag), so any connection, or any front
//! end, can settle it. The generation goes up at every open after an
//! unclean stop and at every seek; leases from before an unclean stop still
//! settle (the delivery count tells whether they are current), leases from
//! before a seek do not.
//!
//! Waiting receives park on the group's [`Notify`] and on the topic's
//! append signal: a settle, nack or expiry that frees k messages wakes at
//! most k of them, in the order they came. Expiry needs no request: the
//! broker calls [`Registry::tick`] every [`TICK`], which moves leases past
//! their deadline and retries parked dead letters every [`PARKED_RETRY`].
//!
//! Files, under `<topic>/groups/<group>/`: `group.json` (settings, tag,
//! generation; written whole, fsynced, renamed) and `journal`.
//!
//! A [`Group`] lives on the embedded engine: it holds its topic's
//! [`Embedded`] log (append signal, oldest offset, times). On JetStream a
//! group is a durable pull consumer (`jetstream.rs`); [`GroupRef`] is the
//! one interface the routes use for either.
//!
//! Bounds: `max_pending` entries per group (about 100 bytes each in
//! memory), `max_waiting` receives, and the broker-wide `[groups]` limits
//! on groups per topic, groups in all and pending entries in all.

mod clock;
pub(crate) mod jetstream;
pub(crate) mod journal;
pub(crate) mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clock::Tick;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::duration::parse_duration;
use crate::lock::Recover;
use crate::message::Message;
use crate::record::{Idempotency, Record};
use crate::topic::{Batch, Embedded, Topic, TopicError};
use crate::topic::{Lookup, fingerprint};
use journal::Journal;
use state::{Change, Lease, Outcome, Pend, Rules, State};

/// How often the broker moves expired leases (well within the spec's 1 s).
pub const TICK: Duration = Duration::from_millis(200);
/// How long after a timer's end a waiting receive wakes to move it: past
/// the clock's rounding, so the timer is due when it looks.
const DUE_MARGIN: Duration = Duration::from_millis(1);
/// How often a parked dead letter is written again.
pub const PARKED_RETRY: Duration = Duration::from_secs(10);
/// Directory of a topic's groups.
pub const GROUPS_DIR: &str = "groups";
/// Most leases in one settle request.
pub const MAX_SETTLE: usize = 10_000;
/// Most messages one receive returns.
pub const MAX_RECEIVE: usize = 1000;
/// Longest group name.
pub const MAX_NAME: usize = 64;
/// Most consumer labels a group remembers.
pub const MAX_CONSUMERS: usize = 1024;
/// A consumer label not seen for this long (1 h) is forgotten.
pub const CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// Most entries one pending listing returns.
pub const MAX_LISTING: usize = 10_000;

use crate::config::GroupLimits as Limits;

/// What a group request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("group not found")]
    NotFound,
    #[error("group exists")]
    Exists,
    #[error("{0}")]
    Invalid(String),
    #[error("invalid lease")]
    InvalidLease,
    #[error("lease not found")]
    LeaseNotFound,
    #[error("lease expired: {0}")]
    LeaseExpired(String),
    #[error("too many waiting receives")]
    TooManyWaiting,
    #[error("end of topic: {0}")]
    Empty(String),
    #[error("{0}")]
    Limit(String),
    #[error("shutting down")]
    ShuttingDown,
    /// What the JetStream engine's groups do not do (`jetstream.rs`).
    #[error("{0} not available on the jetstream engine")]
    NotOnEngine(&'static str),
    #[error(transparent)]
    Topic(#[from] TopicError),
    #[error("group storage: {0}")]
    Io(#[from] std::io::Error),
}

/// A group's settings as stored and shown; durations as given.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub lease_time: String,
    pub max_lease_time: String,
    pub max_deliveries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    pub backoff: Vec<String>,
    pub max_pending: usize,
    pub max_waiting: usize,
    pub ordering: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            lease_time: "30s".into(),
            max_lease_time: "12h".into(),
            max_deliveries: 0,
            dead_letter: None,
            backoff: Vec::new(),
            max_pending: 10_000,
            max_waiting: 512,
            ordering: "none".into(),
        }
    }
}

/// The create body: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    from: Option<String>,
    lease_time: Option<String>,
    max_lease_time: Option<String>,
    max_deliveries: Option<u32>,
    dead_letter: Option<String>,
    backoff: Option<Vec<String>>,
    max_pending: Option<usize>,
    max_waiting: Option<usize>,
    ordering: Option<String>,
}

fn duration(field: &str, text: &str) -> Result<Duration, GroupError> {
    parse_duration(text).map_err(|e| GroupError::Invalid(format!("{field}: {e}")))
}

impl Settings {
    /// The rules these settings make, checked against the spec's ranges.
    fn rules(&self) -> Result<Rules, GroupError> {
        let lease_time = duration("lease_time", &self.lease_time)?;
        let max_lease_time = duration("max_lease_time", &self.max_lease_time)?;
        let bad = |why: String| Err(GroupError::Invalid(why));
        if !(Duration::from_secs(1)..=Duration::from_secs(12 * 3600)).contains(&lease_time) {
            return bad("lease_time must be 1s to 12h".into());
        }
        if max_lease_time < lease_time || max_lease_time > Duration::from_secs(7 * 86400) {
            return bad("max_lease_time must be lease_time to 7 days".into());
        }
        if self.max_deliveries > 1000 {
            return bad("max_deliveries must be 0 (unlimited) or 1 to 1000".into());
        }
        if self.max_deliveries > 0 && self.dead_letter.is_none() {
            return bad("max_deliveries needs a dead_letter topic".into());
        }
        if self.backoff.len() > 16 {
            return bad("backoff takes at most 16 durations".into());
        }
        let backoff = self
            .backoff
            .iter()
            .map(|b| duration("backoff", b))
            .collect::<Result<Vec<_>, _>>()?;
        if !(1..=1_000_000).contains(&self.max_pending) {
            return bad("max_pending must be 1 to 1000000".into());
        }
        if !(1..=100_000).contains(&self.max_waiting) {
            return bad("max_waiting must be 1 to 100000".into());
        }
        match self.ordering.as_str() {
            "none" | "key" => {}
            other => {
                return bad(format!(
                    "ordering must be \"none\" or \"key\", not {other:?}"
                ));
            }
        }
        Ok(Rules {
            lease_time,
            max_lease_time,
            max_deliveries: self.max_deliveries,
            backoff,
            max_pending: self.max_pending,
            dead_letter: self.dead_letter.is_some(),
            by_key: self.ordering == "key",
        })
    }
}

/// `group.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    settings: Settings,
    tag: String,
    generation: u32,
    /// Whether the last run closed the journal cleanly.
    #[serde(default)]
    clean: bool,
}

/// Writes `group.json` whole: beside it, fsynced, renamed, directory fsynced.
fn store(dir: &Path, stored: &Stored) -> std::io::Result<()> {
    let tmp = dir.join("group.json.tmp");
    let text = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &text)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join("group.json"))?;
    std::fs::File::open(dir)?.sync_all()
}

/// A message handed out under a lease.
pub struct Delivered {
    pub lease: String,
    pub deliveries: u32,
    /// When the lease runs out, in milliseconds since the epoch.
    pub expires_ms: u64,
    pub message: Message,
}

/// What a receive asks for.
pub struct ReceiveRequest {
    /// The caller's label (`consumer=`), remembered in the group's info.
    pub consumer: Option<String>,
    pub max: usize,
    pub max_bytes: usize,
    pub wait: Duration,
    pub lease_time: Option<Duration>,
}

/// One settle operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Ack,
    Nack,
    Extend,
    Reject,
}

/// One lease to settle, with its argument (nack delay, extension).
pub struct SettleItem {
    pub lease: String,
    pub time: Option<Duration>,
}

/// The result of one settled lease.
pub struct Settled {
    pub lease: String,
    pub result: &'static str,
    pub clamped: bool,
    /// Why it is not current, for `expired`.
    pub reason: Option<String>,
}

/// A group's info (`GET /{topic}/groups/{group}`).
#[derive(Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub topic: String,
    pub settings: Settings,
    pub ack_floor: u64,
    pub next: u64,
    pub end: u64,
    pub backlog: u64,
    pub pending: BTreeMap<&'static str, usize>,
    pub unacked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unacked: Option<Oldest>,
    pub waiting_receives: usize,
    /// Consumer labels seen, with seconds since each was last seen.
    pub consumers: BTreeMap<String, u64>,
    pub counters: state::Counters,
}

/// The oldest unacked message.
#[derive(Serialize)]
pub struct Oldest {
    pub offset: u64,
    pub age_seconds: f64,
}

struct Inner {
    state: State,
    journal: Journal,
    settings: Settings,
    rules: Rules,
    /// When the parked dead letters were last tried.
    parked_tried: Option<Tick>,
    /// Settles by operation and result, for the metrics.
    settles: BTreeMap<(&'static str, &'static str), u64>,
    /// Dead-letter writes that failed.
    dead_letter_failures: u64,
    /// Receives that ended empty: nothing available, `max_pending` reached.
    empty: [u64; 2],
    /// Consumer labels seen on receives, with when (at most
    /// [`MAX_CONSUMERS`]; idle ones go after [`CONSUMER_IDLE`]).
    consumers: HashMap<String, Tick>,
}

/// What the metrics read of one group (`GET /_metrics`).
pub struct GroupMetrics {
    pub topic: String,
    pub group: String,
    pub info: GroupInfo,
    pub settles: Vec<((&'static str, &'static str), u64)>,
    pub dead_lettered: [(&'static str, u64); 3],
    pub dead_letter_failures: u64,
    pub empty: [(&'static str, u64); 2],
}

/// One consumer group. See the module docs.
pub struct Group {
    /// With ordering by key: held by a receive from its pick to its key
    /// check (see [`Group::receive`]).
    key_gate: Option<tokio::sync::Mutex<()>>,
    name: String,
    topic: Arc<Topic>,
    /// The topic's log, for its append signal, oldest offset and times.
    embedded: Arc<Embedded>,
    dir: PathBuf,
    tag: String,
    inner: Mutex<Inner>,
    /// Held by a compaction of the journal, one at a time.
    compacting: Mutex<()>,
    freed: Notify,
    waiting: AtomicUsize,
    gone: watch::Sender<bool>,
}

impl Group {
    /// Opens the group stored in `dir` (blocking): replays its journal,
    /// cutting a torn tail, bumps the generation after an unclean stop,
    /// and compacts the journal.
    fn open(
        topic: Arc<Topic>,
        embedded: Arc<Embedded>,
        dir: &Path,
        sync: bool,
    ) -> Result<Group, GroupError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read(dir.join("group.json"))?;
        let mut stored: Stored = serde_json::from_slice(&text)
            .map_err(|e| GroupError::Invalid(format!("{}: {e}", dir.display())))?;
        let rules = stored.settings.rules()?;
        let opened = Journal::open(&dir.join("journal"), sync)?;
        if opened.cut > 0 {
            tracing::warn!(topic = topic.name(), group = %name, bytes = opened.cut, "group journal had a torn or damaged tail: cut");
        }
        if !stored.clean {
            stored.generation = stored.generation.saturating_add(1);
        }
        let now = Tick::now();
        let mut state = State::new(0, stored.generation);
        for change in opened.changes {
            state.replay(change, now);
        }
        state.generation = stored.generation.max(state.generation);
        let mut journal = opened.journal;
        journal.rewrite(&state.snapshot(now))?;
        stored.generation = state.generation;
        stored.clean = false;
        store(dir, &stored)?;
        if rules.by_key {
            learn_keys(&embedded, &mut state);
        }
        Ok(Group::made(
            name, topic, embedded, dir, stored, state, journal, rules,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn made(
        name: String,
        topic: Arc<Topic>,
        embedded: Arc<Embedded>,
        dir: &Path,
        stored: Stored,
        state: State,
        journal: Journal,
        rules: Rules,
    ) -> Group {
        Group {
            key_gate: rules.by_key.then(|| tokio::sync::Mutex::new(())),
            name,
            topic,
            embedded,
            dir: dir.to_path_buf(),
            tag: stored.tag,
            inner: Mutex::new(Inner {
                state,
                journal,
                settings: stored.settings,
                rules,
                parked_tried: None,
                settles: BTreeMap::new(),
                dead_letter_failures: 0,
                empty: [0; 2],
                consumers: HashMap::new(),
            }),
            compacting: Mutex::new(()),
            freed: Notify::new(),
            waiting: AtomicUsize::new(0),
            gone: watch::Sender::new(false),
        }
    }

    pub fn settings(&self) -> Settings {
        self.inner.lock().recover().settings.clone()
    }

    /// Applies `changes` and journals them; the lock is held by the caller.
    fn journal(inner: &mut Inner, changes: &[Change]) -> Result<(), GroupError> {
        inner.journal.append(changes)?;
        Ok(())
    }

    /// Receives up to `req.max` messages under new leases, waiting up to
    /// `req.wait` for one (see the module docs). `stop` ends the wait.
    pub async fn receive(
        &self,
        req: ReceiveRequest,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Delivered>, GroupError> {
        let deadline = Instant::now() + req.wait;
        let mut appended = self.embedded.log().subscribe();
        let mut gone = self.gone.subscribe();
        let mut stop = stop.clone();
        let mut registered = None;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            appended.borrow_and_update();
            // Ordering by key: a message's key is known only once it is
            // read, so picks and key checks of one group go one receive at
            // a time; two receives could otherwise each take a message of
            // one key before either knew it.
            let gate = match &self.key_gate {
                Some(gate) => Some(gate.lock().await),
                None => None,
            };
            let (got, why) = self.pick(&req)?;
            if !got.is_empty() {
                self.durable().await?;
                let mut out = self.fetch(got, req.max_bytes).await?;
                self.order_by_key(&mut out);
                drop(gate);
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            drop(gate);
            if *gone.borrow() {
                return Err(GroupError::NotFound);
            }
            if *stop.borrow() {
                return Err(GroupError::ShuttingDown);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GroupError::Empty(why));
            }
            if registered.is_none() {
                registered = Some(Waiting::enter(self)?);
            }
            // A lease or delay that runs out while this receive waits is
            // moved by the receive itself, not at the next group tick: its
            // message is delivered again as soon as it is due.
            let due = self.inner.lock().recover().state.next_due();
            let due = due.map_or(deadline, |at| {
                let left = at.saturating_duration_since(Tick::now());
                deadline.min(Instant::now() + left + DUE_MARGIN)
            });
            tokio::select! {
                _ = &mut freed => {}
                _ = appended.changed() => {}
                _ = gone.changed() => {}
                _ = stop.changed() => {}
                _ = tokio::time::sleep_until(due) => {
                    if due < deadline {
                        self.expire_due();
                    }
                }
            }
        }
    }

    /// What [`Group::tick`] moves, done by a waiting receive whose timer
    /// ran out. Letters that became due are left parked for the broker's
    /// next tick, which writes them (it has the topics to write them to).
    fn expire_due(&self) {
        let dead = self.tick();
        if !dead.is_empty() {
            self.inner.lock().recover().parked_tried = None;
        }
    }

    /// Picks offsets to deliver and journals the deliveries: the leases,
    /// or why there are none.
    fn pick(&self, req: &ReceiveRequest) -> Result<(Vec<Lease>, String), GroupError> {
        let end = self.topic.next_offset();
        let mut inner = self.inner.lock().recover();
        let inner = &mut *inner;
        let lease = req
            .lease_time
            .unwrap_or(inner.rules.lease_time)
            .min(inner.rules.max_lease_time);
        let now = Tick::now();
        if let Some(c) = &req.consumer {
            seen(&mut inner.consumers, c, now);
        }
        if let Some(change) = inner.state.skip_to(self.embedded.log().oldest_offset()) {
            Self::journal(inner, &[change])?;
        }
        let got = inner.state.deliver(req.max, end, lease, now, &inner.rules);
        if got.is_empty() {
            let [leased, waiting, parked, _] = inner.state.pending_by_state();
            let full = inner.state.pending_len() >= inner.rules.max_pending;
            inner.empty[usize::from(full)] += 1;
            let why = if full {
                format!("max_pending reached: {} pending", inner.state.pending_len())
            } else if leased + waiting + parked > 0 {
                format!("nothing available: {leased} leased, {waiting} waiting")
            } else {
                "nothing available".to_string()
            };
            return Ok((Vec::new(), why));
        }
        let changes: Vec<Change> = got.iter().map(|(_, c)| *c).collect();
        if let Err(e) = Self::journal(inner, &changes) {
            // Nothing was answered: hand them back.
            for (l, _) in &got {
                inner.state.release(l.offset, now);
            }
            return Err(e);
        }
        let leases = got
            .into_iter()
            .map(|(mut l, _)| {
                l.tag.clone_from(&self.tag);
                l
            })
            .collect();
        Ok((leases, String::new()))
    }

    /// Reads the leased messages, at most `max_bytes` of payload (at least
    /// one message). Offsets retention removed are counted lost; leases cut
    /// by the byte bound are handed back.
    async fn fetch(
        &self,
        leases: Vec<Lease>,
        max_bytes: usize,
    ) -> Result<Vec<Delivered>, GroupError> {
        let mut out = Vec::with_capacity(leases.len());
        let mut back = Vec::new();
        let mut lost = Vec::new();
        let mut damaged = Vec::new();
        let mut bytes = 0usize;
        let lease_ms = |l: &Lease| -> u64 {
            let inner = self.inner.lock().recover();
            inner
                .state
                .pending_from(l.offset, 1)
                .first()
                .filter(|(o, _)| *o == l.offset)
                .map_or(0, |(_, e)| {
                    e.at.saturating_duration_since(Tick::now()).as_millis() as u64
                })
        };
        let mut read = self.prefetch(&leases, max_bytes).await;
        let oldest = self.embedded.log().oldest_offset();
        for lease in leases {
            if lease.offset < oldest {
                // Retention took it while it was pending.
                lost.push(lease.offset);
                continue;
            }
            if !out.is_empty() && bytes >= max_bytes {
                back.push(lease.offset);
                continue;
            }
            let message = match read.remove(&lease.offset) {
                Some(m) => Ok(Some(m)),
                None => self.topic.read(lease.offset).await,
            };
            match message {
                Ok(Some(message)) => {
                    if !out.is_empty() && bytes + message.payload.len() > max_bytes {
                        back.push(lease.offset);
                        bytes = max_bytes;
                        continue;
                    }
                    bytes += message.payload.len();
                    let now_ms = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_millis() as u64;
                    out.push(Delivered {
                        expires_ms: now_ms + lease_ms(&lease),
                        deliveries: lease.deliveries,
                        lease: lease.text(),
                        message,
                    });
                }
                Ok(None) => lost.push(lease.offset),
                Err(e) if is_damage(&e) => {
                    let error = crate::topic::ErrorChain(&e).to_string();
                    tracing::error!(topic = self.topic.name(), group = %self.name, offset = lease.offset, %error, "a damaged message was set aside by the group");
                    damaged.push((lease.offset, error));
                }
                Err(e) => {
                    back.push(lease.offset);
                    back.extend(out.iter().map(|d: &Delivered| d.message.offset));
                    self.hand_back(&back, &lost, &damaged);
                    return Err(e.into());
                }
            }
        }
        self.hand_back(&back, &lost, &damaged);
        Ok(out)
    }

    /// Ordering by key: takes out of `out` each message whose key another
    /// pending offset holds; those are handed back (journaled as released)
    /// and blocked until the key is free.
    fn order_by_key(&self, out: &mut Vec<Delivered>) {
        let mut inner = self.inner.lock().recover();
        let inner = &mut *inner;
        if !inner.rules.by_key {
            return;
        }
        let now = Tick::now();
        let mut changes = Vec::new();
        out.retain(|d| {
            let offset = d.message.offset;
            if inner.state.admit(offset, key_hash(&d.message)) {
                return true;
            }
            changes.extend(inner.state.release(offset, now));
            inner.state.block(offset);
            false
        });
        if let Err(e) = Self::journal(inner, &changes) {
            tracing::error!(topic = self.topic.name(), group = %self.name, error = %e, "group journal write failed");
        }
    }

    /// The messages of `leases` read in runs of consecutive offsets, one
    /// reader per run, up to about `max_bytes`: what a receive of many
    /// needs, without a trip to the blocking pool per message. What a run
    /// could not read (a damaged message, an error) is left out, for
    /// [`Group::fetch`] to read alone and judge.
    async fn prefetch(&self, leases: &[Lease], max_bytes: usize) -> HashMap<u64, Message> {
        let mut read = HashMap::with_capacity(leases.len());
        if leases.len() < 2 {
            return read;
        }
        let (mut i, mut bytes) = (0, 0usize);
        while i < leases.len() && bytes < max_bytes {
            let from = leases[i].offset;
            let mut n = 1;
            while i + n < leases.len() && leases[i + n].offset == from + n as u64 {
                n += 1;
            }
            i += n;
            let Ok(run) = self.topic.read_run(from, n, max_bytes - bytes).await else {
                continue;
            };
            for m in run {
                if m.offset < from + n as u64 {
                    bytes += m.payload.len();
                    read.insert(m.offset, m);
                }
            }
        }
        read
    }

    /// Gives back what was picked but not answered (`back`), and settles
    /// what retention removed (`lost`) and what fails its checksum.
    fn hand_back(&self, back: &[u64], lost: &[u64], damaged: &[(u64, String)]) {
        if back.is_empty() && lost.is_empty() && damaged.is_empty() {
            return;
        }
        let now = Tick::now();
        let mut guard = self.inner.lock().recover();
        let inner = &mut *guard;
        let mut changes = Vec::new();
        for &o in back {
            changes.extend(inner.state.release(o, now));
        }
        for &o in lost {
            changes.extend(inner.state.lost(o));
        }
        for (o, error) in damaged {
            changes.extend(inner.state.damaged(*o, &inner.rules, error));
        }
        if let Err(e) = Self::journal(inner, &changes) {
            tracing::error!(topic = self.topic.name(), group = %self.name, error = %e, "group journal write failed");
        }
        drop(guard);
        for _ in 0..back.len() {
            self.freed.notify_one();
        }
    }

    /// Settles `items` with `op`, in order, with one journal write. The
    /// caller dead-letters what comes back as `dead_lettered`.
    /// A reject's `error` goes into its dead letters' `netlog-dlq-error`.
    pub fn settle(
        &self,
        op: Op,
        items: &[SettleItem],
        error: Option<&str>,
    ) -> Result<Vec<Settled>, GroupError> {
        let now = Tick::now();
        let mut inner = self.inner.lock().recover();
        let inner = &mut *inner;
        let mut changes = Vec::new();
        let mut out = Vec::with_capacity(items.len());
        let mut freed = 0;
        for item in items {
            let Some(lease) = Lease::parse(&item.lease) else {
                out.push(Settled {
                    lease: item.lease.clone(),
                    result: "invalid",
                    clamped: false,
                    reason: None,
                });
                continue;
            };
            let (outcome, change) = if lease.tag != self.tag {
                (Outcome::NotFound, None)
            } else {
                let rules = &inner.rules;
                match op {
                    Op::Ack => inner.state.ack(&lease),
                    Op::Nack => inner.state.nack(&lease, item.time, now, rules),
                    Op::Extend => {
                        let t = item.time.unwrap_or(rules.lease_time);
                        inner.state.extend(&lease, t, now, rules)
                    }
                    Op::Reject => inner.state.reject(&lease, rules, error),
                }
            };
            if matches!(change, Some(Change::Ack { .. } | Change::Drop { .. }))
                || matches!(change, Some(Change::Nack { delay_ms: 0, .. }))
            {
                freed += 1;
            }
            changes.extend(change);
            let op_label = match op {
                Op::Ack => "ack",
                Op::Nack => "nack",
                Op::Extend => "extend",
                Op::Reject => "reject",
            };
            *inner.settles.entry((op_label, outcome.word())).or_default() += 1;
            out.push(Settled {
                lease: item.lease.clone(),
                result: outcome.word(),
                clamped: matches!(outcome, Outcome::Extended { clamped: true }),
                reason: match outcome {
                    Outcome::Expired(Some(n)) => Some(format!(
                        "offset {} was delivered again (delivery {n})",
                        lease.offset
                    )),
                    Outcome::Expired(None) => Some(format!(
                        "the delivery of offset {} is over (settled, expired, or before a seek)",
                        lease.offset
                    )),
                    _ => None,
                },
            });
        }
        Self::journal(inner, &changes)?;
        for _ in 0..freed {
            self.freed.notify_one();
        }
        Ok(out)
    }

    /// Moves what is due (expired leases); returns the offsets to
    /// dead-letter now (new ones, and parked ones due for a retry).
    fn tick(&self) -> Vec<u64> {
        let now = Tick::now();
        let mut inner = self.inner.lock().recover();
        let inner = &mut *inner;
        let (mut dead, freed) = inner.state.tick(now, &inner.rules);
        if !inner.rules.dead_letter {
            let mut changes = Vec::new();
            for o in dead.drain(..) {
                if let Some(Change::Dead { offset }) = inner.state.dead(o) {
                    inner.state.counters.dead_lettered -= 1;
                    inner.state.counters.dropped += 1;
                    changes.push(Change::Drop { offset });
                }
            }
            let _ = Self::journal(inner, &changes);
        }
        let retry = inner
            .parked_tried
            .is_none_or(|t| now.duration_since(t) >= PARKED_RETRY);
        if retry {
            inner.parked_tried = Some(now);
            dead = inner.state.parked();
        }
        for _ in 0..freed {
            self.freed.notify_one();
        }
        dead
    }

    /// Writes the dead letters of `offsets` to the dead-letter topic (found
    /// with `resolve`); each one written leaves the group.
    pub(crate) async fn dead_letter(&self, offsets: &[u64], resolve: &Resolver) {
        let target = self.inner.lock().recover().settings.dead_letter.clone();
        let Some(target) = target else {
            return;
        };
        for &offset in offsets {
            let written = match resolve(&target) {
                None => Err(format!("dead-letter topic {target:?} not found")),
                Some(dlq) => self.write_letter(&dlq, offset).await,
            };
            match written {
                Ok(()) => {
                    let mut inner = self.inner.lock().recover();
                    if let Some(change) = inner.state.dead(offset) {
                        let _ = Self::journal(&mut inner, &[change]);
                    }
                }
                Err(e) => {
                    self.inner.lock().recover().dead_letter_failures += 1;
                    tracing::warn!(topic = self.topic.name(), group = %self.name, offset, error = %e, "dead letter parked: the write failed; retried every 10 s");
                }
            }
        }
    }

    /// Appends the dead letter of `offset` to `dlq`: a v1 message with the
    /// original value, key, timestamp and headers plus the `netlog-dlq-*`
    /// headers, written at most once (its idempotency key is made of the
    /// group's tag and the offset, so a retry after a crash between the
    /// write and the journal is a replay), past the DLQ's validator and
    /// through its codec. A DLQ held to `message_format = "v0"` gets the
    /// bare value. A message gone from the topic leaves nothing to write.
    async fn write_letter(&self, dlq: &Topic, offset: u64) -> Result<(), String> {
        let (reason, error, deliveries) = {
            let inner = self.inner.lock().recover();
            let (reason, error) = inner.state.reason(offset);
            let deliveries = inner
                .state
                .pending_from(offset, 1)
                .first()
                .filter(|(o, _)| *o == offset)
                .map_or(0, |(_, e)| e.deliveries);
            (reason, error.map(str::to_string), deliveries)
        };
        let mut record = if reason == state::Reason::Damaged {
            Record::default()
        } else {
            match self.topic.read(offset).await {
                Ok(Some(m)) => match Record::of(&m) {
                    Ok(Some(r)) => r,
                    _ => Record {
                        value: m.payload,
                        ..Record::default()
                    },
                },
                Ok(None) => return Ok(()),
                Err(e) => return Err(crate::topic::ErrorChain(&e).to_string()),
            }
        };
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut add = |name: &str, value: String| {
            record.headers.retain(|(n, _)| n != name);
            record
                .headers
                .push((name.to_string(), Bytes::from(value.into_bytes())));
        };
        add("netlog-dlq-topic", self.topic.name().to_string());
        add("netlog-dlq-group", self.name.clone());
        add("netlog-dlq-offset", offset.to_string());
        add("netlog-dlq-deliveries", deliveries.to_string());
        add("netlog-dlq-reason", reason.label().to_string());
        if let Some(error) = error {
            add("netlog-dlq-error", error);
        }
        add("netlog-dlq-time", now_ms.to_string());
        record.idempotency = None;
        let fail = |e: TopicError| crate::topic::ErrorChain(&e).to_string();
        match dlq.allow_v1().await {
            Ok(()) => {}
            Err(TopicError::V0Only) => {
                return dlq
                    .publish_trusted(Batch::One(record.value))
                    .await
                    .map(|_| ())
                    .map_err(fail);
            }
            Err(e) => return Err(fail(e)),
        }
        let mut frame = Vec::new();
        record
            .encode_frame(&mut frame)
            .map_err(|e| format!("the letter does not encode: {e}"))?;
        // Spaces keep it apart from every key a client can send (0x21-0x7E),
        // so a client that read the tag off a lease cannot pre-empt a letter.
        let key = Bytes::from(format!("netlog-dlq {} {} {offset}", self.name, self.tag));
        let Some(dedup) = dlq.dedup() else {
            return Err("the dead-letter topic takes no idempotency keys".into());
        };
        let ticket = match dedup.begin(key, fingerprint(&frame)) {
            Ok(ticket) => ticket,
            // Written before (the journal did not say so yet): done. Its
            // time differs, so a second try is a conflict, not a replay.
            Err(Lookup::Replay { .. } | Lookup::Conflict { .. }) => return Ok(()),
            Err(Lookup::InFlight) => return Err("this letter is being written".into()),
        };
        record.idempotency = Some(Idempotency {
            key: ticket.key().clone(),
            request_count: 1,
            fingerprint: ticket.fingerprint(),
        });
        frame.clear();
        record
            .encode_frame(&mut frame)
            .map_err(|e| format!("the letter does not encode: {e}"))?;
        let first = dlq
            .publish_trusted(Batch::Framed {
                plain: Bytes::from(frame),
                count: 1,
            })
            .await
            .map_err(fail)?;
        ticket.done(first, 1);
        Ok(())
    }

    /// Clears everything pending and starts over at `to`: leases issued
    /// before answer `expired`. Journaled and fsynced.
    pub fn seek(&self, to: u64) -> Result<(), GroupError> {
        let mut inner = self.inner.lock().recover();
        let change = inner.state.seek(to);
        inner.journal.append(&[change])?;
        inner.journal.sync()?;
        drop(inner);
        self.freed.notify_waiters();
        Ok(())
    }

    /// Changes the settings from a JSON body of the create fields but
    /// `from` and `ordering` (blocking: `group.json` is rewritten).
    /// `others_pending` is the sum of the other groups' `max_pending`.
    fn update(
        &self,
        body: &[u8],
        resolve: &Resolver,
        limits: Limits,
        others_pending: u64,
    ) -> Result<(), GroupError> {
        let input: CreateBody = serde_json::from_slice(body)
            .map_err(|e| GroupError::Invalid(format!("group settings: {e}")))?;
        if input.from.is_some() || input.ordering.is_some() {
            return Err(GroupError::Invalid(
                "from and ordering are set when a group is created; seek moves a group".into(),
            ));
        }
        let mut inner = self.inner.lock().recover();
        let old = inner.settings.clone();
        let settings = Settings {
            lease_time: input.lease_time.unwrap_or(old.lease_time),
            max_lease_time: input.max_lease_time.unwrap_or(old.max_lease_time),
            max_deliveries: input.max_deliveries.unwrap_or(old.max_deliveries),
            dead_letter: input.dead_letter.or(old.dead_letter),
            backoff: input.backoff.unwrap_or(old.backoff),
            max_pending: input.max_pending.unwrap_or(old.max_pending),
            max_waiting: input.max_waiting.unwrap_or(old.max_waiting),
            ordering: old.ordering,
        };
        let rules = settings.rules()?;
        check_dead_letter(&settings, &self.topic, resolve)?;
        if others_pending + settings.max_pending as u64 > limits.max_pending_total {
            return Err(GroupError::Limit(format!(
                "max_pending {} would take the groups' total over [groups] max_pending_total ({})",
                settings.max_pending, limits.max_pending_total
            )));
        }
        let stored = Stored {
            settings: settings.clone(),
            tag: self.tag.clone(),
            generation: inner.state.generation,
            clean: false,
        };
        store(&self.dir, &stored)?;
        inner.settings = settings;
        inner.rules = rules;
        drop(inner);
        // A larger max_pending may free messages for waiting receives.
        self.freed.notify_waiters();
        Ok(())
    }

    /// Pending entries from offset `from`, at most `max`, of `state` if
    /// given (`leased`, `waiting`, `parked`): one JSON line each.
    pub fn pending_lines(&self, from: u64, max: usize, state: Option<&str>) -> Vec<u8> {
        let now = Tick::now();
        let inner = self.inner.lock().recover();
        let mut out = Vec::new();
        let mut from = from;
        let mut n = 0;
        // Filtering by state may skip entries: read in pages until `max`.
        while n < max {
            let page = inner.state.pending_from(from, 1024);
            let Some(last) = page.last().map(|(o, _)| *o) else {
                break;
            };
            for (offset, e) in page {
                if n == max {
                    break;
                }
                if state.is_some_and(|s| s != e.state.name()) {
                    continue;
                }
                let line = serde_json::json!({
                    "offset": offset,
                    "state": e.state.name(),
                    "deliveries": e.deliveries,
                    "generation": e.generation,
                    "in_ms": e.at.saturating_duration_since(now).as_millis() as u64,
                });
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
                n += 1;
            }
            from = last + 1;
        }
        out
    }

    /// Under `fsync = "always"`, fsyncs the journal (on the blocking pool,
    /// with no lock held); a no-op otherwise. Called before an answer that
    /// depends on a change.
    pub async fn durable(&self) -> Result<(), GroupError> {
        let Some(file) = self.inner.lock().recover().journal.to_sync() else {
            return Ok(());
        };
        crate::idle_spin::spawn_blocking(move || file.sync_data())
            .await
            .map_err(std::io::Error::other)??;
        Ok(())
    }

    /// The group's info.
    pub fn info(&self) -> GroupInfo {
        let end = self.topic.next_offset();
        let inner = self.inner.lock().recover();
        let s = &inner.state;
        let [leased, waiting, parked, blocked] = s.pending_by_state();
        let next = s.next;
        let backlog = end.saturating_sub(next);
        GroupInfo {
            name: self.name.clone(),
            topic: self.topic.name().to_string(),
            settings: inner.settings.clone(),
            ack_floor: s.floor(),
            next,
            end,
            backlog,
            pending: BTreeMap::from([
                (Pend::Leased.name(), leased),
                (Pend::Waiting.name(), waiting),
                (Pend::Parked.name(), parked),
                (Pend::Blocked.name(), blocked),
            ]),
            unacked: backlog + s.pending_len() as u64,
            oldest_unacked: s
                .oldest_pending()
                .map(|(offset, since)| Oldest {
                    offset,
                    age_seconds: since.elapsed().as_secs_f64(),
                })
                .or_else(|| {
                    (backlog > 0).then_some(Oldest {
                        offset: next,
                        age_seconds: 0.0,
                    })
                }),
            waiting_receives: self.waiting.load(Ordering::Relaxed),
            consumers: inner
                .consumers
                .iter()
                .map(|(name, at)| (name.clone(), at.elapsed().as_secs()))
                .collect(),
            counters: s.counters.clone(),
        }
    }

    /// What the metrics show of this group.
    pub fn metrics(&self) -> GroupMetrics {
        let info = self.info();
        let inner = self.inner.lock().recover();
        let c = &inner.state.counters;
        GroupMetrics {
            topic: self.topic.name().to_string(),
            group: self.name.clone(),
            settles: inner.settles.iter().map(|(k, v)| (*k, *v)).collect(),
            dead_lettered: [
                (state::Reason::MaxDeliveries.label(), c.dead_max_deliveries),
                (state::Reason::Rejected.label(), c.dead_rejected),
                (state::Reason::Damaged.label(), c.dead_damaged),
            ],
            dead_letter_failures: inner.dead_letter_failures,
            empty: [
                ("nothing_available", inner.empty[0]),
                ("max_pending", inner.empty[1]),
            ],
            info,
        }
    }

    /// Ends waiting receives (they answer 404) and closes the journal.
    fn end(&self) {
        self.gone.send_replace(true);
    }

    /// Compacts the journal and marks a clean stop (at shutdown). Blocking.
    fn close(&self) -> Result<(), GroupError> {
        let _one = self.compacting.lock().recover();
        let mut inner = self.inner.lock().recover();
        let snapshot = inner.state.snapshot(Tick::now());
        inner.journal.rewrite(&snapshot)?;
        let stored = Stored {
            settings: inner.settings.clone(),
            tag: self.tag.clone(),
            generation: inner.state.generation,
            clean: true,
        };
        store(&self.dir, &stored)?;
        Ok(())
    }

    /// Whether the journal is due for compaction ([`Journal::due`]).
    fn compaction_due(&self) -> bool {
        self.inner.lock().recover().journal.due()
    }

    /// Compacts the journal when it is due. The snapshot is taken under the
    /// lock and written without it; only the records appended meanwhile
    /// are copied under it (see `journal.rs`). Blocking.
    fn compact_if_due(&self) -> Result<(), GroupError> {
        let _one = self.compacting.lock().recover();
        let (mark, snapshot) = {
            let inner = self.inner.lock().recover();
            if !inner.journal.due() {
                return Ok(());
            }
            (inner.journal.mark(), inner.state.snapshot(Tick::now()))
        };
        let written = journal::write_snapshot(&mark, &snapshot)?;
        drop(snapshot);
        self.inner
            .lock()
            .recover()
            .journal
            .swap_in(&mark, written)?;
        Ok(())
    }

    /// fsyncs the journal.
    fn sync(&self) -> std::io::Result<()> {
        self.inner.lock().recover().journal.sync()
    }
}

/// A waiting receive, counted against `max_waiting` while it lives.
struct Waiting<'a>(&'a Group);

impl<'a> Waiting<'a> {
    fn enter(group: &'a Group) -> Result<Waiting<'a>, GroupError> {
        let max = group.inner.lock().recover().settings.max_waiting;
        let before = group.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            group.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(GroupError::TooManyWaiting);
        }
        Ok(Waiting(group))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Finds a topic by name (the dead-letter topic).
pub type Resolver = dyn Fn(&str) -> Option<Arc<Topic>> + Send + Sync;

/// Every group of every topic.
#[derive(Default)]
pub struct Registry {
    groups: RwLock<HashMap<String, BTreeMap<String, Arc<Group>>>>,
    limits: RwLock<Limits>,
}

/// Whether `name` is a valid group name: 1 to 64 of `[A-Za-z0-9._-]`, not
/// `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && name != "."
        && name != ".."
}

impl Registry {
    /// Sets the broker-wide limits (at start and on reload).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.write().recover() = limits;
    }

    /// Opens the groups stored under `topic` (blocking); a group that
    /// fails to open is logged and left alone.
    pub fn load(&self, topic: &Arc<Topic>, sync: bool) {
        let Some(embedded) = topic.embedded() else {
            return;
        };
        let dir = topic.dir().join(GROUPS_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut map = BTreeMap::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) || !e.path().join("group.json").exists() {
                continue;
            }
            match Group::open(topic.clone(), embedded.clone(), &e.path(), sync) {
                Ok(g) => {
                    map.insert(name, Arc::new(g));
                }
                Err(e) => {
                    tracing::error!(topic = topic.name(), group = %name, error = %e, "group not opened");
                }
            }
        }
        if !map.is_empty() {
            self.groups
                .write()
                .recover()
                .insert(topic.name().to_string(), map);
        }
    }

    /// The group `name` of `topic`.
    pub fn get(&self, topic: &str, name: &str) -> Result<Arc<Group>, GroupError> {
        self.groups
            .read()
            .recover()
            .get(topic)
            .and_then(|m| m.get(name))
            .cloned()
            .ok_or(GroupError::NotFound)
    }

    /// The names of `topic`'s groups.
    pub fn names(&self, topic: &str) -> Vec<String> {
        self.groups
            .read()
            .recover()
            .get(topic)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every group.
    pub fn all(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .recover()
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    /// Whether a group uses `topic` as its dead-letter topic.
    pub fn dead_letter_of(&self, topic: &str) -> Option<String> {
        self.all().into_iter().find_map(|g| {
            (g.settings().dead_letter.as_deref() == Some(topic))
                .then(|| format!("{}/{}", g.topic.name(), g.name))
        })
    }

    /// Creates group `name` on `topic` from the JSON `body` (blocking).
    /// `resolve` checks the dead-letter topic exists.
    pub fn create(
        &self,
        topic: &Arc<Topic>,
        name: &str,
        body: &[u8],
        sync: bool,
        resolve: &Resolver,
    ) -> Result<Arc<Group>, GroupError> {
        let embedded = kept_by(topic)?;
        let (from, settings) = creation(name, body)?;
        let rules = settings.rules()?;
        check_dead_letter(&settings, topic, resolve)?;
        let from = match from.as_deref() {
            None => topic.next_offset(),
            Some(text) => {
                let spec = crate::duration::parse_offset(text)
                    .map_err(|e| GroupError::Invalid(format!("from: {e}")))?;
                resolve_blocking(embedded, spec)
            }
        };
        let mut groups = self.groups.write().recover();
        let limits = *self.limits.read().recover();
        let total: usize = groups.values().map(BTreeMap::len).sum();
        let pending_total: u64 = groups
            .values()
            .flat_map(|m| m.values())
            .map(|g| g.inner.lock().recover().rules.max_pending as u64)
            .sum();
        let mine = groups.entry(topic.name().to_string()).or_default();
        if mine.contains_key(name) {
            return Err(GroupError::Exists);
        }
        if mine.len() >= limits.max_groups_per_topic {
            return Err(GroupError::Limit(format!(
                "the topic has {} groups, the most [groups] max_groups_per_topic allows",
                mine.len()
            )));
        }
        if total >= limits.max_groups {
            return Err(GroupError::Limit(format!(
                "{total} groups exist, the most [groups] max_groups allows"
            )));
        }
        if pending_total + settings.max_pending as u64 > limits.max_pending_total {
            return Err(GroupError::Limit(format!(
                "max_pending {} would take the groups' total over [groups] max_pending_total ({})",
                settings.max_pending, limits.max_pending_total
            )));
        }
        let dir = topic.dir().join(GROUPS_DIR).join(name);
        std::fs::create_dir_all(&dir)?;
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let stored = Stored {
            settings,
            tag,
            generation: 1,
            clean: false,
        };
        let mut opened = Journal::open(&dir.join("journal"), sync)?;
        let state = State::new(from, 1);
        opened.journal.rewrite(&state.snapshot(Tick::now()))?;
        store(&dir, &stored)?;
        let group = Arc::new(Group::made(
            name.to_string(),
            topic.clone(),
            embedded.clone(),
            &dir,
            stored,
            state,
            opened.journal,
            rules,
        ));
        mine.insert(name.to_string(), group.clone());
        Ok(group)
    }

    /// Changes the settings of group `name` of `topic` (blocking).
    pub fn update(
        &self,
        topic: &str,
        name: &str,
        body: &[u8],
        resolve: &Resolver,
    ) -> Result<(), GroupError> {
        let group = self.get(topic, name)?;
        let limits = *self.limits.read().recover();
        let others: u64 = self
            .all()
            .iter()
            .filter(|g| !Arc::ptr_eq(g, &group))
            .map(|g| g.inner.lock().recover().rules.max_pending as u64)
            .sum();
        group.update(body, resolve, limits, others)
    }

    /// Deletes group `name` of `topic` (blocking): waiting receives end
    /// with 404, its files go.
    pub fn delete(&self, topic: &str, name: &str) -> Result<(), GroupError> {
        let group = {
            let mut groups = self.groups.write().recover();
            let mine = groups.get_mut(topic).ok_or(GroupError::NotFound)?;
            let g = mine.remove(name).ok_or(GroupError::NotFound)?;
            if mine.is_empty() {
                groups.remove(topic);
            }
            g
        };
        group.end();
        remove_group_files(&group.dir);
        Ok(())
    }

    /// Forgets every group of `topic` (deleted with it): waiting receives
    /// end with 404. Blocking.
    pub fn drop_topic(&self, topic: &str) {
        let gone = self.groups.write().recover().remove(topic);
        for g in gone.into_iter().flat_map(|m| m.into_values()) {
            g.end();
            remove_group_files(&g.dir);
        }
    }

    /// One pass over every group: expired leases move, dead letters are
    /// written (with `resolve`), journals past their size are compacted.
    pub async fn tick(&self, resolve: &Resolver) {
        for g in self.all() {
            let dead = g.tick();
            if !dead.is_empty() {
                g.dead_letter(&dead, resolve).await;
            }
            // The rewrite is file I/O of the whole state: on the blocking
            // pool, not on this async worker.
            if g.compaction_due() {
                let group = g.clone();
                let done = crate::idle_spin::spawn_blocking(move || group.compact_if_due()).await;
                if let Ok(Err(e)) = done {
                    tracing::error!(topic = g.topic.name(), group = %g.name, error = %e, "group journal compaction failed");
                }
            }
        }
    }

    /// fsyncs every journal (the interval fsync policy). Blocking.
    pub fn sync(&self) {
        for g in self.all() {
            if let Err(e) = g.sync() {
                tracing::error!(topic = g.topic.name(), group = %g.name, error = %e, "group journal fsync failed");
            }
        }
    }

    /// Ends every wait and writes every group's clean state (at shutdown).
    /// Blocking.
    pub fn close(&self) {
        for g in self.all() {
            if let Err(e) = g.close() {
                tracing::error!(topic = g.topic.name(), group = %g.name, error = %e, "closing group failed");
            }
        }
    }
}

/// A new group's name checked and its JSON `body` read (empty is every
/// default): the `from` it asks for and its settings, on either engine.
pub(crate) fn creation(name: &str, body: &[u8]) -> Result<(Option<String>, Settings), GroupError> {
    if !valid_name(name) {
        return Err(GroupError::Invalid(format!(
            "invalid group name {name:?}: 1 to {MAX_NAME} of A-Z a-z 0-9 . _ -"
        )));
    }
    let input: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| GroupError::Invalid(format!("group settings: {e}")))?
    };
    let d = Settings::default();
    let settings = Settings {
        lease_time: input.lease_time.unwrap_or(d.lease_time),
        max_lease_time: input.max_lease_time.unwrap_or(d.max_lease_time),
        max_deliveries: input.max_deliveries.unwrap_or(d.max_deliveries),
        dead_letter: input.dead_letter,
        backoff: input.backoff.unwrap_or(d.backoff),
        max_pending: input.max_pending.unwrap_or(d.max_pending),
        max_waiting: input.max_waiting.unwrap_or(d.max_waiting),
        ordering: input.ordering.unwrap_or(d.ordering),
    };
    Ok((input.from, settings))
}

/// The dead-letter topic of `settings` exists and is not `topic`.
fn check_dead_letter(
    settings: &Settings,
    topic: &Topic,
    resolve: &Resolver,
) -> Result<(), GroupError> {
    let Some(dlq) = &settings.dead_letter else {
        return Ok(());
    };
    if dlq == topic.name() {
        return Err(GroupError::Invalid(
            "dead_letter must be another topic".into(),
        ));
    }
    if resolve(dlq).is_none() {
        return Err(GroupError::Invalid(format!(
            "dead_letter topic {dlq:?} not found"
        )));
    }
    Ok(())
}

/// Notes that consumer `name` was seen at `now`, forgetting idle ones and,
/// when full, the one seen longest ago.
fn seen(consumers: &mut HashMap<String, Tick>, name: &str, now: Tick) {
    if let Some(at) = consumers.get_mut(name) {
        *at = now;
        return;
    }
    if consumers.len() >= MAX_CONSUMERS {
        consumers.retain(|_, at| now.duration_since(*at) < CONSUMER_IDLE);
    }
    if consumers.len() >= MAX_CONSUMERS
        && let Some(oldest) = consumers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(n, _)| n.clone())
    {
        consumers.remove(&oldest);
    }
    consumers.insert(name.to_string(), now);
}

/// The hash ordering by key goes by: of the message's key, if it has one.
fn key_hash(m: &Message) -> Option<u64> {
    match Record::of(m) {
        Ok(Some(Record { key: Some(key), .. })) => Some(fingerprint(&key)),
        _ => None,
    }
}

/// Ordering by key, when a group opens: reads the message of every pending
/// entry, lowest offset first (runs of consecutive offsets with one
/// reader), so the lowest pending offset of each key holds it and the
/// others are blocked again. Blocking. A message that cannot be read has
/// no key here; its receive judges it.
fn learn_keys(topic: &Embedded, state: &mut State) {
    let offsets: Vec<(u64, Pend)> = state
        .pending_from(0, usize::MAX)
        .into_iter()
        .map(|(o, e)| (o, e.state))
        .collect();
    let log = topic.log();
    let mut i = 0;
    while i < offsets.len() {
        let from = offsets[i].0;
        let mut n = 1;
        while i + n < offsets.len() && offsets[i + n].0 == from + n as u64 {
            n += 1;
        }
        let mut read = HashMap::with_capacity(n);
        if let Ok(mut reader) = log.reader(from) {
            while read.len() < n {
                match reader.next() {
                    Ok(Some(m)) if m.offset < from + n as u64 => {
                        read.insert(m.offset, key_hash(&m));
                    }
                    _ => break,
                }
            }
        }
        for &(offset, pend) in &offsets[i..i + n] {
            let key = read.get(&offset).copied().flatten();
            if !state.admit(offset, key) && pend != Pend::Leased {
                state.block(offset);
            }
        }
        i += n;
    }
}

/// Whether `e` says the stored message is damaged (checksum, framing or
/// codec), rather than that reading failed.
fn is_damage(e: &TopicError) -> bool {
    use crate::topic::StorageFault;
    matches!(
        e.storage_fault(),
        Some(StorageFault::Corrupt { .. } | StorageFault::Codec { .. })
    )
}

/// The embedded topic under `topic`, which keeps its groups in its
/// directory; on JetStream, [`GroupError::NotOnEngine`] (its groups are
/// [`jetstream::JsGroup`]s, reached through [`GroupRef`]).
pub fn kept_by(topic: &Topic) -> Result<&Arc<Embedded>, GroupError> {
    topic.embedded().ok_or(GroupError::NotOnEngine(
        "a group kept in the topic's directory is",
    ))
}

/// A group on either engine: what every group route acts on.
pub enum GroupRef {
    /// Kept by this process, in the topic's directory.
    Embedded(Arc<Group>),
    /// A durable pull consumer of the topic's stream.
    JetStream(jetstream::JsGroup),
}

/// Resolves an offset spec against `topic`'s log without an async context.
fn resolve_blocking(topic: &Embedded, spec: crate::duration::OffsetSpec) -> u64 {
    use crate::duration::OffsetSpec;
    let log = topic.log();
    match spec {
        OffsetSpec::End => topic.next_offset(),
        OffsetSpec::At(n) => n,
        OffsetSpec::Oldest => log.oldest_offset(),
        OffsetSpec::Latest => topic
            .next_offset()
            .saturating_sub(1)
            .max(log.oldest_offset()),
        OffsetSpec::Ago(d) => {
            let at = SystemTime::now()
                .checked_sub(d)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            log.offset_at(at)
        }
    }
}

/// Removes a group's files, and its directory if nothing else is in it.
fn remove_group_files(dir: &Path) {
    for f in ["group.json", "group.json.tmp", "journal", "journal.tmp"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    let _ = std::fs::remove_dir(dir);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}
