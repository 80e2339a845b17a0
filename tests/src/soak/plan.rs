//! What a soak does, drawn from its seed: the order mix and the fault schedule. The same seed
//! and options give the same orders (path, customer, SKU, quantity, country, in the same
//! order) and the same faults (kind, target, planned time, down time).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::Service;

/// Which kinds of fault a soak injects (`--faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL of one service process, restarted after a short down time; each service in
    /// turn.
    KillService,
    /// SIGKILL of the broker, restarted on the same port and storage.
    KillBroker,
    /// PostgreSQL fast shutdown (SIGINT: open transactions roll back) and start.
    RestartPostgres,
    /// The TCP path between one service and its database cut (connections reset, new ones
    /// refused) for a few seconds.
    CutNetwork,
    /// One participant's packets to and from the broker dropped for a few seconds (it runs in
    /// a network namespace of its own); its database and HTTP API keep working.
    CutBroker,
    /// Every outbox row of every service delivered in the last seconds published once more
    /// (a relay that crashed after the broker's ack, before marking its batch delivered).
    Duplicates,
    /// Records that no consumer can decode, on the topics the services consume.
    Poison,
    /// One participant paused (SIGSTOP) for longer than the soak's step deadline, then
    /// resumed (SIGCONT): the sagas waiting on it time out and are undone, and its late
    /// actions, applied after the undo, must leave nothing behind.
    Stall,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillService,
        FaultKind::KillBroker,
        FaultKind::RestartPostgres,
        FaultKind::CutNetwork,
        FaultKind::CutBroker,
        FaultKind::Duplicates,
        FaultKind::Poison,
        FaultKind::Stall,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillService => "kill-service",
            FaultKind::KillBroker => "kill-broker",
            FaultKind::RestartPostgres => "restart-postgres",
            FaultKind::CutNetwork => "cut-network",
            FaultKind::CutBroker => "cut-broker",
            FaultKind::Duplicates => "duplicates",
            FaultKind::Poison => "poison",
            FaultKind::Stall => "stall",
        }
    }

    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Faults that stop or restart stack components (not the services), or need the broker to
    /// advertise an address a network namespace reaches: they need a stack of the soak's own.
    pub fn needs_own_stack(self) -> bool {
        matches!(
            self,
            FaultKind::KillBroker | FaultKind::RestartPostgres | FaultKind::CutBroker
        )
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    KillService {
        service: &'static str,
        down_ms: u64,
    },
    KillBroker {
        down_ms: u64,
    },
    RestartPostgres {
        down_ms: u64,
    },
    CutNetwork {
        service: &'static str,
        cut_ms: u64,
    },
    CutBroker {
        service: &'static str,
        cut_ms: u64,
    },
    Duplicates {
        window_ms: u64,
    },
    Poison {
        topic: &'static str,
        count: u32,
    },
    Stall {
        service: &'static str,
        stall_ms: u64,
    },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::KillService { .. } => FaultKind::KillService,
            Fault::KillBroker { .. } => FaultKind::KillBroker,
            Fault::RestartPostgres { .. } => FaultKind::RestartPostgres,
            Fault::CutNetwork { .. } => FaultKind::CutNetwork,
            Fault::CutBroker { .. } => FaultKind::CutBroker,
            Fault::Duplicates { .. } => FaultKind::Duplicates,
            Fault::Poison { .. } => FaultKind::Poison,
            Fault::Stall { .. } => FaultKind::Stall,
        }
    }

    /// The service (or standby instance) a fault hits, when it hits one.
    pub fn target(&self) -> Option<&'static str> {
        match self {
            Fault::KillService { service, .. }
            | Fault::CutNetwork { service, .. }
            | Fault::CutBroker { service, .. }
            | Fault::Stall { service, .. } => Some(service),
            Fault::KillBroker { .. }
            | Fault::RestartPostgres { .. }
            | Fault::Duplicates { .. }
            | Fault::Poison { .. } => None,
        }
    }

    /// One line for the report.
    pub fn describe(&self) -> String {
        match self {
            Fault::KillService { service, down_ms } => {
                format!("kill -9 {service}, restart after {down_ms} ms")
            }
            Fault::KillBroker { down_ms } => format!("kill -9 broker, restart after {down_ms} ms"),
            Fault::RestartPostgres { down_ms } => {
                format!("PostgreSQL fast shutdown, start after {down_ms} ms")
            }
            Fault::CutNetwork { service, cut_ms } => {
                format!("cut {service} <-> its database for {cut_ms} ms")
            }
            Fault::CutBroker { service, cut_ms } => {
                format!("cut {service} <-> the broker for {cut_ms} ms")
            }
            Fault::Duplicates { window_ms } => {
                format!("republish every outbox row delivered in the last {window_ms} ms")
            }
            Fault::Poison { topic, count } => format!("{count} undecodable records on {topic}"),
            Fault::Stall { service, stall_ms } => {
                format!("SIGSTOP {service}, SIGCONT after {stall_ms} ms")
            }
        }
    }
}

