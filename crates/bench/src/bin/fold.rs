//! `bench-fold` (`cargo xtask bench fold`): how long folding one order takes against the
//! length of its event stream, from the first event and from the latest snapshot
//! (`order_service::snapshot`), on the stack's PostgreSQL.
//!
//! Each stream is OrderPlaced followed by alternating approvals and rejections, written
//! straight into a fresh order database (real orders stop at three events; the fold does
//! not care). Per length, each way is timed `--runs` times on a warm connection and the
//! p50/p90 printed; "apply" is the in-memory fold alone, to show the rest is reading and
//! decoding rows. The snapshot columns give the p50 from a snapshot with no tail after it
//! and, on a stream `every - 1` events longer, with the longest tail a snapshot can leave.

use std::time::Instant;

use clap::Parser;
use order_service::domain::{Order, OrderEvent};
use order_service::{snapshot, store};
use saga_bench::stats::{Samples, ms};
use saga_contracts::ids::{CustomerId, OrderId, Sku};
use saga_contracts::{Address, Currency, Money, OrderLine};
use saga_testkit::TestStack;
use sqlx::PgConnection;

#[derive(Parser)]
#[command(about = "Order fold time against stream length, with and without snapshots")]
struct Args {
    /// Stream lengths (events per order).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    lengths: Vec<i32>,
    /// Snapshot intervals to compare (`order.snapshot_every`).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    every: Vec<u32>,
    /// Timed folds per length and way.
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    saga_bench::init_logging();
    let args = Args::parse();
    let stack = TestStack::get().await;
    let db = stack.fresh_database().await;
    order_service::MIGRATOR.run(&db.pool).await?;
    let mut conn = db.pool.acquire().await?;

    println!(
        "order fold: p50 / p90 of {} runs in ms (PostgreSQL on this machine, one connection)",
        args.runs
    );
    let mut header = format!("{:>7} {:>15} {:>15}", "events", "full fold", "apply only");
    for every in &args.every {
        header.push_str(&format!(" {:>24}", format!("snapshot every {every}")));
    }
    println!("{header}");
    for &len in &args.lengths {
        let id = write_stream(&mut conn, len).await?;
        let full = time_fold(&mut conn, id, 0, args.runs).await?;
        let events = store::load_events(&mut conn, id, None).await?;
        let mut apply = Samples::new();
        for _ in 0..args.runs {
            let started = Instant::now();
            let order = Order::from_events(&events)?;
            apply.push(started.elapsed());
            assert_eq!(order.map(|o| o.version), Some(len));
        }
        let mut line = format!("{len:>7} {:>15} {:>15}", cell(&full), cell(&apply));
        for &every in &args.every {
            line.push_str(&format!(
                " {:>24}",
                from_snapshot(&mut conn, id, len, every, args.runs).await?
            ));
        }
        println!("{line}");
    }
    drop(conn);
    db.pool.close().await;
    Ok(())
}

/// p50 from the snapshot at `len` (no tail) and, on a stream `every - 1` events longer,
/// from the snapshot with the longest tail there can be; "no snapshot yet" below `every`.
async fn from_snapshot(
    conn: &mut PgConnection,
    id: OrderId,
    len: i32,
    every: u32,
    runs: usize,
) -> anyhow::Result<String> {
    let Ok(every_i32) = i32::try_from(every) else {
        anyhow::bail!("--every {every} is too large");
    };
    if len < every_i32 {
        return Ok("no snapshot yet".to_owned());
    }
    let worst = write_stream(conn, len - len % every_i32 + every_i32 - 1).await?;
    let mut p50 = Vec::new();
    let mut tail = 0;
    for stream in [id, worst] {
        // The first fold writes the snapshot at the last multiple of `every`.
        let full = snapshot::fold(conn, stream, None, 0).await?;
        let written = snapshot::fold(conn, stream, None, every).await?;
        let from = snapshot::fold(conn, stream, None, every).await?;
        assert_eq!((&written.order, &from.order), (&full.order, &full.order));
        tail = from.events_folded;
        let samples = time_fold(conn, stream, every, runs).await?;
        p50.push(ms(samples.summary().expect("runs").p50));
    }
    Ok(format!("{} .. {} (+{tail} ev)", p50[0], p50[1]))
}

fn cell(samples: &Samples) -> String {
    let s = samples.summary().expect("at least one run");
    format!("{} / {}", ms(s.p50), ms(s.p90))
}

/// `runs` timed folds after one warm-up (plan cache, buffers).
async fn time_fold(
    conn: &mut PgConnection,
    id: OrderId,
    every: u32,
    runs: usize,
) -> Result<Samples, snapshot::FoldError> {
    snapshot::fold(conn, id, None, every).await?;
    let mut samples = Samples::new();
    for _ in 0..runs {
        let started = Instant::now();
        snapshot::fold(conn, id, None, every).await?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// Appends a stream of `len` events in one transaction; returns the order id.
async fn write_stream(conn: &mut PgConnection, len: i32) -> anyhow::Result<OrderId> {
    let id = OrderId::new();
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let price = Money::new(250, Currency::EUR);
    for version in 1..=len {
        let event = match version {
            1 => OrderEvent::OrderPlaced {
                customer_id: CustomerId::parse("bench-customer")?,
                lines: vec![OrderLine {
                    sku: Sku::parse("SKU-1")?,
                    quantity: 2,
                    unit_price: price,
                }],
                total: Money::new(500, Currency::EUR),
                shipping_address: Address {
                    name: "Ada Lovelace".into(),
                    line1: "1 Analytical St".into(),
                    line2: None,
                    city: "London".into(),
                    postal_code: "N1 1AA".into(),
                    country: "GB".into(),
                },
            },
            v if v % 2 == 0 => OrderEvent::OrderApproved {},
            _ => OrderEvent::OrderRejected {
                reason: "benchmark".into(),
            },
        };
        store::append_event(&mut tx, id, version, &event, &serde_json::json!({})).await?;
    }
    tx.commit().await?;
    Ok(id)
}
