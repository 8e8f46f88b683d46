//! A Rust client for Coffer's HTTP API (Vault-compatible paths).
//!
//! [`Client::request`] reaches any endpoint; typed helpers cover the common
//! transit calls. Errors keep the server's status and messages. This crate
//! does no cryptography of its own yet; envelope mode comes later.
#![forbid(unsafe_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};

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
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    addr: String,
    token: Option<String>,
    namespace: Option<String>,
}

impl Client {
    /// `addr` like `http://127.0.0.1:8200`.
    pub fn new(addr: &str, token: Option<String>) -> Result<Self> {
        let http = reqwest::Client::builder().build()?;
        Ok(Client {
            http,
            addr: addr.trim_end_matches('/').to_owned(),
            token,
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
            rb = rb.header("X-Vault-Token", t);
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
