//! Topic administration for the stack tool, services at start and tests.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, KafkaError};

/// Create each topic with its partition count; a topic that already exists is left as is,
/// so this is safe to run at every start.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[(&str, i32)]) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> = config.client_config().create()?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new_topics, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Every topic of the suite (with the configured prefix) and the default partition count.
pub async fn ensure_suite_topics(config: &KafkaConfig) -> Result<(), KafkaError> {
    let names: Vec<String> = crate::topics::ALL
        .iter()
        .chain(std::iter::once(&crate::topics::DEAD_LETTERS))
        .map(|t| config.topic(t))
        .collect();
    let topics: Vec<(&str, i32)> = names
        .iter()
        .map(|t| (t.as_str(), crate::DEFAULT_PARTITIONS))
        .collect();
    ensure_topics(config, &topics).await
}
