//! The chaos soak's checker can fail: with the payment service's test-only double-refund
//! switch on, a small soak (service kills, duplicates and poison on the shared test stack)
//! must fail on the money invariant and only there. The short soak with every fault, on a
//! stack of its own, runs at the end of `cargo xtask test` (docs/soak.md).

use std::time::Duration;

use saga_e2e::soak::{self, FaultKind, SoakConfig};
use saga_testkit::TestStack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_refund_fails_the_soak_on_money() {
    let cfg = SoakConfig {
        orders: 60,
        rate: 10.0,
        seed: 3,
        faults: vec![FaultKind::Duplicates, FaultKind::Poison],
        gap: (Duration::from_secs(1), Duration::from_secs(2)),
        drain_timeout: Duration::from_secs(120),
        double_refund: true,
        // Lighter on the shared stack; the standbys are the short soak's business.
        standbys: Vec::new(),
        ..SoakConfig::default()
    };
    let report = soak::run(TestStack::get().await, &cfg)
        .await
        .expect("the soak runs");
    assert!(
        report.by_path.contains_key("shipping_refused"),
        "the mix has refunds"
    );
    assert_eq!(
        report.failed(),
        vec!["money_conserved"],
        "{}",
        report.to_markdown()
    );
    assert!(!report.passed);
}
