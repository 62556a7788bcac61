//! Consumer groups over HTTP against the real binary: leases, settles,
//! expiry with nobody polling, dead letters, bounds, and a kill -9.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

async fn receive(api: &Api, path: &str) -> reqwest::Response {
    api.post_empty(path).await
}

fn lease_of(r: &reqwest::Response) -> String {
    r.headers()
        .get("netlog-lease")
        .expect("a lease header")
        .to_str()
        .expect("ascii")
        .to_string()
}

/// A receive of many as ndjson (`path` gives `max`): one value per line.
async fn receive_lines(api: &Api, path: &str) -> Vec<Value> {
    let got = api.post_for_ndjson(path).await;
    assert_eq!(got.status(), 200, "{path}");
    got.text()
        .await
        .expect("body")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an ndjson line"))
        .collect()
}

async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_str(&r.text().await.expect("body")).expect("json")
}

/// The walkthrough: publish, receive under a lease, ack once; a double
/// ack, a malformed lease, another group's lease, and batch bounds.
#[tokio::test]
async fn receive_and_ack_with_every_wrong_lease() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("orders").await;
    let made = api
        .post("/orders/groups/billing", r#"{"from":"oldest"}"#)
        .await;
    assert_eq!(made.status(), 201);
    let again = api.post("/orders/groups/billing", "{}").await;
    assert_eq!(again.status(), 400);
    assert_eq!(json_of(again).await["error"], "netlog: group exists");
    assert_eq!(api.post_empty("/orders/groups/other").await.status(), 201);
    for m in ["one", "two", "three"] {
        assert_eq!(api.post("/orders/payload", m).await.status(), 201);
    }
    let got = receive(&api, "/orders/groups/billing/receive").await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["x-offset"], "0");
    assert_eq!(got.headers()["netlog-deliveries"], "1");
    let lease = lease_of(&got);
    assert_eq!(got.text().await.expect("body"), "one");

    let acked = json_of(
        api.post_empty(&format!("/orders/groups/billing/ack?lease={lease}"))
            .await,
    )
    .await;
    assert_eq!(acked["result"], "acked");
    let twice = json_of(
        api.post_empty(&format!("/orders/groups/billing/ack?lease={lease}"))
            .await,
    )
    .await;
    assert_eq!(
        twice["result"], "done",
        "a double ack is done, not an error"
    );

    let bad = api
        .post_empty("/orders/groups/billing/ack?lease=nonsense")
        .await;
    assert_eq!(bad.status(), 400);
    assert_eq!(json_of(bad).await["error"], "netlog: invalid lease");
    // The other group's tag: not this group's lease.
    let theirs = lease_of(&receive(&api, "/orders/groups/other/receive").await);
    let wrong = api
        .post_empty(&format!("/orders/groups/billing/ack?lease={theirs}"))
        .await;
    assert_eq!(wrong.status(), 404);
    assert_eq!(json_of(wrong).await["error"], "netlog: lease not found");
    let never = lease.replacen("0.", "2.", 1);
    let never = api
        .post_empty(&format!("/orders/groups/billing/ack?lease={never}"))
        .await;
    assert_eq!(never.status(), 404, "never delivered");
    assert_eq!(
        api.post_empty("/orders/groups/nope/receive").await.status(),
        404
    );

    // Batches: 10,001 leases refused whole; a mixed batch answers each.
    let many: Vec<String> = (0..10_001).map(|i| format!("{i}.1.1.ab")).collect();
    let too_many = api
        .post(
            "/orders/groups/billing/ack",
            json!({ "leases": many }).to_string(),
        )
        .await;
    assert_eq!(too_many.status(), 400);
    let most: Vec<String> = (0..10_000).map(|i| format!("{i}.1.1.ab")).collect();
    let fine = api
        .post(
            "/orders/groups/billing/ack",
            json!({ "leases": most }).to_string(),
        )
        .await;
    assert_eq!(fine.status(), 200);
    assert_eq!(json_of(fine).await["counts"]["not_found"], 10_000);
    let two = lease_of(&receive(&api, "/orders/groups/billing/receive").await);
    let mixed = json_of(
        api.post(
            "/orders/groups/billing/ack",
            json!({ "leases": [two, lease, "junk"] }).to_string(),
        )
        .await,
    )
    .await;
    let results: Vec<&str> = mixed["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["result"].as_str().expect("result"))
        .collect();
    assert_eq!(results, ["acked", "done", "invalid"]);
    let info = json_of(api.get("/orders/groups/billing").await).await;
    assert_eq!(info["ack_floor"], 2);
    assert_eq!(info["backlog"], 1);
    assert_eq!(info["counters"]["acked"], 2);
    let list = json_of(api.get("/orders/groups").await).await;
    assert_eq!(list, json!(["billing", "other"]));
    let labels = [("topic", "orders"), ("group", "billing")];
    assert_eq!(
        metric(&api, "netlog_group_backlog_messages", &labels).await,
        Some(1.0)
    );
    let acked = [
        ("topic", "orders"),
        ("group", "billing"),
        ("op", "ack"),
        ("result", "acked"),
    ];
    assert_eq!(
        metric(&api, "netlog_group_settles_total", &acked).await,
        Some(2.0)
    );
    // Settings change in place; from and ordering do not.
    let patched = json_of(
        api.http
            .patch(api.url("/orders/groups/billing"))
            .body(r#"{"lease_time":"2m","max_waiting":7}"#)
            .send()
            .await
            .expect("patch"),
    )
    .await;
    assert_eq!(patched["settings"]["lease_time"], "2m");
    assert_eq!(patched["settings"]["max_waiting"], 7);
    let refused = api
        .http
        .patch(api.url("/orders/groups/billing"))
        .body(r#"{"from":"oldest"}"#)
        .send()
        .await
        .expect("patch");
    assert_eq!(refused.status(), 400);
    // Pending entries, by state; the topic's info shows its groups.
    let held = lease_of(&receive(&api, "/orders/groups/billing/receive?consumer=worker-1").await);
    let lines = api
        .get("/orders/groups/billing/pending?state=leased")
        .await
        .text()
        .await
        .expect("body");
    let pending: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(pending.len(), 1, "{lines}");
    assert_eq!(pending[0]["offset"], 2);
    assert!(held.starts_with("2.1."));
    let info = json_of(api.get("/orders").await).await;
    assert_eq!(info["groups"]["billing"]["pending"]["leased"], 1);
    let billing = json_of(api.get("/orders/groups/billing").await).await;
    assert!(billing["consumers"]["worker-1"].is_u64(), "{billing}");
    let first = [("topic", "orders"), ("group", "billing"), ("kind", "first")];
    assert_eq!(
        metric(&api, "netlog_group_deliveries_total", &first).await,
        Some(3.0)
    );
}

/// A lease that runs out is delivered again with nobody polling in
/// between; its first lease then acks late, and a nack with a delay holds
/// the message back for that long.
#[tokio::test]
async fn expired_leases_come_back_and_late_acks_count() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("jobs").await;
    let made = api
        .post("/jobs/groups/w", r#"{"from":"oldest","lease_time":"1s"}"#)
        .await;
    assert_eq!(made.status(), 201);
    api.post("/jobs/payload", "job").await;
    let first = lease_of(&receive(&api, "/jobs/groups/w/receive").await);
    let none = receive(&api, "/jobs/groups/w/receive").await;
    assert_eq!(none.status(), 404);
    let why = json_of(none).await;
    assert!(
        why["reason"].as_str().expect("reason").contains("1 leased"),
        "{why}"
    );
    // The broker moves the expired lease by itself; the info shows it.
    eventually("the lease to expire", Duration::from_secs(3), || async {
        let info = json_of(api.get("/jobs/groups/w").await).await;
        (info["pending"]["waiting"] == 1).then_some(())
    })
    .await;
    let second = receive(&api, "/jobs/groups/w/receive?wait=2s").await;
    assert_eq!(second.headers()["netlog-deliveries"], "2");
    let second = lease_of(&second);
    let old = api
        .post_empty(&format!("/jobs/groups/w/nack?lease={first}"))
        .await;
    assert_eq!(old.status(), 409, "a superseded lease cannot nack");
    assert!(
        json_of(old).await["reason"]
            .as_str()
            .expect("reason")
            .contains("delivery 2")
    );
    let late = json_of(
        api.post_empty(&format!("/jobs/groups/w/ack?lease={first}"))
            .await,
    )
    .await;
    assert_eq!(late["result"], "acked_late");
    let gone = api
        .post_empty(&format!("/jobs/groups/w/ack?lease={second}"))
        .await;
    assert_eq!(json_of(gone).await["result"], "done");

    api.post("/jobs/payload", "later").await;
    let third = lease_of(&receive(&api, "/jobs/groups/w/receive").await);
    let nacked = api
        .post_empty(&format!("/jobs/groups/w/nack?lease={third}&delay=1s"))
        .await;
    assert_eq!(json_of(nacked).await["result"], "nacked");
    let started = std::time::Instant::now();
    let back = receive(&api, "/jobs/groups/w/receive?wait=3s").await;
    assert_eq!(back.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "the delay held"
    );
}

/// Out of deliveries, a message goes to the dead-letter topic; rejects
/// without one are dropped. Deleting a topic with groups, or a dead-letter
/// topic in use, needs force.
#[tokio::test]
async fn dead_letters_and_deletes() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("in").await;
    api.create_topic("dlq").await;
    let refused = api.post("/in/groups/g", r#"{"max_deliveries":1}"#).await;
    assert_eq!(
        refused.status(),
        400,
        "max_deliveries needs a dead_letter topic"
    );
    let unknown = api.post("/in/groups/g", r#"{"nonsense":1}"#).await;
    assert_eq!(unknown.status(), 400);
    let absurd = api.post("/in/groups/g", r#"{"lease_time":"100y"}"#).await;
    assert_eq!(absurd.status(), 400);
    let made = api
        .post(
            "/in/groups/g",
            r#"{"from":"oldest","max_deliveries":1,"dead_letter":"dlq"}"#,
        )
        .await;
    assert_eq!(made.status(), 201);
    let keyed = api
        .http
        .post(api.url("/in/payload"))
        .header("Netlog-Key", "order-42")
        .header("Netlog-Header-Trace-Id", "abc123")
        .header("Netlog-Timestamp", "1767323045678")
        .body("poison")
        .send()
        .await
        .expect("POST");
    assert_eq!(keyed.status(), 201);
    api.post("/in/payload", "fine").await;
    api.post("/in/payload", "refused").await;
    let poison = lease_of(&receive(&api, "/in/groups/g/receive").await);
    let nacked = json_of(
        api.post_empty(&format!("/in/groups/g/nack?lease={poison}"))
            .await,
    )
    .await;
    assert_eq!(nacked["result"], "dead_lettered");
    // The letter: the original value, key, timestamp and headers, and the
    // broker's netlog-dlq-* headers.
    let dead = api.get("/dlq/payload/0").await;
    assert_eq!(dead.status(), 200);
    let h = |name: &str| {
        dead.headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII").to_string())
    };
    assert_eq!(h("netlog-key").as_deref(), Some("order-42"));
    assert_eq!(h("netlog-timestamp").as_deref(), Some("1767323045678"));
    assert_eq!(h("netlog-header-trace-id").as_deref(), Some("abc123"));
    assert_eq!(h("netlog-header-netlog-dlq-topic").as_deref(), Some("in"));
    assert_eq!(h("netlog-header-netlog-dlq-group").as_deref(), Some("g"));
    assert_eq!(h("netlog-header-netlog-dlq-offset").as_deref(), Some("0"));
    assert_eq!(
        h("netlog-header-netlog-dlq-deliveries").as_deref(),
        Some("1")
    );
    assert_eq!(
        h("netlog-header-netlog-dlq-reason").as_deref(),
        Some("max_deliveries")
    );
    assert!(h("netlog-header-netlog-dlq-time").is_some_and(|t| t.parse::<u64>().is_ok()));
    assert_eq!(dead.text().await.expect("body"), "poison");
    let fine = receive(&api, "/in/groups/g/receive").await;
    assert_eq!(fine.text().await.expect("body"), "fine");
    // A reject carries its reason; a client cannot forge the broker's names.
    let refused = lease_of(&receive(&api, "/in/groups/g/receive").await);
    let rejected = json_of(
        api.post_empty(&format!(
            "/in/groups/g/reject?lease={refused}&reason=bad%20schema"
        ))
        .await,
    )
    .await;
    assert_eq!(rejected["result"], "dead_lettered");
    let letter = api.get("/dlq/payload/1").await;
    assert_eq!(letter.status(), 200);
    let value = |name: &str| {
        letter
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII").to_string())
    };
    assert_eq!(
        value("netlog-header-netlog-dlq-reason").as_deref(),
        Some("rejected")
    );
    assert_eq!(
        value("netlog-header-netlog-dlq-error").as_deref(),
        Some("bad%20schema")
    );
    assert_eq!(
        value("netlog-header-netlog-dlq-offset").as_deref(),
        Some("2")
    );
    let forged = api
        .http
        .post(api.url("/dlq/payload"))
        .header("Netlog-Header-Netlog-Dlq-Topic", "in")
        .body("forged")
        .send()
        .await
        .expect("POST");
    assert_eq!(forged.status(), 400);
    let info = json_of(api.get("/in/groups/g").await).await;
    assert_eq!(info["counters"]["dead_lettered"], 2);

    assert_eq!(
        api.delete("/dlq").await.status(),
        409,
        "a dead-letter topic in use"
    );
    assert_eq!(api.delete("/in").await.status(), 409, "a topic with groups");
    assert_eq!(api.delete("/in?force=true").await.status(), 200);
    assert_eq!(api.get("/in/groups/g").await.status(), 404);
    assert_eq!(api.delete("/dlq").await.status(), 200);
}

/// `max_waiting` bounds waiting receives (429 beyond); deleting the group
/// ends the waiting ones with 404; one publish answers one of many waiters.
#[tokio::test]
async fn waiting_receives_are_bounded_and_end_with_the_group() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("q").await;
    assert_eq!(
        api.post("/q/groups/few", r#"{"max_waiting":2}"#)
            .await
            .status(),
        201
    );
    let waits: Vec<_> = (0..2)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                receive(&api, "/q/groups/few/receive?wait=20s")
                    .await
                    .status()
            })
        })
        .collect();
    eventually("two waiting receives", Duration::from_secs(5), || async {
        let info = json_of(api.get("/q/groups/few").await).await;
        (info["waiting_receives"] == 2).then_some(())
    })
    .await;
    let third = receive(&api, "/q/groups/few/receive?wait=20s").await;
    assert_eq!(third.status(), 429);
    // One publish: one waiter answered, the other still waiting.
    api.post("/q/payload", "x").await;
    eventually("one waiter left", Duration::from_secs(5), || async {
        let info = json_of(api.get("/q/groups/few").await).await;
        (info["waiting_receives"] == 1).then_some(())
    })
    .await;
    assert_eq!(api.delete("/q/groups/few").await.status(), 200);
    let mut codes: Vec<u16> = Vec::new();
    for w in waits {
        codes.push(w.await.expect("task").as_u16());
    }
    codes.sort_unstable();
    assert_eq!(codes, [200, 404]);
}

