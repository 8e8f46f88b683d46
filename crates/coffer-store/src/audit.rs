//! The audit trail's storage: a separate SQLite file (`audit.db`), so the
//! trail has its own durability and cannot be touched by key operations.
//! Rows are opaque here; `coffer_core::audit` gives them meaning.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use crate::{Result, StoreError};

pub const AUDIT_DB_FILE: &str = "audit.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSessionRow {
    pub id: u32,
    pub key_version: u32,
    pub public: Vec<u8>,
    pub started: i64,
    pub node: String,
    /// How the session key was derived: 1 without the node, 2 binding it.
    pub kdf: u32,
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
    path: PathBuf,
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

// A value of the wrong type (only an edit of the file makes one) reads as an
// impossible value: verification then names the row instead of failing.
fn int(r: &SqliteRow, col: &str) -> i64 {
    r.try_get(col).unwrap_or(-1)
}

fn id(r: &SqliteRow, col: &str) -> u32 {
    u32::try_from(int(r, col)).unwrap_or(0)
}

fn bytes(r: &SqliteRow, col: &str) -> Vec<u8> {
    r.try_get(col).unwrap_or_default()
}

/// SQLite integers are i64: a larger sequence number (a trail resumed after a
/// forged row near 2^63) fails the write, so the server fails closed.
fn seq_column(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Backend(format!("audit sequence number {seq} does not fit")))
}

fn record_row(r: &SqliteRow) -> AuditRecordRow {
    AuditRecordRow {
        seq: u64_of(int(r, "seq")),
        session: id(r, "session"),
        prev: bytes(r, "prev"),
        payload: bytes(r, "payload"),
    }
}

impl AuditStore {
    pub async fn open(dir: &Path) -> Result<Self> {
        crate::sqlite::prepare_private(dir, AUDIT_DB_FILE)?;
        let path = dir.join(AUDIT_DB_FILE);
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(opts).await?;
        sqlx::migrate!("./audit_migrations").run(&pool).await?;
        Ok(AuditStore { pool, path })
    }

    /// The one connection that appends: synchronous, for the audit writer's own thread.
    pub fn appender(&self) -> Result<AuditAppender> {
        AuditAppender::open(&self.path)
    }

    /// Records with `seq > after`, oldest first, at most `limit`.
    pub async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<AuditRecordRow>> {
        let rows =
            sqlx::query("SELECT seq, session, prev, payload FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.iter().map(record_row).collect())
    }

    /// The last record, to resume the chain after a restart.
    pub async fn last_record(&self) -> Result<Option<AuditRecordRow>> {
        let r = sqlx::query("SELECT seq, session, prev, payload FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.as_ref().map(record_row))
    }

    pub async fn last_record_seq_before(&self, seq: u64) -> Result<Option<u64>> {
        let r = sqlx::query("SELECT MAX(seq) AS s FROM audit_records WHERE seq < ?")
            .bind(i64::try_from(seq).unwrap_or(i64::MAX))
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<Option<i64>, _>("s").ok().flatten().map(u64_of))
    }

    pub async fn checkpoints(&self) -> Result<Vec<AuditCheckpointRow>> {
        let rows = sqlx::query("SELECT seq, head, time, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditCheckpointRow {
                seq: u64_of(int(r, "seq")),
                head: bytes(r, "head"),
                time: int(r, "time"),
                signature: bytes(r, "signature"),
            })
            .collect())
    }

    pub async fn sessions(&self) -> Result<Vec<AuditSessionRow>> {
        let rows = sqlx::query("SELECT id, key_version, public, started, node, kdf FROM audit_sessions ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| AuditSessionRow {
                id: id(r, "id"),
                key_version: id(r, "key_version"),
                public: bytes(r, "public"),
                started: int(r, "started"),
                node: r.try_get("node").unwrap_or_default(),
                kdf: id(r, "kdf"),
            })
            .collect())
    }
}

/// Appends batches on the calling thread. The audit writer waits on every
/// commit, so a batch is one call into SQLite, not a hand-off to a worker
/// thread per statement as the async pool would make it.
pub struct AuditAppender {
    conn: rusqlite::Connection,
}

impl AuditAppender {
    fn open(path: &Path) -> Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL with a sync of the log at every commit: a batch is durable when `append` returns.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(AuditAppender { conn })
    }

    /// Appends a batch (and the session it opens, and its checkpoint) in one transaction.
    pub fn append(
        &mut self,
        session: Option<&AuditSessionRow>,
        records: &[AuditRecordRow],
        checkpoint: Option<&AuditCheckpointRow>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        if let Some(s) = session {
            tx.prepare_cached(
                "INSERT INTO audit_sessions (id, key_version, public, started, node, kdf) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(rusqlite::params![s.id, s.key_version, s.public, s.started, s.node, s.kdf])?;
        }
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO audit_records (seq, session, prev, payload) VALUES (?1, ?2, ?3, ?4)")?;
            for r in records {
                insert.execute(rusqlite::params![seq_column(r.seq)?, r.session, r.prev, r.payload])?;
            }
        }
        if let Some(c) = checkpoint {
            tx.prepare_cached("INSERT INTO audit_checkpoints (seq, head, time, signature) VALUES (?1, ?2, ?3, ?4)")?
                .execute(rusqlite::params![seq_column(c.seq)?, c.head, c.time, c.signature])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_and_refuses_edits() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditStore::open(dir.path()).await.unwrap();
        let mut w = a.appender().unwrap();
        let s = AuditSessionRow {
            id: 1,
            key_version: 1,
            public: vec![1; 32],
            started: 5,
            node: "n".into(),
            kdf: 2,
        };
        let r = AuditRecordRow {
            seq: 1,
            session: 1,
            prev: vec![0; 32],
            payload: vec![9; 40],
        };
        w.append(Some(&s), std::slice::from_ref(&r), None).unwrap();
        assert_eq!(a.last_record().await.unwrap(), Some(r.clone()));
        assert_eq!(a.sessions().await.unwrap(), vec![s]);
        // A failed batch leaves nothing behind.
        let dup = AuditRecordRow { seq: 2, ..r.clone() };
        assert!(w.append(None, &[dup.clone(), r.clone()], None).is_err());
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
        for edit in [
            "UPDATE audit_sessions SET public = zeroblob(32)",
            "DELETE FROM audit_sessions",
        ] {
            assert!(sqlx::query(edit).execute(&a.pool).await.is_err(), "{edit}");
        }
        assert_eq!(a.sessions().await.unwrap().len(), 1);
        // Sequence numbers past i64 are refused, not wrapped negative.
        let huge = AuditRecordRow {
            seq: 1 << 63,
            ..r.clone()
        };
        assert!(w.append(None, &[huge], None).is_err());
        assert_eq!(a.records_after(0, 10).await.unwrap(), vec![r.clone()]);
        assert!(a.records_after(u64::MAX, 10).await.unwrap().is_empty());

        // A value of the wrong type (an edit of the file) reads as an impossible one.
        sqlx::query("INSERT INTO audit_records (seq, session, prev, payload) VALUES (2, 'x', 7, 'text')")
            .execute(&a.pool)
            .await
            .unwrap();
        let odd = a.last_record().await.unwrap().unwrap();
        assert_eq!((odd.seq, odd.session), (2, 0));
        assert_ne!((&odd.prev, &odd.payload), (&r.prev, &r.payload));
        assert_eq!(a.records_after(0, 10).await.unwrap().len(), 2);
    }
}
