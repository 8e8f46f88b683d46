//! Starts the real `coffer` binary on a free loopback port and talks to it.
#![allow(dead_code, unreachable_pub)]

pub mod pki;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub struct Server {
    child: Child,
    pub addr: String,
    pub root_token: Option<String>,
    pub unseal_key: Option<String>,
    http: reqwest::Client,
    /// What the server printed up to its "listening" line.
    pub printed: Vec<String>,
    /// Headers of the last response to [`Server::raw`].
    pub last_headers: std::sync::Mutex<reqwest::header::HeaderMap>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_coffer")
}

impl Server {
    /// `coffer server --dev` with root token "root".
    pub fn dev() -> Self {
        Self::spawn(&[
            "server",
            "--dev",
            "--dev-root-token-id=root",
            "--dev-listen-address=127.0.0.1:0",
        ])
    }

    /// `coffer server --config` over `data_dir`, on a free port.
    pub fn with_config(data_dir: &Path) -> Self {
        Self::with_config_text(data_dir, "tls_disable = true\n", "")
    }

    /// As [`Server::with_config`], with more TOML appended (e.g. an `[audit]` table).
    pub fn with_config_extra(data_dir: &Path, extra: &str) -> Self {
        Self::with_config_text(data_dir, "tls_disable = true\n", extra)
    }

    /// `coffer server --config` with `listener` lines (besides the address)
    /// and any further tables in `rest`.
    pub fn with_config_text(data_dir: &Path, listener: &str, rest: &str) -> Self {
        let cfg = data_dir.with_extension("toml");
        std::fs::write(
            &cfg,
            format!(
                "[storage]\npath = {:?}\n[listener]\naddress = \"127.0.0.1:0\"\n{listener}{rest}",
                data_dir.display().to_string()
            ),
        )
        .unwrap();
        Self::spawn(&["server", "--config", cfg.to_str().unwrap()])
    }

    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(bin())
            .args(args)
            .env("COFFER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start coffer");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut root_token, mut unseal_key) = (None, None, None);
        let mut printed = Vec::new();
        while let Some(Ok(line)) = lines.next() {
            printed.push(line.clone());
            for scheme in ["http://", "https://"] {
                if let Some(rest) = line.split(scheme).nth(1) {
                    addr.get_or_insert_with(|| format!("{scheme}{}", rest.split(['\'', ' ']).next().unwrap()));
                }
            }
            if let Some(t) = line.strip_prefix("Root Token: ") {
                root_token = Some(t.to_owned());
            }
            if let Some(k) = line.strip_prefix("Unseal Key: ") {
                unseal_key = Some(k.to_owned());
            }
            if line.contains("listening on") || line.starts_with("The transit engine") {
                break;
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = addr.unwrap_or_else(|| panic!("server printed no address: {printed:?}"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Server {
            child,
            addr,
            root_token,
            unseal_key,
            http,
            printed,
            last_headers: Default::default(),
        }
    }

    /// Talks to the server through `client` from now on (e.g. one trusting a test CA).
    pub fn use_client(&mut self, client: reqwest::Client) {
        self.http = client;
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port`.
    pub fn hostport(&self) -> String {
        self.addr.split("://").nth(1).unwrap().to_owned()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with `kill`.
    pub fn signal(&self, name: &str) {
        let st = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Sends a request; returns status and JSON body (Null when empty).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        self.raw(method, path, token, body.map(|b| b.to_string().into_bytes()), &[])
            .await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self.http.request(m, format!("{}/v1/{}", self.addr, path));
        if let Some(t) = token {
            rb = rb.header("X-Vault-Token", t);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", "application/json").body(b);
        }
        let resp = rb.send().await.expect("request");
        let status = resp.status().as_u16();
        self.last_headers.lock().unwrap().clone_from(resp.headers());
        let bytes = resp.bytes().await.unwrap();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (status, v)
    }

    pub async fn root(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let t = self.root_token.clone().unwrap_or_else(|| "root".into());
        self.call(method, path, Some(&t), body).await
    }

    /// Writes an ACL policy as root.
    pub async fn put_policy(&self, name: &str, hcl: &str) {
        let (st, v) = self
            .root(
                "PUT",
                &format!("sys/policies/acl/{name}"),
                Some(serde_json::json!({ "policy": hcl })),
            )
            .await;
        assert_eq!(st, 204, "{v}");
    }

    /// Creates a token as root; returns (token, accessor).
    pub async fn create_token(&self, body: Value) -> (String, String) {
        let (st, v) = self.root("POST", "auth/token/create", Some(body)).await;
        assert_eq!(st, 200, "{v}");
        (
            v["auth"]["client_token"].as_str().unwrap().to_owned(),
            v["auth"]["accessor"].as_str().unwrap().to_owned(),
        )
    }

    /// Initialises with one share and unseals; keeps the root token for [`Server::root`].
    pub async fn init_unseal(&mut self) -> String {
        let (_, root) = init_unseal(self).await;
        self.root_token = Some(root.clone());
        root
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait: the graceful path.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `<data_dir>.toml` for a loopback server over `data_dir`.
pub fn config_file(data_dir: &Path, extra: &str) -> PathBuf {
    let cfg = data_dir.with_extension("toml");
    let text = format!(
        "[storage]\npath = {:?}\n[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{extra}",
        data_dir.display().to_string()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// Initialises with one share and unseals; returns (share, root token).
pub async fn init_unseal(s: &Server) -> (String, String) {
    let (st, v) = s
        .call(
            "PUT",
            "sys/init",
            None,
            Some(serde_json::json!({ "secret_shares": 1, "secret_threshold": 1 })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let key = v["keys"][0].as_str().unwrap().to_owned();
    let root = v["root_token"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call("PUT", "sys/unseal", None, Some(serde_json::json!({ "key": key })))
        .await;
    assert_eq!(st, 200);
    (key, root)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn errors(v: &Value) -> String {
    v["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
        .unwrap_or_default()
}

/// Every file under `dir`, concatenated, for "is this secret anywhere on disk?" checks.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if let Ok(b) = std::fs::read(&p) {
            out.extend(b);
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
