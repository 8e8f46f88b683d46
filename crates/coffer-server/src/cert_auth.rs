//! The cert auth method (`auth/cert/*`, as Vault's): certificate roles map
//! a TLS client certificate to policies and a tenant.
//!
//! A client certificate reaches a handler only after the listener verified
//! it against `tls_client_ca_file` (and the client proved it holds the
//! key). A role then narrows who it accepts: the certificate must chain to
//! the role's CA (or be the role's pinned leaf) and its CN / DNS SANs must
//! match the role's globs. A matching client can `login` for a token, or
//! send requests with no token at all: such a request acts with the first
//! matching role's policies, by role name.

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use coffer_store::{CertRoleRow, Op, TokenRow};

use crate::core::{Core, Unsealed, hash_token, new_accessor, new_token_id, token_key_of};
use crate::error::{ApiError, ApiResult};
use crate::http::{Operation, Reply, Request};
use crate::limits::RateLimiter;
use crate::tokens::{Caller, DEFAULT_TTL, acl_for};

/// What the roles look at in a client certificate.
struct Presented<'a> {
    chain: &'a [CertificateDer<'static>],
    common_name: Option<String>,
    dns_sans: Vec<String>,
    serial: String,
    /// Within its validity now: checked per request, as a connection can outlive the certificate.
    in_date: bool,
}

impl<'a> Presented<'a> {
    fn parse(chain: &'a [CertificateDer<'static>]) -> ApiResult<Self> {
        let leaf = chain.first().ok_or_else(no_cert)?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|_| ApiError::bad("the client certificate cannot be parsed"))?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let dns_sans = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Presented {
            chain,
            common_name,
            dns_sans,
            serial: cert.raw_serial_as_string(),
            in_date: cert.validity().is_valid(),
        })
    }
}

fn no_cert() -> ApiError {
    ApiError::bad("invalid certificate or no client certificate supplied")
}

