//! payment-service (wiring to Kafka lands once the messaging crates compile).

pub mod http;
pub mod payments;

use sqlx::migrate::Migrator;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
