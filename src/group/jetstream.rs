//! A consumer group on the JetStream engine: the group routes' operations
//! over the topic's durable pull consumer (`topic/jetstream/groups.rs`).
//!
//! Nothing is kept here: the consumer holds the leases, the delivery
//! counts and the position, so a [`JsGroup`] is a name and a topic, made
//! per request, and two front ends serve one group without ever handing
//! one message to two workers at once. Settings are checked as on the
//! embedded engine (`Settings::rules`) and kept in the consumer's
//! metadata.
//!
//! Dead letters are written as the embedded engine writes them (the
//! original value, key, timestamp and headers plus the `netlog-dlq-*`
//! headers), at most once per group and offset (their idempotency key): a
//! reject is a `+TERM`, then the letter is written by the front end that
//! took it; a message that reached `max_deliveries` is announced by the
//! servers' max-deliveries advisory, which every front end follows in one
//! queue group ([`follow_max_deliveries`]), so one of them writes it. An
//! advisory is core NATS, sent once: one sent while no front end runs is
//! lost, and so is that letter (the message is not delivered again).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::watch;

use super::{
    Delivered, GroupError, GroupInfo, Op, ReceiveRequest, Resolver, Settings, SettleItem, Settled,
    check_dead_letter, creation,
};
use crate::record::{Idempotency, Record};
use crate::topic::jetstream::JsTopic;
use crate::topic::jetstream::groups::{GroupRules, JsOp, group_name, parse_lease};
use crate::topic::jetstream::topic_name;

/// Subject of the servers' max-deliveries advisories, for every consumer.
pub const MAX_DELIVERIES_ADVISORY: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";
/// Queue group of the front ends following them: one takes each.
pub const DEAD_LETTER_QUEUE: &str = "netlog-dead-letters";
use crate::topic::{Batch, Keyed, Topic, TopicError, fingerprint};

/// A group on a JetStream topic. See the module docs.
pub struct JsGroup {
    topic: Arc<Topic>,
    js: Arc<JsTopic>,
    name: String,
}

/// The JetStream topic under `topic`, if it is one.
pub(crate) fn js_of(topic: &Topic) -> Option<Arc<JsTopic>> {
    topic.jetstream().cloned()
}

impl JsGroup {
    /// Group `name` of `topic` (whether it exists is known when it is used).
    pub(crate) fn of(topic: Arc<Topic>, js: Arc<JsTopic>, name: &str) -> JsGroup {
        JsGroup {
            topic,
            js,
            name: name.to_string(),
        }
    }

    /// Creates the group from its JSON `body`.
    pub(crate) async fn create(&self, body: &[u8], resolve: &Resolver) -> Result<(), GroupError> {
        let (from, settings) = creation(&self.name, body)?;
        let rules = settings.rules()?;
        if rules.by_key {
            return Err(GroupError::NotOnEngine("key ordering is"));
        }
        check_dead_letter(&settings, &self.topic, resolve)?;
        let from = match from.as_deref() {
            None => self.topic.resolve(crate::duration::OffsetSpec::End).await?,
            Some(text) => {
                let spec = crate::duration::parse_offset(text)
                    .map_err(|e| GroupError::Invalid(format!("from: {e}")))?;
                self.topic.resolve(spec).await?
            }
        };
        let rules = GroupRules {
            lease_time: rules.lease_time,
            max_deliveries: rules.max_deliveries,
            backoff: rules.backoff,
            max_pending: rules.max_pending,
            max_waiting: settings.max_waiting,
            settings_json: serde_json::to_string(&settings).unwrap_or_default(),
        };
        if !self.js.group_create(&self.name, &rules, from).await? {
            return Err(GroupError::Exists);
        }
        tracing::info!(topic = self.topic.name(), group = %self.name, from, "group created on JetStream");
        Ok(())
    }

    /// Deletes the group.
    pub(crate) async fn delete(&self) -> Result<(), GroupError> {
        match self.js.group_delete(&self.name).await? {
            true => Ok(()),
            false => Err(GroupError::NotFound),
        }
    }

    /// The names of `js`'s groups.
    pub(crate) async fn names(js: &JsTopic) -> Result<Vec<String>, GroupError> {
        Ok(js.group_names().await?)
    }

    /// The group's settings, as stored with its consumer.
    async fn settings(&self) -> Result<Settings, GroupError> {
        let state = self
            .js
            .group_state(&self.name)
            .await?
            .ok_or(GroupError::NotFound)?;
        serde_json::from_str(&state.settings_json)
            .map_err(|e| GroupError::Invalid(format!("stored group settings: {e}")))
    }

