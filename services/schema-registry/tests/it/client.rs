//! The real `schema_registry_converter` client against the registry: what every service's
//! codec does.

use std::time::Duration;

use apache_avro::types::Value;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::{SrSettings, post_schema};
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::support::start;

const SCHEMA: &str = r#"{"type":"record","name":"Heartbeat","namespace":"com.example.test",
  "fields":[{"name":"beat","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#;

fn supplied() -> SuppliedSchema {
    SuppliedSchema::new(
        Some("com.example.test.Heartbeat".into()),
        SchemaType::Avro,
        SCHEMA.into(),
    )
}

#[tokio::test]
async fn register_encode_decode_and_cache() {
    let mut reg = start().await;
    let settings = SrSettings::new(reg.base.clone());
    let topic = format!("heartbeats-{}", uuid::Uuid::new_v4().simple());

    // Registration through the client returns the id the registry assigned.
    let registered = post_schema(&settings, format!("{topic}-value-direct"), supplied())
        .await
        .expect("client registers");
    assert!(registered.id > 0);

    let encoder = AvroEncoder::new(settings.clone());
    let strategy =
        SubjectNameStrategy::TopicRecordNameStrategyWithSchema(topic.clone(), supplied());
    let bytes = encoder
        .encode(
            vec![
                ("beat", Value::Long(3)),
                (
                    "note",
                    Value::Union(1, Box::new(Value::String("hi".into()))),
                ),
            ],
            strategy.clone(),
        )
        .await
        .expect("encodes");
    // Confluent wire format: magic byte, big-endian id, Avro body. Same text, same id.
    assert_eq!(bytes[0], 0);
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    assert_eq!(id, registered.id);

    let subject = format!("{topic}-com.example.test.Heartbeat");
    let (status, versions) = reg.get(&format!("/subjects/{subject}/versions")).await;
    assert_eq!((status, versions), (200, serde_json::json!([1])));

    let decoder = AvroDecoder::new(settings.clone());
    let decoded = decoder.decode(Some(&bytes)).await.expect("decodes");
    match decoded.value {
        Value::Record(fields) => {
            assert_eq!(fields[0], ("beat".into(), Value::Long(3)));
            assert_eq!(
                fields[1],
                (
                    "note".into(),
                    Value::Union(1, Box::new(Value::String("hi".into())))
                )
            );
        }
        other => panic!("not a record: {other:?}"),
    }

    // A latest-version lookup by subject (no supplied schema) also works.
    let by_name = SubjectNameStrategy::TopicRecordNameStrategy(
        topic.clone(),
        "com.example.test.Heartbeat".into(),
    );
    let again = AvroEncoder::new(settings.clone())
        .encode(
            vec![
                ("beat", Value::Long(4)),
                ("note", Value::Union(0, Box::new(Value::Null))),
            ],
            by_name,
        )
        .await
        .expect("encodes with the latest schema of the subject");
    assert_eq!(&again[1..5], &bytes[1..5]);

    // Id caching: with the registry stopped, the same encoder and decoder still work.
    reg.token.cancel();
    tokio::time::timeout(Duration::from_secs(10), reg.task.take().unwrap())
        .await
        .expect("registry stops")
        .unwrap();
    assert!(
        reqwest::get(reg.url("/healthz")).await.is_err(),
        "registry is down"
    );
    let cached = encoder
        .encode(
            vec![
                ("beat", Value::Long(5)),
                ("note", Value::Union(0, Box::new(Value::Null))),
            ],
            strategy,
        )
        .await
        .expect("encoder uses its cached id");
    assert_eq!(&cached[1..5], &bytes[1..5]);
    decoder
        .decode(Some(&bytes))
        .await
        .expect("decoder uses its cached schema");
    // A fresh decoder has no cache and must fail now: the registry really is gone.
    assert!(
        AvroDecoder::new(settings)
            .decode(Some(&bytes))
            .await
            .is_err()
    );
}

/// The registry the stack runs (the `schema-registry` binary as a process, on `registry_db`
/// as `registry_svc`, what `cargo xtask up` starts) serves the client too. Cargo builds the
/// package's binary before this test, so the private test stack always includes it.
#[tokio::test]
async fn stack_registry_process_serves_the_client() {
    let stack = saga_testkit::TestStack::get().await;
    let url = stack
        .registry_url()
        .expect("the test stack runs the schema registry")
        .to_owned();
    let settings = SrSettings::new(url.clone());
    let topic = format!("stack-{}", uuid::Uuid::new_v4().simple());
    let strategy = SubjectNameStrategy::TopicRecordNameStrategyWithSchema(topic, supplied());
    let bytes = AvroEncoder::new(settings.clone())
        .encode(
            vec![
                ("beat", Value::Long(1)),
                ("note", Value::Union(0, Box::new(Value::Null))),
            ],
            strategy,
        )
        .await
        .expect("encodes through the stack's registry");
    let decoded = AvroDecoder::new(settings)
        .decode(Some(&bytes))
        .await
        .unwrap();
    assert!(matches!(decoded.value, Value::Record(_)));
    let health = reqwest::get(format!("{url}/readyz")).await.unwrap();
    assert_eq!(health.status(), 200);
}