/// A fault and when it is due, from the start of the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedFault {
    pub at_ms: u64,
    /// Faults of cycle 0 run even when the load ends first: every selected fault at least
    /// once. Later cycles only while orders are being placed.
    pub cycle: u32,
    pub fault: Fault,
}

/// The topics the poison goes to: one consumed by each service.
const POISON_TOPICS: [&str; 5] = [
    saga_kafka::topics::ORDER_COMMANDS,
    saga_kafka::topics::INVENTORY_COMMANDS,
    saga_kafka::topics::PAYMENT_COMMANDS,
    saga_kafka::topics::SHIPPING_COMMANDS,
    saga_kafka::topics::PAYMENT_EVENTS,
];

/// Service names in the report.
pub fn service_name(service: Service) -> &'static str {
    match service {
        Service::Order => "order",
        Service::Inventory => "inventory",
        Service::Payment => "payment",
        Service::Shipping => "shipping",
        Service::Orchestrator => "orchestrator",
    }
}

pub fn service_by_name(name: &str) -> Option<Service> {
    Service::ALL.into_iter().find(|s| service_name(*s) == name)
}

/// The suffix of a standby instance's name in a kill-service fault (`order-standby`).
pub const STANDBY_SUFFIX: &str = "-standby";

/// `order-standby` for the standby instance of the order service.
pub fn standby_name(service: Service) -> &'static str {
    match service {
        Service::Order => "order-standby",
        Service::Inventory => "inventory-standby",
        Service::Payment => "payment-standby",
        Service::Shipping => "shipping-standby",
        Service::Orchestrator => "orchestrator-standby",
    }
}

/// The participants a stall pauses: the ones whose steps have a deadline (each step of the
/// saga that can be undone).
pub const STALL_TARGETS: [Service; 3] = [Service::Inventory, Service::Payment, Service::Shipping];

/// The services a `cut-broker` fault cuts off the broker, each running in a network namespace
/// of its own: the participants, whose every action arrives over the broker.
pub const BROKER_CUT_TARGETS: [Service; 3] = STALL_TARGETS;

/// The saga step each participant answers (the step a stall of it times out).
pub fn step_of(service: Service) -> Option<&'static str> {
    match service {
        Service::Inventory => Some("reserve_stock"),
        Service::Payment => Some("charge_payment"),
        Service::Shipping => Some("schedule_shipment"),
        Service::Order | Service::Orchestrator => None,
    }
}

/// What the schedule needs to know beyond the fault kinds.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    /// The step deadline the orchestrator runs with: a stall lasts 3-6 s longer.
    pub step_deadline: Duration,
    /// Services that run a standby instance as well: kill-service kills it in its turn too.
    pub standbys: Vec<Service>,
}