/// kill -9 with leases out: nothing acked comes back, everything unacked
/// does (after its lease), and a lease from before the crash still settles.
#[tokio::test]
async fn a_kill_loses_no_ack_and_no_delivery() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("k").await;
    api.post("/k/groups/g", r#"{"from":"oldest","lease_time":"1s"}"#)
        .await;
    for i in 0..10 {
        api.post("/k/payload", format!("m{i}")).await;
    }
    let leases = receive_lines(&api, "/k/groups/g/receive?max=10").await;
    assert_eq!(leases.len(), 10);
    let acked: Vec<&str> = leases[..5]
        .iter()
        .map(|l| l["lease"].as_str().expect("lease"))
        .collect();
    let acks = json_of(
        api.post("/k/groups/g/ack", json!({ "leases": acked }).to_string())
            .await,
    )
    .await;
    assert_eq!(acks["counts"]["acked"], 5);
    netlog.kill();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    // A pre-crash lease of an unacked message still settles.
    let kept = leases[5]["lease"].as_str().expect("lease");
    let settled = json_of(
        api.post_empty(&format!("/k/groups/g/ack?lease={kept}"))
            .await,
    )
    .await;
    assert_eq!(settled["result"], "acked");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = receive(&api, "/k/groups/g/receive?wait=3s").await;
        assert_eq!(r.status(), 200);
        seen.push(r.headers()["x-offset"].to_str().expect("ascii").to_string());
    }
    seen.sort();
    assert_eq!(seen, ["6", "7", "8", "9"]);
    let info = json_of(api.get("/k/groups/g").await).await;
    assert_eq!(info["ack_floor"], 6);
}

