//! TLS against the real binary: protocol versions (rustls and `openssl
//! s_client` as clients), HSTS, certificate reload without dropping open
//! connections, mTLS and the cert auth method, and the CLI over HTTPS.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{self, Ca, Leaf};
use common::{Server, b64, errors};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A server certificate from `ca` in `dir`, and a config listener section using it.
fn tls_listener(dir: &Path, ca: &Ca, extra: &str) -> (String, PathBuf, PathBuf) {
    let (cert, key) = ca.server(1).write(dir, "server");
    let listener = format!("tls_cert_file = {:?}\ntls_key_file = {:?}\n{extra}", cert, key);
    (listener, cert, key)
}

fn rustls_config(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    id: Option<&Leaf>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match id {
        None => b.with_no_client_auth(),
        Some(id) => {
            let certs = vec![CertificateDer::from_pem_slice(id.cert.as_bytes()).unwrap()];
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(id.key.as_bytes()).unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
    };
    Arc::new(cfg)
}

/// One HTTP/1.1 keep-alive connection over TLS.
struct Conn {
    s: TlsStream<TcpStream>,
}

impl Conn {
    async fn open(hostport: &str, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(hostport).await?;
        let s = tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        Ok(Conn { s })
    }

    fn peer_leaf(&self) -> Vec<u8> {
        self.s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    fn version(&self) -> rustls::ProtocolVersion {
        self.s.get_ref().1.protocol_version().unwrap()
    }

    /// GET on this connection; returns the status and the raw head.
    async fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        self.s
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .await?;
        let mut buf = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        Ok((status, head))
    }
}

fn s_client(hostport: &str, ca: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", hostport, "-servername", "localhost", "-CAfile"])
        .arg(ca)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is needed for these tests (apt-get install -y openssl)");
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn tls13_only_by_default_tls12_opt_in_tls11_never() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (listener, _, _) = tls_listener(dir.path(), &ca, "");
    let strict = Server::with_config_text(&dir.path().join("a"), &listener, "");
    assert!(strict.addr.starts_with("https://"), "{}", strict.addr);
    let lax = Server::with_config_text(
        &dir.path().join("b"),
        &format!("{listener}tls_min_version = \"tls12\"\n"),
        "",
    );

    let only12 = rustls_config(&ca, &[&rustls::version::TLS12], None);
    let only13 = rustls_config(&ca, &[&rustls::version::TLS13], None);
    // rustls client
    let mut c = Conn::open(&strict.hostport(), only13.clone()).await.unwrap();
    assert_eq!(c.version(), rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(c.get("/v1/sys/health").await.unwrap().0, 501);
    assert!(
        Conn::open(&strict.hostport(), only12.clone()).await.is_err(),
        "TLS 1.2 accepted by default"
    );
    let c = Conn::open(&lax.hostport(), only12).await.unwrap();
    assert_eq!(c.version(), rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(
        Conn::open(&lax.hostport(), only13).await.unwrap().version(),
        rustls::ProtocolVersion::TLSv1_3
    );

    // openssl s_client
    let out = s_client(&strict.hostport(), &ca_file, &["-tls1_3"]);
    assert!(out.contains("New, TLSv1.3"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let out = s_client(&strict.hostport(), &ca_file, &["-tls1_2"]);
    assert!(out.contains("New, (NONE)") && !out.contains("New, TLSv1.2"), "{out}");
    let out = s_client(&lax.hostport(), &ca_file, &["-tls1_2"]);
    assert!(out.contains("New, TLSv1.2"), "{out}");
    // Only forward-secret AEAD suites for 1.2.
    let cipher = out
        .lines()
        .find_map(|l| l.split("Cipher is ").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        cipher.starts_with("ECDHE-") && (cipher.contains("GCM") || cipher.contains("CHACHA20")),
        "{cipher}"
    );
    let out = s_client(&lax.hostport(), &ca_file, &["-tls1_2", "-cipher", "AES128-SHA256"]);
    assert!(
        out.contains("New, (NONE)"),
        "a non-forward-secret CBC suite was accepted: {out}"
    );
    // TLS 1.1 is refused even when 1.2 is allowed (SECLEVEL=0 lets openssl offer it).
    for s in [&strict, &lax] {
        let out = s_client(&s.hostport(), &ca_file, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(out.contains("New, (NONE)") && !out.contains("New, TLSv1.1"), "{out}");
        // The refusal came from the server, as a TLS alert, not from openssl's own policy.
        assert!(
            out.contains("SSL alert number"),
            "the server did not refuse 1.1 itself: {out}"
        );
    }
}

#[tokio::test]
async fn hsts_and_security_headers_over_https_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (listener, _, _) = tls_listener(dir.path(), &ca, "");
    let mut s = Server::with_config_text(&dir.path().join("a"), &listener, "");
    s.use_client(pki::client(&ca, None));
    for (m, path) in [
        ("GET", "sys/health"),
        ("GET", "sys/nope"),
        ("POST", "transit/encrypt/k"),
    ] {
        let (st, _) = s.call(m, path, None, None).await;
        let h = s.last_headers.lock().unwrap().clone();
        assert_eq!(
            h["strict-transport-security"], "max-age=31536000; includeSubDomains",
            "{m} {path} {st}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["cache-control"], "no-store");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
    }
    // Plain HTTP (loopback dev server): the other headers, but no HSTS, which only means something over TLS.
    let dev = Server::dev();
    dev.call("GET", "sys/health", None, None).await;
    let h = dev.last_headers.lock().unwrap().clone();
    assert!(h.get("strict-transport-security").is_none());
    assert_eq!(h["x-content-type-options"], "nosniff");
}

async fn wait_for_leaf(s: &Server, cfg: &Arc<rustls::ClientConfig>, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(c) = Conn::open(&s.hostport(), cfg.clone()).await
            && c.peer_leaf() == want
        {
            return;
        }
        assert!(Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn renewed_certificate_is_served_without_dropping_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let (listener, cert_path, key_path) = tls_listener(dir.path(), &ca, "");
    let s = Server::with_config_text(&dir.path().join("a"), &listener, "");
    let cfg = rustls_config(&ca, &[&rustls::version::TLS13], None);
    let first = std::fs::read_to_string(&cert_path).unwrap();
    let first_der: Vec<u8> = {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(first.as_bytes()).unwrap().to_vec()
    };
    let mut open = Conn::open(&s.hostport(), cfg.clone()).await.unwrap();
    assert_eq!(open.peer_leaf(), first_der);
    assert_eq!(open.get("/v1/sys/health").await.unwrap().0, 501);

    // Renewal, announced with SIGHUP.
    let second = ca.server(2);
    second.write(dir.path(), "server");
    s.signal("HUP");
    wait_for_leaf(&s, &cfg, &second.der).await;
    // The connection opened before the renewal still works, on the old certificate.
    assert_eq!(open.get("/v1/sys/health").await.unwrap().0, 501);
    assert_eq!(open.peer_leaf(), first_der);

    // A broken certificate does not replace the good one.
    std::fs::write(
        &cert_path,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    s.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = Conn::open(&s.hostport(), cfg.clone()).await.unwrap();
    assert_eq!(c.peer_leaf(), second.der, "a bad certificate replaced the good one");
    // Nor does a key that belongs to another certificate.
    let stray = ca.server(9);
    std::fs::write(&cert_path, &ca.server(3).cert).unwrap();
    std::fs::write(&key_path, &stray.key).unwrap();
    s.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        Conn::open(&s.hostport(), cfg.clone()).await.unwrap().peer_leaf(),
        second.der
    );

    // Without a signal: the files are polled.
    let third = ca.server(4);
    third.write(dir.path(), "server");
    wait_for_leaf(&s, &cfg, &third.der).await;
    assert_eq!(open.get("/v1/sys/health").await.unwrap().0, 501);
}

/// The mTLS fixture: a server requiring client certificates from `clients`.
struct Mtls {
    _dir: tempfile::TempDir,
    s: Server,
    server_ca: Ca,
    clients: Ca,
}

async fn mtls(required: bool) -> Mtls {
    mtls_with(required, "").await
}

async fn mtls_with(required: bool, rest: &str) -> Mtls {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Ca::new("server CA");
    let clients = Ca::new("clients CA");
    let clients_file = clients.write(dir.path(), "clients-ca");
    let (listener, _, _) = tls_listener(
        dir.path(),
        &server_ca,
        &format!("tls_client_ca_file = {clients_file:?}\ntls_require_client_cert = {required}\n"),
    );
    let mut s = Server::with_config_text(&dir.path().join("data"), &listener, rest);
    let admin = clients.client("admin", &[]);
    s.use_client(pki::client(&server_ca, Some(&admin)));
    s.init_unseal().await;
    Mtls {
        _dir: dir,
        s,
        server_ca,
        clients,
    }
}

async fn call_as(
    client: &reqwest::Client,
    s: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> reqwest::Result<(u16, serde_json::Value)> {
    let mut rb = client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}/v1/{path}", s.addr),
    );
    if let Some(t) = token {
        rb = rb.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await?;
    let st = r.status().as_u16();
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    Ok((st, v))
}

#[tokio::test]
async fn mtls_refuses_missing_and_unknown_certificates_and_maps_known_ones_to_policies() {
    let m = mtls(true).await;
    let s = &m.s;
    // No certificate, or one from a CA the server does not know: no connection.
    let none = pki::client(&m.server_ca, None);
    assert!(call_as(&none, s, "GET", "sys/health", None, None).await.is_err());
    let stranger = Ca::new("stranger CA").client("svc-billing", &["billing.internal"]);
    let unknown = pki::client(&m.server_ca, Some(&stranger));
    assert!(call_as(&unknown, s, "GET", "sys/health", None, None).await.is_err());
    // Same with a raw rustls client, to see the refusal at the TLS layer.
    let raw = rustls_config(&m.server_ca, &[&rustls::version::TLS13], Some(&stranger));
    let refused = match Conn::open(&s.hostport(), raw).await {
        Err(_) => true,
        Ok(mut c) => c.get("/v1/sys/health").await.is_err(),
    };
    assert!(refused, "a certificate from an unknown CA was accepted");

    // A known certificate connects; without a matching role it has no rights.
    let billing = m.clients.client("svc-billing", &["billing.internal"]);
    let svc = pki::client(&m.server_ca, Some(&billing));
    assert_eq!(call_as(&svc, s, "GET", "sys/health", None, None).await.unwrap().0, 200);
    let enc = json!({ "plaintext": b64(b"invoice 42") });
    let (st, v) = call_as(&svc, s, "POST", "transit/encrypt/billing", None, Some(enc.clone()))
        .await
        .unwrap();
    assert_eq!(st, 403, "{v}");

    let (st, v) = s
        .root(
            "PUT",
            "sys/policies/acl/billing",
            Some(
                json!({ "policy": "path \"transit/encrypt/billing\" { capabilities = [\"create\", \"update\"] }\n\
                         path \"transit/decrypt/billing\" { capabilities = [\"update\"] }" }),
            ),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let (st, v) = s
        .root(
            "POST",
            "auth/cert/certs/billing",
            Some(json!({
                "certificate": m.clients.pem,
                "allowed_common_names": ["svc-*"],
                "allowed_dns_sans": "*.internal",
                "token_policies": ["billing"],
                "ttl": "1h",
            })),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let (st, v) = s.root("GET", "auth/cert/certs/billing", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["allowed_common_names"], json!(["svc-*"]));
    assert_eq!(v["data"]["token_ttl"], 3600);
    assert_eq!(v["data"]["tenant"], "");
    assert_eq!(
        s.root("LIST", "auth/cert/certs", None).await.1["data"]["keys"],
        json!(["billing"])
    );

    // No token: the certificate is the identity, with the role's policies only.
    let (st, v) = call_as(&svc, s, "POST", "transit/encrypt/billing", None, Some(enc.clone()))
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    let (st, v) = call_as(
        &svc,
        s,
        "POST",
        "transit/decrypt/billing",
        None,
        Some(json!({ "ciphertext": ct })),
    )
    .await
    .unwrap();
    assert_eq!(
        (st, v["data"]["plaintext"].as_str()),
        (200, Some(b64(b"invoice 42").as_str()))
    );
    for (m_, p) in [
        ("LIST", "transit/keys"),
        ("GET", "sys/policies/acl/billing"),
        ("POST", "transit/encrypt/other"),
    ] {
        let (st, v) = call_as(&svc, s, m_, p, None, Some(json!({ "plaintext": "" })))
            .await
            .unwrap();
        assert_eq!(st, 403, "{m_} {p}: {v}");
    }
    // A certificate from the right CA whose names the role does not allow gets nothing.
    let other = m.clients.client("svc-other", &["other.example"]);
    let other_client = pki::client(&m.server_ca, Some(&other));
    let (st, _) = call_as(
        &other_client,
        s,
        "POST",
        "transit/encrypt/billing",
        None,
        Some(enc.clone()),
    )
    .await
    .unwrap();
    assert_eq!(st, 403);

    // Login trades the certificate for a token carrying the role's policies.
    let (st, v) = call_as(&svc, s, "POST", "auth/cert/login", None, Some(json!({})))
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["auth"]["policies"], json!(["billing", "default"]));
    assert_eq!(v["auth"]["metadata"]["cert_name"], "billing");
    assert_eq!(v["auth"]["metadata"]["common_name"], "svc-billing");
    assert_eq!(v["auth"]["lease_duration"], 3600);
    let token = v["auth"]["client_token"].as_str().unwrap().to_owned();
    let (st, v) = call_as(&other_client, s, "GET", "auth/token/lookup-self", Some(&token), None)
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["policies"], json!(["billing", "default"]));
    let (st, v) = call_as(&other_client, s, "POST", "auth/cert/login", None, Some(json!({})))
        .await
        .unwrap();
    assert_eq!(st, 400, "{v}");
    let (st, _) = call_as(
        &svc,
        s,
        "POST",
        "auth/cert/login",
        None,
        Some(json!({ "name": "nope" })),
    )
    .await
    .unwrap();
    assert_eq!(st, 400);

    // A role may pin one leaf certificate instead of a CA.
    let (st, v) = s
        .root(
            "POST",
            "auth/cert/certs/pinned",
            Some(json!({ "certificate": other.cert, "policies": "billing" })),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let (st, _) = call_as(
        &other_client,
        s,
        "POST",
        "transit/encrypt/billing",
        None,
        Some(enc.clone()),
    )
    .await
    .unwrap();
    assert_eq!(st, 200);

    // Deleting the roles takes the rights away again.
    for r in ["billing", "pinned"] {
        assert_eq!(s.root("DELETE", &format!("auth/cert/certs/{r}"), None).await.0, 204);
    }
    let (st, _) = call_as(&svc, s, "POST", "transit/encrypt/billing", None, Some(enc))
        .await
        .unwrap();
    assert_eq!(st, 403);
    assert_eq!(s.root("GET", "auth/cert/certs/billing", None).await.0, 404);
    // Bad role definitions are refused with a reason.
    for bad in [
        json!({}),
        json!({ "certificate": "not pem" }),
        json!({ "certificate": m.clients.pem, "ttl": "soon" }),
    ] {
        let (st, v) = s.root("POST", "auth/cert/certs/x", Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad}: {v}");
        assert!(!errors(&v).is_empty());
    }
}

#[tokio::test]
async fn optional_client_certificates_and_plain_http_cert_login() {
    let m = mtls(false).await;
    let s = &m.s;
    let none = pki::client(&m.server_ca, None);
    assert_eq!(call_as(&none, s, "GET", "sys/health", None, None).await.unwrap().0, 200);
    let (st, v) = call_as(&none, s, "POST", "auth/cert/login", None, Some(json!({})))
        .await
        .unwrap();
    assert_eq!(st, 400, "{v}");
    assert!(errors(&v).contains("client certificate"), "{v}");
    let (st, _) = call_as(&none, s, "LIST", "transit/keys", None, None).await.unwrap();
    assert_eq!(st, 403);
    // Over plain HTTP there is never a certificate.
    let dev = Server::dev();
    let (st, _) = dev.call("POST", "auth/cert/login", None, Some(json!({}))).await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn cli_verifies_the_server_and_presents_client_certificates() {
    let m = mtls(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = m.server_ca.write(dir.path(), "server-ca");
    let (cert, key) = m.clients.client("cli", &[]).write(dir.path(), "cli");
    let root = m.s.root_token.clone().unwrap();
    let run = |args: &[&str], envs: &[(&str, &Path)]| {
        let mut c = Command::new(common::bin());
        c.args(args)
            .env("VAULT_ADDR", &m.s.addr)
            .env("VAULT_TOKEN", &root)
            .env_remove("COFFER_CACERT")
            .env_remove("VAULT_CACERT")
            .env_remove("VAULT_CLIENT_CERT")
            .env_remove("VAULT_CLIENT_KEY");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let flags = [
        "--ca-cert",
        ca.to_str().unwrap(),
        "--client-cert",
        cert.to_str().unwrap(),
        "--client-key",
        key.to_str().unwrap(),
    ];
    let out = run(&[&flags[..], &["operator", "status"]].concat(), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Vault's environment variables work the same, and Vault's one-dash flags.
    let out = run(
        &["key", "create", "cli-key"],
        &[
            ("VAULT_CACERT", &ca),
            ("VAULT_CLIENT_CERT", &cert),
            ("VAULT_CLIENT_KEY", &key),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dash = [
        format!("-ca-cert={}", ca.display()),
        format!("-client-cert={}", cert.display()),
        format!("-client-key={}", key.display()),
    ];
    let out = run(&[dash[0].as_str(), &dash[1], &dash[2], "key", "read", "cli-key"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the CA the server's certificate is not trusted; without a client certificate the server refuses.
    let out = run(
        &["operator", "status"],
        &[("VAULT_CLIENT_CERT", &cert), ("VAULT_CLIENT_KEY", &key)],
    );
    assert!(!out.status.success());
    let out = run(&["operator", "status"], &[("VAULT_CACERT", &ca)]);
    assert!(!out.status.success());
}

#[tokio::test]
async fn dev_tls_generates_a_ca_and_serves_https() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let s = Server::spawn(&[
        "server",
        "--dev",
        "--dev-root-token-id=root",
        "--dev-listen-address=127.0.0.1:0",
        "--dev-tls",
        "--dev-tls-cert-dir",
        certs.to_str().unwrap(),
    ]);
    assert!(s.addr.starts_with("https://"), "{}", s.addr);
    let ca_line = s.printed.iter().find(|l| l.contains("VAULT_CACERT")).unwrap();
    assert!(ca_line.contains(certs.to_str().unwrap()), "{ca_line}");
    let ca = std::fs::read(certs.join("coffer-ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let r = client.get(format!("{}/v1/sys/health", s.addr)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("strict-transport-security"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("coffer-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the dev key is readable by others");
    }
}

/// Logging in again does not buy a fresh rate-limit bucket: logins and the
/// tokens they make draw from the certificate's.
#[tokio::test]
async fn a_certificate_keeps_one_rate_limit_bucket_across_logins() {
    let m = mtls_with(true, "[limits]\nrate_limit = 0.01\nrate_limit_burst = 3\n").await;
    let s = &m.s;
    let (st, v) = s
        .root(
            "POST",
            "auth/cert/certs/svc",
            Some(json!({ "certificate": m.clients.pem, "allowed_common_names": "svc-*" })),
        )
        .await;
    assert_eq!(st, 204, "{v}");
    let svc = m.clients.client("svc-a", &[]);
    let client = pki::client(&m.server_ca, Some(&svc));
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (st, v) = call_as(&client, s, "POST", "auth/cert/login", None, Some(json!({})))
            .await
            .unwrap();
        assert_eq!(st, 200, "{v}");
        tokens.push(v["auth"]["client_token"].as_str().unwrap().to_owned());
    }
    // Two logins and one request spend the burst of 3, whichever token asks.
    let (st, _) = call_as(&client, s, "GET", "auth/token/lookup-self", Some(&tokens[0]), None)
        .await
        .unwrap();
    assert_eq!(st, 200);
    let (st, v) = call_as(&client, s, "GET", "auth/token/lookup-self", Some(&tokens[1]), None)
        .await
        .unwrap();
    assert_eq!(st, 429, "{v}");
    let (st, _) = call_as(&client, s, "POST", "auth/cert/login", None, Some(json!({})))
        .await
        .unwrap();
    assert_eq!(st, 429);
    // Another certificate has its own bucket.
    let other = pki::client(&m.server_ca, Some(&m.clients.client("svc-b", &[])));
    let (st, v) = call_as(&other, s, "POST", "auth/cert/login", None, Some(json!({})))
        .await
        .unwrap();
    assert_eq!(st, 200, "{v}");
}