/// The fault schedule: cycles in which every selected kind occurs (kill-service once per
/// service instance), each cycle shuffled, faults `gap` apart, until `load` is covered (and
/// at least one whole cycle). The first cycle opens with its stall, so that even a short soak
/// has sagas in flight when a participant stalls (the timed-out path is taken).
pub fn schedule(
    seed: u64,
    kinds: &[FaultKind],
    load: Duration,
    gap: (Duration, Duration),
    shape: &Shape,
) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_fa17);
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    let (gap_min, gap_max) = (
        gap.0.as_millis() as u64,
        gap.1.as_millis().max(gap.0.as_millis()) as u64,
    );
    let mut at = rng.random_range(gap_min..=gap_max) / 2;
    let mut cycle = 0;
    loop {
        let mut faults = Vec::new();
        for kind in kinds {
            match kind {
                FaultKind::KillService => {
                    for service in Service::ALL {
                        faults.push(Fault::KillService {
                            service: service_name(service),
                            down_ms: rng.random_range(200..=3_000),
                        });
                    }
                    for service in &shape.standbys {
                        faults.push(Fault::KillService {
                            service: standby_name(*service),
                            down_ms: rng.random_range(200..=3_000),
                        });
                    }
                }
                FaultKind::KillBroker => faults.push(Fault::KillBroker {
                    down_ms: rng.random_range(200..=3_000),
                }),
                FaultKind::RestartPostgres => faults.push(Fault::RestartPostgres {
                    down_ms: rng.random_range(200..=2_000),
                }),
                FaultKind::CutNetwork => faults.push(Fault::CutNetwork {
                    service: service_name(Service::ALL[rng.random_range(0..Service::ALL.len())]),
                    cut_ms: rng.random_range(1_000..=6_000),
                }),
                FaultKind::CutBroker => faults.push(Fault::CutBroker {
                    service: service_name(
                        BROKER_CUT_TARGETS[rng.random_range(0..BROKER_CUT_TARGETS.len())],
                    ),
                    cut_ms: rng.random_range(1_000..=6_000),
                }),
                FaultKind::Duplicates => faults.push(Fault::Duplicates {
                    window_ms: rng.random_range(2_000..=10_000),
                }),
                FaultKind::Poison => faults.push(Fault::Poison {
                    topic: POISON_TOPICS[rng.random_range(0..POISON_TOPICS.len())],
                    count: rng.random_range(1..=3),
                }),
                FaultKind::Stall => faults.push(Fault::Stall {
                    service: service_name(STALL_TARGETS[rng.random_range(0..STALL_TARGETS.len())]),
                    stall_ms: shape.step_deadline.as_millis() as u64
                        + rng.random_range(3_000..=6_000),
                }),
            }
        }
        faults.shuffle(&mut rng);
        if cycle == 0
            && let Some(i) = faults.iter().position(|f| f.kind() == FaultKind::Stall)
        {
            let stall = faults.remove(i);
            faults.insert(0, stall);
        }
        for fault in faults {
            out.push(PlannedFault {
                at_ms: at,
                cycle,
                fault,
            });
            at += rng.random_range(gap_min..=gap_max);
        }
        cycle += 1;
        if at >= load.as_millis() as u64 {
            return out;
        }
    }
}

/// The saga path an order is meant to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// Enough stock and credit, a served country.
    Approved,
    /// A SKU with no stock.
    OutOfStock,
    /// A customer without credit: the reservation is released.
    Declined,
    /// A country shipping does not serve: the charge is refunded, the stock released.
    ShippingRefused,
}

impl Path {
    pub const ALL: [Path; 4] = [
        Path::Approved,
        Path::OutOfStock,
        Path::Declined,
        Path::ShippingRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Path::Approved => "approved",
            Path::OutOfStock => "out_of_stock",
            Path::Declined => "declined",
            Path::ShippingRefused => "shipping_refused",
        }
    }
}

