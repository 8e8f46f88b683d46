//! The audit trail against the real binary: tampering named by `audit
//! verify`, crash safety, fail-closed sinks, alerts, and no secrets on disk.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, all_bytes, b64, bin, config_file, contains, init_unseal};
use serde_json::{Value, json};
use sqlx::Connection;

/// Statements that put a new session (the editor's own key, against the
/// audit public key stored in coffer.db) beside the trail and reseal record
/// `seq` under it: a record that opens, though it was never written.
async fn forged_record(data: &Path, seq: u64) -> Vec<String> {
    use coffer_core::aead::{Algorithm, Cipher, Nonces};
    let url = format!("sqlite://{}", data.join("coffer.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let (keys,): (Vec<u8>,) = sqlx::query_as("SELECT v FROM meta WHERE k = 'audit_keys'")
        .fetch_one(&mut c)
        .await
        .unwrap();
    // Closed before the directory is copied: a connection merely dropped
    // closes later on its own thread, deleting the WAL files mid-copy.
    c.close().await.unwrap();
    let keys: Value = serde_json::from_slice(&keys).unwrap();
    let public = hex::decode(keys["record_public"].as_str().unwrap()).unwrap();
    let (session_public, key) = coffer_core::audit::start_session(&public, "editor").unwrap();
    let record = br#"{"type":"request","path":"sys/health"}"#;
    let cipher = Cipher::new(Algorithm::Aes256Gcm, &key);
    let payload = coffer_core::audit::seal_record(&cipher, &mut Nonces::new(1), seq, 99, record).unwrap();
    vec![
        format!(
            "INSERT INTO audit_sessions (id, key_version, public, started, node, kdf) \
             VALUES (99, 1, x'{}', 0, 'editor', 2)",
            hex::encode(session_public)
        ),
        format!(
            "UPDATE audit_records SET session = 99, payload = x'{}' WHERE seq = {seq}",
            hex::encode(payload)
        ),
    ]
}

/// `coffer audit verify --config` → (exit code, stdout).
fn verify(data: &Path) -> (i32, String) {
    let cfg = config_file(data, "");
    let o = Command::new(bin())
        .args(["audit", "verify", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

async fn sql(data: &Path, statements: &[&str]) {
    let url = format!("sqlite://{}", data.join("audit.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // An attacker with the file drops the append-only triggers first.
    for t in [
        "audit_records_no_update",
        "audit_records_no_delete",
        "audit_checkpoints_no_update",
        "audit_checkpoints_no_delete",
        "audit_sessions_no_update",
        "audit_sessions_no_delete",
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
            .execute(&mut c)
            .await
            .unwrap();
    }
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut c)
            .await
            .unwrap();
    }
    c.close().await.unwrap();
}

/// A trail of a few dozen records in a copy of `template`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test]
async fn verify_names_each_kind_of_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config(&data);
    let (_, root) = init_unseal(&s).await;
    for i in 0..20 {
        let (st, _) = s
            .call(
                "POST",
                "transit/encrypt/k",
                Some(&root),
                Some(json!({ "plaintext": b64(format!("m{i}").as_bytes()) })),
            )
            .await;
        assert_eq!(st, 200);
    }
    s.stop();
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("intact"), "{out}");

    let cases: [(&str, &[&str], &str); 7] = [
        (
            "edited",
            &["UPDATE audit_records SET payload = x'00' || substr(payload, 2) WHERE seq = 10"],
            "seq 10 (edited)",
        ),
        (
            "deleted",
            &["DELETE FROM audit_records WHERE seq = 12"],
            "seq 12 (deleted)",
        ),
        (
            "reordered",
            &[
                "UPDATE audit_records SET seq = -1 WHERE seq = 8",
                "UPDATE audit_records SET seq = 8 WHERE seq = 15",
                "UPDATE audit_records SET seq = 15 WHERE seq = -1",
            ],
            "seq 8 (reordered)",
        ),
        (
            "inserted",
            &[
                "UPDATE audit_records SET seq = seq + 1000 WHERE seq >= 6",
                "UPDATE audit_records SET seq = seq - 999 WHERE seq >= 1006",
                "INSERT INTO audit_records (seq, session, prev, payload) SELECT 6, session, prev, x'0102' FROM audit_records WHERE seq = 7",
            ],
            "seq 6 (inserted)",
        ),
        (
            "truncated",
            &["DELETE FROM audit_records WHERE seq > 15"],
            "seq 16 (truncated)",
        ),
        (
            "mistyped",
            &["UPDATE audit_records SET session = 'x' WHERE seq = 9"],
            "seq 9 (edited)",
        ),
        (
            "oldest deleted",
            &["DELETE FROM audit_records WHERE seq <= 3"],
            "seq 1 (deleted)",
        ),
    ];
    for (name, statements, expect) in cases {
        let copy = dir.path().join(name);
        copy_dir(&data, &copy);
        sql(&copy, statements).await;
        let (code, out) = verify(&copy);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.contains(expect), "{name}: expected {expect:?} in {out}");
    }
}

#[tokio::test]
async fn the_server_names_the_record_whose_link_was_edited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
    assert_eq!(s.call("POST", "transit/keys/k", Some(&root), None).await.0, 200);
    for _ in 0..12 {
        assert_eq!(s.call("POST", "transit/keys/k/rotate", Some(&root), None).await.0, 200);
    }
    s.stop();
    // (edit, what offline verification names, what the server names)
    let cases = [
        ("UPDATE audit_records SET prev = zeroblob(32) WHERE seq = 20", 19, 20),
        (
            "UPDATE audit_records SET payload = x'00' || substr(payload, 2) WHERE seq = 20",
            20,
            20,
        ),
        // Record 1's own link: nothing before it to blame.
        ("UPDATE audit_records SET prev = randomblob(32) WHERE seq = 1", 1, 1),
    ];
    let forged = forged_record(&data, 20).await;
    let cases = cases
        .iter()
        .map(|(edit, offline, named)| (vec![edit.to_string()], *offline, *named))
        // Record 20 sealed anew under a session the editor added: it opens, and is still named.
        .chain([(forged, 20, 20)]);
    for (i, (edits, offline, named)) in cases.enumerate() {
        let edit = edits.join("; ");
        let copy = dir.path().join(format!("copy{i}"));
        copy_dir(&data, &copy);
        sql(&copy, &edits.iter().map(String::as_str).collect::<Vec<_>>()).await;
        // Offline, without the record keys, an edited link blames the record before it.
        let (code, out) = verify(&copy);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(&format!("seq {offline} (edited)")), "{edit}: {out}");
        let s = Server::with_config(&copy);
        s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
        let (st, v) = s.call("GET", "sys/audit/verify", Some(&root), None).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            (v["data"]["kind"].as_str(), v["data"]["first_bad_seq"].as_u64()),
            (Some("edited"), Some(named)),
            "{edit}: {v}"
        );
    }
}

