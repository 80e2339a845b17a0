//! One schema registered by 20 tasks at once gets one id and one version.

use futures::future::join_all;
use serde_json::json;

use crate::support::{record, start, unique_subject};

#[tokio::test]
async fn twenty_concurrent_registrations_yield_one_id() {
    let reg = start().await;
    let s = unique_subject("concurrent");
    let schema = record("Concurrent", json!([{ "name": "a", "type": "long" }]));
    let ids = join_all((0..20).map(|_| reg.register(&s, &schema))).await;
    let ids: Vec<i64> = ids
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 200, "{body}");
            body["id"].as_i64().unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        reg.get(&format!("/subjects/{s}/versions")).await.1,
        json!([1])
    );

    // The same schema under 20 different subjects at once: still one id (global per text).
    let other = record("Concurrent2", json!([{ "name": "b", "type": "long" }]));
    let subjects: Vec<String> = (0..20).map(|_| unique_subject("fanout")).collect();
    let results = join_all(subjects.iter().map(|s| reg.register(s, &other))).await;
    let ids: Vec<i64> = results
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 200, "{body}");
            body["id"].as_i64().unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}