    /// The group's info, from its consumer.
    pub(crate) async fn info(&self) -> Result<GroupInfo, GroupError> {
        let state = self
            .js
            .group_state(&self.name)
            .await?
            .ok_or(GroupError::NotFound)?;
        let settings: Settings = serde_json::from_str(&state.settings_json)
            .map_err(|e| GroupError::Invalid(format!("stored group settings: {e}")))?;
        let end = self.topic.resolve(crate::duration::OffsetSpec::End).await?;
        let counters = super::state::Counters {
            redelivered: state.redelivered,
            ..Default::default()
        };
        Ok(GroupInfo {
            name: self.name.clone(),
            topic: self.topic.name().to_string(),
            settings,
            ack_floor: state.ack_floor,
            next: state.next,
            end,
            backlog: state.backlog,
            pending: [("leased", state.unacked as usize)].into(),
            unacked: state.backlog + state.unacked,
            oldest_unacked: None,
            waiting_receives: state.waiting_receives,
            consumers: Default::default(),
            counters,
        })
    }

    /// Up to `req.max` messages under new leases (see the module docs).
    /// `stop` (shutdown) ends the wait; the pull request then expires on
    /// the server by itself.
    pub(crate) async fn receive(
        &self,
        req: ReceiveRequest,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<Delivered>, GroupError> {
        let mut stop = stop.clone();
        let received = tokio::select! {
            r = self.js.group_receive(&self.name, req.max, req.max_bytes, req.wait) => r,
            _ = stop.wait_for(|s| *s) => return Err(GroupError::ShuttingDown),
        };
        let got = received?.ok_or(GroupError::NotFound)?;
        Ok(got
            .into_iter()
            .map(|d| Delivered {
                lease: d.lease,
                deliveries: d.deliveries,
                expires_ms: d.expires_ms,
                message: d.message,
            })
            .collect())
    }

    /// Settles `items` with `op`, one by one; a reject writes the dead
    /// letter when the group names a dead-letter topic.
    pub(crate) async fn settle(
        &self,
        op: Op,
        items: &[SettleItem],
        reason: Option<&str>,
        resolve: &Resolver,
    ) -> Result<Vec<Settled>, GroupError> {
        // Also says the group exists (404 otherwise).
        let dlq = self.settings().await?.dead_letter;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let Some(lease) = parse_lease(self.topic.name(), &self.name, &item.lease) else {
                out.push(settled(&item.lease, "invalid", false));
                continue;
            };
            let js_op = match op {
                Op::Ack => JsOp::Ack,
                Op::Nack => JsOp::Nack(item.time),
                Op::Extend => JsOp::Extend,
                Op::Reject => JsOp::Reject,
            };
            self.js.group_settle(&lease, js_op).await?;
            let result = match (op, &dlq) {
                (Op::Ack, _) => "acked",
                (Op::Nack, _) => "nacked",
                (Op::Extend, _) => "extended",
                (Op::Reject, None) => "dropped",
                (Op::Reject, Some(dlq)) => {
                    let letter = Letter {
                        offset: lease.offset,
                        deliveries: lease.deliveries,
                        why: "rejected",
                        error: reason,
                    };
                    match resolve(dlq) {
                        Some(dlq) => self.write_letter(&dlq, letter).await?,
                        None => {
                            return Err(GroupError::Invalid(format!(
                                "dead-letter topic {dlq:?} not found"
                            )));
                        }
                    }
                    "dead_lettered"
                }
            };
            // An extension runs the whole lease time again, whatever was
            // asked.
            let clamped = op == Op::Extend && item.time.is_some();
            out.push(settled(&item.lease, result, clamped));
        }
        Ok(out)
    }

