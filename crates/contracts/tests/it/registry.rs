//! The codec against the real schema registry over HTTP: every message type round-trips,
//! schema ids are cached, every kind of bad payload gets its own error, registration refusals
//! name the subject.
//!
//! Each test starts its own registry (fresh database) in-process on port 0, on a runtime of
//! its own thread so that it can outlive, or be stopped before, the test's runtime.

use std::sync::mpsc;
use std::thread::JoinHandle;

use saga_contracts::*;
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_all_subjects, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use tokio_util::sync::CancellationToken;

use crate::for_each_sample;
use crate::samples;

/// A registry process-in-a-thread; stopped on drop.
struct Registry {
    url: String,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl Registry {
    fn start() -> Registry {
        let (tx, rx) = mpsc::channel();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let stack = saga_testkit::TestStack::get().await;
                let db = stack.fresh_database().await;
                let config = schema_registry::Config {
                    http: saga_service_kit::HttpConfig::default(),
                    database: saga_service_kit::DatabaseConfig::new(db.url.clone()),
                    auth: schema_registry::auth::AuthConfig::with_password(
                        "contracts-test-registry",
                    ),
                };
                let auth = config.auth.clone();
                let app = schema_registry::App::build(config).await.unwrap();
                tx.send(auth.url_with_credentials(&format!("http://{}", app.local_addr())))
                    .unwrap();
                app.run(token).await.unwrap();
                drop(db);
            });
        });
        let url = rx
            .recv_timeout(std::time::Duration::from_secs(180))
            .expect("schema registry did not start");
        Registry {
            url,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the registry and waits until its port is closed.
    fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("registry thread panicked");
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn round_trip<M: Message + PartialEq>(codec: &Codec, msg: M)
where
    M::Topic: PartialEq,
{
    let bytes = codec
        .encode(&msg)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", M::FULL_NAME));
    assert_eq!(bytes[0], 0, "{}: magic byte", M::FULL_NAME);
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    assert_eq!(codec.schema_id_of::<M>().await.unwrap(), id);
    let decoded: M::Topic = codec
        .decode(&bytes)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", M::FULL_NAME));
    assert_eq!(decoded.full_name(), M::FULL_NAME);
    assert_eq!(decoded.type_name(), M::TYPE_NAME);
    assert_eq!(decoded.meta(), msg.meta());
    assert_eq!(decoded, M::Topic::from(msg), "{}", M::FULL_NAME);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_type_round_trips_through_the_registry() {
    let registry = Registry::start();
    let codec = Codec::new(&registry.url);
    let n = for_each_sample!(round_trip, &codec; .await);

    // One subject per type, named by TopicRecordNameStrategy.
    let settings = SrSettings::new(registry.url.clone());
    let mut subjects = get_all_subjects(&settings).await.unwrap();
    subjects.sort();
    let mut expected: Vec<String> = all_message_types().map(|t| t.subject()).collect();
    expected.sort();
    assert_eq!(subjects, expected);
    assert_eq!(n, expected.len());
    assert!(
        subjects.contains(&"inventory.commands-com.example.saga.inventory.ReserveStock".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_sets_each_subjects_mode_from_compatibility_toml() {
    let registry = Registry::start();
    let codec = Codec::new(&registry.url);
    codec.register_all().await.unwrap();
    // Twice is harmless (every service does it at start).
    codec.register_all().await.unwrap();
    let http = reqwest::Client::new();
    for t in all_message_types() {
        let config: serde_json::Value = http
            .get(format!("{}/config/{}", registry.url, t.subject()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            config["compatibilityLevel"],
            "FULL_TRANSITIVE",
            "{}",
            t.subject()
        );
    }
    // The registry now refuses what BACKWARD alone would allow: dropping a required field
    // (old readers could no longer read new data).
    let subject = "order.events-com.example.saga.order.OrderRejected";
    let mut v2: serde_json::Value = serde_json::from_str(OrderRejected::SCHEMA_JSON).unwrap();
    v2["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["name"] != "reason");
    let refused = post_schema(
        &SrSettings::new(registry.url.clone()),
        subject.to_owned(),
        SuppliedSchema::new(None, SchemaType::Avro, v2.to_string()),
    )
    .await;
    assert!(
        refused.is_err(),
        "FULL_TRANSITIVE subject accepted a forward-incompatible schema"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_ids_are_cached_so_a_registry_outage_does_not_stop_known_types() {
    let mut registry = Registry::start();
    let codec = Codec::new(&registry.url);
    let msg = samples::order_placed();
    let bytes = codec.encode(&msg).await.unwrap();
    let _: OrderEvent = codec.decode(&bytes).await.unwrap();
    registry.stop();

    // Both directions work from the caches alone.
    let again = codec.encode(&msg).await.unwrap();
    assert_eq!(again, bytes);
    let decoded: OrderEvent = codec.decode(&bytes).await.unwrap();
    assert_eq!(decoded, OrderEvent::OrderPlaced(msg));

    // A type never seen needs the registry: a transient error, not a panic or a dead letter.
    let err = codec
        .encode(&OrderApproved {
            meta: samples::meta(),
        })
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let mut unseen_id = bytes.clone();
    unseen_id[1..5].copy_from_slice(&4242u32.to_be_bytes());
    let err = codec.decode::<OrderEvent>(&unseen_id).await.unwrap_err();
    assert!(
        matches!(err, DecodeError::Registry(_)) && err.is_transient(),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_bad_payload_has_its_own_error() {
    let registry = Registry::start();
    let codec = Codec::new(&registry.url);
    let good = codec.encode(&samples::order_placed()).await.unwrap();

    let decode = |bytes: Vec<u8>| {
        let codec = codec.clone();
        async move { codec.decode::<OrderEvent>(&bytes).await.unwrap_err() }
    };

    assert_eq!(decode(vec![]).await, DecodeError::Empty);

    let mut wrong_magic = good.clone();
    wrong_magic[0] = 0x7b; // '{': somebody produced JSON
    assert_eq!(decode(wrong_magic).await, DecodeError::WrongMagicByte(0x7b));

    assert_eq!(
        decode(good[..3].to_vec()).await,
        DecodeError::Truncated { len: 3 }
    );
    let cut = good.len() - 4;
    assert_eq!(
        decode(good[..cut].to_vec()).await,
        DecodeError::Truncated { len: cut }
    );

    let mut unknown = good.clone();
    unknown[1..5].copy_from_slice(&999_999u32.to_be_bytes());
    assert_eq!(decode(unknown).await, DecodeError::UnknownSchemaId(999_999));

    // A message of another topic's type.
    let reserve = codec
        .encode(&ReserveStock {
            meta: samples::meta(),
            lines: samples::stock_lines(),
        })
        .await
        .unwrap();
    assert_eq!(
        decode(reserve).await,
        DecodeError::UnexpectedType {
            topic: "order.events",
            found: "com.example.saga.inventory.ReserveStock".into()
        }
    );

    // Bytes after the end of the message.
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    assert!(
        matches!(decode(trailing).await, DecodeError::InvalidAvro(m) if m.contains("3 bytes left over"))
    );

    // A value the schema allows but the Rust type refuses (a lower-case currency).
    let approved = OrderApproved {
        meta: samples::meta(),
    };
    let mut garbage = codec.encode(&approved).await.unwrap();
    garbage.truncate(5);
    garbage.extend_from_slice(&[0x02, 0xff, 0xff]); // string length 1 then junk
    let err = decode(garbage).await;
    assert!(
        matches!(
            err,
            DecodeError::InvalidAvro(_) | DecodeError::Truncated { .. }
        ),
        "{err:?}"
    );

    // None of these is worth retrying.
    for e in [
        DecodeError::Empty,
        DecodeError::WrongMagicByte(1),
        DecodeError::Truncated { len: 1 },
        DecodeError::UnknownSchemaId(1),
        DecodeError::InvalidAvro(String::new()),
    ] {
        assert!(!e.is_transient(), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_registry_refuses_fails_registration_naming_the_subject() {
    let registry = Registry::start();
    let subject = "order.events-com.example.saga.order.OrderRejected";
    // Someone registered an unrelated record under the subject: ours adds required fields.
    let settings = SrSettings::new(registry.url.clone());
    post_schema(
        &settings,
        subject.to_owned(),
        SuppliedSchema::new(
            None,
            SchemaType::Avro,
            r#"{"type":"record","name":"OrderRejected","namespace":"com.example.saga.order","fields":[{"name":"code","type":"int"}]}"#.to_owned(),
        ),
    )
    .await
    .unwrap();

    let codec = Codec::new(&registry.url);
    let err = codec.register_all().await.unwrap_err();
    match &err {
        RegistryError::Refused {
            subject: s,
            error_code,
            message,
        } => {
            assert_eq!(s, subject);
            assert_eq!(*error_code, 409, "{message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(err.to_string().contains(subject), "{err}");
}

#[tokio::test]
async fn an_unreachable_registry_is_a_transient_error() {
    // Port 9 (discard) is not listened on here; the connection is refused at once.
    let codec = Codec::new("http://127.0.0.1:9");
    let err = codec.register_all().await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Unavailable { .. }) && err.is_transient(),
        "{err:?}"
    );
    let err = codec
        .decode::<OrderEvent>(&[0, 0, 0, 0, 1, 2])
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
