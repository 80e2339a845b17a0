//! One-shot component: creates the suite's topics with their partition counts, idempotently.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::broker::{fetch_metadata, kafka_client_config};
use crate::component::{Component, Health, ProcessSpec};
use crate::config::StackConfig;
use crate::error::StackError;

const NAME: &str = "topics";

/// Creates `StackConfig::topics` on the broker.
pub struct Topics;

/// Creates `topics` (name, partitions); an existing topic is left as it is.
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = kafka_client_config(bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(|e| e.to_string())?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("create topic {topic}: {code}")),
        }
    }
    Ok(())
}

#[async_trait]
impl Component for Topics {
    fn name(&self) -> &str {
        NAME
    }

    fn process(&self, _cfg: &StackConfig) -> Result<Option<ProcessSpec>, StackError> {
        Ok(None)
    }

    async fn after_start(&self, cfg: &StackConfig) -> Result<(), StackError> {
        let topics: Vec<(&str, i32)> = cfg.topics.iter().map(|t| (t.name, t.partitions)).collect();
        create_topics(&cfg.kafka_bootstrap(), &topics)
            .await
            .map_err(|e| StackError::setup(NAME, e))
    }

    /// Healthy when every topic exists with at least its configured partitions.
    async fn health(&self, cfg: &StackConfig) -> Health {
        let bootstrap = cfg.kafka_bootstrap();
        let wanted = cfg.topics.clone();
        let result = tokio::task::spawn_blocking(move || {
            let md = fetch_metadata(&bootstrap, Duration::from_secs(3))?;
            let missing: Vec<String> = wanted
                .iter()
                .filter(|w| {
                    !md.topics().iter().any(|t| {
                        t.name() == w.name
                            && t.error().is_none()
                            && t.partitions().len() >= w.partitions as usize
                    })
                })
                .map(|w| w.name.to_owned())
                .collect();
            Ok::<_, String>(missing)
        })
        .await;
        match result {
            Ok(Ok(missing)) if missing.is_empty() => Health::Healthy,
            Ok(Ok(missing)) => Health::Unhealthy(format!("missing: {}", missing.join(", "))),
            Ok(Err(e)) => Health::Unhealthy(e),
            Err(e) => Health::Unhealthy(e.to_string()),
        }
    }
}
