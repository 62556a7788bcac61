//! The lane (`src/http/serve/lane.rs`): plain connections start in it, and
//! it serves the hot routes' simple requests itself; anything else goes to
//! hyper, with the connection, for good.
//!
//! The promise is that no client can tell the two apart. So every request
//! here is sent twice, in the same order, to two topics with the same
//! contents: once on a fresh connection (the lane answers) and once on a
//! connection that began with a request the lane leaves (`GET /`, so hyper
//! answers), and the two answers must be the same bytes but for `date`.
//! Then what the lane must leave to hyper, sent as a hostile client would.
//!
//! The broker is the real binary; clients speak raw HTTP/1.1 over TCP to
//! 127.0.0.1 with timeouts.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use tokio::io::AsyncWriteExt;

/// One request on a fresh connection.
async fn once(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut c = Raw::connect(addr).await;
    c.send(request).await;
    c.answer().await
}

fn post(topic: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /{topic}/payload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// A new topic `name` with `messages`, and a scanner on it from 0.
async fn topic_with(addr: SocketAddr, name: &str, messages: &[&[u8]]) -> String {
    let created = once(
        addr,
        format!("POST /{name} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(created.status(), 201, "{created:?}");
    for m in messages {
        assert_eq!(once(addr, &post(name, m)).await.status(), 201);
    }
    let scanner = once(
        addr,
        format!(
            "POST /{name}/scanner?from=0 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(scanner.status(), 201, "{scanner:?}");
    let v: serde_json::Value = serde_json::from_slice(&scanner.body).expect("json");
    v["id"].as_str().expect("an id").to_owned()
}

/// Every kind of request the lane takes, and some it sends on to the
/// router or answers with an error, is answered by the lane with the same
/// bytes as by hyper.
#[tokio::test]
async fn the_lane_answers_as_hyper_does() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let addr = netlog.addr();
    let first: &[&[u8]] = &[b"m0", b"m1", b"m2"];
    let ids = [
        topic_with(addr, "a", first).await,
        topic_with(addr, "b", first).await,
    ];
    let big = vec![b'z'; 12_000];
    let mut keyed = b"POST /{t}/payload HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nNetlog-Key: k1\r\nNetlog-Header-Trace-Id: 7\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    let templates: Vec<Vec<u8>> = vec![
        post("{t}", b"hello"),
        post("{t}", b""),
        b"POST /{t}/payload HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        std::mem::take(&mut keyed),
        post("{t}", &big),
        post("nosuch", b"x"),
        b"POST /{t}/payload?a=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nq".to_vec(),
        get("/{t}/payload/0"),
        get("/{t}/payload/3"),
        get("/{t}/payload/5"),
        get("/{t}/payload/999"),
        get("/{t}/payload/abc"),
        get("/{t}/payload/-1"),
        get("/{t}/payload/%30"),
        get("/nosuch/payload/0"),
        get("/{t}/scan?id={id}"),
        get("/{t}/scan?id={id}"),
        get("/{t}/scan?id=nope"),
        get("/{t}/scan"),
        get("/{t}/scan?id={id}&wait=notatime"),
        b"GET /{t}/payload/1 HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\nAccept: */*\r\nUser-Agent: lane-test\r\n\r\n".to_vec(),
        b"GET /{t}/payload/1 HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_vec(),
        b"GET /{t}/payload/1 HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\n\r\n".to_vec(),
        b"POST /{t}/payload HTTP/1.1\r\nHost: localhost\r\nOrigin: http://evil.example\r\nContent-Length: 1\r\n\r\nx".to_vec(),
    ];
    for template in &templates {
        let mut answers = Vec::new();
        for (i, topic) in ["a", "b"].iter().enumerate() {
            let request = String::from_utf8_lossy(template)
                .replace("{t}", topic)
                .replace("{id}", &ids[i]);
            let mut c = Raw::connect(addr).await;
            if i == 1 {
                // hyper's from here on.
                c.send(&get("/")).await;
                assert_eq!(c.answer().await.status(), 200);
            }
            c.send(request.as_bytes()).await;
            answers.push(c.answer().await.undated());
        }
        let hyper = answers.pop().expect("two");
        let lane = answers.pop().expect("two");
        assert_eq!(
            lane,
            hyper,
            "the lane and hyper differ on {:?}",
            String::from_utf8_lossy(template)
        );
    }
    // The big message reads back whole, through the lane.
    let read = once(addr, &get("/a/payload/5")).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.body, big);
    drop(netlog);
}

/// What the lane does not take goes to hyper with every byte read so far,
/// and is answered as before: bodies that come late, chunked bodies,
/// `Expect`, HTTP/1.0, absurd or doubled lengths, too many fields, large
/// heads, a client that lies about its length or leaves mid-head, and
/// pipelines that mix both kinds. Nothing is published that was not whole.
#[tokio::test]
async fn the_lane_leaves_the_rest_to_hyper() {
    let dir = data_dir();
    let netlog = spawn_netlog(dir.path()).await;
    let addr = netlog.addr();
    topic_with(addr, "t", &[]).await;
    let mut next = 0u64;

    // A body that comes after its head: read by hyper, under its rules.
    let mut c = Raw::connect(addr).await;
    c.send(b"POST /t/payload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.send(b"late!").await;
    let a = c.answer().await;
    assert_eq!(
        (a.status(), a.body.as_slice()),
        (201, &b"{\"offset\":0}"[..])
    );
    next += 1;
    // The same connection stays with hyper, and still works.
    c.send(&post("t", b"after")).await;
    assert_eq!(c.answer().await.status(), 201);
    next += 1;

    // Chunked, and `Expect: 100-continue`.
    let a = once(
        addr,
        b"POST /t/payload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(a.body, format!("{{\"offset\":{next}}}").into_bytes());
    let read = once(addr, &get(&format!("/t/payload/{next}"))).await;
    assert_eq!(read.body, b"abc", "a chunked body is read whole");
    next += 1;
    let mut c = Raw::connect(addr).await;
    c.send(b"POST /t/payload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .await;
    assert_eq!(c.answer().await.status(), 100);
    c.send(b"ok").await;
    assert_eq!(c.answer().await.status(), 201);
    next += 1;

    // HTTP/1.0: answered, then closed.
    let mut c = Raw::connect(addr).await;
    c.send(b"POST /t/payload HTTP/1.0\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nv0")
        .await;
    let a = c.answer().await;
    assert_eq!(a.status(), 201, "{a:?}");
    assert!(
        c.closes().await,
        "an HTTP/1.0 connection closes after its answer"
    );
    next += 1;

    // Lengths the lane does not read: hyper's 400, in netlog's shape.
    for length in ["+5", "5, 6", "99999999999999999999999", "-1"] {
        let r = format!(
            "POST /t/payload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\nhello"
        );
        let a = once(addr, r.as_bytes()).await;
        assert_eq!(a.status(), 400, "Content-Length: {length}: {a:?}");
        assert_eq!(a.field("content-type"), Some("application/json"));
    }
    let a = once(
        addr,
        b"POST /t/payload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )
    .await;
    assert_eq!(a.status(), 400, "{a:?}");

    // More fields than the lane takes; far more than hyper takes.
    let fields = |n: usize| {
        (0..n)
            .map(|i| format!("X-F{i}: {i}\r\n"))
            .collect::<String>()
    };
    let r = format!(
        "POST /t/payload HTTP/1.1\r\nHost: localhost\r\n{}Content-Length: 1\r\n\r\nf",
        fields(40)
    );
    assert_eq!(once(addr, r.as_bytes()).await.status(), 201);
    next += 1;
    let r = format!(
        "POST /t/payload HTTP/1.1\r\nHost: localhost\r\n{}Content-Length: 1\r\n\r\nf",
        fields(200)
    );
    let a = once(addr, r.as_bytes()).await;
    assert_eq!(a.status(), 431, "{a:?}");
    assert_eq!(a.field("content-type"), Some("application/json"));

    // A head and body past the lane's 16 KiB.
    let r = format!(
        "POST /t/payload HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\nContent-Length: 1\r\n\r\nb",
        "y".repeat(20_000)
    );
    assert_eq!(once(addr, r.as_bytes()).await.status(), 201);
    next += 1;
    let body = vec![b'w'; 40_000];
    assert_eq!(once(addr, &post("t", &body)).await.status(), 201);
    let read = once(addr, &get(&format!("/t/payload/{next}"))).await;
    assert_eq!(read.body, body);
    next += 1;

    // A client that says 100 bytes, sends 50 and leaves: nothing published.
    let mut c = Raw::connect(addr).await;
    c.send(b"POST /t/payload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n")
        .await;
    c.send(&[b'l'; 50]).await;
    c.stream.shutdown().await.expect("shutdown");
    assert!(c.closes().await);
    // One that leaves mid-head.
    let mut c = Raw::connect(addr).await;
    c.send(b"POST /t/payload HTTP/1.1\r\nHost: loc").await;
    c.stream.shutdown().await.expect("shutdown");
    assert!(c.closes().await);
    let gone = once(addr, &get(&format!("/t/payload/{next}"))).await;
    assert_eq!(
        gone.status(),
        404,
        "a partial request was published: {gone:?}"
    );

    // A pipeline that mixes both: every answer, in order.
    let mut c = Raw::connect(addr).await;
    let mut burst = post("t", b"p1");
    burst.extend(get("/t/payload/0"));
    burst.extend(get("/"));
    burst.extend(post("t", b"p2"));
    burst.extend(get(&format!("/t/payload/{}", next + 1)));
    c.send(&burst).await;
    let answers = [
        c.answer().await,
        c.answer().await,
        c.answer().await,
        c.answer().await,
        c.answer().await,
    ];
    assert_eq!(
        answers[0].body,
        format!("{{\"offset\":{next}}}").into_bytes()
    );
    assert_eq!(answers[1].body, b"late!");
    assert_eq!(answers[2].body, b"[\"t\"]");
    assert_eq!(
        answers[3].body,
        format!("{{\"offset\":{}}}", next + 1).into_bytes()
    );
    assert_eq!(answers[4].body, b"p2");
    // Around the lane's 16 KiB: head and body just under, at and over it;
    // and a pipeline of publishes whose reads cut a body, so the lane hands
    // over mid-pipeline. Every answer in order, every body read back whole.
    // The head of a publish with a five-digit length.
    let head_len = post("t", b"").len() + 4;
    let mut c = Raw::connect(addr).await;
    let mut sent = Vec::new();
    for total in [16_383usize, 16_384, 16_385] {
        let body = vec![b'0' + (total % 10) as u8; total - head_len];
        assert_eq!(post("t", &body).len(), total);
        c.send(&post("t", &body)).await;
        sent.push(body);
    }
    let mut burst = Vec::new();
    for i in 0..10u8 {
        let body = vec![b'a' + i; 3_000];
        burst.extend(post("t", &body));
        sent.push(body);
    }
    c.send(&burst).await;
    let mut offsets = Vec::new();
    for _ in 0..sent.len() {
        let a = c.answer().await;
        assert_eq!(a.status(), 201, "{a:?}");
        let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
        offsets.push(v["offset"].as_u64().expect("an offset"));
    }
    for (offset, body) in offsets.iter().zip(&sent) {
        let read = once(addr, &get(&format!("/t/payload/{offset}"))).await;
        assert_eq!(&read.body, body, "offset {offset}");
    }
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    // A client that sends a request and closes its side gets its answer.
    let mut c = Raw::connect(addr).await;
    c.send(&get("/t/payload/0")).await;
    c.stream.shutdown().await.expect("shutdown");
    assert_eq!(c.answer().await.body, b"late!");
    assert!(c.closes().await);
    drop(netlog);
}
