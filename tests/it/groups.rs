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
    api.post("/in/payload", "poison").await;
    api.post("/in/payload", "fine").await;
    let poison = lease_of(&receive(&api, "/in/groups/g/receive").await);
    let nacked = json_of(
        api.post_empty(&format!("/in/groups/g/nack?lease={poison}"))
            .await,
    )
    .await;
    assert_eq!(nacked["result"], "dead_lettered");
    let dead = api.get("/dlq/payload/0").await;
    assert_eq!(dead.status(), 200);
    assert_eq!(dead.text().await.expect("body"), "poison");
    let fine = receive(&api, "/in/groups/g/receive").await;
    assert_eq!(fine.text().await.expect("body"), "fine");
    let info = json_of(api.get("/in/groups/g").await).await;
    assert_eq!(info["counters"]["dead_lettered"], 1);

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
    let got = api
        .http
        .post(api.url("/k/groups/g/receive?max=10"))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("receive");
    let text = got.text().await.expect("body");
    let leases: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a json line"))
        .collect();
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
    api.post("/d/groups/g", r#"{"from":"oldest"}"#).await;
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
}

/// Every group route answers on the embedded engine and, on JetStream
/// (no groups there yet), 501 not implemented naming the engine; a missing
/// topic is 404 on both.
async fn group_routes_by_engine(on: Engine) {
    let dir = data_dir();
    let Some(netlog) = on.broker(dir.path()).await else {
        return;
    };
    let api = netlog.api();
    api.create_topic("jobs").await;
    api.create_topic("dead").await;
    let reason = "consumer groups are not available on the jetstream engine yet";
    let made = api
        .post(
            "/jobs/groups/w",
            r#"{"from":"oldest","dead_letter":"dead"}"#,
        )
        .await;
    if on.has(Aspect::ConsumerGroups) {
        assert_eq!(made.status(), 201);
    } else {
        let body = expect_error(made, 501, "not implemented").await;
        assert_eq!(body["reason"], reason);
    }
    assert_eq!(api.post("/jobs/payload", "one").await.status(), 201);
    let routes: [(&str, &str); 10] = [
        ("GET", "/jobs/groups"),
        ("GET", "/jobs/groups/w"),
        ("PATCH", "/jobs/groups/w"),
        ("GET", "/jobs/groups/w/pending"),
        ("POST", "/jobs/groups/w/receive"),
        ("POST", "/jobs/groups/w/ack?lease=x"),
        ("POST", "/jobs/groups/w/nack?lease=x"),
        ("POST", "/jobs/groups/w/extend?lease=x"),
        ("POST", "/jobs/groups/w/reject?lease=x"),
        ("POST", "/jobs/groups/w/seek?to=0"),
    ];
    let http = reqwest::Client::new();
    for (method, path) in routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let url = format!("{}{path}", netlog.base_url());
        let answer = http
            .request(method.clone(), &url)
            .body("{}")
            .send()
            .await
            .unwrap();
        if on.has(Aspect::ConsumerGroups) {
            assert_ne!(answer.status(), 501, "{method} {path}");
        } else {
            let body = expect_error(answer, 501, "not implemented").await;
            assert_eq!(body["reason"], reason, "{method} {path}");
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
    let deleted = api.delete("/jobs/groups/w").await;
    if on.has(Aspect::ConsumerGroups) {
        assert_eq!(deleted.status(), 200);
    } else {
        expect_error(deleted, 501, "not implemented").await;
    }
    expect_ok_message(api.delete("/jobs").await, 200, "topic deleted").await;
    expect_ok_message(api.delete("/dead").await, 200, "topic deleted").await;
}

crate::on_both_engines!(group_routes_by_engine);
