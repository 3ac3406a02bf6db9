//! The registry [`Store`] on PostgreSQL (`MCPGW_DATABASE=postgres://…`): one registry that
//! several gateway hosts share. Migrations from `migrations/postgres/` (the twins of the SQLite
//! ones, under the same names) are embedded at build time and applied once each, under an
//! advisory lock so that instances starting together do not race.
//!
//! Reads share one connection (tokio-postgres pipelines them); writes take a second one, a
//! transaction at a time. A connection found closed (the server restarted) is opened again on
//! the next use. Uniqueness is the database's: a key or id taken by a concurrent writer is a
//! unique violation, reported as [`StoreError::Conflict`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mcpgw_core::ports::{Kind, Op, RawRecord, Record, Store, StoreError};
use tokio::sync::{Mutex, RwLock};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, GenericClient, NoTls, Row};

/// The migrations, in order, named as the SQLite ones are (a test keeps the two lists equal).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_registry",
        include_str!("../../migrations/postgres/0001_registry.sql"),
    ),
    (
        "0002_upstream_kind",
        include_str!("../../migrations/postgres/0002_upstream_kind.sql"),
    ),
    (
        "0003_registry_version",
        include_str!("../../migrations/postgres/0003_registry_version.sql"),
    ),
];

/// The advisory lock migrations run under ("mcpgw" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d_6370_6777;

/// Keys compare as bytes, as SQLite's do, whatever the database's collation.
const COLUMNS: &str = "kind, id, key, body, created_at, updated_at";

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Whether a URL names a PostgreSQL database.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// The URL with its password masked, for messages and logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// A PostgreSQL-backed store.
pub struct PgStore {
    config: Config,
    reader: RwLock<Arc<Client>>,
    writer: Mutex<Client>,
}

async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(backend)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects to the database at `url` and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let mut config: Config = url.parse().map_err(backend)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("mcpgw");
        }
        let reader = connect(&config).await?;
        let mut writer = connect(&config).await?;
        migrate(&mut writer).await?;
        Ok(Self {
            config,
            reader: RwLock::new(Arc::new(reader)),
            writer: Mutex::new(writer),
        })
    }

    /// The read connection, opened again if it closed.
    async fn reader(&self) -> Result<Arc<Client>, StoreError> {
        {
            let c = self.reader.read().await;
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let mut c = self.reader.write().await;
        if c.is_closed() {
            *c = Arc::new(connect(&self.config).await?);
        }
        Ok(c.clone())
    }
}

async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS _mcpgw_migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(backend)?;
    for (name, sql) in MIGRATIONS {
        let done = tx
            .query_opt("SELECT 1 FROM _mcpgw_migrations WHERE name = $1", &[name])
            .await
            .map_err(backend)?
            .is_some();
        if done {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Backend(format!("migration {name}: {e}")))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        tx.execute(
            "INSERT INTO _mcpgw_migrations (name, applied_at) VALUES ($1, $2)",
            &[name, &now],
        )
        .await
        .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

fn to_record(row: &Row) -> Result<Record, StoreError> {
    let kind: String = row.try_get(0).map_err(backend)?;
    let body: String = row.try_get(3).map_err(backend)?;
    Ok(Record {
        kind: Kind::parse(&kind).ok_or_else(|| StoreError::Backend(format!("unknown kind {kind}")))?,
        id: row.try_get(1).map_err(backend)?,
        key: row.try_get(2).map_err(backend)?,
        body: serde_json::from_str(&body).map_err(backend)?,
        created_at: row.try_get::<_, i64>(4).map_err(backend)? as u64,
        updated_at: row.try_get::<_, i64>(5).map_err(backend)? as u64,
    })
}

async fn find(c: &impl GenericClient, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM registry WHERE kind = $1 AND (id = $2 OR key = $2) ORDER BY (id = $2) DESC LIMIT 1"
    );
    let row = c
        .query_opt(&sql, &[&kind.as_str(), &id_or_key])
        .await
        .map_err(backend)?;
    row.as_ref().map(to_record).transpose()
}