#[tokio::test]
async fn an_altered_session_is_found_by_the_server_and_its_records_still_exported() {
    // Its public key, its node name (bound into the session key), or the derivation it names.
    for edit in [
        "UPDATE audit_sessions SET public = zeroblob(32) WHERE id = 1",
        "UPDATE audit_sessions SET node = 'elsewhere' WHERE id = 1",
        "UPDATE audit_sessions SET kdf = 1 WHERE id = 1",
    ] {
        an_altered_session_is_found(edit).await;
    }
}

async fn an_altered_session_is_found(edit: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
    let (st, v) = s.call("POST", "transit/keys/k", Some(&root), None).await;
    assert_eq!(st, 200, "{v}");
    s.stop();
    // The chain does not cover the session table: the offline check cannot see this.
    sql(&data, &[edit]).await;
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    let (st, v) = s.call("GET", "sys/audit/verify", Some(&root), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (
            v["data"]["intact"].as_bool(),
            v["data"]["kind"].as_str(),
            v["data"]["first_bad_seq"].as_u64()
        ),
        (Some(false), Some("unreadable"), Some(1)),
        "{edit}: {v}"
    );
    let (_, v) = s
        .call("GET", "sys/audit/export?since=2999-01-01T00:00:00Z", Some(&root), None)
        .await;
    let records = v["data"]["records"].as_array().unwrap();
    assert!(
        records.iter().any(|r| r["seq"] == 1 && r["error"].is_string()),
        "records that do not open are listed whatever the filter: {v}"
    );
}

