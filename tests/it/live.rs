//! The order's live status (`GET /orders/{id}/stream`) through a real saga: a client with a
//! streaming HTTP connection sees PENDING at once and then the saga's outcome.

use std::time::Duration;

use saga_e2e::{Service, Suite, SuiteOptions, eur};

/// Reads `(id, status)` of each event of an order stream.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    /// The next event, `None` once the server ended the stream; 60 s at most.
    async fn next(&mut self) -> Option<(i64, String)> {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let frame: String = self.buf.drain(..end + 2).collect();
                    let id = frame.lines().find_map(|l| l.strip_prefix("id:"));
                    let data = frame.lines().find_map(|l| l.strip_prefix("data:"));
                    if let (Some(id), Some(data)) = (id, data) {
                        let view: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
                        let status = view["status"].as_str().unwrap().to_owned();
                        return Some((id.trim().parse().unwrap(), status));
                    }
                }
                let bytes = self.resp.chunk().await.unwrap()?;
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        })
        .await
        .expect("no event and no end of the stream within 60 s")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_watches_pending_then_the_outcome_of_a_real_saga() {
    let mut suite = Suite::start_with(SuiteOptions {
        processes: vec![Service::Orchestrator],
        ..SuiteOptions::default()
    })
    .await;
    suite.set_price("SKU-LIVE", eur(500)).await;
    suite.seed_stock("SKU-LIVE", 3).await;
    suite.set_credit("cust-live", eur(5_000)).await;

    // With the orchestrator down the order stays PENDING until the stream is open, so the
    // client's first event is PENDING whatever the machine's speed.
    suite.kill(Service::Orchestrator).await;
    let order = suite
        .place_order("cust-live", &[("SKU-LIVE", 1)], "DE")
        .await;
    let url = format!("{}/orders/{order}/stream", suite.url(Service::Order));
    let resp = suite.http().get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut events = Events {
        resp,
        buf: String::new(),
    };
    let (first_id, first) = events.next().await.expect("the current state");
    assert_eq!(first, "PENDING");

    suite.restart(Service::Orchestrator).await;
    let (final_id, outcome) = events.next().await.expect("the saga's outcome");
    assert_eq!(outcome, "APPROVED");
    assert!(first_id < final_id, "ids are increasing consistency tokens");
    assert_eq!(
        events.next().await,
        None,
        "the stream ends at the final state"
    );
    suite.stop().await;
}
