//! The audit trail's storage: a separate SQLite file (`audit.db`), so the
//! trail has its own durability and cannot be touched by key operations.
//! Rows are opaque here; `coffer_core::audit` gives them meaning.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{Result, StoreError};

pub const AUDIT_DB_FILE: &str = "audit.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSessionRow {
    pub id: u32,
    pub key_version: u32,
    pub public: Vec<u8>,
    pub started: i64,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecordRow {
    pub seq: u64,
    pub session: u32,
    pub prev: Vec<u8>,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpointRow {
    pub seq: u64,
    pub head: Vec<u8>,
    pub time: i64,
    pub signature: Vec<u8>,
}

#[derive(Clone)]
pub struct AuditStore {
    pool: SqlitePool,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl AuditStore {
    pub async fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(dir.join(AUDIT_DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?;
        sqlx::migrate!("./audit_migrations").run(&pool).await?;
        Ok(AuditStore { pool })
    }

    /// Appends a batch (and the session it opens, and its checkpoint) in one transaction.
    pub async fn append(
        &self,
        session: Option<&AuditSessionRow>,
        records: &[AuditRecordRow],
        checkpoint: Option<&AuditCheckpointRow>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if let Some(s) = session {
            sqlx::query("INSERT INTO audit_sessions (id, key_version, public, started, node) VALUES (?, ?, ?, ?, ?)")
                .bind(i64::from(s.id))
                .bind(i64::from(s.key_version))
                .bind(&s.public)
                .bind(s.started)
                .bind(&s.node)
                .execute(&mut *tx)
                .await?;
        }
        // One statement per chunk: each statement is a round trip to SQLite's
        // worker thread, and per-row round trips cost more than the rows.
        for chunk in records.chunks(1000) {
            let mut q =
                sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO audit_records (seq, session, prev, payload) ");
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.seq as i64)
                    .push_bind(i64::from(r.session))
                    .push_bind(&r.prev)
                    .push_bind(&r.payload);
            });
            q.build().execute(&mut *tx).await?;
        }
        if let Some(c) = checkpoint {
            sqlx::query("INSERT INTO audit_checkpoints (seq, head, time, signature) VALUES (?, ?, ?, ?)")
                .bind(c.seq as i64)
                .bind(&c.head)
                .bind(c.time)
                .bind(&c.signature)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records with `seq > after`, oldest first, at most `limit`.
    pub async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecordRow>> {
        let rows =
            sqlx::query("SELECT seq, session, prev, payload FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after as i64)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRecordRow {
                seq: u64_of(r.get("seq")),
                session: u32::try_from(r.get::<i64, _>("session")).unwrap_or(0),
                prev: r.get("prev"),
                payload: r.get("payload"),
            })
            .collect())
    }

    /// The last record, to resume the chain after a restart.
    pub async fn last_record(&self) -> Result<Option<AuditRecordRow>> {
        let r = sqlx::query("SELECT seq, session, prev, payload FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.map(|r| AuditRecordRow {
            seq: u64_of(r.get("seq")),
            session: u32::try_from(r.get::<i64, _>("session")).unwrap_or(0),
            prev: r.get("prev"),
            payload: r.get("payload"),
        }))
    }

    pub async fn last_record_seq_before(&self, seq: u64) -> Result<Option<u64>> {
        let r = sqlx::query("SELECT MAX(seq) AS s FROM audit_records WHERE seq < ?")
            .bind(seq as i64)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.get::<Option<i64>, _>("s").map(u64_of))
    }

    pub async fn checkpoints(&self) -> Result<Vec<AuditCheckpointRow>> {
        let rows = sqlx::query("SELECT seq, head, time, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditCheckpointRow {
                seq: u64_of(r.get("seq")),
                head: r.get("head"),
                time: r.get("time"),
                signature: r.get("signature"),
            })
            .collect())
    }

    pub async fn sessions(&self) -> Result<Vec<AuditSessionRow>> {
        let rows = sqlx::query("SELECT id, key_version, public, started, node FROM audit_sessions ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditSessionRow {
                id: u32::try_from(r.get::<i64, _>("id")).unwrap_or(0),
                key_version: u32::try_from(r.get::<i64, _>("key_version")).unwrap_or(0),
                public: r.get("public"),
                started: r.get("started"),
                node: r.get("node"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_and_refuses_edits() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditStore::open(dir.path()).await.unwrap();
        let s = AuditSessionRow {
            id: 1,
            key_version: 1,
            public: vec![1; 32],
            started: 5,
            node: "n".into(),
        };
        let r = AuditRecordRow {
            seq: 1,
            session: 1,
            prev: vec![0; 32],
            payload: vec![9; 40],
        };
        a.append(Some(&s), std::slice::from_ref(&r), None).await.unwrap();
        assert_eq!(a.last_record().await.unwrap(), Some(r.clone()));
        assert_eq!(a.sessions().await.unwrap(), vec![s]);
        // A failed batch leaves nothing behind.
        let dup = AuditRecordRow { seq: 2, ..r.clone() };
        assert!(a.append(None, &[dup.clone(), r.clone()], None).await.is_err());
        assert_eq!(a.records_after(0, 10).await.unwrap().len(), 1);
        assert!(
            sqlx::query("DELETE FROM audit_records").execute(&a.pool).await.is_err(),
            "append-only"
        );
        assert!(
            sqlx::query("UPDATE audit_records SET payload = x'00'")
                .execute(&a.pool)
                .await
                .is_err()
        );
    }
}
