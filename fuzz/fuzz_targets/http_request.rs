//! The whole HTTP API in process: one dev server (SQLite store, initialised
//! and unsealed, root token `root`) per fuzzing process, fed one request per
//! input. A request must never panic the server, and must never be answered
//! with a 5xx other than 503 (sealed, timed out) unless the caller asked for that code
//! (Vault's `sys/health?activecode=` and `partial_failure_response_code`).
//!
//! Input layout (see `fuzz/README.md`):
//!
//! ```text
//! byte 0      bits 0-2 method: GET POST PUT DELETE LIST PATCH HEAD BREW(junk)
//!             bits 3-4 token:  0 X-Vault-Token: root, 1 none,
//!                              2 X-Vault-Token: <extra line>, 3 Authorization: Bearer root
//!             bits 5-6 namespace header: 0 none, 1 "", 2 "/", 3 <extra line>
//!             bit  7   the token of mode 2 goes in `Authorization: Bearer` instead
//! then        path (after /v1/, may hold a ?query) up to the first '\n'
//! then        if a mode above needs it, one more line: the raw header value
//! then        the body (everything left)
//! ```
//!
//! The server is stateful across inputs. So that one input cannot make all
//! later ones shallow, the harness undoes three things after each request:
//! it unseals a sealed server, recreates the `root` token if it was revoked
//! (from a backup root token with a random id), and remounts `transit/` if
//! a mount was deleted.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri};
use coffer_server::{Clock, Core};
use coffer_store::sqlite::SqliteStore;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt;

const METHODS: [&str; 8] = ["GET", "POST", "PUT", "DELETE", "LIST", "PATCH", "HEAD", "BREW"];
const ROOT: &str = "root";

struct Server {
    app: Router,
    core: Arc<Core>,
    unseal_key: String,
    /// An orphan root token the fuzzer cannot name, to recreate `root`.
    backup_token: String,
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the tokio runtime")
    })
}

/// `/dev/shm/coffer-fuzz/<pid>` (or under `$COFFER_FUZZ_DIR` / the temp dir):
/// a RAM disk keeps SQLite's fsyncs cheap. Directories of processes that are
/// gone are removed first, since a process's own is never cleaned up.
fn data_dir() -> PathBuf {
    let parent = std::env::var_os("COFFER_FUZZ_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() { shm } else { std::env::temp_dir() }.join("coffer-fuzz")
        });
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            let stale = e
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists());
            if stale {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = parent.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // Internal errors are logged, not returned: show them on stderr.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::ERROR)
            .with_writer(std::io::stderr)
            .try_init();
        runtime().block_on(async {
            let dir = data_dir();
            let store = SqliteStore::open(&dir).await.expect("opening the SQLite store");
            let core = Arc::new(
                Core::open(Arc::new(store), Clock::default())
                    .await
                    .expect("opening the core"),
            );
            let creds = coffer_server::dev_init(&core, Some(ROOT)).await.expect("dev init");
            let app = coffer_server::app(core.clone(), coffer_server::Limits::default());
            let backup_token = format!(
                "backup-{}",
                hex::encode(coffer_core::rand::bytes(16).expect("random bytes"))
            );
            let mut s = Server {
                app,
                core,
                unseal_key: creds.unseal_key_b64,
                backup_token: String::new(),
            };
            let (status, body) = s
                .call(
                    "POST",
                    "auth/token/create",
                    ROOT,
                    json!({ "id": backup_token, "policies": ["root"], "no_parent": true }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "creating the backup root token: {body}");
            s.backup_token = backup_token;
            s
        })
    })
}

/// `COFFER_FUZZ_VERBOSE=1` prints every request and answer (for replaying inputs).
fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("COFFER_FUZZ_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0"))
}