/// SKUs with plenty of stock; customers with plenty of credit.
pub const STOCKED_SKUS: [&str; 4] = ["SOAK-MUG", "SOAK-TEE", "SOAK-CAP", "SOAK-PEN"];
pub const NO_STOCK_SKU: &str = "SOAK-GONE";
pub const CUSTOMERS: [&str; 8] = [
    "soak-ada", "soak-bob", "soak-cy", "soak-dee", "soak-eve", "soak-fay", "soak-gus", "soak-hal",
];
pub const BROKE_CUSTOMER: &str = "soak-broke";
pub const SERVED: [&str; 3] = ["GB", "DE", "FR"];
pub const NOT_SERVED: &str = "JP";
pub const PRICES_MINOR: [i64; 4] = [900, 1_500, 1_200, 250];
pub const NO_STOCK_PRICE_MINOR: i64 = 700;

/// One order of the load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedOrder {
    pub index: usize,
    pub path: Path,
    pub customer: &'static str,
    pub items: Vec<(&'static str, i32)>,
    pub country: &'static str,
}

/// `n` orders: 70 % approved, 10 % each of the other paths.
pub fn orders(seed: u64, n: usize) -> Vec<PlannedOrder> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0dde_5eed);
    (0..n)
        .map(|index| {
            let roll = rng.random_range(0..100);
            let path = match roll {
                0..70 => Path::Approved,
                70..80 => Path::OutOfStock,
                80..90 => Path::Declined,
                _ => Path::ShippingRefused,
            };
            let mut customer = CUSTOMERS[rng.random_range(0..CUSTOMERS.len())];
            let sku = STOCKED_SKUS[rng.random_range(0..STOCKED_SKUS.len())];
            let quantity = rng.random_range(1..=3);
            let mut items = vec![(sku, quantity)];
            let mut country = SERVED[rng.random_range(0..SERVED.len())];
            match path {
                Path::Approved => {}
                Path::OutOfStock => items.push((NO_STOCK_SKU, 1)),
                Path::Declined => customer = BROKE_CUSTOMER,
                Path::ShippingRefused => country = NOT_SERVED,
            }
            PlannedOrder {
                index,
                path,
                customer,
                items,
                country,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape {
            step_deadline: Duration::from_secs(10),
            standbys: vec![Service::Order, Service::Orchestrator],
        }
    }

    #[test]
    fn the_seed_reproduces_the_schedule_and_the_orders() {
        let kinds = FaultKind::ALL;
        let gap = (Duration::from_secs(2), Duration::from_secs(5));
        let load = Duration::from_secs(120);
        let a = schedule(7, &kinds, load, gap, &shape());
        assert_eq!(a, schedule(7, &kinds, load, gap, &shape()));
        assert_ne!(a, schedule(8, &kinds, load, gap, &shape()));
        assert_eq!(orders(7, 50), orders(7, 50));
        assert_ne!(orders(7, 50), orders(8, 50));
    }

    #[test]
    fn the_first_cycle_has_every_fault_even_for_a_short_load() {
        let a = schedule(
            1,
            &FaultKind::ALL,
            Duration::from_secs(1),
            (Duration::from_secs(2), Duration::from_secs(3)),
            &shape(),
        );
        assert!(a.iter().all(|f| f.cycle == 0));
        // Five service kills, two standby kills, plus one of each other kind.
        assert_eq!(a.len(), 5 + 2 + 7);
        for kind in FaultKind::ALL {
            assert!(a.iter().any(|f| f.fault.kind() == kind), "{kind:?}");
        }
        for standby in ["order-standby", "orchestrator-standby"] {
            assert!(
                a.iter().any(
                    |f| matches!(f.fault, Fault::KillService { service, .. } if service == standby)
                ),
                "{standby}"
            );
        }
        // The stall opens the first cycle and outlasts the step deadline.
        match a[0].fault {
            Fault::Stall { stall_ms, .. } => assert!(stall_ms > 10_000),
            ref other => panic!("first fault {other:?}"),
        }
    }

    #[test]
    fn the_mix_takes_every_path() {
        let o = orders(3, 400);
        for path in Path::ALL {
            assert!(o.iter().any(|x| x.path == path), "{path:?}");
        }
    }
}