/// A message that fails its checksum is set aside (counted) and the group
/// goes on past it: one damaged message never stops a group.
#[tokio::test]
async fn a_damaged_message_does_not_stop_the_group() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("d").await;
    api.create_topic("dlq").await;
    api.post("/d/groups/g", r#"{"from":"oldest"}"#).await;
    let with_letters = api
        .post("/d/groups/h", r#"{"from":"oldest","dead_letter":"dlq"}"#)
        .await;
    assert_eq!(with_letters.status(), 201);
    for m in ["first", "DAMAGE-ME-PLEASE", "third"] {
        api.post("/d/payload", m).await;
    }
    api.get("/d/sync").await;
    netlog.terminate().await;
    let mut hit = false;
    for entry in std::fs::read_dir(dir.path().join("d")).expect("topic dir") {
        let path = entry.expect("entry").path();
        let Ok(mut bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some(at) = bytes.windows(16).position(|w| w == b"DAMAGE-ME-PLEASE") {
            bytes[at + 3] ^= 0x20;
            std::fs::write(&path, &bytes).expect("write");
            hit = true;
        }
    }
    assert!(hit, "the payload was found in a data file");
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = receive(&api, "/d/groups/g/receive?wait=1s").await;
        assert_eq!(r.status(), 200);
        seen.push(r.text().await.expect("body"));
    }
    assert_eq!(seen, ["first", "third"]);
    let info = json_of(api.get("/d/groups/g").await).await;
    assert_eq!(info["counters"]["damaged"], 1);
    assert_eq!(info["counters"]["dropped"], 1, "no dead-letter topic");
    // With a dead-letter topic, the damaged message becomes a letter with
    // no value, saying why.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = receive(&api, "/d/groups/h/receive?wait=1s").await;
        assert_eq!(r.status(), 200);
        seen.push(r.text().await.expect("body"));
    }
    assert_eq!(seen, ["first", "third"]);
    let letter = eventually("the damaged letter", Duration::from_secs(15), || async {
        let r = api.get("/dlq/payload/0").await;
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(
        letter.headers()["netlog-header-netlog-dlq-reason"],
        "damaged"
    );
    assert_eq!(letter.headers()["netlog-header-netlog-dlq-offset"], "1");
    assert!(
        letter
            .headers()
            .contains_key("netlog-header-netlog-dlq-error")
    );
    assert_eq!(letter.text().await.expect("body"), "");
    let info = json_of(api.get("/d/groups/h").await).await;
    assert_eq!(info["counters"]["dead_lettered"], 1, "{info}");
}

/// A dead letter that cannot be written (its topic deleted) is parked: it
/// holds the floor and is counted, and once the topic is back it is written
/// (retried every 10 s) exactly once.
#[tokio::test]
async fn a_dead_letter_that_cannot_be_written_is_parked_then_written() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("in").await;
    api.create_topic("dlq").await;
    let made = api
        .post(
            "/in/groups/g",
            r#"{"from":"oldest","max_deliveries":3,"dead_letter":"dlq"}"#,
        )
        .await;
    assert_eq!(made.status(), 201);
    api.publish("in", "doomed").await;
    api.publish("in", "next").await;
    assert_eq!(api.delete("/dlq?force=true").await.status(), 200);
    let doomed = lease_of(&receive(&api, "/in/groups/g/receive").await);
    let rejected = json_of(
        api.post_empty(&format!("/in/groups/g/reject?lease={doomed}"))
            .await,
    )
    .await;
    assert_eq!(rejected["result"], "dead_lettered");
    let info = json_of(api.get("/in/groups/g").await).await;
    assert_eq!(info["pending"]["parked"], 1, "{info}");
    assert_eq!(info["ack_floor"], 0, "a parked letter holds the floor");
    // Others flow meanwhile.
    let next = receive(&api, "/in/groups/g/receive").await;
    let lease = lease_of(&next);
    assert_eq!(next.text().await.expect("body"), "next");
    let acked = json_of(
        api.post_empty(&format!("/in/groups/g/ack?lease={lease}"))
            .await,
    )
    .await;
    assert_eq!(acked["result"], "acked");
    let metrics = api.get("/_metrics").await.text().await.expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("netlog_group_dead_letter_failures") && !l.ends_with(" 0")),
        "{metrics}"
    );
    api.create_topic("dlq").await;
    let written = eventually(
        "the parked letter written",
        Duration::from_secs(25),
        || async {
            let info = json_of(api.get("/in/groups/g").await).await;
            (info["pending"]["parked"] == 0).then_some(info)
        },
    )
    .await;
    assert_eq!(written["ack_floor"], 2, "{written}");
    assert_eq!(written["counters"]["dead_lettered"], 1);
    let letter = api.get("/dlq/payload/0").await;
    assert_eq!(letter.status(), 200);
    assert_eq!(
        letter.headers()["netlog-header-netlog-dlq-reason"],
        "rejected"
    );
    assert_eq!(letter.text().await.expect("body"), "doomed");
    assert_eq!(
        api.get("/dlq/payload/1").await.status(),
        404,
        "written once"
    );
}