    /// Appends the dead letter of `letter.offset` to `dlq` at most once.
    async fn write_letter(&self, dlq: &Topic, letter: Letter<'_>) -> Result<(), GroupError> {
        let Some(m) = self.topic.read(letter.offset).await? else {
            return Ok(());
        };
        let mut record = match Record::of(&m) {
            Ok(Some(r)) => r,
            _ => Record {
                value: m.payload,
                ..Record::default()
            },
        };
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut add = |name: &str, value: String| {
            record.headers.retain(|(n, _)| n != name);
            record.headers.push((name.to_string(), Bytes::from(value)));
        };
        add("netlog-dlq-topic", self.topic.name().to_string());
        add("netlog-dlq-group", self.name.clone());
        add("netlog-dlq-offset", letter.offset.to_string());
        add("netlog-dlq-deliveries", letter.deliveries.to_string());
        add("netlog-dlq-reason", letter.why.to_string());
        if let Some(error) = letter.error {
            add("netlog-dlq-error", error.to_string());
        }
        add("netlog-dlq-time", now_ms.to_string());
        record.idempotency = None;
        match dlq.allow_v1().await {
            Ok(()) => {}
            Err(TopicError::V0Only) => {
                dlq.publish_trusted(Batch::One(record.value)).await?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let mut frame = Vec::new();
        record
            .encode_frame(&mut frame)
            .map_err(|e| GroupError::Invalid(format!("the letter does not encode: {e}")))?;
        // Topic names run to 252 characters: the key names them by hash,
        // within the 255 bytes a key may have. Spaces keep it apart from
        // every key a client can send (0x21-0x7E), so no client can
        // pre-empt a letter.
        let whose = fingerprint(format!("{}/{}", self.topic.name(), self.name).as_bytes());
        let key = format!("netlog-dlq {whose:016x} {}", letter.offset);
        record.idempotency = Some(Idempotency {
            key: Bytes::from(key),
            request_count: 1,
            fingerprint: fingerprint(&frame),
        });
        frame.clear();
        record
            .encode_frame(&mut frame)
            .map_err(|e| GroupError::Invalid(format!("the letter does not encode: {e}")))?;
        // Written before (a settle retried): done, whatever the answer.
        let _: Keyed = dlq
            .publish_keyed(Batch::Framed {
                plain: Bytes::from(frame),
                count: 1,
            })
            .await?;
        Ok(())
    }
}

/// A dead letter to write.
struct Letter<'a> {
    offset: u64,
    deliveries: u32,
    /// `netlog-dlq-reason`: `rejected` or `max_deliveries`.
    why: &'static str,
    /// `netlog-dlq-error`: a reject's reason.
    error: Option<&'a str>,
}

/// A max-deliveries advisory, as far as it is read.
#[derive(Deserialize)]
struct Exceeded {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Writes the dead letter of every message of a netlog group that reached
/// its `max_deliveries`, as the servers announce them, until `stop` (see
/// the module docs). A letter that cannot be written is logged; the
/// message stays where JetStream left it (settled for the consumer).
pub(crate) async fn follow_max_deliveries(
    client: async_nats::Client,
    resolve: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut advisories = match client
        .queue_subscribe(MAX_DELIVERIES_ADVISORY, DEAD_LETTER_QUEUE.to_string())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot follow max-deliveries advisories: no dead letters for them");
            return;
        }
    };
    loop {
        let advisory = tokio::select! {
            a = advisories.next() => match a {
                Some(a) => a,
                None => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(e) = serde_json::from_slice::<Exceeded>(&advisory.payload) else {
            continue;
        };
        let (Some(topic), Some(group)) = (topic_name(&e.stream), group_name(&e.consumer)) else {
            continue;
        };
        if let Err(err) = dead_letter_exceeded(&*resolve, &topic, &group, &e).await {
            tracing::warn!(topic, group, offset = e.stream_seq.saturating_sub(1), error = %err, "dead letter of a message past max_deliveries not written");
        }
    }
}

/// Writes the letter of one max-deliveries advisory.
async fn dead_letter_exceeded(
    resolve: &Resolver,
    topic: &str,
    group: &str,
    e: &Exceeded,
) -> Result<(), GroupError> {
    let Some(t) = resolve(topic) else {
        return Ok(());
    };
    let Some(js) = js_of(&t) else {
        return Ok(());
    };
    let g = JsGroup::of(t, js, group);
    let Some(dlq) = g.settings().await?.dead_letter else {
        return Ok(());
    };
    let dlq = resolve(&dlq)
        .ok_or_else(|| GroupError::Invalid(format!("dead-letter topic {dlq:?} not found")))?;
    let letter = Letter {
        offset: e.stream_seq.saturating_sub(1),
        deliveries: u32::try_from(e.deliveries).unwrap_or(u32::MAX),
        why: "max_deliveries",
        error: None,
    };
    g.write_letter(&dlq, letter).await
}

fn settled(lease: &str, result: &'static str, clamped: bool) -> Settled {
    Settled {
        lease: lease.to_string(),
        result,
        clamped,
        reason: None,
    }
}
