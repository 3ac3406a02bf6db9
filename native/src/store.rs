//! The registry [`Store`] on libsql: an embedded file by default, `:memory:` for tests.
//! Migrations from `migrations/` are embedded at build time and applied once each, in order.

use std::sync::Arc;

use async_trait::async_trait;
use libsql::{params, Connection, Database};
use mcpgw_core::ports::{Kind, Op, RawRecord, Record, Store, StoreError};
use tokio::sync::Mutex;

/// The migrations, in order. Each runs once; `_mcpgw_migrations` records it.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_registry", include_str!("../../migrations/0001_registry.sql")),
    (
        "0002_upstream_kind",
        include_str!("../../migrations/0002_upstream_kind.sql"),
    ),
    (
        "0003_registry_version",
        include_str!("../../migrations/0003_registry_version.sql"),
    ),
];

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A libsql-backed store. Writes are serialized through one connection so a batch is atomic.
pub struct LibsqlStore {
    // Held so the database outlives its connection (for `:memory:`, the data lives there).
    _db: Arc<Database>,
    conn: Mutex<Connection>,
}

/// The database file, and the journal files SQLite makes beside it, readable by this user only:
/// it holds sealed credentials and revocations. Created so (SQLite gives its `-wal` and `-shm`
/// files the database's mode); an existing one is narrowed to 0600 (with a warning).
fn owner_only(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for f in [path.to_string(), format!("{path}-wal"), format!("{path}-shm")] {
        let Ok(meta) = std::fs::metadata(&f) else { continue };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600))?;
            tracing::warn!(path = %f, "the database was readable by others: now 0600");
        }
    }
    Ok(())
}

impl LibsqlStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &str) -> Result<Self, StoreError> {
        if path != ":memory:" {
            owner_only(path).map_err(|e| StoreError::Backend(format!("{path}: {e}")))?;
        }
        let db = libsql::Builder::new_local(path).build().await.map_err(backend)?;
        let conn = db.connect().map_err(backend)?;
        if path != ":memory:" {
            // WAL: readers do not block the writer; FULL sync: a 201 is on disk.
            let mut rows = conn.query("PRAGMA journal_mode=WAL", ()).await.map_err(backend)?;
            while rows.next().await.map_err(backend)?.is_some() {}
            conn.execute("PRAGMA synchronous=FULL", ()).await.map_err(backend)?;
        }
        conn.execute("PRAGMA busy_timeout=5000", ()).await.ok();
        let store = Self {
            _db: Arc::new(db),
            conn: Mutex::new(conn),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().await;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _mcpgw_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
            (),
        )
        .await
        .map_err(backend)?;
        for (name, sql) in MIGRATIONS {
            let mut rows = conn
                .query("SELECT 1 FROM _mcpgw_migrations WHERE name = ?1", params![*name])
                .await
                .map_err(backend)?;
            if rows.next().await.map_err(backend)?.is_some() {
                continue;
            }
            drop(rows);
            let tx = conn.transaction().await.map_err(backend)?;
            tx.execute_batch(sql)
                .await
                .map_err(|e| StoreError::Backend(format!("migration {name}: {e}")))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            tx.execute(
                "INSERT INTO _mcpgw_migrations (name, applied_at) VALUES (?1, ?2)",
                params![*name, now],
            )
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
        }
        Ok(())
    }
}

fn row_to_record(row: &libsql::Row) -> Result<Record, StoreError> {
    let kind: String = row.get(0).map_err(backend)?;
    let body: String = row.get(3).map_err(backend)?;
    Ok(Record {
        kind: Kind::parse(&kind).ok_or_else(|| StoreError::Backend(format!("unknown kind {kind}")))?,
        id: row.get(1).map_err(backend)?,
        key: row.get(2).map_err(backend)?,
        body: serde_json::from_str(&body).map_err(backend)?,
        created_at: row.get::<i64>(4).map_err(backend)? as u64,
        updated_at: row.get::<i64>(5).map_err(backend)? as u64,
    })
}

