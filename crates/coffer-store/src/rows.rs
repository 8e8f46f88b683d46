//! Row types shared by every backend. Byte fields hold wrapped keys or
//! hashes only.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeyRow {
    pub namespace: String,
    pub version: u32,
    pub created: i64,
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRow {
    pub namespace: String,
    /// With a trailing slash, as Vault lists mounts (`transit/`).
    pub path: String,
    pub kind: String,
    pub description: String,
    pub accessor: String,
    pub created: i64,
    /// MAC over the row, made and checked by the server; `None` only on rows
    /// from before it was kept.
    pub mac: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKeyRow {
    pub namespace: String,
    pub mount: String,
    pub name: String,
    /// `coffer_core::keyring::KeyConfig` as JSON.
    pub config: String,
    /// When the key is next due for automatic rotation (unix seconds).
    pub next_rotation: Option<i64>,
    /// MAC over the fields above, made and checked by the server; `None`
    /// only on rows from before it was kept.
    pub config_mac: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    pub name: String,
    /// Random id, new for every creation (a re-created tenant is another tenant).
    pub id: String,
    pub created: i64,
    pub disabled: bool,
    pub next_rotation: Option<i64>,
    /// MAC over the row, made and checked by the server; `None` only on rows
    /// from before it was kept.
    pub mac: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneRow {
    pub name: String,
    pub id: String,
    pub shredded: i64,
    pub by_who: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitVersionRow {
    pub namespace: String,
    pub mount: String,
    pub name: String,
    pub version: u32,
    /// The tenant key version that wrapped this row.
    pub kek_version: u32,
    pub wrapped: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub accessor: String,
    /// Keyed hash of the token id.
    pub hash: Vec<u8>,
    pub namespace: String,
    pub parent: Option<String>,
    /// JSON array of policy names.
    pub policies: String,
    pub display_name: String,
    pub created: i64,
    /// Seconds the token was created or last renewed with; 0 for none.
    pub ttl: i64,
    /// Unix seconds; `None` never expires.
    pub expires: Option<i64>,
    /// The latest renewal may reach, Unix seconds; `None` on rows made before it was kept.
    pub max_expires: Option<i64>,
    /// Uses left; 0 means unlimited.
    pub num_uses: i64,
    pub renewable: bool,
    /// JSON object of string metadata.
    pub meta: String,
    /// MAC over the row, made and checked by the server; `None` only on rows
    /// from before it was kept.
    pub mac: Option<Vec<u8>>,
}

/// An ACL policy (HCL or JSON body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub namespace: String,
    pub name: String,
    pub body: String,
    /// MAC over the row, made and checked by the server; `None` only on rows
    /// from before it was kept.
    pub mac: Option<Vec<u8>>,
}

/// A client-certificate role (`auth/cert/certs/:name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRoleRow {
    /// The tenant a matching certificate acts in; "" is the root tenant.
    pub tenant: String,
    pub name: String,
    /// PEM: the CA(s) a client certificate must chain to, or the pinned leaf.
    pub certificate: String,
    /// JSON array of glob patterns for the subject CN; empty = any.
    pub allowed_common_names: String,
    /// JSON array of glob patterns for DNS SANs; empty = any.
    pub allowed_dns_sans: String,
    /// JSON array of policy names.
    pub policies: String,
    /// Token TTL in seconds; 0 = the default.
    pub ttl: i64,
    pub display_name: String,
    pub created: i64,
    /// MAC over the row, made and checked by the server; `None` only on rows
    /// from before it was kept.
    pub mac: Option<Vec<u8>>,
}

/// A row whose integrity the server checks with a MAC (see [`crate::Op::SetRowMac`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardedRow {
    Token(TokenRow),
    Policy(PolicyRow),
    Mount(MountRow),
    Namespace(NamespaceRow),
    CertRole(CertRoleRow),
}
