//! The HTTP plumbing over a real socket: health, readiness, problem responses, request ids,
//! body limit, metrics, graceful shutdown.

use axum::Router;
use axum::routing::post;
use saga_service_kit::HttpConfig;
use saga_service_kit::http::{self, ready_check};
use saga_service_kit::problem::{self, ProblemJson};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Deserialize, serde::Serialize)]
struct Greeting {
    name: String,
}

async fn start(
    router: Router,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = http::bind(&HttpConfig::default()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let token = CancellationToken::new();
    let task = tokio::spawn(http::serve(listener, router, token.clone()));
    (format!("http://{addr}"), token, task)
}

#[tokio::test]
async fn health_readiness_problems_and_shutdown() {
    let router = http::health_router(vec![
        ("always", ready_check(|| async { Ok(()) })),
        (
            "broker",
            ready_check(|| async { Err("connection refused".to_owned()) }),
        ),
    ])
    .merge(http::metrics_router())
    .route(
        "/greet",
        post(|ProblemJson(g): ProblemJson<Greeting>| async move { ProblemJson(g) }),
    )
    .fallback(problem::not_found);
    let (base, token, task) = start(router).await;
    let client = reqwest::Client::new();

    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));

    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], 503);
    assert_eq!(body["errors"][0]["field"], "broker");
    assert!(body["detail"].as_str().unwrap().contains("broker"));

    let r = client.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let r = client
        .post(format!("{base}/greet"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");

    let r = client
        .post(format!("{base}/greet"))
        .json(&serde_json::json!({"nom": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let r = client
        .post(format!("{base}/greet"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = client
        .post(format!("{base}/greet"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    let r = client
        .post(format!("{base}/greet"))
        .header("x-request-id", "req-42")
        .json(&Greeting { name: "ada".into() })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-42");

    metrics::counter!("kit_test_total").increment(1);
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("kit_test_total"), "{text}");

    token.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("server stops after cancel")
        .unwrap()
        .unwrap();
}
