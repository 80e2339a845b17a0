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

/// What schemathesis found wrong in the order document once, checked on every document
/// without a stack: admin operations name the bearer scheme and document 401 and 403, a JSON
/// body documents 415, every request body refuses unknown properties as its server does, and
/// no parameter is nullable.
#[test]
fn every_document_states_auth_content_type_and_closed_bodies() {
    use utoipa::OpenApi;
    let documents = [
        ("order", order_service::http::ApiDoc::openapi()),
        ("inventory", inventory_service::http::ApiDoc::openapi()),
        ("payment", payment_service::http::ApiDoc::openapi()),
        ("shipping", shipping_service::http::ApiDoc::openapi()),
        (
            "orchestrator",
            orchestrator_service::http::ApiDoc::openapi(),
        ),
    ];
    for (service, doc) in documents {
        let doc = serde_json::to_value(&doc).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let at = format!("{service} {method} {path}");
                let responses = op["responses"].as_object().unwrap();
                // A client cannot send null in a path, query or header: "null" is text.
                for param in op["parameters"].as_array().into_iter().flatten() {
                    let ty = &param["schema"]["type"];
                    assert!(
                        !ty.as_array().is_some_and(|t| t.contains(&"null".into())),
                        "{at}: parameter {} is nullable",
                        param["name"]
                    );
                }
                if op.get("security").is_some() {
                    assert_eq!(
                        op["security"][0]["admin_token"],
                        serde_json::json!([]),
                        "{at}"
                    );
                    for status in ["401", "403"] {
                        assert!(responses.contains_key(status), "{at}: {status}");
                    }
                }
                let Some(body) = op.get("requestBody") else {
                    continue;
                };
                assert_eq!(body["required"], true, "{at}: body required");
                assert!(responses.contains_key("415"), "{at}: 415");
                let reference = body["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{at}: body is a named schema"));
                let name = reference.rsplit('/').next().unwrap();
                assert_eq!(
                    schemas[name]["additionalProperties"], false,
                    "{at}: {name} refuses unknown properties"
                );
            }
        }
    }
}
