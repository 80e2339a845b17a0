//! [`Runtime`]: a service's parts built and ready, run as one unit.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use saga_consumer::{Consumer, ConsumerConfig, Handler};
use saga_contracts::Codec;
use saga_outbox::{Outbox, Relay};
use saga_service_kit::app::{TaskError, Tasks};
use saga_service_kit::auth::AdminAuth;
use saga_service_kit::http as kit_http;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::RuntimeConfig;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("database")]
    Db(#[from] saga_service_kit::DbError),
    #[error("schema registry")]
    Registry(#[from] saga_contracts::RegistryError),
    #[error("http listener")]
    Http(#[from] std::io::Error),
    #[error("kafka consumer")]
    Consumer(#[from] saga_consumer::ConsumerError),
    #[error("outbox relay")]
    Relay(#[from] saga_outbox::OutboxError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
    #[error(transparent)]
    Auth(#[from] saga_service_kit::auth::WeakToken),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type PartFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
type Part = Box<dyn FnOnce(CancellationToken) -> PartFuture + Send>;

/// A service's database, codec, listener, relay, consumers and extra tasks; [`Runtime::run`]
/// starts them under one token.
pub struct Runtime {
    default_group: &'static str,
    config: RuntimeConfig,
    pool: PgPool,
    codec: Codec,
    listener: TcpListener,
    local_addr: SocketAddr,
    relay: Option<Relay>,
    /// The service's one Kafka producer (relay and dead letters).
    producer: rdkafka::producer::FutureProducer,
    admin: AdminAuth,
    rewinds: crate::rewind::Groups,
    parts: Vec<(&'static str, Part)>,
}

impl Runtime {
    /// Connects, migrates (outbox, inbox, then `migrator`), registers every schema, builds the
    /// relay and binds the listener. A schema the registry refuses fails the build: better not
    /// to start than to publish what nobody can read.
    /// `default_group` is the consumer group when `consumer.group_id` is empty (the service's
    /// [`crate::ServiceConfig::DEFAULT_GROUP`]).
    pub async fn build(
        default_group: &'static str,
        config: RuntimeConfig,
        migrator: &'static Migrator,
    ) -> Result<Runtime, RuntimeError> {
        let admin = AdminAuth::new(&config.auth)?;
        let pool = saga_service_kit::db::connect(&config.database).await?;
        migrate(&pool, migrator).await?;
        let credentials =
            config
                .registry
                .password
                .as_ref()
                .map(|password| saga_contracts::Credentials {
                    username: config.registry.username.clone(),
                    password: password.expose().to_owned(),
                });
        let codec = Codec::with_credentials(&config.registry.url, credentials);
        codec.register_all().await?;
        // One producer for the relay and every consumer's dead letters: each librdkafka
        // producer has a polling thread that wakes every 100 ms (and, in rdkafka 0.39, spins
        // through the last sub-millisecond of each wait), which was most of an idle service's
        // CPU with a producer per consumer.
        let producer = config
            .kafka
            .producer()
            .map_err(saga_outbox::OutboxError::from)?;
        let relay = if config.components.relay {
            Some(Relay::with_producer(
                pool.clone(),
                &config.kafka,
                config.relay.clone(),
                producer.clone(),
            ))
        } else {
            None
        };
        let listener = kit_http::bind(&config.http).await?;
        let local_addr = listener.local_addr()?;
        Ok(Runtime {
            default_group,
            config,
            pool,
            codec,
            listener,
            local_addr,
            relay,
            producer,
            admin,
            rewinds: crate::rewind::Groups::default(),
            parts: Vec::new(),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// An outbox on this service's codec, for handlers and HTTP routes that publish.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.codec.clone())
    }

    /// The admin check of `auth.admin_token`: wrap the service's `admin_routes` with
    /// [`AdminAuth::protect`].
    pub fn admin_auth(&self) -> &AdminAuth {
        &self.admin
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `consumer` section, its group id defaulted to the service's default group.
    pub fn consumer_config(&self) -> ConsumerConfig {
        self.config.consumer_for(self.default_group)
    }

    /// Adds a consumer of `H`'s topic as the part `name`, when `components.consumer` is on
    /// (otherwise the handler is dropped: tests call it directly).
    pub fn add_consumer<H: Handler>(
        &mut self,
        name: &'static str,
        config: ConsumerConfig,
        handler: H,
    ) -> Result<(), RuntimeError> {
        if !self.config.components.consumer {
            return Ok(());
        }
        let consumer = Consumer::with_producer(
            &self.config.kafka,
            config,
            self.pool.clone(),
            self.codec.clone(),
            handler,
            self.producer.clone(),
        )?;
        let mut jobs = self.rewinds.register(
            consumer.group(),
            <H::Message as saga_contracts::TopicMessage>::TOPIC,
            H::KIND,
        );
        let (kafka, pool) = (self.config.kafka.clone(), self.pool.clone());
        // Runs the consumer until shutdown; a rewind (`POST /admin/rewind`) stops it (in-flight
        // batches finish and commit), moves the group's offsets, and runs it again.
        self.add_task(name, move |token| async move {
            loop {
                let run_token = token.child_token();
                let run = consumer.run(run_token.clone());
                tokio::pin!(run);
                let job = tokio::select! {
                    result = &mut run => return result,
                    Some(job) = jobs.recv() => job,
                };
                run_token.cancel();
                run.as_mut().await?;
                if token.is_cancelled() {
                    return Ok(());
                }
                let result = saga_consumer::rewind::rewind(&kafka, Some(&pool), &job.request).await;
                let _ = job.reply.send(result);
            }
        });
        Ok(())
    }

    /// Adds a long-lived part (a projector, a retry loop): started by [`Runtime::run`] with
    /// the shared token, expected to return only once that token is cancelled.
    pub fn add_task<F, E>(
        &mut self,
        name: &'static str,
        part: impl FnOnce(CancellationToken) -> F + Send + 'static,
    ) where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.parts.push((
            name,
            Box::new(move |token| Box::pin(async move { part(token).await.map_err(Into::into) })),
        ));
    }

    /// Runs the HTTP server (`router` plus health, metrics and the admin `GET /admin/logs`
    /// of [`saga_service_kit::logs`]), the relay and every added
    /// part until `shutdown` is cancelled or one of them fails (which stops the others).
    pub async fn run(
        self,
        router: axum::Router,
        shutdown: CancellationToken,
    ) -> Result<(), RuntimeError> {
        let mut tasks = Tasks::new(shutdown);
        let token = tasks.token();
        if self.config.components.http {
            let consumer = self.consumer_config();
            let dead_letters = crate::dead_letters::router(
                self.config.kafka.clone(),
                self.config.kafka.topic(&consumer.dead_letter_topic),
                consumer.group_id,
                &self.admin,
            );
            let rewind = crate::rewind::router(
                self.rewinds.clone(),
                self.config.kafka.clone(),
                self.pool.clone(),
                &self.admin,
            );
            let router = router
                .merge(dead_letters)
                .merge(rewind)
                .merge(kit_http::health_router(vec![(
                    "database",
                    kit_http::db_check(self.pool.clone()),
                )]))
                .merge(kit_http::metrics_router())
                .merge(self.admin.protect(saga_service_kit::logs::admin_router()));
            tasks.spawn(
                "http",
                kit_http::serve(self.listener, router, token.clone()),
            );
        }
        if let Some(relay) = self.relay {
            tasks.spawn("relay", relay.run(token.clone()));
        }
        let retention = self.config.retention;
        if retention.inbox_hours > 0 && self.config.components.consumer {
            let (pool, token) = (self.pool.clone(), token.clone());
            tasks.spawn("inbox-retention", async move {
                saga_inbox::run_retention(
                    pool,
                    Duration::from_secs(retention.inbox_hours * 3600),
                    Duration::from_secs(retention.purge_every_secs.max(1)),
                    token,
                )
                .await;
                Ok::<(), std::convert::Infallible>(())
            });
        }
        for (name, part) in self.parts {
            tasks.spawn(name, part(token.clone()));
        }
        Ok(tasks.join().await?)
    }
}

/// Runs the outbox and inbox migrations, then the service's own.
pub async fn migrate(
    pool: &PgPool,
    migrator: &'static Migrator,
) -> Result<(), saga_service_kit::DbError> {
    saga_service_kit::db::migrate(
        pool,
        &[&saga_outbox::MIGRATOR, &saga_inbox::MIGRATOR, migrator],
    )
    .await
}
