//! The registry's tables (see `migrations/`) and the operations on them. Registration runs in
//! one transaction holding a per-subject advisory lock, so versions of one subject are
//! numbered without gaps or races; the schema row itself is claimed with
//! `INSERT .. ON CONFLICT` on its fingerprint, so one schema text gets one id across subjects.

use apache_avro::Schema;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::compat::{self, Level};
use crate::error::RegistryError;

/// `latest` (or `-1`) or a version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i32),
}

impl VersionSpec {
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        if s == "latest" || s == "-1" {
            return Ok(Self::Latest);
        }
        match s.parse::<i32>() {
            Ok(n) if n > 0 => Ok(Self::Number(n)),
            _ => Err(RegistryError::InvalidVersion(s.to_owned())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: String,
}

/// What a register request asks to store.
pub struct NewSchema {
    pub canonical: String,
    pub parsed: Schema,
}

impl NewSchema {
    fn fingerprint(&self) -> Vec<u8> {
        Sha256::digest(self.canonical.as_bytes()).to_vec()
    }
}

/// The subject-level config scope; the global level lives under the empty scope.
const GLOBAL: &str = "";

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

type Tx<'a> = Transaction<'a, Postgres>;

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Registers `schema` under `subject`; returns its id. The same schema again (live in the
    /// subject) returns the existing id without a new version.
    pub async fn register(&self, subject: &str, schema: &NewSchema) -> Result<i32, RegistryError> {
        let fingerprint = schema.fingerprint();
        let mut tx = self.pool.begin().await?;
        // Serialises registrations per subject: concurrent identical requests queue here, and
        // all but the first find the schema already registered below.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(subject)
            .execute(&mut *tx)
            .await?;

        let existing_live: Option<i32> = sqlx::query_scalar(
            "SELECT s.id FROM schemas s JOIN subject_versions v ON v.schema_id = s.id
             WHERE s.schema_type = 'AVRO' AND s.fingerprint = $1 AND v.subject = $2
               AND NOT v.deleted",
        )
        .bind(&fingerprint)
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing_live {
            tx.commit().await?;
            return Ok(id);
        }

        let level = effective_level(&mut tx, subject).await?;
        if level != Level::None {
            let previous = live_schemas(&mut tx, subject).await?;
            let messages = compat::check(level, &schema.parsed, &previous);
            if !messages.is_empty() {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    details: messages,
                });
            }
        }

        // DO UPDATE (a no-op write) rather than DO NOTHING so RETURNING yields the id also when
        // another transaction inserted the same schema first.
        let id: i32 = sqlx::query_scalar(
            "INSERT INTO schemas (schema_type, canonical, fingerprint) VALUES ('AVRO', $1, $2)
             ON CONFLICT ON CONSTRAINT schemas_fingerprint_key
             DO UPDATE SET fingerprint = EXCLUDED.fingerprint
             RETURNING id",
        )
        .bind(&schema.canonical)
        .bind(&fingerprint)
        .fetch_one(&mut *tx)
        .await?;

        // Soft-deleted versions keep their numbers: Confluent never reuses a version.
        sqlx::query(
            "INSERT INTO subject_versions (subject, version, schema_id)
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2 FROM subject_versions WHERE subject = $1",
        )
        .bind(subject)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(subject, id, "schema registered");
        Ok(id)
    }