#[tokio::test]
async fn a_crash_under_load_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config(&data);
    let (key, root) = init_unseal(&s).await;
    let addr = s.addr.clone();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (client, addr, root) = (client.clone(), addr.clone(), root.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000 {
                let body = json!({ "plaintext": b64(format!("{t}-{i}").as_bytes()) });
                let r = client
                    .post(format!("{addr}/v1/transit/encrypt/load"))
                    .header("X-Vault-Token", &root)
                    .json(&body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        if let Some(id) = v["request_id"].as_str() {
                            acked.push(id.to_owned());
                        }
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Command::new("kill")
        .args(["-9", &s.pid().to_string()])
        .status()
        .unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 50, "the load ran ({} acknowledged)", acked.len());
    drop(s);

    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    let s = Server::with_config(&data);
    s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    let (st, v) = s.call("GET", "sys/audit/export", Some(&root), None).await;
    assert_eq!(st, 200);
    // The stored records leave out the node and a response's kind; export puts them back.
    let node = std::env::var("HOSTNAME").unwrap_or_else(|_| "coffer".into());
    assert!(
        v["data"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["node"] == node.as_str() && r["kind"].is_string()),
        "{v}"
    );
    let ids: std::collections::HashSet<&str> = v["data"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "response" && r["st"] == 200)
        .filter_map(|r| r["id"].as_str())
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !ids.contains(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged requests have no record, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

/// Under load checkpoints are paced, so the newest records may wait for
/// one; an idle writer signs them, so even a kill -9 then leaves none unsigned.
#[tokio::test]
async fn an_idle_writer_signs_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config(&data);
    let (_, root) = init_unseal(&s).await;
    let client = reqwest::Client::new();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..32 {
        let (client, addr, root) = (client.clone(), s.addr.clone(), root.clone());
        calls.spawn(async move {
            let body = json!({ "plaintext": b64(format!("m{i}").as_bytes()) });
            let r = client
                .post(format!("{addr}/v1/transit/encrypt/k"))
                .header("X-Vault-Token", &root)
                .json(&body)
                .send()
                .await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        });
    }
    let statuses = calls.join_all().await;
    assert!(statuses.iter().all(|st| *st == 200), "{statuses:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill")
        .args(["-9", &s.pid().to_string()])
        .status()
        .unwrap();
    drop(s);
    let (code, out) = verify(&data);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with(", 0 records after the last checkpoint\n"), "{out}");
}

#[tokio::test]
async fn a_failing_or_stuck_sink_fails_requests_within_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // Failing: the sink's directory does not exist.
    let data = dir.path().join("failing");
    let sink_dir = dir.path().join("sink");
    let sink = sink_dir.join("audit.jsonl");
    let s = Server::with_config_extra(
        &data,
        &format!("[audit]\ndeadline_ms = 500\nfile = {:?}\n", sink.display().to_string()),
    );
    assert_eq!(s.call("GET", "sys/health", None, None).await.0, 501);
    let init = json!({ "secret_shares": 1, "secret_threshold": 1 });
    let (st, v) = s.call("PUT", "sys/init", None, Some(init.clone())).await;
    assert_eq!(st, 503, "the init record could not be written: {v}");
    // Refused before anything was made: no shares were lost.
    let (_, v) = s.call("GET", "sys/init", None, None).await;
    assert_eq!(v["initialized"], false, "{v}");
    // Once the sink can be written, init goes through and the file has every row, in order.
    std::fs::create_dir(&sink_dir).unwrap();
    let (st, v) = s.call("PUT", "sys/init", None, Some(init.clone())).await;
    assert_eq!(st, 200, "{v}");
    let key = v["keys"][0].as_str().unwrap().to_owned();
    let (st, v) = s.call("PUT", "sys/unseal", None, Some(json!({ "key": key }))).await;
    assert_eq!(st, 200, "{v}");
    let lines = std::fs::read_to_string(&sink).unwrap();
    let seqs: Vec<u64> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seq"].as_u64())
        .collect();
    assert!(seqs.len() >= 2, "{lines}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gap: {lines}");
    drop(s);

    // Stuck: a FIFO nobody reads blocks the writer forever.
    let data = dir.path().join("stuck");
    let fifo = dir.path().join("sink.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let s = Server::with_config(&data);
    let (_key, root) = init_unseal(&s).await;
    drop(s);
    let s = Server::with_config_extra(
        &data,
        &format!("[audit]\ndeadline_ms = 700\nfile = {:?}\n", fifo.display().to_string()),
    );
    let start = Instant::now();
    let (st, v) = s.call("PUT", "sys/unseal", None, Some(json!({ "key": _key }))).await;
    assert_eq!(st, 503, "{v}");
    let (st, v) = s.call("POST", "transit/keys/new", Some(&root), None).await;
    assert_eq!(st, 503, "{v}");
    assert!(v["errors"][0].as_str().unwrap().contains("audit"), "{v}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "requests must not hang: {:?}",
        start.elapsed()
    );
    // Health checks keep answering while the trail is stuck.
    assert!(matches!(s.call("GET", "sys/health", None, None).await.0, 200 | 503));
}

/// Reads a FIFO into `into` until the writer closes it, or, once `stop` is
/// set, right after the next read: then the sink's next write fails (EPIPE).
fn fifo_reader(
    fifo: std::path::PathBuf,
    into: std::sync::Arc<std::sync::Mutex<String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(fifo).unwrap();
        let mut buf = [0u8; 65536];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
    })
}