/// `*` matches any run of characters; everything else literally (ASCII case-insensitive).
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&s[si]) {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Whether a presented certificate satisfies a role.
fn role_matches(role: &CertRoleRow, who: &Presented<'_>) -> bool {
    let Ok(trusted) = crate::tls::parse_certs(role.certificate.as_bytes()) else {
        return false;
    };
    let Some(leaf) = who.chain.first() else {
        return false;
    };
    if !who.in_date {
        return false;
    }
    let pinned = trusted.iter().any(|t| t.as_ref() == leaf.as_ref());
    if !pinned && !chains_to(&trusted, who.chain) {
        return false;
    }
    let cns = json_list(&role.allowed_common_names);
    if !cns.is_empty()
        && !who
            .common_name
            .as_deref()
            .is_some_and(|cn| cns.iter().any(|p| glob(p, cn)))
    {
        return false;
    }
    let sans = json_list(&role.allowed_dns_sans);
    if !sans.is_empty() && !who.dns_sans.iter().any(|d| sans.iter().any(|p| glob(p, d))) {
        return false;
    }
    true
}

/// Whether the chain verifies up to one of the role's CA certificates.
fn chains_to(trusted: &[CertificateDer<'static>], chain: &[CertificateDer<'static>]) -> bool {
    let mut roots = RootCertStore::empty();
    for t in trusted {
        let is_ca = x509_parser::parse_x509_certificate(t).is_ok_and(|(_, c)| c.is_ca());
        if is_ca {
            let _ = roots.add(t.clone());
        }
    }
    if roots.is_empty() {
        return false;
    }
    let Ok(verifier) = WebPkiClientVerifier::builder_with_provider(roots.into(), crate::tls::provider()).build() else {
        return false;
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .is_ok()
}

/// The first role (by name) of the tenant that the certificate satisfies.
async fn matching_role(core: &Core, tenant: &str, who: &Presented<'_>, only: Option<&str>) -> ApiResult<CertRoleRow> {
    let roles = match only {
        Some(name) => core.store.cert_role(tenant, name).await?.into_iter().collect(),
        None => core.store.cert_roles(tenant).await?,
    };
    roles.into_iter().find(|r| role_matches(r, who)).ok_or_else(no_cert)
}

fn token_policies(role: &CertRoleRow) -> Vec<String> {
    let mut p = json_list(&role.policies);
    // Refused when a role is written; a row that still has it grants nothing more.
    p.retain(|x| x != "root");
    if !p.iter().any(|x| x == "default") {
        p.push("default".into());
    }
    p.sort();
    p.dedup();
    p
}

/// For a request with no token over mTLS: the identity of the first role
/// the client certificate satisfies, for this request only.
pub(crate) async fn caller(core: &Core, req: &Request) -> ApiResult<Caller> {
    let chain = req.peer.as_deref().ok_or(ApiError::PermissionDenied)?;
    let who = Presented::parse(chain)?;
    let role = matching_role(core, &req.namespace, &who, None)
        .await
        .map_err(|_| ApiError::PermissionDenied)?;
    let policies = token_policies(&role);
    let acl = acl_for(core, &role.tenant, &policies).await?;
    let token = TokenRow {
        // Per certificate, so the rate limit counts each service on its own.
        accessor: cert_key(&role.tenant, &role.name, &who.serial),
        hash: Vec::new(),
        namespace: role.tenant.clone(),
        parent: None,
        policies: json!(policies).to_string(),
        display_name: format!("cert-{}", role.display_name),
        created: core.now(),
        ttl: 0,
        expires: None,
        max_expires: None,
        num_uses: 0,
        renewable: false,
        meta: json!({ "cert_name": role.name, "common_name": who.common_name }).to_string(),
        mac: None,
    };
    Ok(Caller {
        token,
        policies,
        acl,
        token_id: Zeroizing::new(String::new()),
        cert_role: Some(role.name),
    })
}

/// The identity of a certificate under a role: the rate limit's bucket for
/// its token-less requests, its logins and the tokens those logins made.
fn cert_key(tenant: &str, role: &str, serial: &str) -> String {
    // The tenant too: another tenant's admin may name a role alike and pin a certificate with the same serial.
    format!("cert:{tenant}:{role}:{serial}")
}

/// The rate limit's bucket for a caller: its certificate's, for tokens from
/// `auth/cert/login` (so logging in again does not start a new bucket), else its token's.
pub(crate) fn rate_key(token: &TokenRow) -> std::borrow::Cow<'_, str> {
    // Only logins name tokens "cert-..."; `auth/token/create` names its own "token-...".
    let meta: serde_json::Map<String, Value> = serde_json::from_str(&token.meta).unwrap_or_default();
    match (meta.get("cert_name"), meta.get("serial_number")) {
        (Some(Value::String(role)), Some(Value::String(serial))) if token.display_name.starts_with("cert-") => {
            cert_key(&token.namespace, role, serial).into()
        }
        _ => token.accessor.as_str().into(),
    }
}

/// `auth/cert/login`: trades a matching client certificate for a token.
pub(crate) async fn login(core: &Core, u: &Unsealed, req: &Request, limiter: &RateLimiter) -> ApiResult<Reply> {
    if req.op != Operation::Write {
        return Err(ApiError::MethodNotAllowed);
    }
    let chain = req.peer.as_deref().ok_or_else(no_cert)?;
    let who = Presented::parse(chain)?;
    let only = req.params.str("name")?.filter(|n| !n.is_empty());
    let role = matching_role(core, &req.namespace, &who, only).await?;
    limiter
        .check(&cert_key(&role.tenant, &role.name, &who.serial))
        .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
    let policies = token_policies(&role);
    let ttl = if role.ttl > 0 {
        role.ttl.min(DEFAULT_TTL)
    } else {
        DEFAULT_TTL
    };
    let now = core.now();
    let id = new_token_id()?;
    let meta = json!({
        "cert_name": role.name,
        "common_name": who.common_name.clone().unwrap_or_default(),
        "serial_number": who.serial,
    });
    let row = TokenRow {
        accessor: new_accessor()?,
        hash: hash_token(token_key_of(u), &id),
        namespace: role.tenant.clone(),
        parent: None,
        policies: json!(policies).to_string(),
        display_name: format!("cert-{}", role.display_name),
        created: now,
        ttl,
        expires: Some(now + ttl),
        max_expires: Some(now + DEFAULT_TTL),
        num_uses: 0,
        renewable: true,
        meta: meta.to_string(),
        mac: None,
    };
    {
        let _w = core.write.lock().await;
        core.store.apply(vec![Op::InsertToken(row.clone())]).await?;
    }
    Ok(Reply::Auth(json!({
        "client_token": id.as_str(),
        "accessor": row.accessor,
        "policies": policies,
        "token_policies": policies,
        "identity_policies": null,
        "metadata": meta,
        "lease_duration": ttl,
        "renewable": true,
        "entity_id": "",
        "token_type": "service",
        "orphan": true,
        "mfa_requirement": null,
        "num_uses": 0,
    })))
}

fn valid_role_name(name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || name == "."
        || name == ".."
    {
        return Err(ApiError::bad(format!(
            "invalid role name {name:?}: use 1-128 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

fn role_data(r: &CertRoleRow) -> Value {
    let policies = json_list(&r.policies);
    json!({
        "certificate": r.certificate,
        "allowed_common_names": json_list(&r.allowed_common_names),
        "allowed_dns_sans": json_list(&r.allowed_dns_sans),
        "policies": policies,
        "token_policies": policies,
        "ttl": r.ttl,
        "token_ttl": r.ttl,
        "display_name": r.display_name,
        "tenant": r.tenant,
    })
}

/// `auth/cert/certs[/:name]`; `rest` follows `auth/cert/`.
pub(crate) async fn handle(core: &Core, rest: &str, req: Request) -> ApiResult<Reply> {
    let tenant = req.namespace.clone();
    let name = match rest.strip_prefix("certs") {
        Some("") => {
            if req.op != Operation::List {
                return Err(ApiError::MethodNotAllowed);
            }
            let names: Vec<String> = core
                .store
                .cert_roles(&tenant)
                .await?
                .into_iter()
                .map(|r| r.name)
                .collect();
            if names.is_empty() {
                return Err(ApiError::NotFound);
            }
            return Ok(Reply::Data(json!({ "keys": names })));
        }
        Some(n) => n.strip_prefix('/').ok_or(ApiError::UnsupportedPath)?,
        None => return Err(ApiError::UnsupportedPath),
    };
    valid_role_name(name)?;
    match req.op {
        Operation::Read => {
            let r = core.store.cert_role(&tenant, name).await?.ok_or(ApiError::NotFound)?;
            Ok(Reply::Data(role_data(&r)))
        }
        Operation::Delete => {
            let _w = core.write.lock().await;
            core.store
                .apply(vec![Op::DeleteCertRole {
                    tenant,
                    name: name.to_owned(),
                }])
                .await?;
            Ok(Reply::NoContent)
        }
        Operation::Write => write_role(core, &tenant, name, &req).await,
        Operation::List => Err(ApiError::MethodNotAllowed),
    }
}

async fn write_role(core: &Core, tenant: &str, name: &str, req: &Request) -> ApiResult<Reply> {
    let p = &req.params;
    let _w = core.write.lock().await;
    let existing = core.store.cert_role(tenant, name).await?;
    let certificate = match (p.str("certificate")?, &existing) {
        (Some(pem), _) => {
            let certs =
                crate::tls::parse_certs(pem.as_bytes()).map_err(|e| ApiError::bad(format!("certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ApiError::bad("certificate: no PEM certificate found"));
            }
            for c in &certs {
                x509_parser::parse_x509_certificate(c)
                    .map_err(|_| ApiError::bad("certificate: not a valid X.509 certificate"))?;
            }
            pem.to_owned()
        }
        (None, Some(e)) => e.certificate.clone(),
        (None, None) => return Err(ApiError::bad("missing certificate")),
    };
    let list = |k: &str, old: Option<&str>| -> ApiResult<String> {
        match p.str_list(k)? {
            Some(v) => {
                if v.iter().any(|s| s.len() > 255) {
                    return Err(ApiError::bad(format!(
                        "field {k:?}: entries are limited to 255 characters"
                    )));
                }
                Ok(json!(v).to_string())
            }
            None => Ok(old.unwrap_or("[]").to_owned()),
        }
    };
    let policies = match p.str_list("token_policies")? {
        Some(v) => Some(v),
        None => p.str_list("policies")?,
    };
    let policies = match policies {
        Some(v) => {
            if v.iter().any(|s| s.is_empty() || s.len() > 128) {
                return Err(ApiError::bad("invalid policy name"));
            }
            if v.iter().any(|s| s == "root") {
                return Err(ApiError::bad("auth methods cannot create root tokens"));
            }
            json!(v).to_string()
        }
        None => existing
            .as_ref()
            .map_or_else(|| "[]".to_owned(), |e| e.policies.clone()),
    };
    let ttl = match p.duration("token_ttl")?.or(p.duration("ttl")?) {
        Some(t) => i64::try_from(t).unwrap_or(i64::MAX).min(DEFAULT_TTL),
        None => existing.as_ref().map_or(0, |e| e.ttl),
    };
    let display_name = match p.str("display_name")? {
        Some(d) if !d.is_empty() => d.to_owned(),
        _ => existing
            .as_ref()
            .map_or_else(|| name.to_owned(), |e| e.display_name.clone()),
    };
    let row = CertRoleRow {
        tenant: tenant.to_owned(),
        name: name.to_owned(),
        certificate,
        allowed_common_names: list(
            "allowed_common_names",
            existing.as_ref().map(|e| e.allowed_common_names.as_str()),
        )?,
        allowed_dns_sans: list(
            "allowed_dns_sans",
            existing.as_ref().map(|e| e.allowed_dns_sans.as_str()),
        )?,
        policies,
        ttl,
        display_name,
        created: existing.as_ref().map_or(core.now(), |e| e.created),
        mac: None,
    };
    core.store.apply(vec![Op::PutCertRole(row)]).await?;
    Ok(Reply::NoContent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_certificate_out_of_date_matches_no_role() {
        for (not_after, matches) in [(2001, false), (2999, true)] {
            let mut params = rcgen::CertificateParams::new(vec!["svc.example".to_owned()]).unwrap();
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
            let cert = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
            let role = CertRoleRow {
                tenant: String::new(),
                name: "pinned".into(),
                certificate: cert.pem(),
                allowed_common_names: "[]".into(),
                allowed_dns_sans: "[]".into(),
                policies: "[]".into(),
                ttl: 0,
                display_name: String::new(),
                created: 0,
                mac: None,
            };
            let chain = [cert.der().clone()];
            let who = Presented::parse(&chain).unwrap();
            assert_eq!(role_matches(&role, &who), matches, "valid until {not_after}");
        }
    }

    #[test]
    fn globs() {
        for (p, s) in [
            ("*", "anything"),
            ("svc-*", "svc-billing"),
            ("*.internal", "db.internal"),
            ("a*b*c", "aXXbYYc"),
            ("Svc", "svc"),
            ("exact", "exact"),
        ] {
            assert!(glob(p, s), "{p} {s}");
        }
        for (p, s) in [
            ("svc-*", "other"),
            ("*.internal", "internal"),
            ("a*b", "ac"),
            ("x", "xx"),
            ("", "x"),
        ] {
            assert!(!glob(p, s), "{p} {s}");
        }
    }
}
