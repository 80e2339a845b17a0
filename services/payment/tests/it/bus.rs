//! The real broker and registry of the test stack, for handler and wiring tests.
//! (Identical in the three participants' tests; a candidate for saga-testkit.)

/// The real broker and registry of the test stack, on topics of our own (a unique prefix),
/// for wiring tests: send a contract message, wait for the reply.
pub struct Bus {
    pub kafka: saga_kafka::KafkaConfig,
    pub codec: saga_contracts::Codec,
    pub registry_url: String,
    producer: rdkafka::producer::FutureProducer,
}

/// A codec on the test stack's registry with every schema registered (no topics needed).
pub async fn registry_codec() -> saga_contracts::Codec {
    let stack = saga_testkit::TestStack::get().await;
    let url = stack
        .registry_url()
        .expect("this test needs the test stack's schema registry");
    let codec = saga_contracts::Codec::new(url);
    codec.register_all().await.unwrap();
    codec
}

impl Bus {
    pub async fn new() -> Bus {
        let stack = saga_testkit::TestStack::get().await;
        let registry_url = stack
            .registry_url()
            .expect("the wiring test needs the test stack's schema registry")
            .to_owned();
        let kafka = saga_kafka::KafkaConfig {
            bootstrap_servers: stack.kafka_bootstrap().to_owned(),
            topic_prefix: format!("t{}.", uuid::Uuid::new_v4().simple()),
            ..Default::default()
        };
        saga_kafka::admin::ensure_suite_topics(&kafka)
            .await
            .unwrap();
        let codec = saga_contracts::Codec::new(&registry_url);
        codec.register_all().await.unwrap();
        Bus {
            producer: kafka.producer().unwrap(),
            kafka,
            codec,
            registry_url,
        }
    }

    /// Publishes `msg` on its topic, keyed by its order id, as the orchestrator would.
    pub async fn send<M: saga_contracts::Message>(&self, msg: &M) {
        let payload = self.codec.encode(msg).await.unwrap();
        let key = msg.meta().order_id.to_string();
        let topic = self.kafka.topic(M::TOPIC);
        let record = rdkafka::producer::FutureRecord::to(&topic)
            .key(&key)
            .payload(&payload);
        self.producer
            .send(record, std::time::Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    /// Reads `T`'s topic from the beginning until `pick` returns something, within 30 s.
    pub async fn wait_for<T, R>(&self, mut pick: impl FnMut(&T) -> Option<R>) -> R
    where
        T: saga_contracts::TopicMessage,
    {
        use rdkafka::Message as _;
        use rdkafka::consumer::{Consumer as _, StreamConsumer};
        let group = format!("reader-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = self.kafka.consumer_config(&group).create().unwrap();
        consumer.subscribe(&[&self.kafka.topic(T::TOPIC)]).unwrap();
        let search = async {
            loop {
                let m = consumer.recv().await.unwrap();
                let decoded: T = self.codec.decode(m.payload().unwrap()).await.unwrap();
                if let Some(found) = pick(&decoded) {
                    return found;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(30), search)
            .await
            .unwrap_or_else(|_| panic!("no matching message on {} within 30 s", T::TOPIC))
    }

    /// The service's configuration for this bus and `database_url`.
    pub fn config<C: serde::de::DeserializeOwned>(&self, database_url: &str, group: &str) -> C {
        serde_json::from_value(serde_json::json!({
            "database": {"url": database_url},
            "kafka": {
                "bootstrap_servers": self.kafka.bootstrap_servers,
                "topic_prefix": self.kafka.topic_prefix,
            },
            "registry": {"url": self.registry_url},
            "consumer": {"group_id": group},
        }))
        .unwrap()
    }
}
