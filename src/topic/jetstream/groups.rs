//! Consumer groups on JetStream: one durable pull consumer per group, so
//! the servers keep every lease and any front end can serve any request.
//!
//! Group `billing` of topic `orders` is consumer `g_billing` of stream
//! `nl_orders` (a `.` in a group name becomes `=`, which group names cannot
//! hold; consumer names cannot hold dots). Its settings JSON is in the
//! consumer's metadata (`netlog.group`). The mapping of the spec:
//!
//! - `lease_time` is the consumer's `AckWait`; `max_deliveries` its
//!   `MaxDeliver` (0 is unlimited, -1); `backoff` its `BackOff` when it is
//!   shorter than `max_deliveries` (JetStream's rule), else the lease time
//!   governs; `max_pending` its `MaxAckPending`, `max_waiting` its
//!   `MaxWaiting`; `from` its start sequence.
//! - A **lease** is the delivery's ack subject behind `js.`: the subject
//!   names the stream, the consumer, the delivery count and the stream
//!   sequence, so any front end settles it by publishing to it. A lease of
//!   another group or topic, or not of this shape, is `invalid`.
//! - ack is `+ACK`, nack `-NAK` with the delay, extend `+WPI` (the lease
//!   runs its whole `AckWait` again: a `lease_time` asked for is not
//!   honoured, the answer says `clamped`), reject `+TERM`; each is sent as a
//!   request, so the answer comes after the consumer took it.
//! - Receives are pull requests that return as soon as something was
//!   delivered (`no_wait` with `expires` = `wait`). `max_bytes` is not sent
//!   with them (the server's end-of-request status for it can overtake the
//!   messages, which the client then drops): it is counted here, and what
//!   was delivered past it is nacked back at once, its delivery count one
//!   higher.
//!
//! What JetStream does not tell, and so this engine does not answer: the
//! pending listing and seek (`501`), whether an ack came after its lease
//! ran out (`acked` either way), a superseded lease (settling it acts on
//! the current delivery of that message).
//!
//! Bounds: a receive returns at most `max` messages and about `max_bytes`
//! bytes, waits at most `wait`; each request to the servers has
//! `request_timeout`. A pull that finds no consumer leader (an election)
//! is asked again for the wait, and at least 2 s, then answered `503
//! engine unavailable`.

use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, pull};
use futures_util::StreamExt;

use super::topic::{JsTopic, stored_message};
use super::{EngineError, stream_name};
use crate::message::Message;
use crate::topic::TopicError;

/// Prefix of a group's consumer name.
pub const CONSUMER_PREFIX: &str = "g_";
/// Consumer metadata key holding the group's settings JSON.
pub const GROUP_SETTINGS_KEY: &str = "netlog.group";
/// Prefix of a lease on this engine (before the ack subject's tokens).
pub const LEASE_PREFIX: &str = "js.";
/// Prefix of a JetStream ack subject.
const ACK_PREFIX: &str = "$JS.ACK.";
/// Shortest wait that is sent as a pull request's `expires` (10 ms); a
/// shorter one answers what is there now.
pub const MIN_PULL_WAIT: Duration = Duration::from_millis(10);
/// Least time a receive asks again when its pull finds no consumer leader
/// (2 s; longer when the receive's own wait is).
pub const NO_LEADER_RETRY: Duration = Duration::from_secs(2);
/// Pause between two such pulls.
const NO_LEADER_PAUSE: Duration = Duration::from_millis(50);

/// What a group is made with, in the engine's terms.
pub(crate) struct GroupRules {
    pub(crate) lease_time: Duration,
    pub(crate) max_deliveries: u32,
    pub(crate) backoff: Vec<Duration>,
    pub(crate) max_pending: usize,
    pub(crate) max_waiting: usize,
    /// The group's settings JSON, kept in the consumer's metadata.
    pub(crate) settings_json: String,
}

/// One message handed out under a lease.
pub(crate) struct JsDelivery {
    pub(crate) lease: String,
    pub(crate) deliveries: u32,
    pub(crate) expires_ms: u64,
    pub(crate) message: Message,
}

