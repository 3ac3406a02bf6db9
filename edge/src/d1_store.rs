//! The registry [`Store`] on D1 (binding `DB`), over the same `migrations/` as libsql.
//! `apply` runs as one D1 batch, which D1 executes as a single transaction.

use async_trait::async_trait;
use mcpgw_core::ports::{Kind, Op, RawRecord, Record, Store, StoreError};
use serde::Deserialize;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement};

const COLUMNS: &str = "kind, id, key, body, created_at, updated_at";

/// D1 hands numbers back as JS numbers; timestamps in ms fit an f64 exactly.
#[derive(Deserialize)]
struct Row {
    kind: String,
    id: String,
    key: String,
    body: String,
    created_at: f64,
    updated_at: f64,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn to_record(r: Row) -> Result<Record, StoreError> {
    Ok(Record {
        kind: Kind::parse(&r.kind).ok_or_else(|| StoreError::Backend(format!("unknown kind {}", r.kind)))?,
        id: r.id,
        key: r.key,
        body: serde_json::from_str(&r.body).map_err(backend)?,
        created_at: r.created_at as u64,
        updated_at: r.updated_at as u64,
    })
}

/// A record's columns, in `COLUMNS` order, as bind arguments (?1 to ?6).
fn row_args(r: &Record) -> [JsValue; 6] {
    [
        r.kind.as_str().into(),
        r.id.as_str().into(),
        r.key.as_str().into(),
        r.body.to_string().into(),
        (r.created_at as f64).into(),
        (r.updated_at as f64).into(),
    ]
}

/// The registry in D1.
pub struct D1Store {
    db: D1Database,
}

impl D1Store {
    /// A store over a D1 binding whose migrations have been applied.
    pub fn new(db: D1Database) -> Self {
        Self { db }
    }

    fn stmt(&self, sql: &str, args: &[JsValue]) -> Result<D1PreparedStatement, StoreError> {
        self.db.prepare(sql).bind(args).map_err(backend)
    }

    async fn find(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM registry WHERE kind = ?1 AND (id = ?2 OR key = ?2) ORDER BY id = ?2 DESC LIMIT 1"
        );
        let row: Option<Row> = self
            .stmt(&sql, &[kind.as_str().into(), id_or_key.into()])?
            .first(None)
            .await
            .map_err(backend)?;
        row.map(to_record).transpose()
    }

    async fn key_taken_by_other(&self, kind: Kind, key: &str, id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT id FROM registry WHERE kind = ?1 AND key = ?2 AND id <> ?3 LIMIT 1";
        let row: Option<serde_json::Value> = self
            .stmt(sql, &[kind.as_str().into(), key.into(), id.into()])?
            .first(None)
            .await
            .map_err(backend)?;
        Ok(row.is_some())
    }

    fn insert_stmt(&self, r: &Record) -> Result<D1PreparedStatement, StoreError> {
        self.stmt(
            &format!("INSERT INTO registry ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
            &row_args(r),
        )
    }
}

impl D1Store {
    /// Every row of a kind, ordered by key.
    async fn rows_of(&self, kind: Kind) -> Result<Vec<Row>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM registry WHERE kind = ?1 ORDER BY key");
        self.stmt(&sql, &[kind.as_str().into()])?
            .all()
            .await
            .map_err(backend)?
            .results()
            .map_err(backend)
    }
}

