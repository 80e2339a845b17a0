//! Checks that prove a running stack works end to end, for `cargo xtask demo` before the
//! services exist: a keyed message through the broker, and database isolation per role.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{Connection, PgConnection};

use crate::broker::kafka_client_config;
use crate::catalog::SERVICE_DATABASES;
use crate::config::StackConfig;
use crate::topics::create_topics;

/// One connection attempt of a role to a database.
#[derive(Debug, Clone)]
pub struct RoleCheck {
    pub role: &'static str,
    pub database: &'static str,
    /// Which password was tried: "its own", "another role's", "its name".
    pub password: &'static str,
    pub expected_allowed: bool,
    /// `Ok(())` when connected, `Err(server message)` when refused.
    pub result: Result<(), String>,
}

impl RoleCheck {
    pub fn passed(&self) -> bool {
        self.result.is_ok() == self.expected_allowed
    }
}

/// Each role connects with its own password to its own database (must work) and to the
/// next service's database (must be refused), and to its own database with the next role's
/// password and with its own name as password (both must be refused: passwords are
/// generated per role, and TCP logins are checked with SCRAM).
pub async fn check_role_isolation(cfg: &StackConfig) -> Vec<RoleCheck> {
    let mut checks = Vec::new();
    for (i, own) in SERVICE_DATABASES.iter().enumerate() {
        let other = &SERVICE_DATABASES[(i + 1) % SERVICE_DATABASES.len()];
        let password = |role: &str| cfg.db_password(role).unwrap_or_default();
        let attempts = [
            (own.database, "its own", password(own.role), true),
            (other.database, "its own", password(own.role), false),
            (own.database, "another role's", password(other.role), false),
            (own.database, "its name", own.role.to_owned(), false),
        ];
        for (database, which, secret, expected_allowed) in attempts {
            let url = format!(
                "postgres://{}:{secret}@{}:{}/{database}",
                own.role, cfg.host, cfg.pg_port
            );
            let result = match PgConnection::connect(&url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            checks.push(RoleCheck {
                role: own.role,
                database,
                password: which,
                expected_allowed,
                result,
            });
        }
    }
    checks
}

/// Produces one keyed message (idempotent producer, acks=all) to a fresh topic and reads it
/// back; returns `(partition, offset, key, payload)`.
pub async fn kafka_roundtrip(bootstrap: &str) -> Result<(i32, i64, String, String), String> {
    let topic = format!("stack-proof-{}", uuid::Uuid::new_v4());
    create_topics(bootstrap, &[(&topic, 4)]).await?;
    let producer: FutureProducer = kafka_client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .map_err(|e| e.to_string())?;
    let key = uuid::Uuid::new_v4().to_string();
    let payload = format!("hello from the saga stack at {bootstrap}");
    let delivered = producer
        .send(
            FutureRecord::to(&topic).key(&key).payload(&payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e.to_string())?;
    let consumer: StreamConsumer = kafka_client_config(bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    consumer.subscribe(&[&topic]).map_err(|e| e.to_string())?;
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .map_err(|_| "no message within 30s".to_owned())?
        .map_err(|e| e.to_string())?;
    let got_key = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
    let got_payload = String::from_utf8_lossy(msg.payload().unwrap_or_default()).into_owned();
    if got_key != key || got_payload != payload {
        return Err(format!(
            "read back {got_key}={got_payload}, sent {key}={payload}"
        ));
    }
    if (msg.partition(), msg.offset()) != (delivered.partition, delivered.offset) {
        return Err("read back from another position than delivered".into());
    }
    Ok((msg.partition(), msg.offset(), got_key, got_payload))
}