/// A clean stop answers waiting receives `503 shutting down` at once, and
/// leases survive it with their remaining time: settled after the restart.
#[tokio::test]
async fn a_clean_stop_ends_waiting_receives_and_keeps_leases() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("s").await;
    api.post("/s/groups/g", r#"{"from":"oldest","lease_time":"1m"}"#)
        .await;
    api.publish("s", "held").await;
    let held = lease_of(&receive(&api, "/s/groups/g/receive").await);
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move { receive(&api, "/s/groups/g/receive?wait=30s").await })
    };
    eventually("the receive waits", Duration::from_secs(5), || async {
        let info = json_of(api.get("/s/groups/g").await).await;
        (info["waiting_receives"] == 1).then_some(())
    })
    .await;
    let asked = std::time::Instant::now();
    netlog.signal("-TERM");
    let answer = waiting.await.expect("the waiting receive");
    assert_eq!(answer.status(), 503);
    let body = json_of(answer).await;
    assert_eq!(body["error"], "netlog: shutting down", "{body}");
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered at once"
    );
    let status = netlog.wait_exit().await;
    assert!(status.success(), "{status}");
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    let acked = json_of(
        api.post_empty(&format!("/s/groups/g/ack?lease={held}"))
            .await,
    )
    .await;
    assert_eq!(acked["result"], "acked", "the lease survived the stop");
}

/// Publishes `lines` (`(key, value)`) as one ndjson envelope batch.
async fn publish_keyed(api: &Api, topic: &str, lines: &[(String, String)]) {
    let body: String = lines
        .iter()
        .map(|(k, v)| json!({ "key": k, "message": v }).to_string() + "\n")
        .collect();
    let r = api
        .http
        .post(api.url(&format!("/{topic}/messages?envelope=true")))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("POST messages");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
}

