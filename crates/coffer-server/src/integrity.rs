//! The integrity of the rows that grant or route access: tokens, ACL
//! policies, mounts, tenants and certificate roles.
//!
//! Those rows are stored in the clear (nothing in them is secret), so
//! someone able to write the database could otherwise give a token the root
//! policy, widen a policy or enable a disabled tenant. Each row carries an
//! HMAC-SHA256 under a key derived from the root key, bound to the table and
//! the row's own key; [`Guarded`] wraps the store so that every read of such
//! a row is checked and every write MACs what it stores. It needs the key,
//! so it refuses those rows while sealed. Not caught: a whole older row put
//! back with its own MAC, or a row deleted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use coffer_store::{
    CertRoleRow, DuePlace, GuardedRow, MountRow, NamespaceRow, Op, PolicyRow, Reservation, Result, Store, StoreError,
    TenantKeyRow, TokenRow, TombstoneRow, TransitKeyRow, TransitVersionRow, UseMacs, VersionRef,
};

/// How often an update that found its row changed under it is made again.
const RETRIES: usize = 3;

/// The message a row's MAC is over: a domain, the table, then each field
/// (length-prefixed text, 8-byte big-endian integers, a flag byte before an
/// optional value).
struct Message(Vec<u8>);

impl Message {
    fn new(table: &str) -> Self {
        let mut m = Message(b"coffer/row/v1".to_vec());
        m.text(table);
        m
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&(b.len() as u64).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    fn text(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    fn int(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn flag(&mut self, b: bool) -> &mut Self {
        self.0.push(u8::from(b));
        self
    }

    fn opt_int(&mut self, v: Option<i64>) -> &mut Self {
        self.flag(v.is_some());
        match v {
            Some(v) => self.int(v),
            None => self,
        }
    }

    fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        self.flag(v.is_some());
        match v {
            Some(v) => self.text(v),
            None => self,
        }
    }
}

/// `Macd::mac` and `Macd::set_mac` for a row whose MAC is its `mac` field.
macro_rules! mac_field {
    () => {
        fn mac(&self) -> Option<&[u8]> {
            self.mac.as_deref()
        }
        fn set_mac(&mut self, mac: Vec<u8>) {
            self.mac = Some(mac);
        }
    };
}

/// A row type whose integrity is checked.
trait Macd {
    fn message(&self) -> Vec<u8>;
    fn mac(&self) -> Option<&[u8]>;
    fn set_mac(&mut self, mac: Vec<u8>);
    /// Names the row in errors and logs.
    fn describe(&self) -> String;
}

// Each message destructures its row, so a column added to a row type does
// not compile until it is placed under the MAC (or named as left out).
impl Macd for TokenRow {
    fn message(&self) -> Vec<u8> {
        let TokenRow {
            accessor,
            hash,
            namespace,
            parent,
            policies,
            display_name,
            created,
            ttl,
            expires,
            max_expires,
            num_uses,
            renewable,
            meta,
            mac: _,
        } = self;
        let mut m = Message::new("tokens");
        m.text(accessor)
            .bytes(hash)
            .text(namespace)
            .opt_text(parent.as_deref())
            .text(policies)
            .text(display_name)
            .int(*created)
            .int(*ttl)
            .opt_int(*expires)
            .opt_int(*max_expires)
            .int(*num_uses)
            .flag(*renewable)
            .text(meta);
        m.0
    }
    mac_field!();
    fn describe(&self) -> String {
        format!("token (accessor {})", self.accessor)
    }
}

impl Macd for PolicyRow {
    fn message(&self) -> Vec<u8> {
        let PolicyRow {
            namespace,
            name,
            body,
            mac: _,
        } = self;
        let mut m = Message::new("policies");
        m.text(namespace).text(name).text(body);
        m.0
    }
    mac_field!();
    fn describe(&self) -> String {
        format!("policy {:?} of tenant {:?}", self.name, self.namespace)
    }
}

impl Macd for MountRow {
    fn message(&self) -> Vec<u8> {
        let MountRow {
            namespace,
            path,
            kind,
            description,
            accessor,
            created,
            mac: _,
        } = self;
        let mut m = Message::new("mounts");
        m.text(namespace)
            .text(path)
            .text(kind)
            .text(description)
            .text(accessor)
            .int(*created);
        m.0
    }
    mac_field!();
    fn describe(&self) -> String {
        format!("mount {:?} of tenant {:?}", self.path, self.namespace)
    }
}

impl Macd for NamespaceRow {
    fn message(&self) -> Vec<u8> {
        let NamespaceRow {
            name,
            id,
            created,
            disabled,
            next_rotation,
            mac: _,
        } = self;
        let mut m = Message::new("namespaces");
        m.text(name)
            .text(id)
            .int(*created)
            .flag(*disabled)
            .opt_int(*next_rotation);
        m.0
    }
    mac_field!();
    fn describe(&self) -> String {
        format!("tenant {:?}", self.name)
    }
}

impl Macd for CertRoleRow {
    fn message(&self) -> Vec<u8> {
        let CertRoleRow {
            tenant,
            name,
            certificate,
            allowed_common_names,
            allowed_dns_sans,
            policies,
            ttl,
            display_name,
            created,
            mac: _,
        } = self;
        let mut m = Message::new("cert_roles");
        m.text(tenant)
            .text(name)
            .text(certificate)
            .text(allowed_common_names)
            .text(allowed_dns_sans)
            .text(policies)
            .int(*ttl)
            .text(display_name)
            .int(*created);
        m.0
    }
    mac_field!();
    fn describe(&self) -> String {
        format!("certificate role {:?} of tenant {:?}", self.name, self.tenant)
    }
}

fn sign<R: Macd>(key: &hmac::Key, mut row: R) -> R {
    row.set_mac(hmac::sign(key, &row.message()).as_ref().to_vec());
    row
}

fn intact<R: Macd>(key: &hmac::Key, row: &R) -> bool {
    row.mac()
        .is_some_and(|mac| hmac::verify(key, &row.message(), mac).is_ok())
}

fn check<R: Macd>(key: &hmac::Key, row: R) -> Result<R> {
    if intact(key, &row) {
        Ok(row)
    } else {
        tracing::error!(row = %row.describe(), "a stored row fails its MAC: storage was altered; refusing it");
        Err(StoreError::Altered(row.describe()))
    }
}

fn check_opt<R: Macd>(key: &hmac::Key, row: Option<R>) -> Result<Option<R>> {
    row.map(|r| check(key, r)).transpose()
}

/// A list without its altered rows (each one logged): one bad row does not
/// take the others down with it.
fn keep_intact<R: Macd>(key: &hmac::Key, rows: Vec<R>) -> Vec<R> {
    rows.into_iter()
        .filter(|r| {
            let ok = intact(key, r);
            if !ok {
                tracing::error!(row = %r.describe(), "a stored row fails its MAC: storage was altered; leaving it out");
            }
            ok
        })
        .collect()
}

/// Gives a row from before MACs its MAC.
pub(crate) fn sign_old(key: &hmac::Key, row: GuardedRow) -> GuardedRow {
    match row {
        GuardedRow::Token(r) => GuardedRow::Token(sign(key, r)),
        GuardedRow::Policy(r) => GuardedRow::Policy(sign(key, r)),
        GuardedRow::Mount(r) => GuardedRow::Mount(sign(key, r)),
        GuardedRow::Namespace(r) => GuardedRow::Namespace(sign(key, r)),
        GuardedRow::CertRole(r) => GuardedRow::CertRole(sign(key, r)),
    }
}

fn touches_guarded(op: &Op) -> bool {
    matches!(
        op,
        Op::InsertMount(_)
            | Op::InsertToken(_)
            | Op::SetTokenExpiry { .. }
            | Op::UpdateToken { .. }
            | Op::OrphanChildren { .. }
            | Op::InsertNamespace(_)
            | Op::SetNamespaceDisabled { .. }
            | Op::SetNamespaceRotation { .. }
            | Op::UpdateNamespace { .. }
            | Op::PutPolicy(_)
            | Op::PutCertRole(_)
    )
}

/// The store, with the rows above checked on every read and MACed on every write.
pub(crate) struct Guarded {
    inner: Arc<dyn Store>,
    key: RwLock<Option<Arc<hmac::Key>>>,
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Guarded {
            inner,
            key: RwLock::new(None),
        }
    }

    /// The key while unsealed; `None` on seal.
    pub(crate) fn set_key(&self, key: Option<hmac::Key>) {
        *crate::core::write(&self.key) = key.map(Arc::new);
    }

    fn key(&self) -> Result<Arc<hmac::Key>> {
        crate::core::read(&self.key).clone().ok_or(StoreError::Sealed)
    }

    /// The backend itself, for what must see rows as stored (filling in old MACs).
    pub(crate) fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// Applies `ops` with the rows they write MACed under `key` (also before
    /// the key is installed, as `sys/init` needs). An update whose row changed
    /// since it was read is made again from the new row.
    pub(crate) async fn apply_with(&self, key: &hmac::Key, ops: Vec<Op>) -> Result<()> {
        let mut tries = 0;
        loop {
            let sealed = self.seal_ops(key, ops.clone()).await?;
            match self.inner.apply(sealed).await {
                Err(StoreError::Changed(_)) if tries < RETRIES => tries += 1,
                done => return done,
            }
        }
    }

    /// Makes each op write MACed rows. An op that changes some fields of a
    /// row changes the row an earlier op of the list writes, or else reads
    /// the stored row, checks it, and writes it whole if unchanged meanwhile.
    async fn seal_ops(&self, key: &hmac::Key, ops: Vec<Op>) -> Result<Vec<Op>> {
        let mut out = Batch {
            ops: Vec::with_capacity(ops.len()),
            tokens: HashMap::new(),
            tenants: HashMap::new(),
            shredded: Vec::new(),
        };
        for op in ops {
            match op {
                Op::InsertMount(r) => out.ops.push(Op::InsertMount(sign(key, r))),
                Op::PutPolicy(r) => out.ops.push(Op::PutPolicy(sign(key, r))),
                Op::PutCertRole(r) => out.ops.push(Op::PutCertRole(sign(key, r))),
                Op::InsertToken(r) => out.token(r.accessor.clone(), Op::InsertToken(sign(key, r))),
                Op::UpdateToken { row, expect_mac } => out.token(
                    row.accessor.clone(),
                    Op::UpdateToken {
                        row: sign(key, row),
                        expect_mac,
                    },
                ),
                Op::InsertNamespace(r) => out.tenant(r.name.clone(), Op::InsertNamespace(sign(key, r))),
                Op::UpdateNamespace { row, expect_mac } => out.tenant(
                    row.name.clone(),
                    Op::UpdateNamespace {
                        row: sign(key, row),
                        expect_mac,
                    },
                ),
                Op::SetTokenExpiry { accessor, ttl, expires } => {
                    self.change_token(key, &mut out, &accessor, |t| {
                        t.ttl = ttl;
                        t.expires = expires;
                    })
                    .await?;
                }
                Op::OrphanChildren { parent } => {
                    // Children written earlier in the list, then stored ones (an
                    // altered child is left as it is: it stays refused).
                    for op in &mut out.ops {
                        if let Op::InsertToken(row) | Op::UpdateToken { row, .. } = op
                            && row.parent.as_deref() == Some(parent.as_str())
                        {
                            row.parent = None;
                            *row = sign(key, row.clone());
                        }
                    }
                    for child in keep_intact(key, self.inner.token_children(&parent).await?) {
                        if !out.tokens.contains_key(&child.accessor) {
                            self.change_token(key, &mut out, &child.accessor, |t| t.parent = None)
                                .await?;
                        }
                    }
                }
                Op::SetNamespaceDisabled { name, disabled } => {
                    self.change_tenant(key, &mut out, &name, |n| n.disabled = disabled)
                        .await?;
                }
                Op::SetNamespaceRotation { name, next_rotation } => {
                    self.change_tenant(key, &mut out, &name, |n| n.next_rotation = next_rotation)
                        .await?;
                }
                Op::DeleteToken { accessor } => {
                    out.tokens.insert(accessor.clone(), None);
                    out.ops.push(Op::DeleteToken { accessor });
                }
                Op::ShredNamespace(t) => {
                    out.tenants.insert(t.name.clone(), None);
                    out.shredded.push(t.name.clone());
                    out.ops.push(Op::ShredNamespace(t));
                }
                other => out.ops.push(other),
            }
        }
        Ok(out.ops)
    }

    async fn change_token(
        &self,
        key: &hmac::Key,
        out: &mut Batch,
        accessor: &str,
        change: impl FnOnce(&mut TokenRow),
    ) -> Result<()> {
        match out.tokens.get(accessor) {
            Some(Some(i)) => {
                if let Op::InsertToken(row) | Op::UpdateToken { row, .. } = &mut out.ops[*i] {
                    change(row);
                    *row = sign(key, row.clone());
                }
                return Ok(());
            }
            Some(None) => return Ok(()), // deleted earlier in the list
            None => {}
        }
        // A row that is not stored (or whose tenant the list shreds) is not
        // changed, as by the backend's own update.
        let stored = self.inner.token_by_accessor(accessor).await?;
        let stored = stored.filter(|t| !out.shredded.contains(&t.namespace));
        if let Some(old) = check_opt(key, stored)? {
            let mut row = old.clone();
            change(&mut row);
            out.token(
                accessor.to_owned(),
                Op::UpdateToken {
                    row: sign(key, row),
                    expect_mac: old.mac,
                },
            );
        }
        Ok(())
    }

    async fn change_tenant(
        &self,
        key: &hmac::Key,
        out: &mut Batch,
        name: &str,
        change: impl FnOnce(&mut NamespaceRow),
    ) -> Result<()> {
        match out.tenants.get(name) {
            Some(Some(i)) => {
                if let Op::InsertNamespace(row) | Op::UpdateNamespace { row, .. } = &mut out.ops[*i] {
                    change(row);
                    *row = sign(key, row.clone());
                }
                return Ok(());
            }
            Some(None) => return Ok(()), // shredded earlier in the list
            None => {}
        }
        if let Some(old) = check_opt(key, self.inner.namespace(name).await?)? {
            let mut row = old.clone();
            change(&mut row);
            out.tenant(
                name.to_owned(),
                Op::UpdateNamespace {
                    row: sign(key, row),
                    expect_mac: old.mac,
                },
            );
        }
        Ok(())
    }
}

/// Ops being sealed, with the op among them that writes each token and
/// tenant row (None: one deletes it).
struct Batch {
    ops: Vec<Op>,
    tokens: HashMap<String, Option<usize>>,
    tenants: HashMap<String, Option<usize>>,
    /// Tenants the list shreds so far: their stored tokens are gone.
    shredded: Vec<String>,
}

impl Batch {
    fn token(&mut self, accessor: String, op: Op) {
        self.tokens.insert(accessor, Some(self.ops.len()));
        self.ops.push(op);
    }