const COLUMNS: &str = "kind, id, key, body, created_at, updated_at";

async fn find(conn: &Connection, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM registry WHERE kind = ?1 AND (id = ?2 OR key = ?2) ORDER BY id = ?2 DESC LIMIT 1"
    );
    let mut rows = conn
        .query(&sql, params![kind.as_str(), id_or_key])
        .await
        .map_err(backend)?;
    match rows.next().await.map_err(backend)? {
        Some(row) => Ok(Some(row_to_record(&row)?)),
        None => Ok(None),
    }
}

async fn exists_other(conn: &Connection, kind: Kind, key: &str, id: &str) -> Result<bool, StoreError> {
    let mut rows = conn
        .query(
            "SELECT 1 FROM registry WHERE kind = ?1 AND key = ?2 AND id <> ?3",
            params![kind.as_str(), key, id],
        )
        .await
        .map_err(backend)?;
    Ok(rows.next().await.map_err(backend)?.is_some())
}

async fn apply_one(conn: &Connection, op: Op) -> Result<(), StoreError> {
    match op {
        Op::Insert(r) => {
            let clash = find(conn, r.kind, &r.id).await?.is_some() || find(conn, r.kind, &r.key).await?.is_some();
            if clash {
                return Err(StoreError::Conflict {
                    kind: r.kind,
                    key: r.key,
                });
            }
            insert(conn, &r).await
        }
        Op::Update(r) => {
            if exists_other(conn, r.kind, &r.key, &r.id).await? {
                return Err(StoreError::Conflict {
                    kind: r.kind,
                    key: r.key,
                });
            }
            let n = conn
                .execute(
                    "UPDATE registry SET key = ?3, body = ?4, created_at = ?5, updated_at = ?6 WHERE kind = ?1 AND id = ?2",
                    params![r.kind.as_str(), r.id.as_str(), r.key.as_str(), r.body.to_string(), r.created_at as i64, r.updated_at as i64],
                )
                .await
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound { kind: r.kind, id: r.id });
            }
            Ok(())
        }
        Op::Upsert(r) => {
            let mut rows = conn
                .query(
                    "SELECT id FROM registry WHERE kind = ?1 AND key = ?2",
                    params![r.kind.as_str(), r.key.as_str()],
                )
                .await
                .map_err(backend)?;
            if rows.next().await.map_err(backend)?.is_some() {
                drop(rows);
                conn.execute(
                    "UPDATE registry SET body = ?3, updated_at = ?4 WHERE kind = ?1 AND key = ?2",
                    params![r.kind.as_str(), r.key.as_str(), r.body.to_string(), r.updated_at as i64],
                )
                .await
                .map_err(backend)?;
                Ok(())
            } else {
                drop(rows);
                if find(conn, r.kind, &r.id).await?.is_some() {
                    return Err(StoreError::Conflict {
                        kind: r.kind,
                        key: r.key,
                    });
                }
                insert(conn, &r).await
            }
        }
        Op::Delete { kind, id } => {
            conn.execute(
                "DELETE FROM registry WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), id],
            )
            .await
            .map_err(backend)?;
            Ok(())
        }
    }
}

