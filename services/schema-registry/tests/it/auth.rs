//! Writes need HTTP basic auth (as Confluent's `authentication.method=BASIC`); reads and the
//! POSTs that change nothing stay open.

use schema_registry::auth::DEFAULT_USERNAME;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use serde_json::{Value, json};

use crate::support::{CT, PASSWORD, record, start, unique_subject};

/// Status, headers and JSON body of an anonymous or badly authenticated request.
async fn call(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    (status, headers, body)
}

#[tokio::test]
async fn writes_without_the_credential_are_refused_and_reads_stay_open() {
    let reg = start().await;
    let subject = unique_subject("auth");
    let schema = record("Auth", json!([{"name": "a", "type": "int"}]));
    let anon = |method: reqwest::Method, path: &str| {
        reg.http
            .request(method, format!("{}{path}", reg.anonymous_base))
            .header("content-type", CT)
    };
    let register_body = json!({ "schema": schema }).to_string();

    // Every kind of write, anonymous or with a wrong password: 401 problem+json, with a
    // Basic challenge and Confluent's error_code for its clients.
    let writes = [
        (
            reqwest::Method::POST,
            format!("/subjects/{subject}/versions"),
            register_body.clone(),
        ),
        (
            reqwest::Method::DELETE,
            format!("/subjects/{subject}"),
            String::new(),
        ),
        (
            reqwest::Method::DELETE,
            format!("/subjects/{subject}/versions/1"),
            String::new(),
        ),
        (
            reqwest::Method::PUT,
            "/config".to_owned(),
            json!({"compatibility": "NONE"}).to_string(),
        ),
        (
            reqwest::Method::PUT,
            format!("/config/{subject}"),
            json!({"compatibility": "NONE"}).to_string(),
        ),
        (
            reqwest::Method::DELETE,
            format!("/config/{subject}"),
            String::new(),
        ),
    ];
    for (method, path, body) in &writes {
        for wrong in [None, Some("not-the-password"), Some(PASSWORD)] {
            let mut request = anon(method.clone(), path).body(body.clone());
            request = match wrong {
                None => request,
                // The right password under another user name is wrong too.
                Some(p) if p == PASSWORD => request.basic_auth("someone-else", Some(p)),
                Some(p) => request.basic_auth(DEFAULT_USERNAME, Some(p)),
            };
            let (status, headers, problem) = call(request).await;
            assert_eq!(status, 401, "{method} {path} with {wrong:?}: {problem}");
            assert_eq!(
                headers["content-type"],
                saga_service_kit::problem::CONTENT_TYPE
            );
            assert!(
                headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic realm=")
            );
            assert_eq!(problem["status"], 401);
            assert_eq!(problem["error_code"], 40101);
        }
    }
    let (_, subjects) = reg.get("/subjects").await;
    assert!(
        !subjects
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == &json!(subject))
    );

    // With the credential (the real client, as the services send it): accepted.
    let supplied = SuppliedSchema::new(
        Some("com.example.test.Auth".into()),
        SchemaType::Avro,
        schema.clone(),
    );
    let anonymous_client = SrSettings::new(reg.anonymous_base.clone());
    assert!(
        post_schema(&anonymous_client, subject.clone(), supplied.clone())
            .await
            .is_err(),
        "the client without a credential is refused"
    );
    let mut builder = SrSettings::new_builder(reg.anonymous_base.clone());
    builder.set_basic_authorization(DEFAULT_USERNAME, Some(PASSWORD));
    let client = builder.build().unwrap();
    let registered = post_schema(&client, subject.clone(), supplied)
        .await
        .expect("the client with the credential registers");

    // Reads, the lookup and the compatibility test need nothing.
    for path in [
        format!("/schemas/ids/{}", registered.id),
        format!("/subjects/{subject}/versions"),
        format!("/subjects/{subject}/versions/latest"),
        "/config".to_owned(),
        "/subjects".to_owned(),
    ] {
        let (status, _, body) = call(anon(reqwest::Method::GET, &path)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
    }
    for path in [
        format!("/subjects/{subject}"),
        format!("/compatibility/subjects/{subject}/versions/latest"),
    ] {
        let (status, _, body) =
            call(anon(reqwest::Method::POST, &path).body(register_body.clone())).await;
        assert_eq!(status, 200, "POST {path}: {body}");
    }

    // An authenticated delete works; an unknown path is still a 404, not a challenge.
    let (status, _, body) = call(
        anon(reqwest::Method::DELETE, &format!("/subjects/{subject}"))
            .basic_auth(DEFAULT_USERNAME, Some(PASSWORD)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(anon(reqwest::Method::DELETE, "/no/such/route")).await;
    assert_eq!(status, 404);
}
