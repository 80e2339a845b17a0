//! schemathesis against every service's OpenAPI document on the running suite: no 5xx, and
//! every answer is one its document describes (docs/api.md).

use std::path::PathBuf;

use saga_e2e::{Service, Suite, fuzz};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_answers_as_its_openapi_document_says() {
    let st = tokio::task::spawn_blocking(fuzz::schemathesis)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/schemathesis.toml");
    let suite = Suite::start().await;
    let mut failed = Vec::new();
    for service in [
        Service::Order,
        Service::Inventory,
        Service::Payment,
        Service::Shipping,
        Service::Orchestrator,
    ] {
        let (st, config, url, token) = (
            st.clone(),
            config.clone(),
            suite.url(service),
            suite.admin_token(),
        );
        let name = format!("{service:?}");
        let result =
            tokio::task::spawn_blocking(move || fuzz::run(&st, &config, &name, &url, token))
                .await
                .unwrap();
        if let Err(e) = result {
            failed.push(e.to_string());
        }
    }
    suite.stop().await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
