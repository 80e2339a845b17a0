//! shipping-service (wiring to Kafka lands once the messaging crates compile).

pub mod http;
pub mod shipments;

use sqlx::migrate::Migrator;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");