/// Ordering by key under 32 workers: never two messages of one key out at
/// once, each key's messages in publish order, nacked ones first again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordering_holds_under_32_workers() {
    const KEYS: usize = 20;
    const PER_KEY: usize = 50;
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("o").await;
    let made = api
        .post("/o/groups/g", r#"{"from":"oldest","ordering":"key"}"#)
        .await;
    assert_eq!(made.status(), 201);
    let mut lines = Vec::new();
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            lines.push((format!("k{k}"), format!("k{k}:{seq}")));
        }
    }
    for chunk in lines.chunks(100) {
        publish_keyed(&api, "o", chunk).await;
    }
    // Per key: the sequence out now (if any) and the next one expected.
    let book = std::sync::Arc::new(std::sync::Mutex::new(vec![(None::<usize>, 0usize); KEYS]));
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut workers = Vec::new();
    for w in 0..32usize {
        let (api, book, acked) = (api.clone(), book.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            while acked.load(std::sync::atomic::Ordering::SeqCst) < KEYS * PER_KEY
                && std::time::Instant::now() < deadline
            {
                let r = api
                    .post_for_ndjson("/o/groups/g/receive?max=4&wait=200ms")
                    .await;
                if r.status() == 404 {
                    continue;
                }
                assert_eq!(r.status(), 200);
                let text = r.text().await.expect("body");
                let mut acks = Vec::new();
                let mut nacks = Vec::new();
                let mut mine = Vec::new();
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line).expect("ndjson");
                    let msg = v["message"].as_str().expect("message").to_string();
                    let (k, seq) = msg.split_once(':').expect("k:seq");
                    let k: usize = k[1..].parse().expect("key number");
                    let seq: usize = seq.parse().expect("seq");
                    let mut b = book.lock().expect("book");
                    assert_eq!(b[k].0, None, "k{k}:{seq} out while k{k}:{:?} is", b[k].0);
                    assert_eq!(b[k].1, seq, "k{k} out of order");
                    b[k].0 = Some(seq);
                    let lease = v["lease"].as_str().expect("lease").to_string();
                    // Some first deliveries are nacked: they must come back
                    // before the next of their key.
                    if seq % 7 == 3 && v["deliveries"] == 1 && (w + seq).is_multiple_of(2) {
                        nacks.push(lease);
                    } else {
                        acks.push(lease);
                    }
                    mine.push((k, seq));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                {
                    let mut b = book.lock().expect("book");
                    for (k, _) in &mine {
                        b[*k].0 = None;
                    }
                    // Acked ones advance their key; nacked ones do not.
                    for line in text.lines() {
                        let v: Value = serde_json::from_str(line).expect("ndjson");
                        let lease = v["lease"].as_str().expect("lease");
                        if acks.iter().any(|a| a == lease) {
                            let msg = v["message"].as_str().expect("message");
                            let k: usize = msg.split_once(':').expect("k:seq").0[1..]
                                .parse()
                                .expect("key");
                            b[k].1 += 1;
                        }
                    }
                }
                for (op, leases) in [("nack", &nacks), ("ack", &acks)] {
                    if leases.is_empty() {
                        continue;
                    }
                    let r = api
                        .post(
                            &format!("/o/groups/g/{op}"),
                            json!({ "leases": leases }).to_string(),
                        )
                        .await;
                    assert_eq!(r.status(), 200);
                    let body: Value =
                        serde_json::from_str(&r.text().await.expect("body")).expect("json");
                    for result in body["results"].as_array().expect("results") {
                        let want = if op == "ack" { "acked" } else { "nacked" };
                        assert_eq!(result["result"], want, "{body}");
                    }
                    if op == "ack" {
                        acked.fetch_add(leases.len(), std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(
        acked.load(std::sync::atomic::Ordering::SeqCst),
        KEYS * PER_KEY,
        "every message acked in time"
    );
    let info = json_of(api.get("/o/groups/g").await).await;
    assert_eq!(info["ack_floor"], KEYS * PER_KEY, "{info}");
    assert!(
        book.lock()
            .expect("book")
            .iter()
            .all(|(out, next)| out.is_none() && *next == PER_KEY)
    );
}

/// Ordering by key survives a kill -9: the blocked message stays blocked
/// while its key's leased message is out, and goes once that is acked.
#[tokio::test]
async fn key_ordering_survives_a_kill() {
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("o").await;
    let made = api
        .post(
            "/o/groups/g",
            r#"{"from":"oldest","ordering":"key","lease_time":"1m"}"#,
        )
        .await;
    assert_eq!(made.status(), 201);
    let lines: Vec<(String, String)> = [("z", "z:0"), ("z", "z:1"), ("y", "y:0")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    publish_keyed(&api, "o", &lines).await;
    let values = receive_lines(&api, "/o/groups/g/receive?max=10").await;
    let names: Vec<&str> = values
        .iter()
        .map(|v| v["message"].as_str().expect("message"))
        .collect();
    assert_eq!(names, ["z:0", "y:0"], "z:1 waits for z:0");
    let info = json_of(api.get("/o/groups/g").await).await;
    assert_eq!(info["pending"]["blocked"], 1, "{info}");
    let z0 = values[0]["lease"].as_str().expect("lease").to_string();
    netlog.kill();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    let info = json_of(api.get("/o/groups/g").await).await;
    assert_eq!(
        info["pending"]["blocked"], 1,
        "blocked again at open: {info}"
    );
    let none = receive(&api, "/o/groups/g/receive?wait=300ms").await;
    assert_eq!(none.status(), 404, "z:1 stays blocked while z:0 is out");
    let acked = json_of(api.post_empty(&format!("/o/groups/g/ack?lease={z0}")).await).await;
    assert_eq!(acked["result"], "acked");
    let next = receive(&api, "/o/groups/g/receive?wait=2s").await;
    assert_eq!(next.status(), 200);
    assert_eq!(next.text().await.expect("body"), "z:1");
}

/// Every group route answers on both engines; on JetStream the routes it
/// does not serve (PATCH, the pending listing, seek) answer 501 not
/// implemented naming what; a missing topic is 404 on both.
async fn group_routes_by_engine(on: Engine) {
    let dir = data_dir();
    let Some(netlog) = on.broker(dir.path()).await else {
        return;
    };
    let api = netlog.api();
    api.create_topic("jobs").await;
    api.create_topic("dead").await;
    let made = api
        .post(
            "/jobs/groups/w",
            r#"{"from":"oldest","dead_letter":"dead"}"#,
        )
        .await;
    assert_eq!(made.status(), 201);
    assert_eq!(api.post("/jobs/payload", "one").await.status(), 201);
    let routes: [(&str, &str, Option<&str>); 10] = [
        ("GET", "/jobs/groups", None),
        ("GET", "/jobs/groups/w", None),
        (
            "PATCH",
            "/jobs/groups/w",
            Some("changing a group's settings is"),
        ),
        (
            "GET",
            "/jobs/groups/w/pending",
            Some("the pending listing is"),
        ),
        ("POST", "/jobs/groups/w/receive", None),
        ("POST", "/jobs/groups/w/ack?lease=x", None),
        ("POST", "/jobs/groups/w/nack?lease=x", None),
        ("POST", "/jobs/groups/w/extend?lease=x", None),
        ("POST", "/jobs/groups/w/reject?lease=x", None),
        ("POST", "/jobs/groups/w/seek?to=0", Some("seek is")),
    ];
    let http = reqwest::Client::new();
    for (method, path, lacking) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}{path}", netlog.base_url());
        let answer = http
            .request(method.clone(), &url)
            .body("{}")
            .send()
            .await
            .unwrap();
        match lacking {
            Some(what) if !on.has(Aspect::GroupAdministration) => {
                let body = expect_error(answer, 501, "not implemented").await;
                let reason = format!("{what} not available on the jetstream engine");
                assert_eq!(body["reason"], reason, "{method} {path}");
            }
            _ => assert!(
                answer.status().is_success() || answer.status() == 400,
                "{method} {path}: {}",
                answer.status()
            ),
        }
        let missing = url.replacen("/jobs/", "/nope/", 1);
        let answer = http
            .request(method.clone(), &missing)
            .body("{}")
            .send()
            .await
            .unwrap();
        expect_error(answer, 404, "topic not found").await;
    }
    let busy = api.delete("/jobs").await;
    expect_error(busy, 409, "resource busy").await;
    expect_ok_message(api.delete("/jobs/groups/w").await, 200, "group deleted").await;
    expect_error(api.get("/jobs/groups/w").await, 404, "group not found").await;
    expect_ok_message(api.delete("/jobs").await, 200, "topic deleted").await;
    expect_ok_message(api.delete("/dead").await, 200, "topic deleted").await;
}

crate::on_both_engines!(group_routes_by_engine);

/// kill -9 at random points under load: 8 workers receive 10 messages,
/// work 10 ms and ack them, while
/// the broker is killed 5 times at random moments. No delivery ever comes
/// after an ack answered `acked` (a later delivery would have a higher
/// count), and in the end every message is acked: nothing unacked is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_at_random_points_under_load() {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    const MESSAGES: u64 = 30_000;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64;
    eprintln!("kill_at_random_points_under_load: seed {seed}");
    let mut rng = seed | 1;
    let mut next_random = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let dir = data_dir();
    let mut netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("r").await;
    let made = api
        .post("/r/groups/g", r#"{"from":"oldest","lease_time":"2s"}"#)
        .await;
    assert_eq!(made.status(), 201);
    for chunk in 0..MESSAGES / 10_000 {
        let body: String = (0..10_000).map(|i| format!("m{chunk}-{i}\n")).collect();
        assert_eq!(api.publish_ndjson("r", body).await.status(), 201);
    }
    // offset -> deliveries count of the lease whose ack answered `acked`.
    let acked: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let run = |api: Api, stop: Arc<AtomicBool>| {
        let (acked, violations) = (acked.clone(), violations.clone());
        tokio::spawn(async move {
            while !stop.load(SeqCst) {
                let Ok(r) = api
                    .http
                    .post(api.url("/r/groups/g/receive?max=10&wait=100ms"))
                    .header("accept", "application/x-ndjson")
                    .send()
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if r.status() != 200 {
                    continue;
                }
                let Ok(text) = r.text().await else { continue };
                let mut leases = Vec::new();
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line).expect("ndjson");
                    let offset = v["offset"].as_u64().expect("offset");
                    let deliveries = v["deliveries"].as_u64().expect("deliveries");
                    if let Some(d) = acked.lock().expect("acked").get(&offset)
                        && deliveries > *d
                    {
                        violations.lock().expect("violations").push(format!(
                            "offset {offset} delivered again (delivery {deliveries}) after an ack of delivery {d}"
                        ));
                    }
                    leases.push((
                        offset,
                        deliveries,
                        v["lease"].as_str().expect("lease").to_string(),
                    ));
                }
                // The work: a kill lands between receives and acks too.
                tokio::time::sleep(Duration::from_millis(10)).await;
                let list: Vec<&str> = leases.iter().map(|(_, _, l)| l.as_str()).collect();
                let Ok(r) = api
                    .http
                    .post(api.url("/r/groups/g/ack"))
                    .body(json!({ "leases": list }).to_string())
                    .send()
                    .await
                else {
                    continue;
                };
                if r.status() != 200 {
                    continue;
                }
                let Ok(text) = r.text().await else { continue };
                let Ok(answer) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                for (result, (offset, deliveries, _)) in answer["results"]
                    .as_array()
                    .expect("results")
                    .iter()
                    .zip(&leases)
                {
                    if result["result"] == "acked" {
                        acked.lock().expect("acked").insert(*offset, *deliveries);
                    }
                }
            }
        })
    };
    for round in 0..5 {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..8).map(|_| run(netlog.api(), stop.clone())).collect();
        tokio::time::sleep(Duration::from_millis(100 + next_random(700))).await;
        netlog.kill();
        stop.store(true, SeqCst);
        for w in workers {
            w.await.expect("worker");
        }
        eprintln!(
            "round {round}: killed with {} acked",
            acked.lock().expect("acked").len()
        );
        netlog = spawn_netlog(dir.path()).await;
    }
    // Now without kills until everything is acked.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..8).map(|_| run(netlog.api(), stop.clone())).collect();
    let api = netlog.api();
    let info = eventually("every message acked", Duration::from_secs(60), || async {
        let info = json_of(api.get("/r/groups/g").await).await;
        (info["ack_floor"] == MESSAGES).then_some(info)
    })
    .await;
    stop.store(true, SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    let violations = violations.lock().expect("violations");
    assert!(
        violations.is_empty(),
        "seed {seed}: {} violations, the first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    assert_eq!(info["pending"]["leased"], 0, "{info}");
}

/// A seek with leases outstanding: pending is cleared, the floor and next
/// move to the target, and every lease from before answers `expired`
/// (single: 409; batch: per lease), while the messages go out again.
#[tokio::test]
async fn seek_with_leases_outstanding() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("k").await;
    api.post("/k/groups/g", r#"{"from":"oldest"}"#).await;
    for i in 0..5 {
        api.publish("k", format!("m{i}")).await;
    }
    let old: Vec<String> = receive_lines(&api, "/k/groups/g/receive?max=3")
        .await
        .iter()
        .map(|v| v["lease"].as_str().expect("lease").to_string())
        .collect();
    assert_eq!(old.len(), 3);
    let info = json_of(api.post_empty("/k/groups/g/seek?to=1").await).await;
    assert_eq!(info["ack_floor"], 1, "{info}");
    assert_eq!(info["next"], 1, "{info}");
    assert_eq!(info["unacked"], 4, "{info}");
    let single = api
        .post_empty(&format!("/k/groups/g/ack?lease={}", old[1]))
        .await;
    assert_eq!(single.status(), 409, "a lease from before the seek");
    let batch = json_of(
        api.post("/k/groups/g/ack", json!({ "leases": old }).to_string())
            .await,
    )
    .await;
    for r in batch["results"].as_array().expect("results") {
        assert_eq!(r["result"], "expired", "{batch}");
    }
    let again = receive(&api, "/k/groups/g/receive").await;
    assert_eq!(again.headers()["x-offset"], "1");
    assert_eq!(again.text().await.expect("body"), "m1");
    let absurd = api.post_empty("/k/groups/g/seek?to=banana").await;
    assert_eq!(absurd.status(), 400);
}

/// Deleting the topic with force ends its groups' waiting receives at
/// once with a 404, not at the end of their wait.
#[tokio::test]
async fn force_delete_ends_waiting_receives() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("f").await;
    api.post("/f/groups/g", r#"{"from":"end"}"#).await;
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { receive(&api, "/f/groups/g/receive?wait=30s").await })
        })
        .collect();
    eventually("the receives wait", Duration::from_secs(5), || async {
        let info = json_of(api.get("/f/groups/g").await).await;
        (info["waiting_receives"] == 3).then_some(())
    })
    .await;
    assert_eq!(api.delete("/f").await.status(), 409, "groups need force");
    let asked = std::time::Instant::now();
    assert_eq!(api.delete("/f?force=true").await.status(), 200);
    for w in waiting {
        let r = w.await.expect("receive");
        assert_eq!(r.status(), 404);
    }
    assert!(asked.elapsed() < Duration::from_secs(10), "ended at once");
    assert_eq!(api.get("/f/groups/g").await.status(), 404);
}

