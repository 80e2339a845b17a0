//! Test plumbing: a fresh migrated database per test, an HTTP server on a free port.

use sqlx::PgPool;

/// A fresh database of the test stack, with the outbox, inbox and service migrations run.
pub async fn fresh_pool() -> PgPool {
    let db = saga_testkit::TestStack::get().await.fresh_database().await;
    saga_service_kit::db::migrate(
        &db.pool,
        &[
            &saga_outbox::MIGRATOR,
            &saga_inbox::MIGRATOR,
            &shipping_service::MIGRATOR,
        ],
    )
    .await
    .unwrap();
    db.pool
}

/// Serves `router` on an ephemeral port until the returned token is cancelled (or the test's
/// runtime ends); returns its base URL.
pub async fn serve(router: axum::Router) -> (String, tokio_util::sync::CancellationToken) {
    let cfg = saga_service_kit::HttpConfig::default();
    let listener = saga_service_kit::http::bind(&cfg).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(saga_service_kit::http::serve(
        listener,
        router,
        token.clone(),
    ));
    (url, token)
}

/// Asserts an RFC 9457 response and returns its body.
pub async fn problem(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"],
        saga_service_kit::problem::CONTENT_TYPE
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}
