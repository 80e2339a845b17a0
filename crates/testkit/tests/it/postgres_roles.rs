//! Each service role can use its own database and is refused on every other.

use saga_stack::SERVICE_DATABASES;
use saga_testkit::TestStack;
use sqlx::{Connection, PgConnection};

fn role_url(stack: &TestStack, role: &str, password: &str, database: &str) -> String {
    let admin = url_parts(stack.pg_admin_url());
    format!("postgres://{role}:{password}@{admin}/{database}")
}

/// `host:port` of the admin URL.
fn url_parts(url: &str) -> &str {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    after_at
        .split_once('/')
        .map_or(after_at, |(hostport, _)| hostport)
}

#[tokio::test]
async fn each_role_uses_its_own_database_and_is_refused_on_the_others() {
    let stack = TestStack::get().await;
    for own in SERVICE_DATABASES {
        let url = role_url(stack, own.role, own.password, own.database);
        let mut conn = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{} on {}: {e}", own.role, own.database));
        // Owning the database means the role can create and use its own tables.
        let table = format!("probe_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE TABLE {table} (id int primary key)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("INSERT INTO {table} VALUES (1)"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();

        let others = SERVICE_DATABASES
            .iter()
            .map(|d| d.database)
            .filter(|db| *db != own.database)
            .chain(["postgres"]);
        for other in others {
            let err = PgConnection::connect(&role_url(stack, own.role, own.password, other))
                .await
                .err()
                .unwrap_or_else(|| panic!("{} must be refused on {other}", own.role));
            let code = err
                .as_database_error()
                .and_then(|e| e.code())
                .map(|c| c.into_owned());
            // 42501 insufficient_privilege: refused by the CONNECT privilege, not by a typo.
            assert_eq!(
                code.as_deref(),
                Some("42501"),
                "{} on {other}: {err}",
                own.role
            );
        }
    }
}

#[tokio::test]
async fn fresh_databases_are_distinct_and_empty() {
    let stack = TestStack::get().await;
    let a = stack.fresh_database().await;
    let b = stack.fresh_database().await;
    assert_ne!(a.name, b.name);
    sqlx::query("CREATE TABLE only_in_a (id int)")
        .execute(&a.pool)
        .await
        .unwrap();
    let in_b: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'only_in_a'",
    )
    .fetch_one(&b.pool)
    .await
    .unwrap();
    assert_eq!(in_b, 0);
    let name = a.name.clone();
    a.drop_db().await.unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&b.pool)
            .await
            .unwrap();
    assert!(!exists, "drop_db removes the database");
}