/// Retention under pending entries: segments deleted while the group holds
/// leases in them. The lost offsets are counted (`lost_to_retention`), the
/// floor moves past them, and nothing below the oldest stored offset is
/// ever delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_under_pending_entries() {
    let dir = data_dir();
    let netlog = spawn_netlog_with(dir.path(), &["--monitor_interval", "100ms"]).await;
    let api = netlog.api();
    api.create_topic_with("t", &json!({"segment_age": "1s", "segment_size": 4096}))
        .await;
    api.post("/t/groups/g", r#"{"from":"oldest","lease_time":"1s"}"#)
        .await;
    for batch in 0..30 {
        let body: String = (0..10)
            .map(|i| format!("{:0>90}\n", batch * 10 + i))
            .collect();
        assert_eq!(api.publish_ndjson("t", body).await.status(), 201);
    }
    receive_lines(&api, "/t/groups/g/receive?max=50").await;
    // Leases run out and segments age out meanwhile; keep receiving
    // (never acking) until retention has taken some pending ones.
    let info = eventually(
        "offsets lost to retention and the floor past them",
        Duration::from_secs(30),
        || async {
            let r = api
                .post_for_ndjson("/t/groups/g/receive?max=100&wait=200ms")
                .await;
            if r.status() == 200 {
                let text = r.text().await.expect("body");
                for line in text.lines() {
                    let v: Value = serde_json::from_str(line).expect("ndjson");
                    let offset = v["offset"].as_u64().expect("offset");
                    let bytes = v["message"].as_str().expect("message");
                    assert_eq!(bytes, format!("{offset:0>90}"), "the message of its offset");
                }
            }
            // An entry leased before its segment went stays until its lease
            // runs out and it is picked again: the floor moves once every
            // entry of the deleted segments has been found lost.
            let info = json_of(api.get("/t/groups/g").await).await;
            let lost = info["counters"]["lost_to_retention"].as_u64() > Some(0);
            (lost && info["ack_floor"].as_u64() > Some(0)).then_some(info)
        },
    )
    .await;
    let first = json_of(api.get("/t").await).await["first_offset"]
        .as_u64()
        .expect("first_offset");
    assert!(first > 0, "retention deleted a segment: {info}");
}

