//! The embedded backend: one SQLite database (WAL, `synchronous=FULL`) in
//! the data directory.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, Transaction};

use crate::{
    CertRoleRow, DuePlace, GuardedRow, MountRow, NamespaceRow, Op, PolicyRow, Reservation, Result, Store, StoreError,
    TenantKeyRow, TokenRow, TombstoneRow, TransitKeyRow, TransitVersionRow, UseMacs, VersionRef,
};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "coffer.db";

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir` and migrates it.
    pub async fn open(dir: &Path) -> Result<Self> {
        prepare_private(dir, DB_FILE)?;
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // Deleted rows are overwritten, so a shredded tenant's wrapped keys leave the file.
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(opts).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(SqliteStore { pool })
    }
}

/// Creates `dir` (mode 0700) and an empty `file` in it (mode 0600) if they
/// are missing, so the database, and the WAL and shared-memory files SQLite
/// gives the same mode, are the server user's alone.
pub(crate) fn prepare_private(dir: &Path, file: &str) -> Result<()> {
    let err = |what: &Path, e: std::io::Error| StoreError::Backend(format!("creating {}: {e}", what.display()));
    let mut d = std::fs::DirBuilder::new();
    d.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut d, 0o700);
    d.create(dir).map_err(|e| err(dir, e))?;
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    match f.open(&path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(&path, e)),
    }
}

fn version(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn token_row(r: &sqlx::sqlite::SqliteRow) -> Result<TokenRow> {
    Ok(TokenRow {
        accessor: r.try_get("accessor")?,
        hash: r.try_get("hash")?,
        namespace: r.try_get("namespace")?,
        parent: r.try_get("parent")?,
        policies: r.try_get("policies")?,
        display_name: r.try_get("display_name")?,
        created: r.try_get("created")?,
        ttl: r.try_get("ttl")?,
        expires: r.try_get("expires")?,
        max_expires: r.try_get("max_expires")?,
        num_uses: r.try_get("num_uses")?,
        renewable: r.try_get::<i64, _>("renewable")? != 0,
        meta: r.try_get("meta")?,
        mac: r.try_get("mac")?,
    })
}

fn cert_role_row(r: &sqlx::sqlite::SqliteRow) -> Result<CertRoleRow> {
    Ok(CertRoleRow {
        tenant: r.try_get("tenant")?,
        name: r.try_get("name")?,
        certificate: r.try_get("certificate")?,
        allowed_common_names: r.try_get("allowed_common_names")?,
        allowed_dns_sans: r.try_get("allowed_dns_sans")?,
        policies: r.try_get("policies")?,
        ttl: r.try_get("ttl")?,
        display_name: r.try_get("display_name")?,
        created: r.try_get("created")?,
        mac: r.try_get("mac")?,
    })
}

fn namespace_row(r: &sqlx::sqlite::SqliteRow) -> Result<NamespaceRow> {
    Ok(NamespaceRow {
        name: r.try_get("name")?,
        id: r.try_get("id")?,
        created: r.try_get("created")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        next_rotation: r.try_get("next_rotation")?,
        mac: r.try_get("mac")?,
    })
}

fn mount_row(r: &sqlx::sqlite::SqliteRow) -> Result<MountRow> {
    Ok(MountRow {
        namespace: r.try_get("namespace")?,
        path: r.try_get("path")?,
        kind: r.try_get("kind")?,
        description: r.try_get("description")?,
        accessor: r.try_get("accessor")?,
        created: r.try_get("created")?,
        mac: r.try_get("mac")?,
    })
}

fn policy_row(r: &sqlx::sqlite::SqliteRow) -> Result<PolicyRow> {
    Ok(PolicyRow {
        namespace: r.try_get("namespace")?,
        name: r.try_get("name")?,
        body: r.try_get("body")?,
        mac: r.try_get("mac")?,
    })
}

fn transit_key_row(r: &sqlx::sqlite::SqliteRow) -> Result<TransitKeyRow> {
    Ok(TransitKeyRow {
        namespace: r.try_get("namespace")?,
        mount: r.try_get("mount")?,
        name: r.try_get("name")?,
        config: r.try_get("config")?,
        next_rotation: r.try_get("next_rotation")?,
        config_mac: r.try_get("config_mac")?,
    })
}

fn conflict(e: sqlx::Error, what: &'static str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => e.into(),
    }
}

/// One ask of `reserve_encryptions`: the whole block, or what is left under
/// the limit if less but at least `need`.
async fn reserve_one(tx: &mut Transaction<'_, Sqlite>, a: &Reservation<'_>) -> Result<u64> {
    let (Ok(need), Ok(block), Ok(limit)) = (
        i64::try_from(a.need),
        i64::try_from(a.block.max(a.need)),
        i64::try_from(a.limit),
    ) else {
        return Ok(0);
    };
    let row = sqlx::query(
        "UPDATE transit_key_versions SET encryptions = encryptions + MIN(?1, ?2 - encryptions) \
         WHERE namespace = ?3 AND mount = ?4 AND name = ?5 AND version = ?6 AND encryptions <= ?2 - ?7 \
         RETURNING encryptions",
    )
    .bind(block)
    .bind(limit)
    .bind(a.version.namespace)
    .bind(a.version.mount)
    .bind(a.version.name)
    .bind(i64::from(a.version.version))
    .bind(need)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(0) };
    let now: i64 = row.try_get(0)?;
    // Below the limit the whole block was taken; at it, at least `need` was.
    Ok(u64::try_from(if now < limit { block } else { need }).unwrap_or(0))
}

/// Fills in the MAC of a row stored before MACs; one that has a MAC keeps it.
async fn set_row_mac(tx: &mut Transaction<'_, Sqlite>, row: GuardedRow) -> Result<()> {
    let q = match row {
        GuardedRow::Token(t) => sqlx::query("UPDATE tokens SET mac = ? WHERE accessor = ? AND mac IS NULL")
            .bind(t.mac)
            .bind(t.accessor),
        GuardedRow::Policy(p) => {
            sqlx::query("UPDATE policies SET mac = ? WHERE namespace = ? AND name = ? AND mac IS NULL")
                .bind(p.mac)
                .bind(p.namespace)
                .bind(p.name)
        }
        GuardedRow::Mount(m) => {
            sqlx::query("UPDATE mounts SET mac = ? WHERE namespace = ? AND path = ? AND mac IS NULL")
                .bind(m.mac)
                .bind(m.namespace)
                .bind(m.path)
        }
        GuardedRow::Namespace(n) => sqlx::query("UPDATE namespaces SET mac = ? WHERE name = ? AND mac IS NULL")
            .bind(n.mac)
            .bind(n.name),
        GuardedRow::CertRole(c) => {
            sqlx::query("UPDATE cert_roles SET mac = ? WHERE tenant = ? AND name = ? AND mac IS NULL")
                .bind(c.mac)
                .bind(c.tenant)
                .bind(c.name)
        }
    };
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn apply_one(tx: &mut Transaction<'_, Sqlite>, op: Op) -> Result<()> {
    match op {
        Op::PutMeta { key, value } => {
            sqlx::query("INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
                .bind(key)
                .bind(value)
                .execute(&mut **tx)
                .await?;
        }
        Op::PutTenantKey(t) => {
            sqlx::query("INSERT INTO tenant_keys (namespace, version, created, wrapped) VALUES (?, ?, ?, ?)")
                .bind(t.namespace)
                .bind(i64::from(t.version))
                .bind(t.created)
                .bind(t.wrapped)
                .execute(&mut **tx)
                .await
                .map_err(|e| conflict(e, "tenant key version"))?;
        }
        Op::InsertMount(m) => {
            sqlx::query(
                "INSERT INTO mounts (namespace, path, kind, description, accessor, created, mac) \
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(m.namespace)
            .bind(m.path)
            .bind(m.kind)
            .bind(m.description)
            .bind(m.accessor)
            .bind(m.created)
            .bind(m.mac)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict(e, "mount"))?;
        }
        Op::DeleteMount { namespace, path } => {
            let mount = path.trim_end_matches('/').to_owned();
            for sql in [
                "DELETE FROM transit_key_versions WHERE namespace = ? AND mount = ?",
                "DELETE FROM transit_keys WHERE namespace = ? AND mount = ?",
            ] {
                sqlx::query(sql)
                    .bind(&namespace)
                    .bind(&mount)
                    .execute(&mut **tx)
                    .await?;
            }
            sqlx::query("DELETE FROM mounts WHERE namespace = ? AND path = ?")
                .bind(namespace)
                .bind(path)
                .execute(&mut **tx)
                .await?;
        }
        Op::InsertTransitKey(k) => {
            sqlx::query(
                "INSERT INTO transit_keys (namespace, mount, name, config, next_rotation, config_mac) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(k.namespace)
            .bind(k.mount)
            .bind(k.name)
            .bind(k.config)
            .bind(k.next_rotation)
            .bind(k.config_mac)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict(e, "key"))?;
        }
        Op::UpdateTransitKey(k) => {
            sqlx::query(
                "UPDATE transit_keys SET config = ?, next_rotation = ?, config_mac = ? \
                 WHERE namespace = ? AND mount = ? AND name = ?",
            )
            .bind(k.config)
            .bind(k.next_rotation)
            .bind(k.config_mac)
            .bind(k.namespace)
            .bind(k.mount)
            .bind(k.name)
            .execute(&mut **tx)
            .await?;
        }
        Op::PutTransitVersion(v) => {
            sqlx::query(
                "INSERT INTO transit_key_versions (namespace, mount, name, version, kek_version, wrapped) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(v.namespace)
            .bind(v.mount)
            .bind(v.name)
            .bind(i64::from(v.version))
            .bind(i64::from(v.kek_version))
            .bind(v.wrapped)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict(e, "key version"))?;
        }
        Op::RewrapTransitVersion(v) => {
            let done = sqlx::query(
                "UPDATE transit_key_versions SET kek_version = ?, wrapped = ? \
                 WHERE namespace = ? AND mount = ? AND name = ? AND version = ?",
            )
            .bind(i64::from(v.kek_version))
            .bind(v.wrapped)
            .bind(v.namespace)
            .bind(v.mount)
            .bind(v.name)
            .bind(i64::from(v.version))
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Backend(
                    "rewrapping a key version that is not stored".into(),
                ));
            }
        }
        Op::DeleteTransitVersionsBelow {
            namespace,
            mount,
            name,
            below,
        } => {
            sqlx::query(
                "DELETE FROM transit_key_versions WHERE namespace = ? AND mount = ? AND name = ? AND version < ?",
            )
            .bind(namespace)
            .bind(mount)
            .bind(name)
            .bind(i64::from(below))
            .execute(&mut **tx)
            .await?;
        }
        Op::DeleteTransitKey { namespace, mount, name } => {
            for sql in [
                "DELETE FROM transit_key_versions WHERE namespace = ? AND mount = ? AND name = ?",
                "DELETE FROM transit_keys WHERE namespace = ? AND mount = ? AND name = ?",
            ] {
                sqlx::query(sql)
                    .bind(&namespace)
                    .bind(&mount)
                    .bind(&name)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Op::InsertToken(t) => {
            sqlx::query(
                "INSERT INTO tokens (accessor, hash, namespace, parent, policies, display_name, created, ttl, expires, \
                 max_expires, num_uses, renewable, meta, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(t.accessor)
            .bind(t.hash)
            .bind(t.namespace)
            .bind(t.parent)
            .bind(t.policies)
            .bind(t.display_name)
            .bind(t.created)
            .bind(t.ttl)
            .bind(t.expires)
            .bind(t.max_expires)
            .bind(t.num_uses)
            .bind(i64::from(t.renewable))
            .bind(t.meta)
            .bind(t.mac)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict(e, "token"))?;
        }
        Op::DeleteToken { accessor } => {
            sqlx::query("DELETE FROM tokens WHERE accessor = ?")
                .bind(accessor)
                .execute(&mut **tx)
                .await?;
        }
        Op::SetTokenExpiry { accessor, ttl, expires } => {
            sqlx::query("UPDATE tokens SET ttl = ?, expires = ? WHERE accessor = ?")
                .bind(ttl)
                .bind(expires)
                .bind(accessor)
                .execute(&mut **tx)
                .await?;
        }
        Op::UpdateToken { row: t, expect_mac } => {
            let done = sqlx::query(
                "UPDATE tokens SET hash = ?, namespace = ?, parent = ?, policies = ?, display_name = ?, created = ?, \
                 ttl = ?, expires = ?, max_expires = ?, num_uses = ?, renewable = ?, meta = ?, mac = ? \
                 WHERE accessor = ? AND mac IS ?",
            )
            .bind(t.hash)
            .bind(t.namespace)
            .bind(t.parent)
            .bind(t.policies)
            .bind(t.display_name)
            .bind(t.created)
            .bind(t.ttl)
            .bind(t.expires)
            .bind(t.max_expires)
            .bind(t.num_uses)
            .bind(i64::from(t.renewable))
            .bind(t.meta)
            .bind(t.mac)
            .bind(t.accessor)
            .bind(expect_mac)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Changed("token"));
            }
        }
        Op::OrphanChildren { parent } => {
            sqlx::query("UPDATE tokens SET parent = NULL WHERE parent = ?")
                .bind(parent)
                .execute(&mut **tx)
                .await?;
        }
        Op::InsertNamespace(n) => {
            sqlx::query(
                "INSERT INTO namespaces (name, id, created, disabled, next_rotation, mac) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(n.name)
            .bind(n.id)
            .bind(n.created)
            .bind(i64::from(n.disabled))
            .bind(n.next_rotation)
            .bind(n.mac)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict(e, "namespace"))?;
        }
        Op::SetNamespaceDisabled { name, disabled } => {
            sqlx::query("UPDATE namespaces SET disabled = ? WHERE name = ?")
                .bind(i64::from(disabled))
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Op::SetNamespaceRotation { name, next_rotation } => {
            sqlx::query("UPDATE namespaces SET next_rotation = ? WHERE name = ?")
                .bind(next_rotation)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Op::UpdateNamespace { row: n, expect_mac } => {
            let done = sqlx::query(
                "UPDATE namespaces SET id = ?, created = ?, disabled = ?, next_rotation = ?, mac = ? \
                 WHERE name = ? AND mac IS ?",
            )
            .bind(n.id)
            .bind(n.created)
            .bind(i64::from(n.disabled))
            .bind(n.next_rotation)
            .bind(n.mac)
            .bind(n.name)
            .bind(expect_mac)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Changed("tenant"));
            }
        }
        Op::SetRowMac(row) => set_row_mac(tx, row).await?,
        Op::ShredNamespace(t) => {
            for sql in [
                "DELETE FROM transit_key_versions WHERE namespace = ?",
                "DELETE FROM transit_keys WHERE namespace = ?",
                "DELETE FROM tenant_keys WHERE namespace = ?",
                "DELETE FROM tokens WHERE namespace = ?",
                "DELETE FROM policies WHERE namespace = ?",
                "DELETE FROM mounts WHERE namespace = ?",
                "DELETE FROM cert_roles WHERE tenant = ?",
                "DELETE FROM namespaces WHERE name = ?",
            ] {
                sqlx::query(sql).bind(&t.name).execute(&mut **tx).await?;
            }
            // A tenant restored from a copy and shredded again keeps its first tombstone.
            sqlx::query(
                "INSERT INTO tombstones (name, id, shredded, by_who) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(t.name)
            .bind(t.id)
            .bind(t.shredded)
            .bind(t.by_who)
            .execute(&mut **tx)
            .await?;
        }
        Op::DeleteTenantKeysBelow { namespace, below } => {
            sqlx::query("DELETE FROM tenant_keys WHERE namespace = ? AND version < ?")
                .bind(namespace)
                .bind(i64::from(below))
                .execute(&mut **tx)
                .await?;
        }
        Op::PutPolicy(p) => {
            sqlx::query(
                "INSERT INTO policies (namespace, name, body, mac) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (namespace, name) DO UPDATE SET body = excluded.body, mac = excluded.mac",
            )
            .bind(p.namespace)
            .bind(p.name)
            .bind(p.body)
            .bind(p.mac)
            .execute(&mut **tx)
            .await?;
        }
        Op::DeletePolicy { namespace, name } => {
            sqlx::query("DELETE FROM policies WHERE namespace = ? AND name = ?")
                .bind(namespace)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Op::PutCertRole(c) => {
            sqlx::query(
                "INSERT OR REPLACE INTO cert_roles (tenant, name, certificate, allowed_common_names, \
                 allowed_dns_sans, policies, ttl, display_name, created, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(c.tenant)
            .bind(c.name)
            .bind(c.certificate)
            .bind(c.allowed_common_names)
            .bind(c.allowed_dns_sans)
            .bind(c.policies)
            .bind(c.ttl)
            .bind(c.display_name)
            .bind(c.created)
            .bind(c.mac)
            .execute(&mut **tx)
            .await?;
        }
        Op::DeleteCertRole { tenant, name } => {
            sqlx::query("DELETE FROM cert_roles WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT v FROM meta WHERE k = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("v")).transpose()?)
    }

    async fn tenant_keys(&self, namespace: &str) -> Result<Vec<TenantKeyRow>> {
        let rows = sqlx::query(
            "SELECT namespace, version, created, wrapped FROM tenant_keys WHERE namespace = ? ORDER BY version",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(TenantKeyRow {
                    namespace: r.try_get("namespace")?,
                    version: version(r.try_get("version")?),
                    created: r.try_get("created")?,
                    wrapped: r.try_get("wrapped")?,
                })
            })
            .collect::<Result<_>>()?)
    }

    async fn mounts(&self) -> Result<Vec<MountRow>> {
        let rows = sqlx::query("SELECT * FROM mounts ORDER BY namespace, path")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(mount_row).collect()
    }

    async fn transit_key(&self, namespace: &str, mount: &str, name: &str) -> Result<Option<TransitKeyRow>> {
        let row = sqlx::query(
            "SELECT namespace, mount, name, config, next_rotation, config_mac FROM transit_keys \
             WHERE namespace = ? AND mount = ? AND name = ?",
        )
        .bind(namespace)
        .bind(mount)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(transit_key_row).transpose()
    }

    async fn transit_versions(&self, namespace: &str, mount: &str, name: &str) -> Result<Vec<TransitVersionRow>> {
        let rows = sqlx::query(
            "SELECT version, kek_version, wrapped FROM transit_key_versions WHERE namespace = ? AND mount = ? AND name = ? ORDER BY version",
        )
        .bind(namespace)
        .bind(mount)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(TransitVersionRow {
                    namespace: namespace.to_owned(),
                    mount: mount.to_owned(),
                    name: name.to_owned(),
                    version: version(r.try_get("version")?),
                    kek_version: version(r.try_get("kek_version")?),
                    wrapped: r.try_get("wrapped")?,
                })
            })
            .collect::<Result<_>>()?)
    }

    async fn transit_key_names(&self, namespace: &str, mount: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM transit_keys WHERE namespace = ? AND mount = ? ORDER BY name")
            .bind(namespace)
            .bind(mount)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE accessor = ?")
            .bind(accessor)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_row).transpose()
    }

    async fn token_children(&self, parent_accessor: &str) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query("SELECT * FROM tokens WHERE parent = ?")
            .bind(parent_accessor)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_row).collect()
    }

    async fn tokens_expired(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT accessor FROM tokens WHERE expires <= ? ORDER BY expires LIMIT ?")
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("accessor"))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn consume_token_use(&self, accessor: &str, macs: Option<UseMacs>) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let left = match macs {
            // The last use deletes the row: no row with no uses left is written.
            Some(UseMacs { before, after: None }) => {
                let gone = sqlx::query("DELETE FROM tokens WHERE accessor = ? AND num_uses = 1 AND mac IS ?")
                    .bind(accessor)
                    .bind(before)
                    .execute(&mut *tx)
                    .await?;
                (gone.rows_affected() == 1).then_some(0)
            }
            Some(UseMacs {
                before,
                after: Some(after),
            }) => sqlx::query(
                "UPDATE tokens SET num_uses = num_uses - 1, mac = ? \
                 WHERE accessor = ? AND num_uses > 1 AND mac IS ? RETURNING num_uses",
            )
            .bind(after)
            .bind(accessor)
            .bind(before)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("num_uses"))
            .transpose()?,
            None => {
                let left = sqlx::query(
                    "UPDATE tokens SET num_uses = num_uses - 1 WHERE accessor = ? AND num_uses > 0 RETURNING num_uses",
                )
                .bind(accessor)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<i64, _>("num_uses"))
                .transpose()?;
                if left == Some(0) {
                    sqlx::query("DELETE FROM tokens WHERE accessor = ?")
                        .bind(accessor)
                        .execute(&mut *tx)
                        .await?;
                }
                left
            }
        };
        tx.commit().await?;
        Ok(left)
    }

    async fn policy(&self, namespace: &str, name: &str) -> Result<Option<PolicyRow>> {
        let row = sqlx::query("SELECT * FROM policies WHERE namespace = ? AND name = ?")
            .bind(namespace)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(policy_row).transpose()
    }

    async fn policy_names(&self, namespace: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM policies WHERE namespace = ? ORDER BY name")
            .bind(namespace)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn cert_role(&self, tenant: &str, name: &str) -> Result<Option<CertRoleRow>> {
        let row = sqlx::query("SELECT * FROM cert_roles WHERE tenant = ? AND name = ?")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(cert_role_row).transpose()
    }

    async fn cert_roles(&self, tenant: &str) -> Result<Vec<CertRoleRow>> {
        let rows = sqlx::query("SELECT * FROM cert_roles WHERE tenant = ? ORDER BY name")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(cert_role_row).collect()
    }

    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRow>> {
        let r = sqlx::query("SELECT * FROM namespaces WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        r.as_ref().map(namespace_row).transpose()
    }

    async fn is_tombstoned(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("SELECT 1 FROM tombstones WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.is_some())
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceRow>> {
        let rows = sqlx::query("SELECT * FROM namespaces ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(namespace_row).collect()
    }

    async fn tombstones(&self) -> Result<Vec<TombstoneRow>> {
        let rows = sqlx::query("SELECT * FROM tombstones ORDER BY shredded")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(TombstoneRow {
                    name: r.try_get("name")?,
                    id: r.try_get("id")?,
                    shredded: r.try_get("shredded")?,
                    by_who: r.try_get("by_who")?,
                })
            })
            .collect::<Result<_>>()?)
    }

    async fn transit_keys_due(&self, now: i64, after: &DuePlace, limit: u32) -> Result<Vec<TransitKeyRow>> {
        let rows = sqlx::query(
            "SELECT namespace, mount, name, config, next_rotation, config_mac FROM transit_keys \
             WHERE next_rotation IS NOT NULL AND next_rotation <= ? \
             AND (next_rotation, namespace, mount, name) > (?, ?, ?, ?) \
             ORDER BY next_rotation, namespace, mount, name LIMIT ?",
        )
        .bind(now)
        .bind(after.deadline)
        .bind(&after.namespace)
        .bind(&after.mount)
        .bind(&after.name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transit_key_row).collect()
    }

    async fn transit_keys_due_in(&self, namespace: &str, mount: &str, now: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT name FROM transit_keys WHERE namespace = ? AND mount = ? \
             AND next_rotation IS NOT NULL AND next_rotation <= ? ORDER BY name",
        )
        .bind(namespace)
        .bind(mount)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?)
    }

    async fn namespaces_due(&self, now: i64, after: &DuePlace, limit: u32) -> Result<Vec<NamespaceRow>> {
        let rows = sqlx::query(
            "SELECT * FROM namespaces WHERE next_rotation IS NOT NULL AND next_rotation <= ? \
             AND (next_rotation, name) > (?, ?) ORDER BY next_rotation, name LIMIT ?",
        )
        .bind(now)
        .bind(after.deadline)
        .bind(&after.namespace)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(namespace_row).collect()
    }

    async fn transit_keys_of(&self, namespace: &str) -> Result<Vec<TransitKeyRow>> {
        let rows = sqlx::query(
            "SELECT namespace, mount, name, config, next_rotation, config_mac FROM transit_keys WHERE namespace = ?",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transit_key_row).collect()
    }

    async fn transit_keys_without_mac(&self) -> Result<Vec<TransitKeyRow>> {
        let rows = sqlx::query(
            "SELECT namespace, mount, name, config, next_rotation, config_mac FROM transit_keys WHERE config_mac IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transit_key_row).collect()
    }

    async fn rows_without_mac(&self) -> Result<Vec<GuardedRow>> {
        let mut out = Vec::new();
        let pool = &self.pool;
        for r in sqlx::query("SELECT * FROM tokens WHERE mac IS NULL")
            .fetch_all(pool)
            .await?
        {
            out.push(GuardedRow::Token(token_row(&r)?));
        }
        for r in sqlx::query("SELECT * FROM policies WHERE mac IS NULL")
            .fetch_all(pool)
            .await?
        {
            out.push(GuardedRow::Policy(policy_row(&r)?));
        }
        for r in sqlx::query("SELECT * FROM mounts WHERE mac IS NULL")
            .fetch_all(pool)
            .await?
        {
            out.push(GuardedRow::Mount(mount_row(&r)?));
        }
        for r in sqlx::query("SELECT * FROM namespaces WHERE mac IS NULL")
            .fetch_all(pool)
            .await?
        {
            out.push(GuardedRow::Namespace(namespace_row(&r)?));
        }
        for r in sqlx::query("SELECT * FROM cert_roles WHERE mac IS NULL")
            .fetch_all(pool)
            .await?
        {
            out.push(GuardedRow::CertRole(cert_role_row(&r)?));
        }
        Ok(out)
    }

    async fn reserve_encryptions(&self, asks: &[Reservation<'_>]) -> Result<Vec<u64>> {
        let mut tx = self.pool.begin().await?;
        let mut got = Vec::with_capacity(asks.len());
        for a in asks {
            got.push(reserve_one(&mut tx, a).await?);
        }
        // Committed explicitly: an autocommit's failure would go unseen, and a block be granted twice.
        tx.commit().await?;
        Ok(got)
    }

    async fn encryptions(&self, v: &VersionRef<'_>) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT encryptions FROM transit_key_versions WHERE namespace = ? AND mount = ? AND name = ? AND version = ?",
        )
        .bind(v.namespace)
        .bind(v.mount)
        .bind(v.name)
        .bind(i64::from(v.version))
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => Some(u64::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0)),
            None => None,
        })
    }

    async fn scrub(&self, wait: Duration) -> Result<bool> {
        // Copy the WAL into the main file and truncate it, so no old page
        // survives there. A reader holding an old snapshot makes the pragma
        // answer "busy" rather than fail; new writers wait while it waits
        // for readers, so it waits `wait` at most.
        let mut c = self.pool.acquire().await?;
        let ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {ms}")))
            .execute(&mut *c)
            .await?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *c).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA busy_timeout = {}",
            BUSY_TIMEOUT.as_millis()
        )))
        .execute(&mut *c)
        .await?;
        let row = row?;
        let (busy, log, moved): (i64, i64, i64) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        Ok(busy == 0 && log == moved)
    }

    async fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for op in ops {
            apply_one(&mut tx, op).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_row(name: &str) -> TransitKeyRow {
        TransitKeyRow {
            namespace: String::new(),
            mount: "transit".into(),
            name: name.into(),
            config: "{}".into(),
            next_rotation: None,
            config_mac: Some(vec![1]),
        }
    }

    fn version_row(name: &str, v: u32) -> TransitVersionRow {
        TransitVersionRow {
            namespace: String::new(),
            mount: "transit".into(),
            name: name.into(),
            version: v,
            kek_version: 1,
            wrapped: vec![v as u8],
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_data_directory_and_its_files_are_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let s = SqliteStore::open(&data).await.unwrap();
        s.apply(vec![Op::InsertTransitKey(key_row("a"))]).await.unwrap();
        crate::audit::AuditStore::open(&data).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        for f in [DB_FILE, "coffer.db-wal", "coffer.db-shm", crate::audit::AUDIT_DB_FILE] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }

    #[tokio::test]
    async fn a_scrub_blocked_by_a_reader_says_so_and_succeeds_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        s.apply(vec![Op::InsertTransitKey(key_row("a"))]).await.unwrap();
        // A reader on its own connection holds a snapshot from before the delete.
        let url = format!("sqlite://{}", dir.path().join(DB_FILE).display());
        let mut reader = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query("BEGIN").execute(&mut reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM transit_keys")
            .fetch_one(&mut reader)
            .await
            .unwrap();
        s.apply(vec![Op::DeleteTransitKey {
            namespace: String::new(),
            mount: "transit".into(),
            name: "a".into(),
        }])
        .await
        .unwrap();
        assert!(
            !s.scrub(Duration::from_millis(50)).await.unwrap(),
            "the reader keeps old pages"
        );
        sqlx::query("COMMIT").execute(&mut reader).await.unwrap();
        assert!(s.scrub(Duration::from_millis(50)).await.unwrap());
        assert_eq!(std::fs::metadata(dir.path().join("coffer.db-wal")).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn due_keys_are_walked_in_pages_each_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        // Ties on the deadline are broken by name; "later" is not yet due; "other" is in another mount.
        let mut ops = Vec::new();
        for (name, mount, at) in [
            ("b", "transit", 10),
            ("a", "transit", 10),
            ("c", "transit", 5),
            ("d", "transit", 20),
            ("e", "other", 7),
            ("later", "transit", 99),
        ] {
            ops.push(Op::InsertTransitKey(TransitKeyRow {
                mount: mount.into(),
                next_rotation: Some(at),
                ..key_row(name)
            }));
        }
        s.apply(ops).await.unwrap();
        let mut seen = Vec::new();
        let mut place = DuePlace::start();
        loop {
            let page = s.transit_keys_due(50, &place, 2).await.unwrap();
            let Some(last) = page.last() else { break };
            place = DuePlace {
                deadline: last.next_rotation.unwrap(),
                namespace: last.namespace.clone(),
                mount: last.mount.clone(),
                name: last.name.clone(),
            };
            seen.extend(page.iter().map(|k| k.name.clone()));
        }
        assert_eq!(seen, ["c", "e", "a", "b", "d"]);
        assert_eq!(
            s.transit_keys_due_in("", "transit", 50).await.unwrap(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(s.transit_keys_due_in("", "transit", 9).await.unwrap(), ["c"]);
        assert!(s.transit_keys_due_in("acme", "transit", 50).await.unwrap().is_empty());
    }

    async fn one(s: &SqliteStore, r: Reservation<'_>) -> u64 {
        s.reserve_encryptions(&[r]).await.unwrap()[0]
    }

    #[tokio::test]
    async fn encryptions_are_reserved_up_to_the_limit_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        s.apply(vec![
            Op::InsertTransitKey(key_row("a")),
            Op::PutTransitVersion(version_row("a", 1)),
        ])
        .await
        .unwrap();
        let v1 = VersionRef {
            namespace: "",
            mount: "transit",
            name: "a",
            version: 1,
        };
        assert_eq!(s.encryptions(&v1).await.unwrap(), Some(0));
        let ask = |version, need, block, limit| Reservation {
            version,
            need,
            block,
            limit,
        };
        assert_eq!(one(&s, ask(v1, 10, 60, 100)).await, 60, "the whole block");
        assert_eq!(one(&s, ask(v1, 41, 50, 100)).await, 0, "past the limit");
        assert_eq!(s.encryptions(&v1).await.unwrap(), Some(60), "a refusal counts nothing");
        // A block larger than what is left takes the rest; the caller is sure only of its need.
        assert_eq!(one(&s, ask(v1, 5, 50, 100)).await, 5);
        assert_eq!(s.encryptions(&v1).await.unwrap(), Some(100));
        assert_eq!(one(&s, ask(v1, 1, 1, 100)).await, 0);
        assert_eq!(one(&s, ask(v1, u64::MAX, u64::MAX, u64::MAX)).await, 0, "no overflow");
        assert_eq!(s.encryptions(&v1).await.unwrap(), Some(100));
        let gone = VersionRef { version: 2, ..v1 };
        // Several asks in one transaction, each answered on its own.
        s.apply(vec![Op::PutTransitVersion(version_row("a", 3))]).await.unwrap();
        let v3 = VersionRef { version: 3, ..v1 };
        let got = s
            .reserve_encryptions(&[ask(gone, 1, 1, 100), ask(v3, 1, 64, 100), ask(v3, 1, 64, 100)])
            .await
            .unwrap();
        assert_eq!(got, [0, 64, 1]);
        assert_eq!(s.encryptions(&v3).await.unwrap(), Some(100));
        assert_eq!(s.encryptions(&gone).await.unwrap(), None);
    }

    #[tokio::test]
    async fn apply_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        s.apply(vec![
            Op::InsertTransitKey(key_row("a")),
            Op::PutTransitVersion(version_row("a", 1)),
        ])
        .await
        .unwrap();
        // The second insert of "a" conflicts, so "b" must not appear either.
        let err = s
            .apply(vec![
                Op::InsertTransitKey(key_row("b")),
                Op::InsertTransitKey(key_row("a")),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict("key")));
        assert_eq!(s.transit_key_names("", "transit").await.unwrap(), vec!["a".to_string()]);
        // A stored version is never overwritten by a new one; only rewrapped in place.
        let mut other = version_row("a", 1);
        other.wrapped = vec![0xEE];
        let err = s.apply(vec![Op::PutTransitVersion(other.clone())]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict("key version")));
        assert_eq!(
            s.transit_versions("", "transit", "a").await.unwrap(),
            vec![version_row("a", 1)]
        );
        s.apply(vec![Op::RewrapTransitVersion(other.clone())]).await.unwrap();
        assert_eq!(s.transit_versions("", "transit", "a").await.unwrap(), vec![other]);
        assert!(
            s.apply(vec![Op::RewrapTransitVersion(version_row("a", 9))])
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_mistyped_value_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        s.apply(vec![
            Op::InsertTransitKey(key_row("a")),
            Op::PutTransitVersion(version_row("a", 1)),
        ])
        .await
        .unwrap();
        // Only an edit of the file makes these: TEXT where the schema says INTEGER or BLOB.
        for edit in [
            "UPDATE transit_keys SET next_rotation = 'soon'",
            "UPDATE transit_key_versions SET wrapped = 5",
        ] {
            sqlx::query(edit).execute(&s.pool).await.unwrap();
        }
        assert!(matches!(
            s.transit_key("", "transit", "a").await,
            Err(StoreError::Backend(_))
        ));
        assert!(matches!(s.transit_keys_of("").await, Err(StoreError::Backend(_))));
        assert!(matches!(
            s.transit_versions("", "transit", "a").await,
            Err(StoreError::Backend(_))
        ));
        assert_eq!(s.transit_key_names("", "transit").await.unwrap(), vec!["a".to_string()]);
    }

    #[tokio::test]
    async fn data_survives_reopen_and_trim_deletes_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SqliteStore::open(dir.path()).await.unwrap();
            s.apply(vec![
                Op::InsertTransitKey(key_row("k")),
                Op::PutTransitVersion(version_row("k", 1)),
                Op::PutTransitVersion(version_row("k", 2)),
                Op::PutMeta {
                    key: "m".into(),
                    value: vec![1, 2],
                },
            ])
            .await
            .unwrap();
        }
        let s = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(s.meta("m").await.unwrap(), Some(vec![1, 2]));
        assert_eq!(s.transit_versions("", "transit", "k").await.unwrap().len(), 2);
        s.apply(vec![Op::DeleteTransitVersionsBelow {
            namespace: String::new(),
            mount: "transit".into(),
            name: "k".into(),
            below: 2,
        }])
        .await
        .unwrap();
        let left = s.transit_versions("", "transit", "k").await.unwrap();
        assert_eq!(left.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2]);
    }

    /// A database written by schema v1 opens, migrates, and keeps its rows.
    #[tokio::test]
    async fn a_v1_database_migrates_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let opts = SqliteConnectOptions::from_str("sqlite://")
                .unwrap()
                .filename(dir.path().join(DB_FILE))
                .create_if_missing(true);
            let pool = SqlitePoolOptions::new().connect_with(opts).await.unwrap();
            sqlx::raw_sql(include_str!("../testdata/v1.sql"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        let s = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(s.transit_key_names("", "transit").await.unwrap(), ["orders"]);
        assert_eq!(
            s.transit_versions("", "transit", "orders").await.unwrap()[0].wrapped,
            [9, 9]
        );
        assert_eq!(s.tenant_keys("").await.unwrap()[0].wrapped, [1, 2, 3]);
        assert_eq!(s.mounts().await.unwrap()[0].accessor, "transit_0001");
        assert!(s.policy("", "app").await.unwrap().unwrap().body.contains("transit/*"));
        assert!(s.meta("seal").await.unwrap().is_some());
        // The v2 table exists and works.
        assert!(s.cert_roles("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn cert_roles_are_per_tenant_replaced_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let role = |tenant: &str, name: &str, policies: &str| CertRoleRow {
            tenant: tenant.into(),
            name: name.into(),
            certificate: "PEM".into(),
            allowed_common_names: "[]".into(),
            allowed_dns_sans: "[]".into(),
            policies: policies.into(),
            ttl: 60,
            display_name: name.into(),
            created: 1,
            mac: None,
        };
        s.apply(vec![
            Op::PutCertRole(role("", "web", "[\"a\"]")),
            Op::PutCertRole(role("", "api", "[]")),
            Op::PutCertRole(role("acme", "web", "[]")),
        ])
        .await
        .unwrap();
        s.apply(vec![Op::PutCertRole(role("", "web", "[\"b\"]"))])
            .await
            .unwrap();
        let names: Vec<String> = s.cert_roles("").await.unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["api", "web"]);
        assert_eq!(s.cert_role("", "web").await.unwrap().unwrap().policies, "[\"b\"]");
        s.apply(vec![Op::DeleteCertRole {
            tenant: String::new(),
            name: "web".into(),
        }])
        .await
        .unwrap();
        assert!(s.cert_role("", "web").await.unwrap().is_none());
        assert!(s.cert_role("acme", "web").await.unwrap().is_some());
        // A shredded tenant's roles go with it: a tenant made again under the name starts empty.
        s.apply(vec![Op::ShredNamespace(TombstoneRow {
            name: "acme".into(),
            id: "id".into(),
            shredded: 2,
            by_who: "root".into(),
        })])
        .await
        .unwrap();
        assert!(s.cert_roles("acme").await.unwrap().is_empty());
        assert_eq!(s.cert_roles("").await.unwrap().len(), 1);
    }

    fn token(accessor: &str, mac: Option<Vec<u8>>) -> TokenRow {
        TokenRow {
            accessor: accessor.into(),
            hash: accessor.as_bytes().to_vec(),
            namespace: String::new(),
            parent: Some("p".into()),
            policies: "[\"a\"]".into(),
            display_name: String::new(),
            created: 1,
            ttl: 60,
            expires: Some(61),
            max_expires: None,
            num_uses: 3,
            renewable: true,
            meta: "{}".into(),
            mac,
        }
    }

    #[tokio::test]
    async fn guarded_rows_update_only_from_the_mac_they_were_read_with() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let tenant = NamespaceRow {
            name: "acme".into(),
            id: "id".into(),
            created: 1,
            disabled: false,
            next_rotation: None,
            mac: Some(vec![1]),
        };
        s.apply(vec![
            Op::InsertToken(token("t", Some(vec![1]))),
            Op::InsertToken(token("old", None)),
            Op::InsertNamespace(tenant.clone()),
        ])
        .await
        .unwrap();
        let spend = |before: u8| UseMacs {
            before: Some(vec![before]),
            after: Some(vec![before + 1]),
        };
        assert_eq!(s.consume_token_use("t", Some(spend(9))).await.unwrap(), None, "changed");
        assert_eq!(s.consume_token_use("t", Some(spend(1))).await.unwrap(), Some(2));
        let spent = s.token_by_accessor("t").await.unwrap().unwrap();
        assert_eq!((spent.num_uses, spent.mac), (2, Some(vec![2])));
        assert_eq!(
            s.consume_token_use("t", None).await.unwrap(),
            Some(1),
            "a store without MACs"
        );

        let renewed = TokenRow {
            expires: Some(99),
            parent: None,
            mac: Some(vec![2]),
            ..token("t", None)
        };
        let update = |row: &TokenRow, expect: u8| Op::UpdateToken {
            row: row.clone(),
            expect_mac: Some(vec![expect]),
        };
        assert!(matches!(
            s.apply(vec![update(&renewed, 9)]).await,
            Err(StoreError::Changed("token"))
        ));
        s.apply(vec![update(&renewed, 2)]).await.unwrap();
        let got = s.token_by_accessor("t").await.unwrap().unwrap();
        assert_eq!((got.expires, got.parent, got.mac), (Some(99), None, Some(vec![2])));
        assert_eq!(got.num_uses, 3, "the whole row is written");
        assert!(matches!(
            s.apply(vec![update(&renewed, 1)]).await,
            Err(StoreError::Changed("token")),
        ));

        let disabled = NamespaceRow {
            disabled: true,
            mac: Some(vec![3]),
            ..tenant
        };
        let set = |expect: Option<Vec<u8>>| Op::UpdateNamespace {
            row: disabled.clone(),
            expect_mac: expect,
        };
        assert!(matches!(
            s.apply(vec![set(None)]).await,
            Err(StoreError::Changed("tenant"))
        ));
        s.apply(vec![set(Some(vec![1]))]).await.unwrap();
        assert!(s.namespace("acme").await.unwrap().unwrap().disabled);

        // Only rows without a MAC are listed, and filling one in never replaces a MAC.
        let old = s.rows_without_mac().await.unwrap();
        assert_eq!(old, [GuardedRow::Token(token("old", None))]);
        s.apply(vec![
            Op::SetRowMac(GuardedRow::Token(token("old", Some(vec![7])))),
            Op::SetRowMac(GuardedRow::Token(token("t", Some(vec![7])))),
        ])
        .await
        .unwrap();
        assert_eq!(s.token_by_accessor("old").await.unwrap().unwrap().mac, Some(vec![7]));
        assert_eq!(s.token_by_accessor("t").await.unwrap().unwrap().mac, Some(vec![2]));
        assert!(s.rows_without_mac().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deleting_a_mount_deletes_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).await.unwrap();
        let m = MountRow {
            namespace: String::new(),
            path: "transit/".into(),
            kind: "transit".into(),
            description: String::new(),
            accessor: "transit_1".into(),
            created: 0,
            mac: None,
        };
        s.apply(vec![
            Op::InsertMount(m.clone()),
            Op::InsertTransitKey(key_row("k")),
            Op::PutTransitVersion(version_row("k", 1)),
        ])
        .await
        .unwrap();
        assert!(matches!(
            s.apply(vec![Op::InsertMount(m)]).await,
            Err(StoreError::Conflict("mount"))
        ));
        s.apply(vec![Op::DeleteMount {
            namespace: String::new(),
            path: "transit/".into(),
        }])
        .await
        .unwrap();
        assert!(s.mounts().await.unwrap().is_empty());
        assert!(s.transit_key("", "transit", "k").await.unwrap().is_none());
        assert!(s.transit_versions("", "transit", "k").await.unwrap().is_empty());
    }
}