    fn tenant(&mut self, name: String, op: Op) {
        self.tenants.insert(name, Some(self.ops.len()));
        self.ops.push(op);
    }
}

#[async_trait]
impl Store for Guarded {
    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.meta(key).await
    }
    async fn tenant_keys(&self, namespace: &str) -> Result<Vec<TenantKeyRow>> {
        self.inner.tenant_keys(namespace).await
    }
    async fn mounts(&self) -> Result<Vec<MountRow>> {
        let key = self.key()?;
        Ok(keep_intact(&key, self.inner.mounts().await?))
    }
    async fn transit_key(&self, namespace: &str, mount: &str, name: &str) -> Result<Option<TransitKeyRow>> {
        self.inner.transit_key(namespace, mount, name).await
    }
    async fn transit_versions(&self, namespace: &str, mount: &str, name: &str) -> Result<Vec<TransitVersionRow>> {
        self.inner.transit_versions(namespace, mount, name).await
    }
    async fn reserve_encryptions(&self, asks: &[Reservation<'_>]) -> Result<Vec<u64>> {
        self.inner.reserve_encryptions(asks).await
    }
    async fn encryptions(&self, version: &VersionRef<'_>) -> Result<Option<u64>> {
        self.inner.encryptions(version).await
    }
    async fn transit_key_names(&self, namespace: &str, mount: &str) -> Result<Vec<String>> {
        self.inner.transit_key_names(namespace, mount).await
    }
    async fn token_by_hash(&self, hash: &[u8]) -> Result<Option<TokenRow>> {
        let key = self.key()?;
        check_opt(&key, self.inner.token_by_hash(hash).await?)
    }
    async fn token_by_accessor(&self, accessor: &str) -> Result<Option<TokenRow>> {
        let key = self.key()?;
        check_opt(&key, self.inner.token_by_accessor(accessor).await?)
    }
    /// Unchecked: revocation deletes every child, altered or not, and uses
    /// nothing else of them.
    async fn token_children(&self, parent_accessor: &str) -> Result<Vec<TokenRow>> {
        self.inner.token_children(parent_accessor).await
    }
    async fn tokens_expired(&self, now: i64, limit: u32) -> Result<Vec<String>> {
        self.inner.tokens_expired(now, limit).await
    }
    /// The row is read and checked, and the use spent only if it is still
    /// that row, with the MAC of its new count (the last use deletes it). A
    /// miss means another use or a renewal came first: read again.
    async fn consume_token_use(&self, accessor: &str, _: Option<UseMacs>) -> Result<Option<i64>> {
        let key = self.key()?;
        loop {
            let Some(old) = check_opt(&key, self.inner.token_by_accessor(accessor).await?)? else {
                return Ok(None);
            };
            if old.num_uses <= 0 {
                return Ok(None);
            }
            let after = (old.num_uses > 1).then(|| {
                let row = TokenRow {
                    num_uses: old.num_uses - 1,
                    ..old.clone()
                };
                sign(&key, row).mac.unwrap_or_default()
            });
            let macs = UseMacs { before: old.mac, after };
            if let Some(left) = self.inner.consume_token_use(accessor, Some(macs)).await? {
                return Ok(Some(left));
            }
        }
    }

    async fn policy(&self, namespace: &str, name: &str) -> Result<Option<PolicyRow>> {
        let key = self.key()?;
        check_opt(&key, self.inner.policy(namespace, name).await?)
    }
    async fn policy_names(&self, namespace: &str) -> Result<Vec<String>> {
        self.inner.policy_names(namespace).await
    }
    async fn cert_role(&self, tenant: &str, name: &str) -> Result<Option<CertRoleRow>> {
        let key = self.key()?;
        check_opt(&key, self.inner.cert_role(tenant, name).await?)
    }
    async fn cert_roles(&self, tenant: &str) -> Result<Vec<CertRoleRow>> {
        let key = self.key()?;
        Ok(keep_intact(&key, self.inner.cert_roles(tenant).await?))
    }
    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRow>> {
        let key = self.key()?;
        check_opt(&key, self.inner.namespace(name).await?)
    }
    async fn namespaces(&self) -> Result<Vec<NamespaceRow>> {
        let key = self.key()?;
        Ok(keep_intact(&key, self.inner.namespaces().await?))
    }
    async fn tombstones(&self) -> Result<Vec<TombstoneRow>> {
        self.inner.tombstones().await
    }
    async fn is_tombstoned(&self, id: &str) -> Result<bool> {
        self.inner.is_tombstoned(id).await
    }
    async fn transit_keys_due(&self, now: i64, after: &DuePlace, limit: u32) -> Result<Vec<TransitKeyRow>> {
        self.inner.transit_keys_due(now, after, limit).await
    }
    async fn transit_keys_due_in(&self, namespace: &str, mount: &str, now: i64) -> Result<Vec<String>> {
        self.inner.transit_keys_due_in(namespace, mount, now).await
    }
    /// Unchecked: the walk pages by the rows it is given; rotating a tenant
    /// reads and checks its row again.
    async fn namespaces_due(&self, now: i64, after: &DuePlace, limit: u32) -> Result<Vec<NamespaceRow>> {
        self.inner.namespaces_due(now, after, limit).await
    }
    async fn transit_keys_of(&self, namespace: &str) -> Result<Vec<TransitKeyRow>> {
        self.inner.transit_keys_of(namespace).await
    }
    async fn transit_keys_without_mac(&self) -> Result<Vec<TransitKeyRow>> {
        self.inner.transit_keys_without_mac().await
    }
    async fn rows_without_mac(&self) -> Result<Vec<GuardedRow>> {
        self.inner.rows_without_mac().await
    }
    async fn apply(&self, ops: Vec<Op>) -> Result<()> {
        if !ops.iter().any(touches_guarded) {
            return self.inner.apply(ops).await;
        }
        let key = self.key()?;
        self.apply_with(&key, ops).await
    }
    async fn scrub(&self, wait: std::time::Duration) -> Result<bool> {
        self.inner.scrub(wait).await
    }
}

#[cfg(test)]
mod tests {
    use coffer_store::sqlite::SqliteStore;

