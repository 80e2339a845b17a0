//! Each service role can use its own database and is refused on every other.

use saga_stack::{Postgres, SERVICE_DATABASES, Stack, StackConfig};
use saga_testkit::{PrivateStack, TestStack};
use sqlx::{Connection, PgConnection};

fn role_url(cfg: &StackConfig, role: &str, password: &str, database: &str) -> String {
    format!(
        "postgres://{role}:{password}@{}:{}/{database}",
        cfg.host, cfg.pg_port
    )
}

/// SQLSTATE of a refused connection.
fn refusal_code(result: Result<PgConnection, sqlx::Error>) -> Option<String> {
    let err = result.err()?;
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// A PostgreSQL of our own: the roles' generated passwords live in its secrets directory,
/// which a stack named by the environment does not share.
async fn postgres_stack() -> PrivateStack {
    PrivateStack::start_with(|cfg| Stack::empty(cfg).push(Postgres))
        .await
        .expect("start a private PostgreSQL")
}

#[tokio::test]
async fn each_role_uses_its_own_database_and_is_refused_on_the_others() {
    let private = postgres_stack().await;
    let cfg = private.stack().config();
    for own in SERVICE_DATABASES {
        let password = cfg.db_password(own.role).unwrap();
        let url = role_url(cfg, own.role, &password, own.database);
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
            let code = refusal_code(
                PgConnection::connect(&role_url(cfg, own.role, &password, other)).await,
            );
            // 42501 insufficient_privilege: refused by the CONNECT privilege, not by a typo.
            assert_eq!(code.as_deref(), Some("42501"), "{} on {other}", own.role);
        }
    }
    private.shutdown().await.unwrap();
}

/// Passwords are generated per role (not the role's name, as they once were), and TCP
/// logins are checked with SCRAM, so a role's credential opens that role only.
#[tokio::test]
async fn a_role_cannot_log_in_with_another_roles_password_or_its_name() {
    let private = postgres_stack().await;
    let cfg = private.stack().config();
    let passwords: Vec<String> = SERVICE_DATABASES
        .iter()
        .map(|d| cfg.db_password(d.role).unwrap())
        .collect();
    for (i, own) in SERVICE_DATABASES.iter().enumerate() {
        assert_ne!(passwords[i], own.role);
        assert!(passwords[i].len() >= 32, "a generated password is long");
        let wrong = SERVICE_DATABASES
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, d)| (format!("{}'s password", d.role), passwords[j].clone()))
            .chain([("its name".to_owned(), own.role.to_owned())]);
        for (which, password) in wrong {
            let code = refusal_code(
                PgConnection::connect(&role_url(cfg, own.role, &password, own.database)).await,
            );
            // 28P01 invalid_password.
            assert_eq!(code.as_deref(), Some("28P01"), "{} with {which}", own.role);
        }
    }
    // Every check of `cargo xtask demo` passes too.
    let checks = saga_stack::proof::check_role_isolation(cfg).await;
    assert!(checks.iter().all(|c| c.passed()), "{checks:#?}");
    // pg_hba: password (SCRAM) authentication for TCP, nothing weaker.
    let mut admin = PgConnection::connect(&cfg.pg_admin_url()).await.unwrap();
    let methods: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type LIKE 'host%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(methods, ["scram-sha-256"]);
    let _ = admin.close().await;
    private.shutdown().await.unwrap();
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
