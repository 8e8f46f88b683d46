//! A Rust client for Coffer's HTTP API (Vault-compatible paths).
//!
//! [`Client::request`] reaches any endpoint; typed helpers cover the common
//! transit calls. Errors keep the server's status and messages. This crate
//! does no cryptography of its own yet; envelope mode comes later.
//!
//! Server certificates are always verified: against the system's roots, or
//! only against the CA given in [`TlsOptions`]. A client certificate in
//! [`TlsOptions`] is presented for mTLS.
#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error status.
    #[error("{status}: {}", if errors.is_empty() { "(no message)".to_owned() } else { errors.join("; ") })]
    Api { status: u16, errors: Vec<String> },
    #[error("cannot reach the server: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// A CA or client certificate could not be used.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Certificates for HTTPS, all PEM.
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// CA certificate(s) to trust instead of the system's roots.
    pub ca_cert: Option<Vec<u8>>,
    /// Client certificate chain (leaf first), presented for mTLS.
    pub client_cert: Option<Vec<u8>>,
    /// The client certificate's private key.
    pub client_key: Option<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_cert", &self.ca_cert.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("client_key", &self.client_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    addr: String,
    token: Option<Zeroizing<String>>,
    namespace: Option<String>,
}

/// The token is a credential: `{:?}` shows only whether there is one.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// `https://`, or `http://` to a loopback address only (as the server allows
/// plain HTTP only there): elsewhere the token would cross the network in the
/// clear. True for plain HTTP.
fn check_address(addr: &str) -> Result<bool> {
    let url = reqwest::Url::parse(addr).map_err(|e| ClientError::Protocol(format!("address {addr:?}: {e}")))?;
    let loopback = url.host_str().is_some_and(|h| {
        h.eq_ignore_ascii_case("localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => Ok(false),
        "http" if loopback => Ok(true),
        "http" => Err(ClientError::Tls(format!(
            "{addr}: plain http:// would send the token in the clear; use https:// (http:// only to a loopback address)"
        ))),
        other => Err(ClientError::Protocol(format!(
            "address {addr:?}: unsupported scheme {other:?}"
        ))),
    }
}

impl Client {
    /// `addr` like `https://coffer.internal:8200`; system roots verify the server.
    pub fn new(addr: &str, token: Option<String>) -> Result<Self> {
        Self::with_tls(addr, token, &TlsOptions::default())
    }

    /// Like [`Client::new`], with a custom CA and/or a client certificate.
    pub fn with_tls(addr: &str, token: Option<String>, tls: &TlsOptions) -> Result<Self> {
        let plain = check_address(addr)?;
        let mut b = reqwest::Client::builder();
        if let Some(ca) = &tls.ca_cert {
            let certs = reqwest::Certificate::from_pem_bundle(ca).map_err(|e| ClientError::Tls(format!("CA: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Tls("CA: no PEM certificate found".into()));
            }
            b = b.tls_certs_only(certs);
        }
        match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 1));
                pem.extend_from_slice(cert);
                pem.push(b'\n');
                pem.extend_from_slice(key);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?;
                b = b.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::Tls(
                    "a client certificate needs both the certificate and its key".into(),
                ));
            }
        }
        // Redirects would carry the token and the body elsewhere (X-Vault-Token is not stripped).
        // The server's own deadline is 90 s by default: give it room to answer first.
        // A proxy would see the token of a plain loopback connection in the clear.
        if plain {
            b = b.no_proxy();
        }
        let http = b
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(120))
            .build()?;
        Ok(Client {
            http,
            addr: addr.trim_end_matches('/').to_owned(),
            token: token.map(Zeroizing::new),
            namespace: None,
        })
    }

    pub fn with_namespace(mut self, ns: Option<String>) -> Self {
        self.namespace = ns;
        self
    }

    /// Calls `/v1/{path}`; `Ok(None)` for 204. `method` may be "LIST".
    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Option<Value>> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut rb = self
            .http
            .request(method, format!("{}/v1/{}", self.addr, path.trim_start_matches('/')));
        if let Some(t) = &self.token {
            // Sensitive: never indexed by HPACK nor shown by the HTTP stack's own Debug.
            let mut v = reqwest::header::HeaderValue::from_str(t)
                .map_err(|_| ClientError::Protocol("the token is not a valid header value".into()))?;
            v.set_sensitive(true);
            rb = rb.header("X-Vault-Token", v);
        }
        if let Some(ns) = &self.namespace {
            rb = rb.header("X-Vault-Namespace", ns);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let mut resp = rb.send().await?;
        let status = resp.status();
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = resp.chunk().await? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ClientError::Protocol(format!(
                    "response larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let value: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if status.is_success() || (status.as_u16() == 429 || status.as_u16() == 503) && path.starts_with("sys/health") {
            return Ok(value);
        }
        let errors = value
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(|e| e.as_array())
            .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Err(ClientError::Api {
            status: status.as_u16(),
            errors,
        })
    }

    async fn data(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let v = self
            .request(method, path, body)
            .await?
            .ok_or_else(|| ClientError::Protocol("empty response".into()))?;
        Ok(v.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Encrypts bytes; returns the `vault:vN:` ciphertext.
    pub async fn encrypt(&self, mount: &str, key: &str, plaintext: &[u8], aad: Option<&[u8]>) -> Result<String> {
        let mut body = json!({ "plaintext": STANDARD.encode(plaintext) });
        if let Some(a) = aad {
            body["associated_data"] = json!(STANDARD.encode(a));
        }
        let d = self
            .data("POST", &transit_path(mount, "encrypt", key)?, Some(body))
            .await?;
        d["ciphertext"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol("no ciphertext".into()))
    }

    /// Decrypts a `vault:vN:` ciphertext to bytes, wiped when dropped.
    pub async fn decrypt(
        &self,
        mount: &str,
        key: &str,
        ciphertext: &str,
        aad: Option<&[u8]>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut body = json!({ "ciphertext": ciphertext });
        if let Some(a) = aad {
            body["associated_data"] = json!(STANDARD.encode(a));
        }
        let d = self
            .data("POST", &transit_path(mount, "decrypt", key)?, Some(body))
            .await?;
        let b64 = d["plaintext"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no plaintext".into()))?;
        let mut out = Zeroizing::new(Vec::with_capacity(b64.len() / 4 * 3 + 3));
        STANDARD
            .decode_vec(b64, &mut out)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(out)
    }
}

/// Largest response body read; Coffer's answers are far smaller.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// `{mount}/{op}/{key}`, refusing names that would change the path: a URL
/// resolves `..` and cuts at `?` or `#` before the server sees them.
fn transit_path(mount: &str, op: &str, key: &str) -> Result<String> {
    let bad_segment = |s: &str| {
        s.is_empty()
            || s == "."
            || s == ".."
            || s.chars()
                .any(|c| matches!(c, '?' | '#' | '%' | '\\') || c.is_whitespace() || c.is_control())
    };
    let mount = mount.trim_matches('/');
    if mount.split('/').any(bad_segment) {
        return Err(ClientError::Protocol(format!("invalid mount path {mount:?}")));
    }
    if key.contains('/') || bad_segment(key) {
        return Err(ClientError::Protocol(format!("invalid key name {key:?}")));
    }
    Ok(format!("{mount}/{op}/{key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://coffer.internal:8200",
            "https://10.0.0.5",
            "http://127.0.0.1:8200",
            "http://127.8.0.1",
            "http://[::1]:8200/",
            "http://LOCALHOST:8200",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://coffer.internal:8200",
            "http://10.0.0.5:8200",
            "http://[2001:db8::1]",
            "http://localhost.evil.example",
            "ftp://127.0.0.1",
            "127.0.0.1:8200",
            "",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            Client::new("http://vault.example.com", None),
            Err(ClientError::Tls(_))
        ));
    }

    #[test]
    fn names_cannot_change_the_path() {
        assert_eq!(
            transit_path("transit", "encrypt", "orders").unwrap(),
            "transit/encrypt/orders"
        );
        assert_eq!(
            transit_path("/transit/", "encrypt", "orders").unwrap(),
            "transit/encrypt/orders"
        );
        assert_eq!(
            transit_path("acme/transit", "decrypt", "k-1.v2").unwrap(),
            "acme/transit/decrypt/k-1.v2"
        );
        for (mount, key) in [
            ("transit", "x/../../encrypt/victim"),
            ("transit", "../../sys/seal"),
            ("transit", ".."),
            ("transit", "k?x=1"),
            ("transit", "k#frag"),
            ("transit", "%2e%2e"),
            ("transit", ""),
            ("transit/..", "k"),
            ("", "k"),
            ("transit", "a b"),
        ] {
            assert!(transit_path(mount, "encrypt", key).is_err(), "{mount} {key}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Client::new("http://127.0.0.1:1", Some("s.very-secret-token".into())).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("127.0.0.1:1"), "{shown}");
    }
}