    use super::*;

    /// A guard, not yet keyed, over a real SQLite store, and that store unguarded.
    async fn over_sqlite(dir: &std::path::Path) -> (Arc<dyn Store>, Guarded) {
        let raw: Arc<dyn Store> = Arc::new(SqliteStore::open(dir).await.unwrap());
        (raw.clone(), Guarded::new(raw))
    }

    fn key(b: u8) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &[b; 32])
    }

    fn token(accessor: &str, parent: Option<&str>) -> TokenRow {
        TokenRow {
            accessor: accessor.into(),
            hash: accessor.as_bytes().to_vec(),
            namespace: String::new(),
            parent: parent.map(Into::into),
            policies: "[\"reader\"]".into(),
            display_name: "token".into(),
            created: 1,
            ttl: 60,
            expires: Some(61),
            max_expires: Some(100),
            num_uses: 0,
            renewable: true,
            meta: "{}".into(),
            mac: None,
        }
    }

    fn tenant(name: &str) -> NamespaceRow {
        NamespaceRow {
            name: name.into(),
            id: "id".into(),
            created: 1,
            disabled: false,
            next_rotation: Some(5),
            mac: None,
        }
    }

    /// Signs `row`, then checks that each edit in `edits` breaks the MAC.
    fn each_field_is_bound<R: Macd + Clone>(row: R, edits: &[fn(&mut R)]) {
        let k = key(1);
        let signed = sign(&k, row);
        assert!(intact(&k, &signed));
        assert!(!intact(&key(2), &signed), "another root key");
        for (i, edit) in edits.iter().enumerate() {
            let mut r = signed.clone();
            edit(&mut r);
            assert!(!intact(&k, &r), "edit {i} of {} went unseen", r.describe());
        }
    }

    #[test]
    fn every_field_that_grants_access_is_under_the_mac() {
        each_field_is_bound(
            token("a", Some("p")),
            &[
                |r| r.accessor.push('x'),
                |r| r.hash.push(0),
                |r| r.namespace = "acme".into(),
                |r| r.parent = None,
                |r| r.policies = "[\"root\"]".into(),
                |r| r.display_name.push('x'),
                |r| r.created += 1,
                |r| r.ttl += 1,
                |r| r.expires = None,
                |r| r.max_expires = Some(101),
                |r| r.num_uses = 1,
                |r| r.renewable = false,
                |r| r.meta = "{\"a\":\"b\"}".into(),
                |r| r.mac = None,
            ],
        );
        each_field_is_bound(
            PolicyRow {
                namespace: String::new(),
                name: "reader".into(),
                body: "path".into(),
                mac: None,
            },
            &[
                |r| r.namespace = "acme".into(),
                |r| r.name = "writer".into(),
                |r| r.body.push('x'),
            ],
        );
        each_field_is_bound(
            MountRow {
                namespace: String::new(),
                path: "transit/".into(),
                kind: "transit".into(),
                description: String::new(),
                accessor: "transit_1".into(),
                created: 1,
                mac: None,
            },
            &[
                |r| r.namespace = "acme".into(),
                |r| r.path = "other/".into(),
                |r| r.kind = "kv".into(),
                |r| r.description.push('x'),
                |r| r.accessor.push('x'),
                |r| r.created += 1,
            ],
        );
        each_field_is_bound(
            tenant("acme"),
            &[
                |r| r.name = "globex".into(),
                |r| r.id = "other".into(),
                |r| r.created += 1,
                |r| r.disabled = true,
                |r| r.next_rotation = None,
            ],
        );
        each_field_is_bound(
            CertRoleRow {
                tenant: String::new(),
                name: "web".into(),
                certificate: "PEM".into(),
                allowed_common_names: "[]".into(),
                allowed_dns_sans: "[]".into(),
                policies: "[]".into(),
                ttl: 0,
                display_name: String::new(),
                created: 1,
                mac: None,
            },
            &[
                |r| r.tenant = "acme".into(),
                |r| r.name = "api".into(),
                |r| r.certificate.push('x'),
                |r| r.allowed_common_names = "[\"*\"]".into(),
                |r| r.allowed_dns_sans = "[\"*\"]".into(),
                |r| r.policies = "[\"root\"]".into(),
                |r| r.ttl = 1,
                |r| r.display_name.push('x'),
                |r| r.created += 1,
            ],
        );
    }

    #[tokio::test]
    async fn a_use_is_spent_with_the_mac_of_the_new_count() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, g) = over_sqlite(dir.path()).await;
        g.set_key(Some(key(1)));
        let limited = |a: &str| TokenRow {
            num_uses: 2,
            ..token(a, None)
        };
        g.apply(vec![Op::InsertToken(limited("a"))]).await.unwrap();
        assert_eq!(g.consume_token_use("a", None).await.unwrap(), Some(1));
        assert_eq!(
            g.token_by_accessor("a").await.unwrap().unwrap().num_uses,
            1,
            "still intact"
        );
        assert_eq!(g.consume_token_use("a", None).await.unwrap(), Some(0));
        assert!(
            g.token_by_accessor("a").await.unwrap().is_none(),
            "the last use deletes it"
        );
        assert_eq!(g.consume_token_use("a", None).await.unwrap(), None);
        // A count edited behind the server's back: more uses, or none left to count.
        for edited in [5, -1] {
            g.apply(vec![Op::InsertToken(limited("b"))]).await.unwrap();
            let mut row = raw.token_by_accessor("b").await.unwrap().unwrap();
            row.num_uses = edited;
            raw.apply(vec![Op::DeleteToken { accessor: "b".into() }, Op::InsertToken(row)])
                .await
                .unwrap();
            assert!(matches!(g.token_by_accessor("b").await, Err(StoreError::Altered(_))));
            assert!(matches!(
                g.consume_token_use("b", None).await,
                Err(StoreError::Altered(_))
            ));
            raw.apply(vec![Op::DeleteToken { accessor: "b".into() }]).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uses_spend_each_use_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(Guarded::new(Arc::new(SqliteStore::open(dir.path()).await.unwrap())));
        g.set_key(Some(key(1)));
        for (uses, callers) in [(8, 8), (8, 12)] {
            let row = TokenRow {
                num_uses: uses,
                ..token("c", None)
            };
            g.apply(vec![Op::InsertToken(row)]).await.unwrap();
            let tries: Vec<_> = (0..callers)
                .map(|_| {
                    let g = g.clone();
                    tokio::spawn(async move { g.consume_token_use("c", None).await.unwrap() })
                })
                .collect();
            let mut left = Vec::new();
            for t in tries {
                left.extend(t.await.unwrap());
            }
            left.sort_unstable();
            assert_eq!(left, (0..uses).collect::<Vec<_>>(), "{callers} callers of {uses} uses");
            assert!(g.token_by_accessor("c").await.unwrap().is_none());
        }
    }

    /// Known answers computed apart from this code (Python's hmac and
    /// hashlib, HKDF by RFC 5869) from the layout in docs/formats.md.
    #[test]
    fn row_macs_match_the_documented_format() {
        let root = coffer_core::Key256::from_bytes([7; 32]);
        let k = crate::core::derive_row_key(&root);
        let policy = sign(
            &k,
            PolicyRow {
                namespace: "acme".into(),
                name: "reader".into(),
                body: r#"path "transit/decrypt/*" { capabilities = ["update"] }"#.into(),
                mac: None,
            },
        );
        assert_eq!(
            hex::encode(policy.mac.unwrap()),
            "a390e619eabe4bfaa450eabeff0a1b50da6ac1219f9d1baad46ea7a86ad16e5c"
        );
        let tenant = sign(
            &k,
            NamespaceRow {
                name: "acme".into(),
                id: "id-1".into(),
                created: 1_700_000_000,
                disabled: true,
                next_rotation: None,
                mac: None,
            },
        );
        assert_eq!(
            hex::encode(tenant.mac.unwrap()),
            "dc53b89b4d64e940a26e85294c847bc8de239a9397ba18b044c6469833a56bcf"
        );
    }

    #[tokio::test]
    async fn an_altered_cert_role_is_refused_and_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, g) = over_sqlite(dir.path()).await;
        g.set_key(Some(key(1)));
        let role = |name: &str| CertRoleRow {
            tenant: String::new(),
            name: name.into(),
            certificate: "PEM".into(),
            allowed_common_names: "[\"web\"]".into(),
            allowed_dns_sans: "[]".into(),
            policies: "[\"reader\"]".into(),
            ttl: 0,
            display_name: String::new(),
            created: 1,
            mac: None,
        };
        g.apply(vec![Op::PutCertRole(role("api")), Op::PutCertRole(role("web"))])
            .await
            .unwrap();
        assert_eq!(g.cert_roles("").await.unwrap().len(), 2);
        let mut edited = raw.cert_role("", "web").await.unwrap().unwrap();
        edited.allowed_common_names = "[\"*\"]".into();
        raw.apply(vec![Op::PutCertRole(edited)]).await.unwrap();
        assert!(matches!(g.cert_role("", "web").await, Err(StoreError::Altered(_))));
        let left: Vec<_> = g.cert_roles("").await.unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(left, ["api"]);
        assert!(g.cert_role("", "api").await.unwrap().is_some());
    }

    #[test]
    fn a_row_of_one_table_does_not_pass_for_another() {
        // Same field values, different table: the domain differs.
        let p = PolicyRow {
            namespace: "a".into(),
            name: "b".into(),
            body: "c".into(),
            mac: None,
        };
        let mut m = Message::new("mounts");
        m.text("a").text("b").text("c");
        assert_ne!(p.message(), m.0);
        // Length prefixes keep field boundaries: ("ab", "c") is not ("a", "bc").
        let q = PolicyRow {
            namespace: "ab".into(),
            name: String::new(),
            body: "c".into(),
            mac: None,
        };
        let r = PolicyRow {
            namespace: "a".into(),
            name: "b".into(),
            body: "c".into(),
            mac: None,
        };
        assert_ne!(q.message(), r.message());
    }

    #[tokio::test]
    async fn writes_are_maced_partial_updates_keep_rows_intact_and_altered_rows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, g) = over_sqlite(dir.path()).await;
        let insert = || {
            vec![
                Op::InsertToken(token("parent", None)),
                Op::InsertToken(token("child", Some("parent"))),
                Op::InsertToken(token("forged", Some("parent"))),
                Op::InsertNamespace(tenant("acme")),
            ]
        };
        assert!(matches!(g.apply(insert()).await, Err(StoreError::Sealed)));
        assert!(matches!(g.token_by_accessor("parent").await, Err(StoreError::Sealed)));
        g.set_key(Some(key(1)));
        g.apply(insert()).await.unwrap();
        assert!(g.token_by_accessor("child").await.unwrap().unwrap().mac.is_some());

        // An edit behind the server's back: refused on read, left out of lists.
        raw.apply(vec![Op::SetTokenExpiry {
            accessor: "forged".into(),
            ttl: 0,
            expires: None,
        }])
        .await
        .unwrap();
        assert!(matches!(
            g.token_by_accessor("forged").await,
            Err(StoreError::Altered(_))
        ));
        let mut children: Vec<_> = g.token_children("parent").await.unwrap();
        children.sort_by(|a, b| a.accessor.cmp(&b.accessor));
        let names: Vec<_> = children.iter().map(|c| c.accessor.as_str()).collect();
        assert_eq!(names, ["child", "forged"], "revocation reaches an altered child too");
        assert!(matches!(
            g.apply(vec![Op::SetTokenExpiry {
                accessor: "forged".into(),
                ttl: 5,
                expires: Some(6),
            }])
            .await,
            Err(StoreError::Altered(_))
        ));

        // Partial updates through the guard leave rows that pass.
        g.apply(vec![
            Op::SetTokenExpiry {
                accessor: "parent".into(),
                ttl: 120,
                expires: Some(121),
            },
            Op::OrphanChildren {
                parent: "parent".into(),
            },
            Op::SetNamespaceDisabled {
                name: "acme".into(),
                disabled: true,
            },
            Op::SetNamespaceRotation {
                name: "acme".into(),
                next_rotation: None,
            },
        ])
        .await
        .unwrap();
        assert_eq!(g.token_by_accessor("parent").await.unwrap().unwrap().expires, Some(121));
        assert_eq!(g.token_by_accessor("child").await.unwrap().unwrap().parent, None);
        let acme = g.namespace("acme").await.unwrap().unwrap();
        assert!(acme.disabled && acme.next_rotation.is_none());
        // The altered child was not given a fresh MAC by the orphaning.
        assert!(matches!(
            g.token_by_accessor("forged").await,
            Err(StoreError::Altered(_))
        ));
        assert_eq!(
            raw.token_by_accessor("forged")
                .await
                .unwrap()
                .unwrap()
                .parent
                .as_deref(),
            Some("parent")
        );

        // A change to a row written or deleted earlier in the same list.
        g.apply(vec![
            Op::InsertToken(token("late", None)),
            Op::SetTokenExpiry {
                accessor: "late".into(),
                ttl: 7,
                expires: Some(8),
            },
            Op::DeleteToken {
                accessor: "parent".into(),
            },
            Op::SetTokenExpiry {
                accessor: "parent".into(),
                ttl: 7,
                expires: Some(8),
            },
        ])
        .await
        .unwrap();
        assert_eq!(g.token_by_accessor("late").await.unwrap().unwrap().expires, Some(8));
        assert!(g.token_by_accessor("parent").await.unwrap().is_none());

        // Orphaning reaches a child written earlier in the list; a token of a
        // tenant the list shreds is not updated after the shred.
        let acme_token = TokenRow {
            namespace: "acme".into(),
            ..token("acme-t", None)
        };
        g.apply(vec![Op::InsertToken(acme_token)]).await.unwrap();
        g.apply(vec![
            Op::InsertToken(token("p2", None)),
            Op::InsertToken(token("c2", Some("p2"))),
            Op::OrphanChildren { parent: "p2".into() },
            Op::ShredNamespace(TombstoneRow {
                name: "acme".into(),
                id: "id".into(),
                shredded: 9,
                by_who: "test".into(),
            }),
            Op::SetTokenExpiry {
                accessor: "acme-t".into(),
                ttl: 1,
                expires: Some(2),
            },
        ])
        .await
        .unwrap();
        assert_eq!(g.token_by_accessor("c2").await.unwrap().unwrap().parent, None);
        assert!(g.token_by_accessor("acme-t").await.unwrap().is_none());

        g.set_key(None);
        assert!(matches!(g.namespace("acme").await, Err(StoreError::Sealed)));
    }
}