#[async_trait(?Send)]
impl Store for D1Store {
    async fn get(&self, kind: Kind, id_or_key: &str) -> Result<Option<Record>, StoreError> {
        self.find(kind, id_or_key).await
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Record>, StoreError> {
        self.rows_of(kind).await?.into_iter().map(to_record).collect()
    }

    async fn list_raw(&self, kind: Kind) -> Result<Vec<RawRecord>, StoreError> {
        Ok(self
            .rows_of(kind)
            .await?
            .into_iter()
            .map(|r| RawRecord {
                id: r.id,
                key: r.key,
                body: r.body,
                updated_at: r.updated_at as u64,
            })
            .collect())
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        // Conflicts are checked first so the error names the record; the UNIQUE constraints
        // still guard the batch itself against a concurrent writer.
        let mut stmts = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Insert(r) => {
                    if self.find(r.kind, &r.id).await?.is_some() || self.find(r.kind, &r.key).await?.is_some() {
                        return Err(StoreError::Conflict {
                            kind: r.kind,
                            key: r.key,
                        });
                    }
                    stmts.push(self.insert_stmt(&r)?);
                }
                Op::Update(r) => {
                    if self.find(r.kind, &r.id).await?.filter(|e| e.id == r.id).is_none() {
                        return Err(StoreError::NotFound { kind: r.kind, id: r.id });
                    }
                    if self.key_taken_by_other(r.kind, &r.key, &r.id).await? {
                        return Err(StoreError::Conflict {
                            kind: r.kind,
                            key: r.key,
                        });
                    }
                    stmts.push(self.stmt(
                        "UPDATE registry SET key = ?3, body = ?4, created_at = ?5, updated_at = ?6 WHERE kind = ?1 AND id = ?2",
                        &row_args(&r),
                    )?);
                }
                Op::Upsert(r) => {
                    let by_key = self.find(r.kind, &r.key).await?.filter(|e| e.key == r.key);
                    if by_key.is_some() {
                        stmts.push(self.stmt(
                            "UPDATE registry SET body = ?3, updated_at = ?4 WHERE kind = ?1 AND key = ?2",
                            &[
                                r.kind.as_str().into(),
                                r.key.as_str().into(),
                                r.body.to_string().into(),
                                (r.updated_at as f64).into(),
                            ],
                        )?);
                    } else if self.find(r.kind, &r.id).await?.is_some() {
                        return Err(StoreError::Conflict {
                            kind: r.kind,
                            key: r.key,
                        });
                    } else {
                        stmts.push(self.insert_stmt(&r)?);
                    }
                }
                Op::Delete { kind, id } => {
                    stmts.push(self.stmt(
                        "DELETE FROM registry WHERE kind = ?1 AND id = ?2",
                        &[kind.as_str().into(), id.into()],
                    )?);
                }
            }
        }
        if stmts.is_empty() {
            return Ok(());
        }
        match self.db.batch(stmts).await {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("UNIQUE constraint failed") => {
                Err(StoreError::Backend(format!("conflicting concurrent write: {e}")))
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let row: Option<serde_json::Value> = self.stmt("SELECT 1 AS one", &[])?.first(None).await.map_err(backend)?;
        row.map(|_| ())
            .ok_or_else(|| StoreError::Backend("SELECT 1 returned nothing".into()))
    }

    async fn version(&self) -> Result<u64, StoreError> {
        let row: Option<serde_json::Value> = self
            .stmt("SELECT version FROM registry_version WHERE id = 1", &[])?
            .first(None)
            .await
            .map_err(backend)?;
        Ok(row.and_then(|r| r["version"].as_u64()).unwrap_or(0))
    }
}

/// The deployment's own key, for what its Worker and every Durable Object must open alike but
/// that is never kept at rest (sealed `requestState`s, admin cookies, the gateway's id): made
/// once, from `fresh`, by whichever isolate asks first, and kept in D1 (`mcpgw_keys`) for the
/// rest. Used only when `MCPGW_ENCRYPTION_KEY` is not set; stored credentials never use it (a
/// key kept beside them would not protect them).
pub async fn deployment_key(db: &D1Database, fresh: &str) -> Result<String, StoreError> {
    let stmts = vec![
        db.prepare("CREATE TABLE IF NOT EXISTS mcpgw_keys (name TEXT PRIMARY KEY, value TEXT NOT NULL)"),
        db.prepare("INSERT OR IGNORE INTO mcpgw_keys (name, value) VALUES ('deployment', ?1)")
            .bind(&[fresh.into()])
            .map_err(backend)?,
        db.prepare("SELECT value FROM mcpgw_keys WHERE name = 'deployment'"),
    ];
    let mut results = db.batch(stmts).await.map_err(backend)?;
    let rows: Vec<serde_json::Value> = match results.pop() {
        Some(r) => r.results().map_err(backend)?,
        None => Vec::new(),
    };
    rows.first()
        .and_then(|r| r["value"].as_str())
        .map(str::to_string)
        .ok_or_else(|| StoreError::Backend("the deployment key was not stored".into()))
}
