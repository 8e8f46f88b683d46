//! The CLI against a real dev server.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{Server, bin};
use serde_json::Value;

fn coffer(s: &Server, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("COFFER_ADDR")
        .env_remove("COFFER_TOKEN")
        .env("VAULT_ADDR", &s.addr)
        .env("VAULT_TOKEN", "root")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn names_that_would_change_the_request_are_refused() {
    let s = Server::dev();
    assert!(coffer(&s, &["tenant", "create", "acme"], b"").status.success());
    for args in [
        &["tenant", "create", "acme/disable"][..],
        &["tenant", "rotate", ".."],
        &["key", "create", "k/rotate"],
        &["key", "delete", "k?x=1"],
        &["key", "read", "k", "--mount", "transit/../sys"],
    ] {
        let o = coffer(&s, args, b"");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a valid name"),
            "{args:?}"
        );
    }
    // acme was not disabled by the first one.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, v) = rt.block_on(s.call("GET", "sys/namespaces/acme", Some("root"), None));
    assert_eq!(v["data"]["disabled"], false, "{v}");
}

#[test]
fn audit_verify_that_cannot_run_exits_2_not_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["audit", "verify", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn encrypt_decrypt_keys_tokens_policies() {
    let s = Server::dev();
    let ct = ok(&coffer(&s, &["encrypt", "orders", "--aad", "row=1"], b"card 4111\n"));
    assert!(ct.starts_with("vault:v1:"), "{ct}");
    let pt = coffer(&s, &["decrypt", "orders", "--aad", "row=1"], ct.as_bytes());
    assert_eq!(ok(&pt).as_bytes(), b"card 4111\n");
    let wrong = coffer(&s, &["decrypt", "orders", "--aad", "row=2"], ct.as_bytes());
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("400"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    ok(&coffer(
        &s,
        &["key", "create", "users", "--type", "chacha20-poly1305"],
        b"",
    ));
    ok(&coffer(&s, &["key", "rotate", "users"], b""));
    let read: Value = serde_json::from_str(&ok(&coffer(&s, &["-format=json", "key", "read", "users"], b""))).unwrap();
    assert_eq!(read["data"]["latest_version"], 2);
    assert_eq!(read["data"]["type"], "chacha20-poly1305");
    ok(&coffer(
        &s,
        &["key", "config", "users", "--min-decryption-version", "2"],
        b"",
    ));
    let list: Value = serde_json::from_str(&ok(&coffer(&s, &["--format", "json", "key", "list"], b""))).unwrap();
    assert_eq!(list["data"]["keys"], serde_json::json!(["orders", "users"]));

    ok(&coffer(
        &s,
        &["policy", "write", "enc", "-"],
        br#"path "transit/encrypt/*" { capabilities = ["update"] }"#,
    ));
    let tok: Value = serde_json::from_str(&ok(&coffer(
        &s,
        &["-format=json", "token", "create", "--policy", "enc", "--ttl", "1h"],
        b"",
    )))
    .unwrap();
    let t = tok["auth"]["client_token"].as_str().unwrap();
    assert_eq!(tok["auth"]["policies"], serde_json::json!(["default", "enc"]));
    let as_child = Command::new(bin())
        .args(["decrypt", "orders", "--aad", "row=1"])
        .env("COFFER_ADDR", &s.addr)
        .env("COFFER_TOKEN", t)
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(!as_child.status.success(), "an encrypt-only token cannot decrypt");
    ok(&coffer(&s, &["token", "revoke", t], b""));

    let status = coffer(&s, &["operator", "status"], b"");
    assert_eq!(status.status.code(), Some(0));
    assert!(ok(&status).contains("sealed"));
    ok(&coffer(&s, &["operator", "seal"], b""));
    assert_eq!(
        coffer(&s, &["operator", "status"], b"").status.code(),
        Some(2),
        "exit 2 when sealed"
    );
    let key = s.unseal_key.clone().unwrap();
    ok(&coffer(&s, &["operator", "unseal"], key.as_bytes()));
    assert_eq!(coffer(&s, &["operator", "status"], b"").status.code(), Some(0));
}

#[test]
fn operator_init_on_a_fresh_server() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::with_config(&dir.path().join("d"));
    let out = ok(&coffer(
        &s,
        &["operator", "init", "--key-shares", "3", "--key-threshold", "2"],
        b"",
    ));
    let shares: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split(": ").nth(1).filter(|_| l.starts_with("Unseal Key")))
        .collect();
    assert_eq!(shares.len(), 3, "{out}");
    assert_eq!(
        coffer(&s, &["operator", "unseal", shares[0]], b"").status.code(),
        Some(0)
    );
    assert_eq!(coffer(&s, &["operator", "status"], b"").status.code(), Some(2));
    ok(&coffer(&s, &["operator", "unseal", shares[2]], b""));
    assert_eq!(coffer(&s, &["operator", "status"], b"").status.code(), Some(0));
}

#[test]
fn bad_config_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[storage]\npath = \"/tmp/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\ntls_disable = true\n",
    )
    .unwrap();
    let o = Command::new(bin())
        .args(["server", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("non-loopback"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = Command::new(bin())
        .args(["server", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// The client never follows a redirect: it would carry the token and the plaintext elsewhere.
#[tokio::test]
async fn the_client_does_not_follow_redirects() {
    use std::io::Read;
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = elsewhere.local_addr().unwrap();
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", front.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut c, _) = front.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = c.read(&mut buf);
        let _ = write!(
            c,
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{to}/v1/transit/encrypt/k\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    });
    let client = coffer_client::Client::new(&addr, Some("s.token".into())).unwrap();
    let err = client.encrypt("transit", "k", b"card 4111", None).await.unwrap_err();
    assert!(
        matches!(err, coffer_client::ClientError::Api { status: 307, .. }),
        "{err}"
    );
    elsewhere.set_nonblocking(true).unwrap();
    assert!(elsewhere.accept().is_err(), "nothing reached the redirect's target");
}