/// A write's error: a unique violation is the record's key (or id) being taken.
fn write_error(e: tokio_postgres::Error, r: &Record) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict {
            kind: r.kind,
            key: r.key.clone(),
        }
    } else {
        backend(e)
    }
}

/// Runs a write whose parameters are the record's columns in [`COLUMNS`] order ($1 to $6); the
/// rows it touched.
async fn write(c: &impl GenericClient, sql: &str, r: &Record) -> Result<u64, StoreError> {
    let body = r.body.to_string();
    let (created, updated) = (r.created_at as i64, r.updated_at as i64);
    c.execute(sql, &[&r.kind.as_str(), &r.id, &r.key, &body, &created, &updated])
        .await
        .map_err(|e| write_error(e, r))
}

async fn insert(c: &impl GenericClient, r: &Record) -> Result<(), StoreError> {
    write(
        c,
        &format!("INSERT INTO registry ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        r,
    )
    .await?;
    Ok(())
}

async fn apply_one(c: &impl GenericClient, op: Op) -> Result<(), StoreError> {
    match op {
        Op::Insert(r) => {
            // As the other stores: an id equal to another record's key clashes too.
            if find(c, r.kind, &r.id).await?.is_some() || find(c, r.kind, &r.key).await?.is_some() {
                return Err(StoreError::Conflict {
                    kind: r.kind,
                    key: r.key,
                });
            }
            insert(c, &r).await
        }
        Op::Update(r) => {
            let sql =
                "UPDATE registry SET key = $3, body = $4, created_at = $5, updated_at = $6 WHERE kind = $1 AND id = $2";
            let n = write(c, sql, &r).await?;
            if n == 0 {
                return Err(StoreError::NotFound { kind: r.kind, id: r.id });
            }
            Ok(())
        }
        // One statement, so two instances upserting the same key both succeed.
        Op::Upsert(r) => {
            let sql = format!(
                "INSERT INTO registry ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (kind, key) DO UPDATE SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at"
            );
            write(c, &sql, &r).await?;
            Ok(())
        }
        Op::Delete { kind, id } => {
            c.execute(
                "DELETE FROM registry WHERE kind = $1 AND id = $2",
                &[&kind.as_str(), &id],
            )
            .await
            .map_err(backend)?;
            Ok(())
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn get(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
        find(&*self.reader().await?, kind, id_or_key).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        let rows = self
            .reader()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM registry WHERE kind = $1 ORDER BY key COLLATE \"C\""),
                &[&kind.as_str()],
            )
            .await
            .map_err(backend)?;
        rows.iter().map(to_record).collect()
    }

    async fn list_raw(&self, kind: Kind) -> Result<Vec<RawRecord>, StoreError> {
        let rows = self
            .reader()
            .await?
            .query(
                "SELECT id, key, body, updated_at FROM registry WHERE kind = $1 ORDER BY key COLLATE \"C\"",
                &[&kind.as_str()],
            )
            .await
            .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(RawRecord {
                    id: row.try_get(0).map_err(backend)?,
                    key: row.try_get(1).map_err(backend)?,
                    body: row.try_get(2).map_err(backend)?,
                    updated_at: row.try_get::<_, i64>(3).map_err(backend)? as u64,
                })
            })
            .collect()
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        if writer.is_closed() {
            *writer = connect(&self.config).await?;
        }
        let tx = writer.transaction().await.map_err(backend)?;
        for op in ops {
            // Dropping the transaction rolls it back.
            apply_one(&tx, op).await?;
        }
        // Committed (and, with the server's default synchronous_commit, on disk) before the
        // caller answers.
        tx.commit().await.map_err(backend)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.reader().await?.simple_query("SELECT 1").await.map_err(backend)?;
        Ok(())
    }

    async fn version(&self) -> Result<u64, StoreError> {
        let row = self
            .reader()
            .await?
            .query_opt("SELECT version FROM registry_version WHERE id = 1", &[])
            .await
            .map_err(backend)?;
        let v: i64 = row.map(|r| r.try_get(0)).transpose().map_err(backend)?.unwrap_or(0);
        Ok(v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn postgres_passes_the_store_suite_and_migrates_once() {
        let pg = mcpgw_e2e::Postgres::start().expect("a private PostgreSQL cluster");
        let url = pg.url();
        {
            let store = PgStore::open(&url).await.expect("open");
            mcpgw_core::store_suite::run(&store).await;
        }
        // Opening again (another instance) re-runs nothing and keeps the data.
        let store = PgStore::open(&url).await.expect("reopen");
        assert!(store.get(Kind::Server, "srv").await.expect("get").is_some());
        let n = pg
            .psql("mcpgw", "SELECT COUNT(*) FROM _mcpgw_migrations")
            .expect("count");
        assert_eq!(n, MIGRATIONS.len().to_string());
    }

    /// Instances starting together migrate once between them; keys list in byte order, as
    /// SQLite lists them, whatever the database's collation; a server restart is survived.
    #[tokio::test]
    async fn instances_share_one_database() {
        let pg = mcpgw_e2e::Postgres::start().expect("a private PostgreSQL cluster");
        let url = pg.create_database("shared").expect("createdb");
        let (a, b) = tokio::join!(PgStore::open(&url), PgStore::open(&url));
        let (a, b) = (a.expect("a"), b.expect("b"));
        let rec = |id: &str, key: &str| Record {
            kind: Kind::Tool,
            id: id.into(),
            key: key.into(),
            body: serde_json::json!({"name": key}),
            created_at: 1,
            updated_at: 1,
        };
        let v = b.version().await.expect("version");
        for (id, key) in [("1", "b"), ("2", "B"), ("3", "a"), ("4", "_z"), ("5", "é")] {
            a.insert(rec(id, key)).await.expect("insert at a");
        }
        assert_ne!(
            b.version().await.expect("version"),
            v,
            "b sees a's writes move the version"
        );
        let keys: Vec<String> = b
            .list(Kind::Tool)
            .await
            .expect("list")
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(keys, ["B", "_z", "a", "b", "é"], "byte order");
        // The same key from both at once: one wins, the other is told it is taken.
        let (x, y) = tokio::join!(a.insert(rec("6", "same")), b.insert(rec("7", "same")));
        assert!(
            matches!(
                (&x, &y),
                (Ok(()), Err(StoreError::Conflict { .. })) | (Err(StoreError::Conflict { .. }), Ok(()))
            ),
            "{x:?} {y:?}"
        );
        // Upserts of one key from both at once both succeed, into one record.
        let (x, y) = tokio::join!(
            a.apply(vec![Op::Upsert(rec("8", "up"))]),
            b.apply(vec![Op::Upsert(rec("9", "up"))])
        );
        assert!(x.is_ok() && y.is_ok(), "{x:?} {y:?}");
        assert_eq!(a.list(Kind::Tool).await.expect("list").len(), 7);
        let n = pg
            .psql("shared", "SELECT COUNT(*) FROM _mcpgw_migrations")
            .expect("count");
        assert_eq!(n, MIGRATIONS.len().to_string());
        // Every backend of the database killed (a server restart, as the stores see it): the
        // next use opens new connections.
        pg.psql(
            "mcpgw",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shared'",
        )
        .expect("terminate");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(a.list(Kind::Tool).await.expect("list after").len(), 7);
        a.insert(rec("10", "after")).await.expect("write after");
        assert!(b.get(Kind::Tool, "after").await.expect("get after").is_some());
    }

    #[test]
    fn migrations_are_in_step_with_sqlite() {
        let pg: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        let sqlite: Vec<&str> = crate::store::MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(pg, sqlite, "every SQLite migration has its PostgreSQL twin, in order");
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(redacted("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted("postgresql://u:p@ss@h/db"), "postgresql://u:***@h/db");
    }
}