#[tokio::test]
async fn a_sink_that_fails_and_comes_back_leaves_no_gap_and_no_wedge() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fifo = dir.path().join("sink.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let received = Arc::new(Mutex::new(String::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let first = fifo_reader(fifo.clone(), received.clone(), stop.clone());
    let s = Server::with_config_extra(
        &data,
        &format!("[audit]\ndeadline_ms = 1500\nfile = {:?}\n", fifo.display().to_string()),
    );
    let (_, root) = init_unseal(&s).await;
    let encrypt = || {
        s.call(
            "POST",
            "transit/encrypt/k",
            Some(&root),
            Some(json!({ "plaintext": b64(b"x") })),
        )
    };
    assert_eq!(encrypt().await.0, 200);
    // Let the idle writer's checkpoint line come and be read first: read
    // after `stop`, it would take the reader away before the next request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The reader goes away after the next line.
    stop.store(true, Ordering::SeqCst);
    assert_eq!(encrypt().await.0, 200);
    first.join().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (st, v) = encrypt().await;
    assert_eq!(st, 503, "the sink cannot be written: fail closed: {v}");
    // A reader again: the trail takes requests (it used to refuse them until restart).
    stop.store(false, Ordering::SeqCst);
    let second = fifo_reader(fifo.clone(), received.clone(), stop.clone());
    let (st, v) = encrypt().await;
    assert_eq!(st, 200, "{v}");
    s.stop();
    second.join().unwrap();
    let lines = received.lock().unwrap().clone();
    let seqs: Vec<u64> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["seq"].as_u64())
        .collect();
    assert!(seqs.len() >= 6, "{lines}");
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every row, once, in order: {lines}"
    );
}

#[tokio::test]
async fn alerts_reach_the_trail_and_the_webhook_and_no_secret_reaches_disk() {
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let received = std::sync::Arc::new(tokio::sync::Mutex::new(String::new()));
    let sink = received.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let (mut sock, _) = hook.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            sink.lock().await.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = sock
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::with_config_extra(
        &data,
        &format!("[audit]\nwebhook_url = \"http://{hook_addr}/alerts\"\n[audit.rules]\nfailed_burst = 3\n"),
    );
    let (_, root) = init_unseal(&s).await;
    let canary = b"canary-plaintext-5500-0000";
    let (_, v) = s
        .call(
            "POST",
            "transit/encrypt/pii",
            Some(&root),
            Some(json!({ "plaintext": b64(canary), "associated_data": b64(b"row=1") })),
        )
        .await;
    let ct = v["data"]["ciphertext"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let (st, _) = s
            .call(
                "POST",
                "transit/decrypt/pii",
                Some(&root),
                Some(json!({ "ciphertext": ct, "associated_data": b64(b"row=2") })),
            )
            .await;
        assert_eq!(st, 400);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !received.lock().await.contains("failed_burst") {
        assert!(Instant::now() < deadline, "the webhook got no alert");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Alert records are written without holding up the request that raised them.
    let v = loop {
        let (st, v) = s.call("GET", "sys/audit/alerts", Some(&root), None).await;
        assert_eq!(st, 200);
        if v["data"]["alerts"].as_array().is_some_and(|a| !a.is_empty()) || Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["data"]["alerts"][0]["rule"], "failed_burst", "{v}");
    // Alert times are unix seconds like every record's: an hour ahead finds none.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (_, v) = s
        .call(
            "GET",
            &format!("sys/audit/alerts?since={}", now + 3600),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(v["data"]["alerts"], json!([]), "{v}");

    let (_, export) = s.call("GET", "sys/audit/export", Some(&root), None).await;
    let all = export["data"]["records"].as_array().unwrap().clone();
    assert_eq!(export["data"]["next_after"], Value::Null);
    // Page by page, the same records.
    let (mut paged, mut after) = (Vec::new(), 0);
    loop {
        let (st, v) = s
            .call(
                "GET",
                &format!("sys/audit/export?limit=3&after={after}"),
                Some(&root),
                None,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let page = v["data"]["records"].as_array().unwrap();
        assert!(page.len() <= 3);
        paged.extend(page.iter().cloned());
        match v["data"]["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    let seqs = |r: &[Value]| r.iter().map(|x| x["seq"].as_u64()).collect::<Vec<_>>();
    assert!(
        seqs(&paged).len() >= seqs(&all).len(),
        "records written since are in the pages too"
    );
    assert_eq!(seqs(&paged)[..all.len()], seqs(&all)[..]);
    assert_eq!(
        s.call("GET", "sys/audit/export?limit=0", Some(&root), None).await.0,
        400
    );
    let export = export.to_string();
    assert!(export.contains("transit/decrypt/pii"));
    s.stop();
    let disk = all_bytes(&data);
    for secret in [&canary[..], root.as_bytes(), ct.as_bytes()] {
        assert!(!contains(&disk, secret), "a secret is on disk");
        assert!(!contains(export.as_bytes(), secret), "a secret is in the export");
    }
}
