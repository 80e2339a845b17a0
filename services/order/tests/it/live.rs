//! `GET /orders/{id}/stream` with a real HTTP client reading the event stream: the current
//! state at once, each change, resume with `Last-Event-ID`, the end after a final state and
//! the bound on open streams.

use std::time::Duration;

use order_service::service::Command;
use saga_contracts::Metadata;
use saga_contracts::ids::OrderId;
use serde_json::Value;

use crate::support::{Options, TestApp, order_body, start, start_with};

/// One Server-Sent Event as the client sees it.
#[derive(Debug)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: Value,
}

/// A minimal SSE reader over a streaming response (comments and keep-alives skipped).
struct Reader {
    resp: reqwest::Response,
    buf: String,
}

impl Reader {
    async fn open(app: &TestApp, id: OrderId, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = app.client.get(app.url(&format!("/orders/{id}/stream")));
        if let Some(last) = last_event_id {
            req = req.header("Last-Event-ID", last);
        }
        req.send().await.unwrap()
    }

    fn new(resp: reqwest::Response) -> Reader {
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Reader {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the server closed the stream; 10 s at most.
    async fn next(&mut self) -> Option<Sse> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let frame: String = self.buf.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) = (None, None, String::new());
                    for line in frame.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = Some(v.trim().to_owned());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // a comment (keep-alive)
                    }
                    return Some(Sse {
                        id,
                        event,
                        data: serde_json::from_str(&data).unwrap(),
                    });
                }
                match self.resp.chunk().await.unwrap() {
                    Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                    None => return None,
                }
            }
        })
        .await
        .expect("no event and no end of stream within 10 s")
    }
}

async fn place(app: &TestApp) -> (OrderId, String) {
    let r = app
        .post_order(&order_body("live", &[("SKU-1", 1)]), None)
        .await;
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    (
        v["order_id"].as_str().unwrap().parse().unwrap(),
        v["consistency_token"].as_str().unwrap().to_owned(),
    )
}

async fn decide(app: &TestApp, id: OrderId, cmd: Command<'_>) {
    let mut tx = app.pool.begin().await.unwrap();
    app.orders
        .decide(
            &mut saga_outbox::Tx::direct(&mut tx),
            id,
            cmd,
            &Metadata::first(id),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_stream_sends_the_current_state_then_each_change_and_ends_when_final() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (id, token) = place(&app).await;
    let mut stream = Reader::new(Reader::open(&app, id, None).await);

    let first = stream.next().await.expect("the current state");
    assert_eq!(first.event.as_deref(), Some("order"));
    assert_eq!(first.data["status"], "PENDING");
    assert_eq!(
        first.id.as_deref(),
        Some(token.as_str()),
        "id = consistency token"
    );

    decide(&app, id, Command::Approve).await;
    let second = stream.next().await.expect("the change");
    assert_eq!(second.data["status"], "APPROVED");
    assert!(second.id.unwrap().parse::<i64>().unwrap() > token.parse::<i64>().unwrap());
    assert!(
        stream.next().await.is_none(),
        "closed after the final state"
    );
}

#[tokio::test]
async fn a_client_resumes_with_last_event_id_without_missing_a_change() {
    let app = start().await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (id, _) = place(&app).await;
    let mut stream = Reader::new(Reader::open(&app, id, None).await);
    let seen = stream.next().await.unwrap();
    assert_eq!(seen.data["status"], "PENDING");
    drop(stream); // the connection drops...

    decide(&app, id, Command::Reject { reason: "no stock" }).await; // ...a change happens

    let mut resumed = Reader::new(Reader::open(&app, id, seen.id.as_deref()).await);
    let missed = resumed.next().await.expect("the change made while away");
    assert_eq!(missed.data["status"], "REJECTED");
    assert_eq!(missed.data["rejection_reason"], "no stock");
    assert!(resumed.next().await.is_none());

    // Resuming after the final event: nothing more, the stream just ends.
    let mut after_end = Reader::new(Reader::open(&app, id, missed.id.as_deref()).await);
    assert!(after_end.next().await.is_none());
}

#[tokio::test]
async fn open_streams_are_bounded_and_bad_requests_are_problems() {
    let app = start_with(Options {
        max_streams: 1,
        ..Options::default()
    })
    .await;
    app.put_price("SKU-1", 100, "EUR").await;
    let (id, _) = place(&app).await;
    let mut held = Reader::new(Reader::open(&app, id, None).await);
    held.next().await.unwrap();

    let refused = Reader::open(&app, id, None).await;
    assert_eq!(refused.headers()["retry-after"], "5");
    let p = saga_runtime::testing::problem(refused, 503).await;
    assert_eq!(p["title"], "Too many open streams");

    drop(held);
    // The slot is released when the connection goes away (observed, not timed).
    // At the latest at the next keep-alive (15 s), when the write to the closed socket fails.
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = Reader::open(&app, id, None).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "the slot was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let unknown = Reader::open(&app, OrderId::new(), None).await;
    saga_runtime::testing::problem(unknown, 404).await;
}