/// A group's position, as the consumer reports it.
pub(crate) struct JsGroupState {
    pub(crate) settings_json: String,
    /// Every offset below is settled.
    pub(crate) ack_floor: u64,
    /// The lowest offset never delivered.
    pub(crate) next: u64,
    /// Messages not delivered yet.
    pub(crate) backlog: u64,
    /// Deliveries not settled yet.
    pub(crate) unacked: u64,
    pub(crate) waiting_receives: usize,
    pub(crate) redelivered: u64,
}

/// A settle operation, in the engine's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsOp {
    Ack,
    Nack(Option<Duration>),
    Extend,
    Reject,
}

/// What a lease names, once checked against the group.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct JsLease {
    pub(crate) offset: u64,
    pub(crate) deliveries: u32,
    subject: String,
}

/// The consumer name of group `group`.
pub(crate) fn consumer_name(group: &str) -> String {
    format!("{CONSUMER_PREFIX}{}", group.replace('.', "="))
}

/// The group of a consumer name, if it is one of netlog's.
pub(crate) fn group_name(consumer: &str) -> Option<String> {
    consumer
        .strip_prefix(CONSUMER_PREFIX)
        .map(|g| g.replace('=', "."))
}

/// Reads a lease of group `group` of topic `topic`; `None` if it is not
/// one (malformed, or another group's or topic's).
pub(crate) fn parse_lease(topic: &str, group: &str, lease: &str) -> Option<JsLease> {
    let rest = lease.strip_prefix(LEASE_PREFIX)?;
    let tokens: Vec<&str> = rest.split('.').collect();
    // v1: stream.consumer.delivered.sseq.dseq.ts.pending; v2 adds a
    // domain and an account hash in front (and may add a token at the end).
    let at = match tokens.len() {
        7 => 0,
        9 | 10 => 2,
        _ => return None,
    };
    if tokens[at] != stream_name(topic) || tokens[at + 1] != consumer_name(group) {
        return None;
    }
    let deliveries = tokens[at + 2].parse::<u32>().ok()?;
    let seq = tokens[at + 3].parse::<u64>().ok().filter(|s| *s > 0)?;
    if tokens[at + 4..].iter().any(|t| t.is_empty()) {
        return None;
    }
    Some(JsLease {
        offset: seq - 1,
        deliveries,
        subject: format!("{ACK_PREFIX}{rest}"),
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl JsTopic {
    fn consumer_config(&self, group: &str, rules: &GroupRules, from: u64) -> pull::Config {
        let max_deliver = match rules.max_deliveries {
            0 => -1,
            n => i64::from(n),
        };
        let backoff = if rules.max_deliveries as usize > rules.backoff.len() {
            rules.backoff.clone()
        } else {
            Vec::new()
        };
        pull::Config {
            durable_name: Some(consumer_name(group)),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from + 1,
            },
            ack_policy: AckPolicy::Explicit,
            ack_wait: rules.lease_time,
            max_deliver,
            backoff,
            max_ack_pending: i64::try_from(rules.max_pending).unwrap_or(i64::MAX),
            max_waiting: i64::try_from(rules.max_waiting).unwrap_or(i64::MAX),
            metadata: [(GROUP_SETTINGS_KEY.to_string(), rules.settings_json.clone())].into(),
            ..Default::default()
        }
    }

    /// Makes group `group` from offset `from`; `Ok(false)` if it exists.
    pub(crate) async fn group_create(
        &self,
        group: &str,
        rules: &GroupRules,
        from: u64,
    ) -> Result<bool, TopicError> {
        let name = consumer_name(group);
        if self.stream().consumer_info(&name).await.is_ok() {
            return Ok(false);
        }
        self.stream()
            .create_consumer(self.consumer_config(group, rules, from))
            .await
            .map_err(|e| engine("creating a group's consumer", e.into()))?;
        Ok(true)
    }

    /// Deletes group `group`; `Ok(false)` if it does not exist.
    pub(crate) async fn group_delete(&self, group: &str) -> Result<bool, TopicError> {
        match self.stream().delete_consumer(&consumer_name(group)).await {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().contains("not found") => Ok(false),
            Err(e) => Err(engine("deleting a group's consumer", e.into())),
        }
    }

    /// The names of the topic's groups, sorted.
    pub(crate) async fn group_names(&self) -> Result<Vec<String>, TopicError> {
        let mut names = Vec::new();
        let mut listed = self.stream().consumer_names();
        while let Some(name) = listed.next().await {
            let name = name.map_err(|e| engine("listing groups", e.into()))?;
            names.extend(group_name(&name));
        }
        names.sort();
        Ok(names)
    }

    /// Group `group`'s state; `None` if it does not exist.
    pub(crate) async fn group_state(
        &self,
        group: &str,
    ) -> Result<Option<JsGroupState>, TopicError> {
        let info = match self.stream().consumer_info(consumer_name(group)).await {
            Ok(info) => info,
            Err(e) if e.to_string().contains("not found") => return Ok(None),
            Err(e) => return Err(engine("reading a group's consumer", e.into())),
        };
        Ok(Some(JsGroupState {
            settings_json: info
                .config
                .metadata
                .get(GROUP_SETTINGS_KEY)
                .cloned()
                .unwrap_or_default(),
            ack_floor: info.ack_floor.stream_sequence,
            next: info.delivered.stream_sequence,
            backlog: info.num_pending,
            unacked: info.num_ack_pending as u64,
            waiting_receives: info.num_waiting,
            redelivered: info.num_redelivered as u64,
        }))
    }

    /// Up to `max` messages (about `max_bytes`) of group `group` under new
    /// leases, waiting up to `wait` for the first; `None` if the group does
    /// not exist.
    pub(crate) async fn group_receive(
        &self,
        group: &str,
        max: usize,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Option<Vec<JsDelivery>>, TopicError> {
        let consumer: consumer::PullConsumer =
            match self.stream().get_consumer(&consumer_name(group)).await {
                Ok(c) => c,
                Err(e) if e.to_string().contains("not found") => return Ok(None),
                Err(e) => return Err(engine("reading a group's consumer", e)),
            };
        let lease_time = consumer.cached_info().config.ack_wait;
        // A pull answered `503` (no responders: the consumer's leader is
        // being elected, as right after it is made or after a node died)
        // is asked again until the receive's wait, and at least
        // NO_LEADER_RETRY, has passed; then the engine is unavailable.
        let started = std::time::Instant::now();
        let retry_until = started + wait.max(NO_LEADER_RETRY);
        let (mut out, mut bytes, mut over) = (Vec::new(), 0usize, Vec::new());
        'pull: loop {
            let left = wait.saturating_sub(started.elapsed());
            // No max_bytes in the pull request: the server then ends it
            // with a status that can overtake the messages it delivered,
            // and the client drops them. The bytes are counted here.
            let mut fetch = consumer.fetch().max_messages(max);
            if left >= MIN_PULL_WAIT {
                fetch = fetch.expires(left);
            }
            let no_leader = |e: &dyn std::fmt::Display| e.to_string().contains("503");
            let mut batch = match fetch.messages().await {
                Ok(batch) => batch,
                Err(e) if no_leader(&e) && std::time::Instant::now() < retry_until => {
                    tokio::time::sleep(NO_LEADER_PAUSE).await;
                    continue 'pull;
                }
                Err(e) if no_leader(&e) => return Err(no_leader_yet()),
                Err(e) => return Err(engine("receiving from a group", e.into())),
            };
            while let Some(m) = batch.next().await {
                let m = match m {
                    Ok(m) => m,
                    // A status ends the pull request ("409 Batch Completed"
                    // when it took what there was): what came before stands.
                    Err(e) if e.to_string().contains("409") => {
                        tracing::debug!(error = %e, got = out.len(), "group pull ended");
                        break;
                    }
                    Err(e) if no_leader(&e) && out.is_empty() => {
                        if std::time::Instant::now() >= retry_until {
                            return Err(no_leader_yet());
                        }
                        tokio::time::sleep(NO_LEADER_PAUSE).await;
                        continue 'pull;
                    }
                    Err(e) if no_leader(&e) => break,
                    Err(e) => return Err(engine("receiving from a group", e)),
                };
                let Some(reply) = m.reply.as_ref().map(|r| r.to_string()) else {
                    continue;
                };
                let Some(lease) = reply.strip_prefix(ACK_PREFIX) else {
                    continue;
                };
                let lease = format!("{LEASE_PREFIX}{lease}");
                let Some(parsed) = parse_lease(self.name(), group, &lease) else {
                    tracing::warn!(
                        reply,
                        "a delivery whose ack subject is not a lease: skipped"
                    );
                    continue;
                };
                if !out.is_empty() && bytes + m.payload.len() > max_bytes {
                    over.push(parsed);
                    continue;
                }
                bytes += m.payload.len();
                let headers = m.headers.clone().unwrap_or_default();
                let message = stored_message(parsed.offset, &headers, m.payload.clone())?;
                out.push(JsDelivery {
                    lease,
                    deliveries: parsed.deliveries,
                    expires_ms: now_ms() + lease_time.as_millis() as u64,
                    message,
                });
            }
            break;
        }
        // Delivered past max_bytes: given back at once (their delivery
        // count went up by one).
        for lease in &over {
            self.group_settle(lease, JsOp::Nack(None)).await?;
        }
        Ok(Some(out))
    }

    /// Settles one lease of group `group` (already parsed by
    /// [`parse_lease`]); the answer comes once the consumer took it.
    pub(crate) async fn group_settle(&self, lease: &JsLease, op: JsOp) -> Result<(), TopicError> {
        let body = match op {
            JsOp::Ack => "+ACK".to_string(),
            JsOp::Nack(None) => "-NAK".to_string(),
            JsOp::Nack(Some(d)) => format!("-NAK {{\"delay\":{}}}", d.as_nanos()),
            JsOp::Extend => "+WPI".to_string(),
            JsOp::Reject => "+TERM".to_string(),
        };
        self.client()
            .request(lease.subject.clone(), body.into())
            .await
            .map_err(|e| TopicError::EngineUnavailable {
                reason: format!("settling a lease: {e}"),
                publish: false,
            })?;
        Ok(())
    }
}

fn engine(what: &'static str, source: EngineError) -> TopicError {
    TopicError::Engine { what, source }
}

/// The answer when a group's consumer had no leader for the whole retry.
fn no_leader_yet() -> TopicError {
    TopicError::EngineUnavailable {
        reason: "the group's consumer has no leader (an election is under way); retry later".into(),
        publish: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease is the ack subject of this group's consumer on this topic's
    /// stream, in either subject format; anything else is refused.
    #[test]
    fn leases_parse_for_their_group_only() {
        let v1 = "js.nl_orders=eu.g_billing=x.3.101.7.1790230470084404000.42";
        let l = parse_lease("orders.eu", "billing.x", v1).unwrap();
        assert_eq!((l.offset, l.deliveries), (100, 3));
        assert_eq!(&l.subject[..8], "$JS.ACK.");
        let v2 = "js.dom.hash.nl_orders=eu.g_billing=x.1.1.1.17902.0.tok";
        assert_eq!(parse_lease("orders.eu", "billing.x", v2).unwrap().offset, 0);
        for bad in [
            "nl_orders=eu.g_billing=x.3.101.7.1.42",
            "js.nl_orders=eu.g_other.3.101.7.1.42",
            "js.nl_other.g_billing=x.3.101.7.1.42",
            "js.nl_orders=eu.g_billing=x.3.0.7.1.42",
            "js.nl_orders=eu.g_billing=x.x.101.7.1.42",
            "js.nl_orders=eu.g_billing=x.3.101.7.1",
        ] {
            assert_eq!(parse_lease("orders.eu", "billing.x", bad), None, "{bad}");
        }
    }

    #[test]
    fn names_map_both_ways() {
        assert_eq!(consumer_name("billing.v2"), "g_billing=v2");
        assert_eq!(group_name("g_billing=v2").as_deref(), Some("billing.v2"));
        assert_eq!(group_name("other"), None);
    }
}
