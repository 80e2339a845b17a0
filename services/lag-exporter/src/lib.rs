//! Consumer lag read from the broker, not from the consumers: every group's committed
//! offsets against every partition's log end, polled every `lag.poll_interval_ms`, exported
//! in Prometheus format under the conventional names (`GET /metrics`) and as JSON for the
//! console (`GET /lag`).
//!
//! A consumer reporting its own lag (`kafka_consumer_lag` of crates/consumer) goes silent
//! exactly when it dies; here a dead consumer's lag keeps growing and its group turns
//! STALLED, then STOPPED (Burrow's evaluation, see [`model`]). Lag in seconds comes from an
//! offset/time table of log-end offsets, as kafka-lag-exporter does, so it needs no message
//! reads; it is accurate to one poll interval.
//!
//! Configuration (`--config FILE`, `APP_*`): `http.listen`, `kafka.bootstrap_servers`,
//! `lag.*` ([`LagConfig`]).

pub mod config;
pub mod model;
mod poll;
pub mod render;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, LagConfig};
pub use model::{GroupLag, GroupStatus, LagModel, Observation, PartitionLag, Rules};
use poll::Poller;
use render::Exposition;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("serve: {0}")]
    Serve(std::io::Error),
    #[error("kafka client: {0}")]
    Kafka(#[from] poll::PollError),
}

/// The JSON of `GET /lag`.
#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    /// Wall time of the poll these figures come from (0 before the first).
    pub polled_at_unix: f64,
    /// Whether the broker answered ListGroups (else only configured groups are watched).
    pub discovers_groups: bool,
    pub groups: Vec<GroupLag>,
}

#[derive(Default)]
struct Shared {
    exposition: Exposition,
    discovers_groups: bool,
}

pub struct App {
    listener: TcpListener,
    config: Config,
    poller: Poller,
}

impl App {
    pub async fn build(config: Config) -> Result<App, AppError> {
        let listener = TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| AppError::Bind(config.http.listen, e))?;
        let poller = Poller::new(config.kafka.clone(), config.lag.clone())?;
        Ok(App {
            listener,
            config,
            poller,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Polls and serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let shared = Arc::new(RwLock::new(Shared::default()));
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/lag", get(lag))
            .with_state(shared.clone())
            .merge(saga_service_kit::http::health_router(Vec::new()));
        let poll = tokio::spawn(poll_loop(
            self.poller,
            self.config.lag.clone(),
            shared,
            shutdown.clone(),
        ));
        let served = saga_service_kit::http::serve(self.listener, router, shutdown.clone())
            .await
            .map_err(AppError::Serve);
        shutdown.cancel();
        let _ = poll.await;
        served
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn poll_loop(
    poller: Poller,
    cfg: LagConfig,
    shared: Arc<RwLock<Shared>>,
    shutdown: CancellationToken,
) {
    let mut model = LagModel::new(Rules {
        stall_after_secs: cfg.stall_after_secs,
        stop_after_secs: cfg.stop_after_secs,
        window: cfg.warning_window,
    });
    let mut poller = Some(poller);
    let mut interval = tokio::time::interval(Duration::from_millis(cfg.poll_interval_ms.max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Some(mut p) = poller.take() else { return };
        let started = Instant::now();
        let (p, result) = match tokio::task::spawn_blocking(move || {
            let r = p.poll();
            (p, r)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "lag poll panicked");
                return;
            }
        };
        let discovers = p.list_groups_works;
        poller = Some(p);
        let mut s = shared.write().expect("lag state lock");
        s.exposition.polls_total += 1;
        s.exposition.last_poll_seconds = started.elapsed().as_secs_f64();
        s.discovers_groups = discovers;
        match result {
            Ok(observations) => {
                let now = unix_now();
                s.exposition.groups = model.observe(now, &observations);
                s.exposition.last_success_unix = now;
            }
            Err(e) => {
                s.exposition.poll_errors_total += 1;
                tracing::warn!(error = %e, "lag poll failed");
            }
        }
    }
}

async fn metrics(State(shared): State<Arc<RwLock<Shared>>>) -> impl IntoResponse {
    let text = render::render(&shared.read().expect("lag state lock").exposition);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn lag(State(shared): State<Arc<RwLock<Shared>>>) -> axum::Json<LagReport> {
    let s = shared.read().expect("lag state lock");
    axum::Json(LagReport {
        polled_at_unix: s.exposition.last_success_unix,
        discovers_groups: s.discovers_groups,
        groups: s.exposition.groups.clone(),
    })
}