/// A full disk under the dead-letter topic: the letter is parked (counted,
/// holding the floor) while other messages flow, and written once the disk
/// has room again. The disk is made full by the fault seam
/// (`NETLOG_FAULTS`: every write to the DLQ's data files fails ENOSPC).
#[tokio::test]
async fn a_full_disk_parks_dead_letters_until_it_has_room() {
    let dir = data_dir();
    let rules = dir.path().join("faults.rules");
    std::fs::write(&rules, "").expect("rules");
    let data = dir.path().join("data");
    let netlog = spawn_netlog_env(&data, &[] as &[&str], &[("NETLOG_FAULTS", &rules)]).await;
    let api = netlog.api();
    api.create_topic("in").await;
    api.create_topic("dlq").await;
    api.post(
        "/in/groups/g",
        r#"{"from":"oldest","max_deliveries":1,"dead_letter":"dlq"}"#,
    )
    .await;
    api.publish("in", "poison").await;
    api.publish("in", "fine").await;
    std::fs::write(&rules, "dlq data write ENOSPC\n").expect("rules");
    let poison = lease_of(&receive(&api, "/in/groups/g/receive").await);
    let rejected = json_of(
        api.post_empty(&format!("/in/groups/g/reject?lease={poison}"))
            .await,
    )
    .await;
    assert_eq!(rejected["result"], "dead_lettered");
    let info = json_of(api.get("/in/groups/g").await).await;
    assert_eq!(info["pending"]["parked"], 1, "{info}");
    let fine = receive(&api, "/in/groups/g/receive").await;
    let lease = lease_of(&fine);
    assert_eq!(fine.text().await.expect("body"), "fine");
    api.post_empty(&format!("/in/groups/g/ack?lease={lease}"))
        .await;
    assert_eq!(
        api.get("/dlq/payload/0").await.status(),
        404,
        "nothing half written"
    );
    std::fs::write(&rules, "").expect("rules");
    let done = eventually(
        "the parked letter written",
        Duration::from_secs(25),
        || async {
            let info = json_of(api.get("/in/groups/g").await).await;
            (info["pending"]["parked"] == 0).then_some(info)
        },
    )
    .await;
    assert_eq!(done["ack_floor"], 2, "{done}");
    let letter = api.get("/dlq/payload/0").await;
    assert_eq!(letter.status(), 200);
    assert_eq!(letter.text().await.expect("body"), "poison");
    assert_eq!(
        api.get("/dlq/payload/1").await.status(),
        404,
        "written once"
    );
}

