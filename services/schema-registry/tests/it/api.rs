//! Every endpoint and error code over raw HTTP.

use reqwest::Method;
use serde_json::json;

use crate::support::{CT, assert_error, record, start, unique_subject};

fn v1() -> String {
    record("Order", json!([{ "name": "id", "type": "string" }]))
}

fn v2() -> String {
    record(
        "Order",
        json!([
            { "name": "id", "type": "string" },
            { "name": "note", "type": ["null", "string"], "default": null }
        ]),
    )
}

#[tokio::test]
async fn register_lookup_versions_and_ids() {
    let reg = start().await;
    let s = unique_subject("orders-value");

    assert_error(
        &reg.get(&format!("/subjects/{s}/versions")).await,
        404,
        40401,
    );

    let id1 = reg.register_ok(&s, &v1()).await;
    // The same schema again, even formatted differently: same id, no new version.
    let reformatted =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&v1()).unwrap())
            .unwrap();
    assert_eq!(reg.register_ok(&s, &reformatted).await, id1);
    let id2 = reg.register_ok(&s, &v2()).await;
    assert_ne!(id1, id2);

    // The same schema under another subject: the same global id.
    let other = unique_subject("other-value");
    assert_eq!(reg.register_ok(&other, &v1()).await, id1);

    let (status, versions) = reg.get(&format!("/subjects/{s}/versions")).await;
    assert_eq!((status, versions), (200, json!([1, 2])));

    let (status, latest) = reg.get(&format!("/subjects/{s}/versions/latest")).await;
    assert_eq!(status, 200);
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["id"], id2);
    assert_eq!(latest["subject"], s.as_str());
    let (_, first) = reg.get(&format!("/subjects/{s}/versions/1")).await;
    assert_eq!(first["id"], id1);
    assert_eq!(
        reg.get(&format!("/subjects/{s}/versions/-1")).await.1["version"],
        2
    );

    // Stored in canonical form: full names, no whitespace.
    let stored = first["schema"].as_str().unwrap();
    assert!(stored.contains("\"com.example.test.Order\""), "{stored}");
    assert!(!stored.contains(' '), "{stored}");

    let (status, raw) = reg.get(&format!("/subjects/{s}/versions/1/schema")).await;
    assert_eq!(status, 200);
    assert_eq!(raw["name"], "com.example.test.Order");

    let (status, by_id) = reg.get(&format!("/schemas/ids/{id1}")).await;
    assert_eq!(status, 200);
    assert_eq!(by_id["schema"], stored);
    let (_, raw_by_id) = reg.get(&format!("/schemas/ids/{id1}/schema")).await;
    assert_eq!(raw_by_id, raw);
    let (_, mut subjects) = reg.get(&format!("/schemas/ids/{id1}/subjects")).await;
    let mut expected = vec![s.clone(), other.clone()];
    expected.sort();
    subjects
        .as_array_mut()
        .unwrap()
        .sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(subjects, json!(expected));
    let (_, usages) = reg.get(&format!("/schemas/ids/{id1}/versions")).await;
    assert_eq!(usages.as_array().unwrap().len(), 2);
    assert!(
        usages
            .as_array()
            .unwrap()
            .contains(&json!({"subject": s, "version": 1}))
    );

    let (status, found) = reg
        .post(&format!("/subjects/{s}"), &json!({ "schema": v2() }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(found["id"], id2);
    assert_eq!(found["version"], 2);
    assert_eq!(found["subject"], s.as_str());
    assert!(found["schema"].is_string());

    let (status, all) = reg.get("/subjects").await;
    assert_eq!(status, 200);
    assert!(all.as_array().unwrap().contains(&json!(s)));
    assert_eq!(reg.get("/schemas/types").await, (200, json!(["AVRO"])));
}

#[tokio::test]
async fn not_found_and_invalid_input_errors() {
    let reg = start().await;
    let s = unique_subject("errors");
    let missing = unique_subject("missing");

    assert_error(
        &reg.get(&format!("/subjects/{missing}/versions/1")).await,
        404,
        40401,
    );
    assert_error(
        &reg.get(&format!("/subjects/{missing}/versions/latest"))
            .await,
        404,
        40401,
    );
    assert_error(
        &reg.post(&format!("/subjects/{missing}"), &json!({"schema": v1()}))
            .await,
        404,
        40401,
    );
    assert_error(&reg.get("/schemas/ids/999999").await, 404, 40403);
    assert_error(&reg.get("/schemas/ids/nope").await, 404, 40403);
    assert_error(&reg.get("/no/such/route").await, 404, 404);

    reg.register_ok(&s, &v1()).await;
    assert_error(
        &reg.get(&format!("/subjects/{s}/versions/7")).await,
        404,
        40402,
    );
    assert_error(
        &reg.get(&format!("/subjects/{s}/versions/0")).await,
        422,
        42202,
    );
    assert_error(
        &reg.get(&format!("/subjects/{s}/versions/abc")).await,
        422,
        42202,
    );
    // Lookup of a schema the subject does not hold.
    assert_error(
        &reg.post(&format!("/subjects/{s}"), &json!({"schema": v2()}))
            .await,
        404,
        40403,
    );

    // Invalid Avro, empty schema, other schema types, references.
    assert_error(
        &reg.register(&s, r#"{"type":"record","name":"X"}"#).await,
        422,
        42201,
    );
    assert_error(
        &reg.register(&s, r#"{"type":"nonsense"}"#).await,
        422,
        42201,
    );
    assert_error(&reg.register(&s, "not json at all").await, 422, 42201);
    assert_error(&reg.register(&s, "").await, 422, 42201);
    let path = format!("/subjects/{s}/versions");
    assert_error(
        &reg.post(&path, &json!({"schema": "{}", "schemaType": "PROTOBUF"}))
            .await,
        422,
        42201,
    );
    assert_error(
        &reg.post(&path, &json!({"schema": "{}", "schemaType": "JSON"}))
            .await,
        422,
        42201,
    );
    assert_error(
        &reg.post(
            &path,
            &json!({"schema": v1(), "references": [{"name": "x", "subject": "y", "version": 1}]}),
        )
        .await,
        422,
        42201,
    );
    // Empty references and an explicit AVRO type are fine.
    let (status, _) = reg
        .post(
            &path,
            &json!({"schema": v1(), "schemaType": "AVRO", "references": []}),
        )
        .await;
    assert_eq!(status, 200);

    // Garbage JSON bodies, wrong shapes, wrong content type, huge bodies.
    let r = reg
        .http
        .post(reg.url(&path))
        .header("content-type", CT)
        .body("{\"schema\": ")
        .send()
        .await
        .unwrap();
    assert_error(&crate::support::decode(r).await, 400, 400);
    assert_error(&reg.post(&path, &json!({"schema": 42})).await, 422, 422);
    assert_error(&reg.post(&path, &json!([1, 2])).await, 422, 422);
    let r = reg
        .http
        .post(reg.url(&path))
        .header("content-type", "text/plain")
        .body(json!({"schema": v1()}).to_string())
        .send()
        .await
        .unwrap();
    assert_error(&crate::support::decode(r).await, 415, 415);
    for ct in [
        "application/json",
        "application/vnd.schemaregistry+json",
        "application/vnd.schemaregistry.v1+json; charset=utf-8",
    ] {
        let r = reg
            .http
            .post(reg.url(&path))
            .header("content-type", ct)
            .body(json!({"schema": v1()}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(crate::support::decode(r).await.0, 200, "{ct}");
    }
    let huge = json!({ "schema": format!("{{\"type\":\"string\",\"doc\":\"{}\"}}", "x".repeat(2 * 1024 * 1024)) });
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reg.http
            .post(reg.url(&path))
            .header("content-type", CT)
            .body(huge.to_string())
            .send(),
    )
    .await
    .expect("a huge body is answered, not hung");
    match r {
        Ok(r) => assert_error(&crate::support::decode(r).await, 413, 413),
        // The server may close the connection before reading the whole upload.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // A deeply nested document is refused, not a stack overflow.
    let deep = format!(
        "{}\"int\"{}",
        "{\"type\":\"array\",\"items\":".repeat(5000),
        "}".repeat(5000)
    );
    assert_error(&reg.register(&s, &deep).await, 422, 42201);

    // The registry is still healthy after all that.
    let r = reg.http.get(reg.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reg.http.get(reg.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reg
        .http
        .request(Method::PATCH, reg.url("/subjects"))
        .send()
        .await
        .unwrap();
    assert_error(&crate::support::decode(r).await, 405, 405);
}

#[tokio::test]
async fn soft_and_permanent_deletes() {
    let reg = start().await;
    let s = unique_subject("deletes");
    let id1 = reg.register_ok(&s, &v1()).await;
    reg.register_ok(&s, &v2()).await;

    // Permanent before soft is refused.
    assert_error(
        &reg.delete(&format!("/subjects/{s}/versions/1?permanent=true"))
            .await,
        404,
        40407,
    );
    assert_error(
        &reg.delete(&format!("/subjects/{s}?permanent=true")).await,
        404,
        40405,
    );

    assert_eq!(
        reg.delete(&format!("/subjects/{s}/versions/1")).await,
        (200, json!(1))
    );
    assert_error(
        &reg.delete(&format!("/subjects/{s}/versions/1")).await,
        404,
        40406,
    );
    assert_error(
        &reg.get(&format!("/subjects/{s}/versions/1")).await,
        404,
        40402,
    );
    assert_eq!(
        reg.get(&format!("/subjects/{s}/versions")).await,
        (200, json!([2]))
    );
    assert_eq!(
        reg.get(&format!("/subjects/{s}/versions?deleted=true"))
            .await,
        (200, json!([1, 2]))
    );
    // The id stays resolvable: messages written with it still decode.
    assert_eq!(reg.get(&format!("/schemas/ids/{id1}")).await.0, 200);
    assert_eq!(
        reg.delete(&format!("/subjects/{s}/versions/1?permanent=true"))
            .await,
        (200, json!(1))
    );
    assert_error(
        &reg.delete(&format!("/subjects/{s}/versions/1?permanent=true"))
            .await,
        404,
        40402,
    );

    // Re-registering v1 now makes a new version; numbers are never reused.
    assert_eq!(reg.register_ok(&s, &v1()).await, id1);
    assert_eq!(
        reg.get(&format!("/subjects/{s}/versions")).await,
        (200, json!([2, 3]))
    );

    assert_eq!(
        reg.delete(&format!("/subjects/{s}")).await,
        (200, json!([2, 3]))
    );
    assert_error(&reg.delete(&format!("/subjects/{s}")).await, 404, 40404);
    assert_error(
        &reg.get(&format!("/subjects/{s}/versions")).await,
        404,
        40401,
    );
    assert!(
        !reg.get("/subjects")
            .await
            .1
            .as_array()
            .unwrap()
            .contains(&json!(s))
    );
    assert!(
        reg.get("/subjects?deleted=true")
            .await
            .1
            .as_array()
            .unwrap()
            .contains(&json!(s))
    );
    assert_eq!(
        reg.delete(&format!("/subjects/{s}?permanent=true")).await,
        (200, json!([2, 3]))
    );
    assert_error(
        &reg.delete(&format!("/subjects/{s}?permanent=true")).await,
        404,
        40401,
    );
    assert_error(
        &reg.delete(&format!("/subjects/{s}/versions/2")).await,
        404,
        40401,
    );
}

#[tokio::test]
async fn config_global_and_subject() {
    let reg = start().await;
    let s = unique_subject("config");
    assert_eq!(
        reg.get("/config").await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_error(&reg.get(&format!("/config/{s}")).await, 404, 40408);
    assert_eq!(
        reg.get(&format!("/config/{s}?defaultToGlobal=true")).await,
        (200, json!({"compatibilityLevel": "BACKWARD"}))
    );
    for level in [
        "NONE",
        "BACKWARD",
        "BACKWARD_TRANSITIVE",
        "FORWARD",
        "FORWARD_TRANSITIVE",
        "FULL",
        "FULL_TRANSITIVE",
    ] {
        assert_eq!(
            reg.put(&format!("/config/{s}"), &json!({"compatibility": level}))
                .await,
            (200, json!({"compatibility": level}))
        );
        assert_eq!(
            reg.get(&format!("/config/{s}")).await,
            (200, json!({"compatibilityLevel": level}))
        );
    }
    assert_error(
        &reg.put(
            &format!("/config/{s}"),
            &json!({"compatibility": "SIDEWAYS"}),
        )
        .await,
        422,
        42203,
    );
    assert_error(
        &reg.put("/config", &json!({"compatibility": ""})).await,
        422,
        42203,
    );
    assert_error(&reg.put("/config", &json!({})).await, 422, 42203);

    assert_eq!(
        reg.put("/config", &json!({"compatibility": "full"})).await,
        (200, json!({"compatibility": "FULL"}))
    );
    assert_eq!(
        reg.get("/config").await,
        (200, json!({"compatibilityLevel": "FULL"}))
    );
    assert_eq!(
        reg.delete(&format!("/config/{s}")).await,
        (200, json!({"compatibilityLevel": "FULL_TRANSITIVE"}))
    );
    assert_error(&reg.delete(&format!("/config/{s}")).await, 404, 40408);
    assert_eq!(reg.get("/mode").await, (200, json!({"mode": "READWRITE"})));
}

#[tokio::test]
async fn incompatible_registration_and_compatibility_endpoint() {
    let reg = start().await;
    let s = unique_subject("compat");
    reg.register_ok(&s, &v1()).await;
    // BACKWARD (the global default): a new required field cannot be filled from old data.
    let required = record(
        "Order",
        json!([{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]),
    );
    assert_error(&reg.register(&s, &required).await, 409, 409);
    assert_eq!(
        reg.get(&format!("/subjects/{s}/versions")).await.1,
        json!([1])
    );

    let path = format!("/compatibility/subjects/{s}/versions/latest");
    assert_eq!(
        reg.post(&path, &json!({"schema": required})).await,
        (200, json!({"is_compatible": false}))
    );
    let (status, verbose) = reg
        .post(
            &format!("{path}?verbose=true"),
            &json!({"schema": required}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(verbose["is_compatible"], false);
    let message = verbose["messages"][0].as_str().unwrap();
    assert!(message.contains("qty"), "{message}");
    assert_eq!(
        reg.post(&path, &json!({"schema": v2()})).await,
        (200, json!({"is_compatible": true}))
    );
    assert_eq!(
        reg.post(
            &format!("/compatibility/subjects/{s}/versions/1?verbose=true"),
            &json!({"schema": v2()})
        )
        .await,
        (200, json!({"is_compatible": true, "messages": []}))
    );
    assert_eq!(
        reg.post(
            &format!("/compatibility/subjects/{s}/versions"),
            &json!({"schema": required})
        )
        .await
        .1["is_compatible"],
        false
    );
    assert_error(
        &reg.post(
            &format!("/compatibility/subjects/{s}/versions/9"),
            &json!({"schema": v2()}),
        )
        .await,
        404,
        40402,
    );
    let missing = unique_subject("missing");
    assert_error(
        &reg.post(
            &format!("/compatibility/subjects/{missing}/versions/latest"),
            &json!({"schema": v2()}),
        )
        .await,
        404,
        40401,
    );
    assert_error(&reg.post(&path, &json!({"schema": "{"})).await, 422, 42201);

    // NONE lets it through.
    reg.set_level(&s, "NONE").await;
    assert_eq!(reg.register(&s, &required).await.0, 200);
}

/// Hostile or odd schemas: each gets a 200 or a Confluent 4xx, never a 5xx or a dropped
/// connection, and recursive schemas go through registration and compatibility checks.
#[tokio::test]
async fn odd_schemas_never_fail_the_server() {
    let reg = start().await;
    let odd = [
        r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"],"default":null}]}"#,
        r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"],"default":null},{"name":"v","type":"int","default":0}]}"#,
        r#"{"type":"enum","name":"E","symbols":[]}"#,
        r#"{"type":"enum","name":"E","symbols":["A","A"]}"#,
        r#"{"type":"fixed","name":"F","size":-1}"#,
        r#"{"type":"fixed","name":"F","size":16,"logicalType":"decimal","precision":40}"#,
        r#"{"type":"record","name":"1bad","fields":[]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int","default":"x"}]}"#,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}"#,
        r#"[]"#,
        r#"[["int"]]"#,
        r#"["int","int"]"#,
        r#"{"type":"array"}"#,
        r#"{"type":"map","values":{"type":"map","values":{"type":"array","items":"bytes"}}}"#,
        r#"{"type":{"type":{"type":"string"}}}"#,
        r#"{"type":"bytes","logicalType":"decimal","precision":-3}"#,
        r#"{"type":"string","logicalType":"uuid"}"#,
        r#""string""#,
        r#"null"#,
        r#"42"#,
        "\u{0}",
    ];
    for (i, schema) in odd.iter().enumerate() {
        let subject = format!("odd-{i}");
        for path in [
            format!("/subjects/{subject}/versions"),
            format!("/subjects/{subject}"),
            format!("/compatibility/subjects/{subject}/versions"),
        ] {
            let (status, body) = reg.post(&path, &json!({ "schema": schema })).await;
            assert!(
                status == 200 || (400..500).contains(&status),
                "{path} {schema}: {status} {body}"
            );
            if status != 200 {
                assert!(body["error_code"].is_number(), "{body}");
            }
        }
    }
    // The two recursive versions: registered in order under BACKWARD (v added with a default).
    let (status, versions) = reg.get("/subjects/odd-0/versions").await;
    assert_eq!((status, versions), (200, json!([1])));
    assert_eq!(reg.register("odd-0", odd[1]).await.0, 200);

    // Percent-encoded subjects round-trip; invalid UTF-8 in a path is a Confluent error.
    assert_eq!(reg.register("with%2Fslash", odd[0]).await.0, 200);
    assert!(
        reg.get("/subjects")
            .await
            .1
            .as_array()
            .unwrap()
            .contains(&json!("with/slash"))
    );
    let r = reg
        .http
        .get(reg.url("/subjects/%FF/versions"))
        .send()
        .await
        .unwrap();
    let resp = crate::support::decode(r).await;
    assert!((400..500).contains(&resp.0), "{resp:?}");
}
