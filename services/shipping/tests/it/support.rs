//! Test plumbing: a fresh migrated database per test.

use sqlx::PgPool;

pub async fn fresh_pool() -> PgPool {
    let url = std::env::var("H5_PG").unwrap();
    let admin = PgPool::connect(&url).await.unwrap();
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let pool = PgPool::connect(&format!("{}/{name}", url.rsplit_once('/').unwrap().0))
        .await
        .unwrap();
    shipping_service::MIGRATOR.run(&pool).await.unwrap();
    pool
}