impl Server {
    /// A well-formed request from the harness itself (repairs), with its JSON answer.
    async fn call(&self, method: &str, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("/v1/{path}"))
            .header("x-vault-token", token)
            .body(if body.is_null() {
                Body::empty()
            } else {
                Body::from(body.to_string())
            })
            .expect("harness request");
        let resp = self.app.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("reading the response body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Undoes what would make every later input shallow.
    async fn repair(&self, path: &str) {
        if self.core.is_sealed() {
            if verbose() {
                eprintln!("harness: unsealing");
            }
            let (status, body) = self
                .call("PUT", "sys/unseal", "", json!({ "key": self.unseal_key }))
                .await;
            assert!(
                status == StatusCode::OK && !self.core.is_sealed(),
                "harness: could not unseal: {status} {body}"
            );
        }
        if path.contains("revoke") {
            let (status, _) = self.call("GET", "auth/token/lookup-self", ROOT, Value::Null).await;
            if status == StatusCode::FORBIDDEN {
                if verbose() {
                    eprintln!("harness: recreating the root token");
                }
                let (status, body) = self
                    .call(
                        "POST",
                        "auth/token/create",
                        &self.backup_token,
                        json!({ "id": ROOT, "policies": ["root"], "no_parent": true }),
                    )
                    .await;
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "harness: could not recreate the root token: {body}"
                );
            }
        }
        if path.starts_with("sys/mounts") {
            // 400 "already in use" when it is still there.
            let _ = self
                .call("POST", "sys/mounts/transit", ROOT, json!({ "type": "transit" }))
                .await;
        }
    }
}

/// A URI from raw path bytes: as is when valid, else with every byte that
/// is not printable ASCII (and `%`, `#`, space) percent-encoded.
fn uri(path: &[u8]) -> Option<Uri> {
    let mut raw = b"/v1/".to_vec();
    raw.extend_from_slice(path);
    if let Ok(u) = Uri::try_from(raw.as_slice()) {
        return Some(u);
    }
    let mut enc = String::from("/v1/");
    for &b in path {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'#') {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    Uri::try_from(enc).ok()
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A status the request itself asked for: Vault lets callers pick health
/// codes and the partial-batch-failure code. Only counts when the answer is
/// not an error envelope (a real failure answers `{"errors": [...]}`).
fn chosen_by_caller(status: StatusCode, uri: &Uri, body: &[u8], resp: &Value) -> bool {
    let code = status.as_str();
    let query = uri.query().unwrap_or("");
    let body = String::from_utf8_lossy(body);
    let asked = (query.contains("code=") && query.contains(code))
        || (body.contains("partial_failure_response_code") && body.contains(code));
    asked && resp.get("errors").is_none()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let server = server();
    let method = METHODS[usize::from(flags & 7)];
    let token_mode = (flags >> 3) & 3;
    let ns_mode = (flags >> 5) & 3;
    let bearer = flags & 0x80 != 0;

    let (path, mut rest) = split_line(rest);
    let Some(uri) = uri(path) else {
        return;
    };
    let mut extra = || {
        let (line, r) = split_line(rest);
        rest = r;
        line
    };
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("valid method token"))
        .uri(uri.clone());
    match token_mode {
        0 => builder = builder.header("x-vault-token", ROOT),
        1 => {}
        2 => {
            let line = extra();
            let (name, mut value) = if bearer {
                ("authorization", b"Bearer ".to_vec())
            } else {
                ("x-vault-token", Vec::new())
            };
            value.extend_from_slice(line);
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                builder = builder.header(name, v);
            }
        }
        _ => builder = builder.header("authorization", "Bearer root"),
    }
    match ns_mode {
        0 => {}
        1 => builder = builder.header("x-vault-namespace", ""),
        2 => builder = builder.header("x-vault-namespace", "/"),
        _ => {
            if let Ok(v) = HeaderValue::from_bytes(extra()) {
                builder = builder.header("x-vault-namespace", v);
            }
        }
    }
    let body = rest.to_vec();
    // No connection information: the router then treats the request as
    // plain HTTP without a client certificate, as `coffer_server::app` documents.
    let req = builder.body(Body::from(body.clone())).expect("request parts are valid");

    runtime().block_on(async {
        let resp = server.app.clone().oneshot(req).await.expect("router is infallible");
        let status = resp.status();
        let bad = status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE;
        if bad || verbose() {
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            if verbose() {
                eprintln!("{method} {uri} -> {status} {}", String::from_utf8_lossy(&bytes));
            }
            let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if bad && !chosen_by_caller(status, &uri, &body, &json) {
                panic!(
                    "server answered {status} to {method} {uri} (token mode {token_mode}, namespace mode {ns_mode}, \
                     body {:?}): {}",
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        server.repair(uri.path().trim_start_matches("/v1/")).await;
    });
});
