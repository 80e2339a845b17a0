//! The suite's databases, roles and topics: the tables of `docs/architecture.md` as data.

/// One component's private database and the only login role allowed to connect to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDb {
    pub component: &'static str,
    pub database: &'static str,
    pub role: &'static str,
}

impl ServiceDb {
    /// URL for this role on its own database at `host:port`. The local stack generates the
    /// role's password ([`crate::StackConfig::db_password`]); docker-compose takes it from
    /// the environment.
    pub fn url(&self, host: &str, port: u16, password: &str) -> String {
        format!(
            "postgres://{}:{password}@{host}:{port}/{}",
            self.role, self.database
        )
    }
}

macro_rules! service_db {
    ($component:literal, $db:literal, $role:literal) => {
        ServiceDb {
            component: $component,
            database: $db,
            role: $role,
        }
    };
}

pub const SERVICE_DATABASES: &[ServiceDb] = &[
    service_db!("order", "order_db", "order_svc"),
    service_db!("inventory", "inventory_db", "inventory_svc"),
    service_db!("payment", "payment_db", "payment_svc"),
    service_db!("shipping", "shipping_db", "shipping_svc"),
    service_db!("orchestrator", "orchestrator_db", "orchestrator_svc"),
    service_db!("schema-registry", "registry_db", "registry_svc"),
];

/// A topic the stack creates on `up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: &'static str,
    pub partitions: i32,
}

const fn topic(name: &'static str) -> TopicSpec {
    TopicSpec {
        name,
        partitions: 4,
    }
}

// The names are `saga_contracts::topics::ALL` (the eight command and event topics) followed
// by `saga_contracts::topics::DEAD_LETTERS`, also reachable as `saga_kafka::topics`; spelt
// out here so the dev stack does not link the contracts crate. deploy/check_sources.py checks
// this list and deploy/kafka/create-topics.sh against the contracts.
pub const TOPICS: &[TopicSpec] = &[
    topic("order.events"),
    topic("order.commands"),
    topic("inventory.commands"),
    topic("inventory.events"),
    topic("payment.commands"),
    topic("payment.events"),
    topic("shipping.commands"),
    topic("shipping.events"),
    topic("dead-letters"),
];