async fn insert(conn: &Connection, r: &Record) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO registry ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            r.kind.as_str(),
            r.id.as_str(),
            r.key.as_str(),
            r.body.to_string(),
            r.created_at as i64,
            r.updated_at as i64
        ],
    )
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Store for LibsqlStore {
    async fn get(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
        let conn = self.conn.lock().await;
        find(&conn, kind, id_or_key).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        let conn = self.conn.lock().await;
        let mut rows = conn
            .query(
                &format!("SELECT {COLUMNS} FROM registry WHERE kind = ?1 ORDER BY key"),
                params![kind.as_str()],
            )
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(backend)? {
            out.push(row_to_record(&row)?);
        }
        Ok(out)
    }

    async fn list_raw(&self, kind: Kind) -> Result<Vec<RawRecord>, StoreError> {
        let conn = self.conn.lock().await;
        let mut rows = conn
            .query(
                "SELECT id, key, body, updated_at FROM registry WHERE kind = ?1 ORDER BY key",
                params![kind.as_str()],
            )
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(backend)? {
            out.push(RawRecord {
                id: row.get(0).map_err(backend)?,
                key: row.get(1).map_err(backend)?,
                body: row.get(2).map_err(backend)?,
                updated_at: row.get::<i64>(3).map_err(backend)? as u64,
            });
        }
        Ok(out)
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let conn = self.conn.lock().await;
        let tx = conn.transaction().await.map_err(backend)?;
        for op in ops {
            if let Err(e) = apply_one(&tx, op).await {
                tx.rollback().await.map_err(backend)?;
                return Err(e);
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().await;
        let mut rows = conn.query("SELECT 1", ()).await.map_err(backend)?;
        rows.next().await.map_err(backend)?;
        Ok(())
    }

    async fn version(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock().await;
        let mut rows = conn
            .query("SELECT version FROM registry_version WHERE id = 1", ())
            .await
            .map_err(backend)?;
        let row = rows.next().await.map_err(backend)?;
        let v: i64 = row.map(|r| r.get(0)).transpose().map_err(backend)?.unwrap_or(0);
        Ok(v as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn libsql_memory_passes_the_store_suite() {
        let store = LibsqlStore::open(":memory:").await.expect("open");
        mcpgw_core::store_suite::run(&store).await;
    }

    #[tokio::test]
    async fn libsql_file_passes_the_suite_and_migrates_once() {
        let dir = std::env::temp_dir().join(format!("mcpgw-store-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("t.db");
        let path = path.to_str().expect("utf-8 path");
        {
            let store = LibsqlStore::open(path).await.expect("open");
            mcpgw_core::store_suite::run(&store).await;
        }
        // Reopening re-runs nothing and keeps the data.
        let store = LibsqlStore::open(path).await.expect("reopen");
        assert!(store.get(Kind::Server, "srv").await.expect("get").is_some());
        let conn = store.conn.lock().await;
        let mut rows = conn
            .query("SELECT COUNT(*) FROM _mcpgw_migrations", ())
            .await
            .expect("count");
        let n: i64 = rows.next().await.expect("row").expect("some").get(0).expect("int");
        assert_eq!(n, MIGRATIONS.len() as i64);
        drop(rows);
        drop(conn);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A database written before upstreams were called `upstream` (kind `gateway`, migration
    /// 0001 only) keeps its upstreams: they load as `Kind::Upstream`, under their ids.
    #[tokio::test]
    async fn upstreams_stored_as_gateway_rows_load_after_the_migration() {
        let dir = std::env::temp_dir().join(format!("mcpgw-store-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("old.db");
        let path = path.to_str().expect("utf-8 path");
        {
            let db = libsql::Builder::new_local(path).build().await.expect("db");
            let conn = db.connect().expect("conn");
            conn.execute_batch(MIGRATIONS[0].1).await.expect("0001");
            conn.execute(
                "CREATE TABLE _mcpgw_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
                (),
            )
            .await
            .expect("migrations table");
            conn.execute("INSERT INTO _mcpgw_migrations VALUES ('0001_registry', 1)", ())
                .await
                .expect("record 0001");
            conn.execute(
                "INSERT INTO registry VALUES ('gateway', 'up-1', 'weather', '{\"name\":\"weather\",\"url\":\"http://127.0.0.1:9/mcp\"}', 1, 1)",
                (),
            )
            .await
            .expect("old row");
        }
        let store = LibsqlStore::open(path).await.expect("open and migrate");
        let rec = store.get(Kind::Upstream, "up-1").await.expect("get").expect("kept");
        assert_eq!((rec.kind, rec.key.as_str()), (Kind::Upstream, "weather"));
        assert_eq!(store.list(Kind::Upstream).await.expect("list").len(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
