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

impl Client {
    /// `addr` like `https://coffer.internal:8200`; system roots verify the server.
    pub fn new(addr: &str, token: Option<String>) -> Result<Self> {
        Self::with_tls(addr, token, &TlsOptions::default())
    }

    /// Like [`Client::new`], with a custom CA and/or a client certificate.
    pub fn with_tls(addr: &str, token: Option<String>, tls: &TlsOptions) -> Result<Self> {
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
        let http = b.build()?;
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
        let resp = rb.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
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
        let d = self.data("POST", &format!("{mount}/encrypt/{key}"), Some(body)).await?;
        d["ciphertext"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Protocol("no ciphertext".into()))
    }

    /// Decrypts a `vault:vN:` ciphertext to bytes.
    pub async fn decrypt(&self, mount: &str, key: &str, ciphertext: &str, aad: Option<&[u8]>) -> Result<Vec<u8>> {
        let mut body = json!({ "ciphertext": ciphertext });
        if let Some(a) = aad {
            body["associated_data"] = json!(STANDARD.encode(a));
        }
        let d = self.data("POST", &format!("{mount}/decrypt/{key}"), Some(body)).await?;
        let b64 = d["plaintext"]
            .as_str()
            .ok_or_else(|| ClientError::Protocol("no plaintext".into()))?;
        STANDARD.decode(b64).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let c = Client::new("http://127.0.0.1:1", Some("s.very-secret-token".into())).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("very-secret-token"), "{shown}");
        assert!(shown.contains("[redacted]") && shown.contains("127.0.0.1:1"), "{shown}");
    }
}