    /// The live version of `subject` holding `schema`.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &NewSchema,
    ) -> Result<SubjectVersion, RegistryError> {
        let row = sqlx::query(
            "SELECT v.version, s.id, s.canonical FROM subject_versions v
             JOIN schemas s ON s.id = v.schema_id
             WHERE v.subject = $1 AND s.fingerprint = $2 AND NOT v.deleted",
        )
        .bind(subject)
        .bind(schema.fingerprint())
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => Ok(SubjectVersion {
                subject: subject.to_owned(),
                version: r.get(0),
                id: r.get(1),
                schema: r.get(2),
            }),
            None if self.subject_exists(subject, false).await? => {
                Err(RegistryError::SchemaNotFound)
            }
            None => Err(RegistryError::SubjectNotFound(subject.to_owned())),
        }
    }

    async fn subject_exists(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<bool, RegistryError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM subject_versions WHERE subject = $1 AND ($2 OR NOT deleted))",
        )
        .bind(subject)
        .bind(include_deleted)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn subjects(&self, include_deleted: bool) -> Result<Vec<String>, RegistryError> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT subject FROM subject_versions WHERE $1 OR NOT deleted ORDER BY subject",
        )
        .bind(include_deleted)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn versions(
        &self,
        subject: &str,
        include_deleted: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let versions: Vec<i32> = sqlx::query_scalar(
            "SELECT version FROM subject_versions WHERE subject = $1 AND ($2 OR NOT deleted)
             ORDER BY version",
        )
        .bind(subject)
        .bind(include_deleted)
        .fetch_all(&self.pool)
        .await?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    pub async fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<SubjectVersion, RegistryError> {
        let row = match spec {
            VersionSpec::Latest => {
                sqlx::query(
                    "SELECT v.version, s.id, s.canonical FROM subject_versions v
                     JOIN schemas s ON s.id = v.schema_id
                     WHERE v.subject = $1 AND NOT v.deleted ORDER BY v.version DESC LIMIT 1",
                )
                .bind(subject)
                .fetch_optional(&self.pool)
                .await?
            }
            VersionSpec::Number(n) => {
                sqlx::query(
                    "SELECT v.version, s.id, s.canonical FROM subject_versions v
                     JOIN schemas s ON s.id = v.schema_id
                     WHERE v.subject = $1 AND v.version = $2 AND NOT v.deleted",
                )
                .bind(subject)
                .bind(n)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        match row {
            Some(r) => Ok(SubjectVersion {
                subject: subject.to_owned(),
                version: r.get(0),
                id: r.get(1),
                schema: r.get(2),
            }),
            None => Err(self.missing_version(subject, spec).await?),
        }
    }

    async fn missing_version(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<RegistryError, RegistryError> {
        Ok(match spec {
            VersionSpec::Number(n) if self.subject_exists(subject, false).await? => {
                RegistryError::VersionNotFound(n)
            }
            _ => RegistryError::SubjectNotFound(subject.to_owned()),
        })
    }

    pub async fn schema_by_id(&self, id: i32) -> Result<String, RegistryError> {
        sqlx::query_scalar("SELECT canonical FROM schemas WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RegistryError::SchemaIdNotFound(id))
    }

    /// Live (subject, version) pairs using schema `id`.
    pub async fn usages(&self, id: i32) -> Result<Vec<(String, i32)>, RegistryError> {
        self.schema_by_id(id).await?;
        let rows = sqlx::query(
            "SELECT subject, version FROM subject_versions WHERE schema_id = $1 AND NOT deleted
             ORDER BY subject, version",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Soft (or, after a soft delete, permanent) deletion of a whole subject; returns the
    /// versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let mut tx = self.pool.begin().await?;
        lock_subject(&mut tx, subject).await?;
        let (live, deleted): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*) FILTER (WHERE NOT deleted), COUNT(*) FILTER (WHERE deleted)
             FROM subject_versions WHERE subject = $1",
        )
        .bind(subject)
        .fetch_one(&mut *tx)
        .await?;
        if live == 0 && deleted == 0 {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        let versions: Vec<i32> = if permanent {
            if live > 0 {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_owned()));
            }
            sqlx::query("DELETE FROM compatibility_config WHERE scope = $1")
                .bind(subject)
                .execute(&mut *tx)
                .await?;
            sqlx::query_scalar("DELETE FROM subject_versions WHERE subject = $1 RETURNING version")
                .bind(subject)
                .fetch_all(&mut *tx)
                .await?
        } else {
            if live == 0 {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_owned()));
            }
            sqlx::query_scalar(
                "UPDATE subject_versions SET deleted = true WHERE subject = $1 AND NOT deleted
                 RETURNING version",
            )
            .bind(subject)
            .fetch_all(&mut *tx)
            .await?
        };
        tx.commit().await?;
        let mut versions = versions;
        versions.sort_unstable();
        Ok(versions)
    }

    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let mut tx = self.pool.begin().await?;
        lock_subject(&mut tx, subject).await?;
        let version: Option<i32> = match spec {
            VersionSpec::Number(n) => Some(n),
            // `latest` names the newest live version; for a permanent delete, the newest one.
            VersionSpec::Latest => sqlx::query_scalar(
                "SELECT MAX(version) FROM subject_versions WHERE subject = $1 AND ($2 OR NOT deleted)",
            )
            .bind(subject)
            .bind(permanent)
            .fetch_one(&mut *tx)
            .await?,
        };
        let state: Option<bool> = match version {
            Some(v) => {
                sqlx::query_scalar(
                    "SELECT deleted FROM subject_versions WHERE subject = $1 AND version = $2",
                )
                .bind(subject)
                .bind(v)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => None,
        };
        let (Some(version), Some(deleted)) = (version, state) else {
            let subject_known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM subject_versions WHERE subject = $1)",
            )
            .bind(subject)
            .fetch_one(&mut *tx)
            .await?;
            return Err(match (subject_known, spec) {
                (true, VersionSpec::Number(n)) => RegistryError::VersionNotFound(n),
                _ => RegistryError::SubjectNotFound(subject.to_owned()),
            });
        };
        match (permanent, deleted) {
            (false, true) => {
                return Err(RegistryError::VersionSoftDeleted(
                    subject.to_owned(),
                    version,
                ));
            }
            (true, false) => {
                return Err(RegistryError::VersionNotSoftDeleted(
                    subject.to_owned(),
                    version,
                ));
            }
            (false, false) => {
                sqlx::query(
                    "UPDATE subject_versions SET deleted = true WHERE subject = $1 AND version = $2",
                )
                .bind(subject)
                .bind(version)
                .execute(&mut *tx)
                .await?;
            }
            (true, true) => {
                sqlx::query("DELETE FROM subject_versions WHERE subject = $1 AND version = $2")
                    .bind(subject)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(version)
    }

    /// Is `schema` compatible with version `spec` of `subject` under the subject's level?
    /// Returns the reasons it is not (empty: compatible).
    pub async fn test_compatibility(
        &self,
        subject: &str,
        spec: Option<VersionSpec>,
        schema: &NewSchema,
    ) -> Result<Vec<String>, RegistryError> {
        let mut tx = self.pool.begin().await?;
        let level = effective_level(&mut tx, subject).await?;
        tx.commit().await?;
        if level == Level::None {
            return Ok(Vec::new());
        }
        match spec {
            // Against one version: that version only, in the level's direction(s).
            Some(spec) => {
                let existing = self.version(subject, spec).await?;
                let existing = parse_stored(&existing.schema)?;
                Ok(compat::check_each(level, &schema.parsed, &[existing]))
            }
            // Against the subject: what registration would check.
            None => {
                let mut conn = self.pool.begin().await?;
                let previous = live_schemas(&mut conn, subject).await?;
                conn.commit().await?;
                Ok(compat::check(level, &schema.parsed, &previous))
            }
        }
    }

    pub async fn level(&self, subject: Option<&str>) -> Result<Option<Level>, RegistryError> {
        let raw: Option<String> =
            sqlx::query_scalar("SELECT compatibility FROM compatibility_config WHERE scope = $1")
                .bind(subject.unwrap_or(GLOBAL))
                .fetch_optional(&self.pool)
                .await?;
        Ok(raw.and_then(|s| s.parse().ok()))
    }

    pub async fn global_level(&self) -> Result<Level, RegistryError> {
        Ok(self.level(None).await?.unwrap_or_default())
    }

    pub async fn set_level(
        &self,
        subject: Option<&str>,
        level: Level,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO compatibility_config (scope, compatibility) VALUES ($1, $2)
             ON CONFLICT (scope) DO UPDATE SET compatibility = EXCLUDED.compatibility",
        )
        .bind(subject.unwrap_or(GLOBAL))
        .bind(level.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the subject-level setting; returns what it was.
    pub async fn delete_level(&self, subject: &str) -> Result<Level, RegistryError> {
        let raw: Option<String> = sqlx::query_scalar(
            "DELETE FROM compatibility_config WHERE scope = $1 RETURNING compatibility",
        )
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?;
        raw.and_then(|s| s.parse().ok())
            .ok_or_else(|| RegistryError::SubjectConfigNotFound(subject.to_owned()))
    }
}

async fn lock_subject(tx: &mut Tx<'_>, subject: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(subject)
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

async fn effective_level(tx: &mut Tx<'_>, subject: &str) -> Result<Level, RegistryError> {
    let raw: Option<String> = sqlx::query_scalar(
        "SELECT compatibility FROM compatibility_config WHERE scope IN ($1, '')
         ORDER BY scope = '' LIMIT 1",
    )
    .bind(subject)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(raw.and_then(|s| s.parse().ok()).unwrap_or_default())
}

/// The subject's live schemas, oldest first.
async fn live_schemas(tx: &mut Tx<'_>, subject: &str) -> Result<Vec<Schema>, RegistryError> {
    let texts: Vec<String> = sqlx::query_scalar(
        "SELECT s.canonical FROM subject_versions v JOIN schemas s ON s.id = v.schema_id
         WHERE v.subject = $1 AND NOT v.deleted ORDER BY v.version",
    )
    .bind(subject)
    .fetch_all(&mut **tx)
    .await?;
    texts.iter().map(|t| parse_stored(t)).collect()
}

/// Stored schemas were valid when registered; failing to parse one now means the store was
/// tampered with or apache-avro changed, a storage-side problem.
fn parse_stored(text: &str) -> Result<Schema, RegistryError> {
    Schema::parse_str(text).map_err(|e| {
        tracing::error!(error = %e, "stored schema no longer parses");
        RegistryError::Storage(sqlx::Error::Protocol(format!(
            "stored schema unparsable: {e}"
        )))
    })
}