/// libfaketime, which moves the wall clock of the process it is preloaded
/// into (Debian's `faketime` package; `test.sh` installs it).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The broker with its wall clock moved by what the file `clock` says
/// (`+1d`, `-365d`, libfaketime's syntax), re-read at every reading; the
/// monotonic clock is left alone, as a real system's is.
async fn spawn_with_clock(dir: &std::path::Path, clock: &std::path::Path) -> NetlogProcess {
    Launch::new()
        .dir(dir)
        .env("LD_PRELOAD", FAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", clock)
        .env("FAKETIME_NO_CACHE", "1")
        .env("DONT_FAKE_MONOTONIC", "1")
        .start()
        .await
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

/// A receive's `netlog-lease-expires`, less the lease time, less this
/// process's (true) clock: how far the broker's wall clock is moved.
fn broker_clock_skew_ms(r: &reqwest::Response, lease_ms: i64) -> i64 {
    let expires: i64 = r.headers()["netlog-lease-expires"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("milliseconds");
    expires - lease_ms - unix_ms()
}

/// The wall clock jumps a day forward and a year back under held leases,
/// and again across a kill -9: leases neither expire early nor late (they
/// run on the monotonic clock and keep at most their own length across a
/// restart), settle as before, and only the wall-clock times in answers
/// move with the clock.
#[tokio::test]
async fn clock_jumps_do_not_move_leases() {
    if !std::path::Path::new(FAKETIME).exists() {
        skip(&format!(
            "no libfaketime at {FAKETIME} (apt-get install faketime)"
        ));
        return;
    }
    const DAY_MS: i64 = 86_400_000;
    let dir = data_dir();
    let clock = dir.path().join("clock");
    std::fs::write(&clock, "+0").expect("clock file");
    let data = dir.path().join("data");
    let mut netlog = spawn_with_clock(&data, &clock).await;
    let api = netlog.api();
    api.create_topic("c").await;
    api.post("/c/groups/g", r#"{"from":"oldest","lease_time":"4s"}"#)
        .await;
    for m in ["a", "b"] {
        api.publish("c", m).await;
    }
    let first = receive(&api, "/c/groups/g/receive").await;
    assert!(broker_clock_skew_ms(&first, 4000).abs() < 2000);
    let first = lease_of(&first);
    let given = std::time::Instant::now();

    // A day forward: the broker's answers show it, the lease does not.
    std::fs::write(&clock, "+1d").expect("clock file");
    let second = receive(&api, "/c/groups/g/receive").await;
    let skew = broker_clock_skew_ms(&second, 4000);
    assert!((skew - DAY_MS).abs() < 2000, "the clock moved: {skew} ms");
    let second = lease_of(&second);
    let info = json_of(api.get("/c/groups/g").await).await;
    assert_eq!(info["pending"]["leased"], 2, "{info}");
    assert!(given.elapsed() < Duration::from_secs(4));
    let acked = json_of(
        api.post_empty(&format!("/c/groups/g/ack?lease={first}"))
            .await,
    )
    .await;
    assert_eq!(acked["result"], "acked", "not expired by the jump");

    // A year back: the second lease still ends after its 4 s.
    std::fs::write(&clock, "-365d").expect("clock file");
    let back = receive(&api, "/c/groups/g/receive?wait=8s").await;
    let waited = given.elapsed();
    assert_eq!(back.status(), 200);
    assert_eq!(back.headers()["x-offset"], "1");
    assert_eq!(back.headers()["netlog-deliveries"], "2");
    assert!(waited >= Duration::from_millis(3500), "after {waited:?}");
    let skew = broker_clock_skew_ms(&back, 4000);
    assert!(
        (skew + 365 * DAY_MS).abs() < 2000,
        "the clock moved: {skew} ms"
    );
    let late = json_of(
        api.post_empty(&format!("/c/groups/g/ack?lease={second}"))
            .await,
    )
    .await;
    assert_eq!(late["result"], "acked_late");

    // Killed with two leases held, and started again ten years on: one
    // still settles, the other expires within its own 4 s of the restart,
    // and a lease given after the restart lasts its 4 s.
    api.publish("c", "c").await;
    api.publish("c", "d").await;
    let held = receive_lines(&api, "/c/groups/g/receive?max=2").await;
    assert_eq!(held.len(), 2);
    netlog.kill();
    std::fs::write(&clock, "+3650d").expect("clock file");
    let netlog = spawn_with_clock(&data, &clock).await;
    let restarted = std::time::Instant::now();
    let api = netlog.api();
    let kept = held[0]["lease"].as_str().expect("lease");
    let settled = json_of(
        api.post_empty(&format!("/c/groups/g/ack?lease={kept}"))
            .await,
    )
    .await;
    assert_eq!(settled["result"], "acked", "the lease survived the kill");
    let again = receive(&api, "/c/groups/g/receive?wait=10s").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-offset"], "3");
    let waited = restarted.elapsed();
    assert!(waited < Duration::from_secs(6), "expired after {waited:?}");
    let given = std::time::Instant::now();
    let last = receive(&api, "/c/groups/g/receive?wait=10s").await;
    assert_eq!(last.status(), 200);
    assert_eq!(last.headers()["x-offset"], "3");
    assert_eq!(last.headers()["netlog-deliveries"], "3");
    let waited = given.elapsed();
    assert!(
        waited >= Duration::from_millis(3500) && waited < Duration::from_secs(8),
        "expired after {waited:?}"
    );
}

/// A client that read a group's tag off a lease cannot pre-empt a dead
/// letter by publishing to the dead-letter topic under the letter's
/// idempotency key: the broker's keys hold spaces, which no client key can.
#[tokio::test]
async fn a_client_cannot_pre_empt_a_dead_letter_with_its_key() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let api = netlog.api();
    api.create_topic("in").await;
    api.create_topic("dlq").await;
    let made = api
        .post(
            "/in/groups/g",
            r#"{"from":"oldest","max_deliveries":3,"dead_letter":"dlq"}"#,
        )
        .await;
    assert_eq!(made.status(), 201);
    api.post("/in/payload", "poison").await;
    let lease = lease_of(&receive(&api, "/in/groups/g/receive").await);
    let tag = lease.rsplit('.').next().expect("a tag").to_string();
    let publish_keyed = |key: String| {
        let api = api.clone();
        async move {
            api.http
                .post(api.url("/dlq/payload"))
                .header("Idempotency-Key", key)
                .body("forged")
                .send()
                .await
                .expect("POST")
        }
    };
    // Every spelling a client can send is taken at face value or refused.
    for key in [
        format!("netlog-dlq.g.{tag}.0"),
        format!("netlog-dlq-g-{tag}-0"),
    ] {
        assert_eq!(publish_keyed(key).await.status(), 201);
    }
    let spaced = publish_keyed(format!("netlog-dlq g {tag} 0")).await;
    assert_eq!(spaced.status(), 400, "a space is not a client's key byte");
    let rejected = json_of(
        api.post_empty(&format!("/in/groups/g/reject?lease={lease}&reason=forged"))
            .await,
    )
    .await;
    assert_eq!(rejected["result"], "dead_lettered");
    let letter = api.get("/dlq/payload/2").await;
    assert_eq!(
        letter.status(),
        200,
        "the letter is written after the forgeries"
    );
    assert_eq!(
        letter
            .headers()
            .get("netlog-header-netlog-dlq-reason")
            .and_then(|v| v.to_str().ok()),
        Some("rejected")
    );
    assert_eq!(letter.text().await.expect("body"), "poison");
}
