//! The client commands: each parses its arguments and makes API calls.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand, ValueEnum};
use coffer_client::{Client, TlsOptions};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// Where and as whom to connect; `COFFER_*` first, then `VAULT_*`.
#[derive(Args, Clone)]
pub(crate) struct Conn {
    /// Server address [env: COFFER_ADDR, VAULT_ADDR; default http://127.0.0.1:8200]
    #[arg(long, global = true)]
    address: Option<String>,
    /// Token [env: COFFER_TOKEN, VAULT_TOKEN]
    #[arg(long, global = true)]
    token: Option<String>,
    /// Tenant namespace [env: COFFER_NAMESPACE, VAULT_NAMESPACE]
    #[arg(long, global = true)]
    namespace: Option<String>,
    /// PEM CA certificate that verifies the server, instead of the system roots [env: COFFER_CACERT, VAULT_CACERT]
    #[arg(long, global = true, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// PEM client certificate for mTLS [env: COFFER_CLIENT_CERT, VAULT_CLIENT_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// PEM private key of the client certificate [env: COFFER_CLIENT_KEY, VAULT_CLIENT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn env2(a: &str, b: &str) -> Option<String> {
    std::env::var(a)
        .ok()
        .or_else(|| std::env::var(b).ok())
        .filter(|v| !v.is_empty())
}

impl Conn {
    fn client(&self) -> anyhow::Result<Client> {
        let addr = self
            .address
            .clone()
            .or_else(|| env2("COFFER_ADDR", "VAULT_ADDR"))
            .unwrap_or_else(|| "http://127.0.0.1:8200".into());
        let token = self.token.clone().or_else(|| env2("COFFER_TOKEN", "VAULT_TOKEN"));
        let ns = self
            .namespace
            .clone()
            .or_else(|| env2("COFFER_NAMESPACE", "VAULT_NAMESPACE"));
        let file = |flag: &Option<PathBuf>, a: &str, b: &str| -> anyhow::Result<Option<Vec<u8>>> {
            let Some(path) = flag.clone().or_else(|| env2(a, b).map(PathBuf::from)) else {
                return Ok(None);
            };
            std::fs::read(&path)
                .map(Some)
                .with_context(|| format!("reading {}", path.display()))
        };
        let tls = TlsOptions {
            ca_cert: file(&self.ca_cert, "COFFER_CACERT", "VAULT_CACERT")?,
            client_cert: file(&self.client_cert, "COFFER_CLIENT_CERT", "VAULT_CLIENT_CERT")?,
            client_key: file(&self.client_key, "COFFER_CLIENT_KEY", "VAULT_CLIENT_KEY")?.map(Zeroizing::new),
        };
        Ok(Client::with_tls(&addr, token, &tls)?.with_namespace(ns))
    }
}

#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// Initialise, unseal, seal and inspect the server.
    #[command(subcommand)]
    Operator(Operator),
    /// Manage transit keys.
    #[command(subcommand)]
    Key(Key),
    /// Encrypt standard input with a transit key; prints the ciphertext.
    Encrypt(Crypt),
    /// Decrypt a ciphertext read from standard input; writes the plaintext.
    Decrypt(Crypt),
    /// Create, inspect and revoke tokens.
    #[command(subcommand)]
    Token(Token),
    /// Write, read, list and delete ACL policies.
    #[command(subcommand)]
    Policy(Policy),
    /// Read, verify and export the audit trail; list alerts.
    #[command(subcommand)]
    Audit(Audit),
    /// Create, list, disable, enable, rotate and shred tenants.
    #[command(subcommand)]
    Tenant(Tenant),
}

#[derive(Subcommand)]
pub(crate) enum Tenant {
    Create {
        #[arg(value_parser = segment)]
        name: String,
    },
    List,
    /// Refuse every operation in the tenant until enabled again.
    Disable {
        #[arg(value_parser = segment)]
        name: String,
    },
    Enable {
        #[arg(value_parser = segment)]
        name: String,
    },
    /// New tenant key; every key of the tenant is rewrapped under it.
    Rotate {
        #[arg(value_parser = segment)]
        name: String,
    },
    /// IRREVERSIBLE: destroy the tenant's keys, so every ciphertext of it is unrecoverable forever.
    Shred {
        #[arg(value_parser = segment)]
        name: String,
        /// Skip the confirmation prompt.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum Audit {
    /// Verify the trail offline, straight from the store the config names (exit 0 intact, 1 tampered, 2 cannot verify).
    Verify {
        #[arg(long)]
        config: PathBuf,
        /// The checkpoint verify key (hex) to pin, instead of the one in the store.
        #[arg(long)]
        verify_key: Option<String>,
    },
    /// Show the latest records (decrypted); -f follows new ones.
    Tail {
        #[arg(short = 'n', default_value_t = 20)]
        n: u32,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Export decrypted records as JSON lines (for a SIEM).
    Export {
        /// Unix seconds or RFC 3339.
        #[arg(long, default_value = "0")]
        since: String,
        #[arg(long = "format", value_parser = ["jsonl"], default_value = "jsonl", id = "export_format")]
        export_format: String,
    },
    /// List decryption alerts.
    Alerts {
        #[arg(long, default_value = "0")]
        since: String,
    },
    /// Start a new audit record key (new records are sealed under it).
    Rotate,
}

#[derive(Subcommand)]
pub(crate) enum Operator {
    /// Initialise: create the root key and split the unseal key into shares.
    Init {
        #[arg(long, default_value_t = 5)]
        key_shares: u32,
        #[arg(long, default_value_t = 3)]
        key_threshold: u32,
    },
    /// Submit one unseal share (read from standard input if not given).
    Unseal {
        key: Option<String>,
        /// Forget the shares submitted so far.
        #[arg(long)]
        reset: bool,
    },
    /// Seal: wipe the root key from memory; every data call answers 503 until unsealed.
    Seal,
    /// Show the seal status (exit 2 when sealed).
    Status,
}

#[derive(Subcommand)]
pub(crate) enum Key {
    Create {
        #[arg(value_parser = segment)]
        name: String,
        #[arg(long = "type", default_value = "aes256-gcm96")]
        key_type: String,
        #[arg(long, default_value = "transit", value_parser = mount_path)]
        mount: String,
    },
    List {
        #[arg(long, default_value = "transit", value_parser = mount_path)]
        mount: String,
        /// Only keys past their rotation deadline.
        #[arg(long)]
        overdue: bool,
    },
    Read {
        #[arg(value_parser = segment)]
        name: String,
        #[arg(long, default_value = "transit", value_parser = mount_path)]
        mount: String,
    },
    Rotate {
        #[arg(value_parser = segment)]
        name: String,
        #[arg(long, default_value = "transit", value_parser = mount_path)]
        mount: String,
    },
    /// Change a key's settings.
    Config {
        #[arg(value_parser = segment)]
        name: String,
        #[arg(long)]
        min_decryption_version: Option<u32>,
        #[arg(long)]
        min_encryption_version: Option<u32>,
        #[arg(long)]
        deletion_allowed: Option<bool>,
        /// e.g. 2160h; 0 disables.
        #[arg(long)]
        auto_rotate_period: Option<String>,
        #[arg(long, default_value = "transit", value_parser = mount_path)]
        mount: String,
    },
    /// Delete a key (only if its config allows deletion).
    Delete {
        #[arg(value_parser = segment)]
        name: String,
        #[arg(long, default_value = "transit", value_parser = mount_path)]
        mount: String,
    },
}

#[derive(Args)]
pub(crate) struct Crypt {
    key: String,
    /// Associated data (text) the ciphertext is bound to.
    #[arg(long)]
    aad: Option<String>,
    #[arg(long, default_value = "transit")]
    mount: String,
}

#[derive(Subcommand)]
pub(crate) enum Token {
    Create {
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// e.g. 1h
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Show the current token.
    Lookup,
    /// Revoke a token and its children (or by --accessor, or --self).
    Revoke {
        /// The token to revoke.
        #[arg(value_name = "TOKEN")]
        target: Option<String>,
        #[arg(long, conflicts_with = "target")]
        accessor: Option<String>,
        #[arg(long = "self", conflicts_with_all = ["target", "accessor"])]
        own: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum Policy {
    /// Write a policy from a file ("-" for standard input).
    Write {
        name: String,
        file: PathBuf,
    },
    Read {
        name: String,
    },
    List,
    Delete {
        name: String,
    },
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("reading standard input")?;
    Ok(buf)
}

fn print(conn: &Conn, v: &Option<Value>) -> anyhow::Result<()> {
    let Some(v) = v else { return Ok(()) };
    if conn.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let body = match (v.get("data"), v.get("auth")) {
        (Some(d), _) if !d.is_null() => d,
        (_, Some(a)) if !a.is_null() => a,
        _ => v,
    };
    match body {
        Value::Object(m) => {
            let width = m.keys().map(String::len).max().unwrap_or(0);
            println!("{:width$}    Value\n{:width$}    -----", "Key", "---");
            for (k, val) in m {
                let shown = match val {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{k:width$}    {shown}");
            }
        }
        other => println!("{other}"),
    }
    Ok(())
}

pub(crate) async fn run(conn: Conn, cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let c = conn.client()?;
    match cmd {
        ClientCommand::Operator(op) => return operator(&conn, &c, op).await,
        ClientCommand::Audit(a) => return audit(&conn, &c, a).await,
        ClientCommand::Tenant(t) => {
            let r = match t {
                Tenant::Create { name } => c.request("POST", &format!("sys/namespaces/{name}"), None).await?,
                Tenant::List => c.request("LIST", "sys/namespaces", None).await?,
                Tenant::Disable { name } => {
                    c.request("POST", &format!("sys/namespaces/{name}/disable"), None)
                        .await?
                }
                Tenant::Enable { name } => {
                    c.request("POST", &format!("sys/namespaces/{name}/enable"), None)
                        .await?
                }
                Tenant::Rotate { name } => {
                    c.request("POST", &format!("sys/namespaces/{name}/rotate"), None)
                        .await?
                }
                Tenant::Shred { name, yes } => {
                    if !yes {
                        eprintln!(
                            "Shredding tenant {name:?} destroys its keys. Every ciphertext of this tenant becomes\n\
                             permanently undecryptable; no backup can bring it back. This cannot be undone.\n\
                             Type the tenant name to confirm:"
                        );
                        let mut line = String::new();
                        std::io::stdin()
                            .read_line(&mut line)
                            .context("reading the confirmation")?;
                        if line.trim() != name {
                            bail!("not confirmed; nothing was shredded");
                        }
                    }
                    c.request("DELETE", &format!("sys/namespaces/{name}"), None).await?;
                    eprintln!("Tenant {name:?} shredded. A tombstone records it.");
                    None
                }
            };
            print(&conn, &r)?;
        }
        ClientCommand::Key(k) => {
            let r = match k {
                Key::Create { name, key_type, mount } => {
                    c.request(
                        "POST",
                        &format!("{mount}/keys/{name}"),
                        Some(json!({ "type": key_type })),
                    )
                    .await?
                }
                Key::List { mount, overdue } => {
                    let q = if overdue { "?overdue=true" } else { "" };
                    match c.request("LIST", &format!("{mount}/keys{q}"), None).await {
                        Err(coffer_client::ClientError::Api { status: 404, .. }) if overdue => {
                            eprintln!("No key is overdue for rotation.");
                            None
                        }
                        other => other?,
                    }
                }
                Key::Read { name, mount } => c.request("GET", &format!("{mount}/keys/{name}"), None).await?,
                Key::Rotate { name, mount } => c.request("POST", &format!("{mount}/keys/{name}/rotate"), None).await?,
                Key::Config {
                    name,
                    min_decryption_version,
                    min_encryption_version,
                    deletion_allowed,
                    auto_rotate_period,
                    mount,
                } => {
                    let mut body = serde_json::Map::new();
                    let mut set = |k: &str, v: Option<Value>| {
                        if let Some(v) = v {
                            body.insert(k.into(), v);
                        }
                    };
                    set("min_decryption_version", min_decryption_version.map(Value::from));
                    set("min_encryption_version", min_encryption_version.map(Value::from));
                    set("deletion_allowed", deletion_allowed.map(Value::from));
                    set("auto_rotate_period", auto_rotate_period.map(Value::from));
                    c.request(
                        "POST",
                        &format!("{mount}/keys/{name}/config"),
                        Some(Value::Object(body)),
                    )
                    .await?
                }
                Key::Delete { name, mount } => c.request("DELETE", &format!("{mount}/keys/{name}"), None).await?,
            };
            print(&conn, &r)?;
        }
        ClientCommand::Encrypt(a) => {
            let pt = read_stdin()?;
            let ct = c
                .encrypt(&a.mount, &a.key, &pt, a.aad.as_ref().map(String::as_bytes))
                .await?;
            if conn.format == Format::Json {
                println!("{}", json!({ "ciphertext": ct }));
            } else {
                println!("{ct}");
            }
        }
        ClientCommand::Decrypt(a) => {
            let input = read_stdin()?;
            let ct = String::from_utf8(input).context("the ciphertext is not text")?;
            let pt = c
                .decrypt(&a.mount, &a.key, ct.trim(), a.aad.as_ref().map(String::as_bytes))
                .await?;
            if conn.format == Format::Json {
                println!("{}", json!({ "plaintext": STANDARD.encode(&pt) }));
            } else {
                std::io::stdout().write_all(&pt)?;
            }
        }
        ClientCommand::Token(t) => {
            let r = match t {
                Token::Create {
                    policies,
                    ttl,
                    display_name,
                } => {
                    let mut body = json!({});
                    if !policies.is_empty() {
                        body["policies"] = json!(policies);
                    }
                    if let Some(t) = ttl {
                        body["ttl"] = json!(t);
                    }
                    if let Some(d) = display_name {
                        body["display_name"] = json!(d);
                    }
                    c.request("POST", "auth/token/create", Some(body)).await?
                }
                Token::Lookup => c.request("GET", "auth/token/lookup-self", None).await?,
                Token::Revoke { target, accessor, own } => match (target, accessor, own) {
                    (_, _, true) => c.request("POST", "auth/token/revoke-self", None).await?,
                    (Some(t), _, _) => {
                        c.request("POST", "auth/token/revoke", Some(json!({ "token": t })))
                            .await?
                    }
                    (None, Some(a), _) => {
                        c.request("POST", "auth/token/revoke-accessor", Some(json!({ "accessor": a })))
                            .await?
                    }
                    (None, None, false) => bail!("name a token, --accessor A, or --self"),
                },
            };
            print(&conn, &r)?;
        }
        ClientCommand::Policy(p) => {
            let r = match p {
                Policy::Write { name, file } => {
                    let text = if file.as_os_str() == "-" {
                        String::from_utf8(read_stdin()?).context("the policy is not UTF-8")?
                    } else {
                        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
                    };
                    c.request(
                        "PUT",
                        &format!("sys/policies/acl/{name}"),
                        Some(json!({ "policy": text })),
                    )
                    .await?;
                    eprintln!("Success! Uploaded policy: {name}");
                    None
                }
                Policy::Read { name } => c.request("GET", &format!("sys/policies/acl/{name}"), None).await?,
                Policy::List => c.request("LIST", "sys/policies/acl", None).await?,
                Policy::Delete { name } => c.request("DELETE", &format!("sys/policies/acl/{name}"), None).await?,
            };
            print(&conn, &r)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A tenant or key name: one path segment, so it cannot turn into another
/// request (`acme/disable`, `k/rotate`, `..`, a query).
fn segment(s: &str) -> Result<String, String> {
    let bad = s.is_empty()
        || s == "."
        || s == ".."
        || s.chars()
            .any(|c| matches!(c, '/' | '?' | '#' | '%' | '\\') || c.is_whitespace() || c.is_control());
    if bad {
        return Err(format!(
            "{s:?} is not a valid name: no '/', '?', '#', '%', spaces, '.' or '..'"
        ));
    }
    Ok(s.to_owned())
}

/// A mount path: segments as [`segment`] allows, joined by '/'.
fn mount_path(s: &str) -> Result<String, String> {
    let s = s.trim_matches('/');
    s.split('/').try_for_each(|part| segment(part).map(drop))?;
    Ok(s.to_owned())
}

/// The records listed in a response's `data.{field}`.
fn records(v: &Option<Value>, field: &str) -> Vec<Value> {
    v.as_ref()
        .and_then(|v| v["data"][field].as_array().cloned())
        .unwrap_or_default()
}

async fn audit(conn: &Conn, c: &Client, cmd: Audit) -> anyhow::Result<ExitCode> {
    match cmd {
        Audit::Verify { config, verify_key } => {
            // Exit 2 when the trail could not be checked at all, so 1 always means tampered.
            let checked = async {
                let cfg = coffer_server::Config::load(&config)?;
                anyhow::Ok(coffer_server::verify_audit_offline(&cfg, verify_key.as_deref()).await?)
            };
            let report = match checked.await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("Error: cannot verify the audit trail: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let intact = report["intact"].as_bool().unwrap_or(false);
            if conn.format == Format::Json {
                println!("{report}");
            } else if intact {
                println!(
                    "intact: {} records, {} checkpoints, {} records after the last checkpoint",
                    report["records"], report["checkpoints"], report["unsigned_tail"]
                );
            } else {
                println!(
                    "TAMPERED: first bad record is seq {} ({})",
                    report["first_bad_seq"],
                    report["kind"].as_str().unwrap_or("?")
                );
            }
            return Ok(if intact { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        Audit::Tail { n, follow } => {
            let r = c.request("GET", &format!("sys/audit/tail?n={n}"), None).await?;
            let mut last = 0;
            for rec in records(&r, "records") {
                last = rec["seq"].as_u64().unwrap_or(last);
                println!("{rec}");
            }
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let r = c
                    .request("GET", &format!("sys/audit/tail?n=1000&after={last}"), None)
                    .await?;
                for rec in records(&r, "records") {
                    last = rec["seq"].as_u64().unwrap_or(last);
                    println!("{rec}");
                }
            }
        }
        Audit::Export { since, .. } => pages(c, "export", "records", &since).await?,
        Audit::Alerts { since } => pages(c, "alerts", "alerts", &since).await?,
        Audit::Rotate => {
            let r = c.request("POST", "sys/audit/rotate", None).await?;
            print(conn, &r)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints every record of `sys/audit/{what}` as JSON lines, page by page.
async fn pages(c: &Client, what: &str, field: &str, since: &str) -> anyhow::Result<()> {
    let since = since.replace('+', "%2B");
    let mut after = 0;
    loop {
        let r = c
            .request("GET", &format!("sys/audit/{what}?since={since}&after={after}"), None)
            .await?;
        for rec in records(&r, field) {
            println!("{rec}");
        }
        match r.as_ref().and_then(|v| v["data"]["next_after"].as_u64()) {
            Some(next) => after = next,
            None => return Ok(()),
        }
    }
}

async fn operator(conn: &Conn, c: &Client, op: Operator) -> anyhow::Result<ExitCode> {
    let r = match op {
        Operator::Init {
            key_shares,
            key_threshold,
        } => {
            let r = c
                .request(
                    "PUT",
                    "sys/init",
                    Some(json!({ "secret_shares": key_shares, "secret_threshold": key_threshold })),
                )
                .await?;
            if conn.format == Format::Table {
                if let Some(v) = &r {
                    for (i, k) in v["keys_base64"].as_array().into_iter().flatten().enumerate() {
                        println!("Unseal Key {}: {}", i + 1, k.as_str().unwrap_or_default());
                    }
                    println!("\nInitial Root Token: {}", v["root_token"].as_str().unwrap_or_default());
                    println!(
                        "\nThe server is initialised with {key_shares} key shares and a threshold of {key_threshold}.\n\
                         Keep the shares apart: any {key_threshold} of them unseal the server."
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            r
        }
        Operator::Unseal { key, reset } => {
            let body = if reset {
                json!({ "reset": true })
            } else {
                let key = match key {
                    Some(k) => k,
                    None => String::from_utf8(read_stdin()?)
                        .context("the share is not text")?
                        .trim()
                        .to_owned(),
                };
                json!({ "key": key })
            };
            c.request("PUT", "sys/unseal", Some(body)).await?
        }
        Operator::Seal => {
            c.request("PUT", "sys/seal", None).await?;
            eprintln!("Success! Coffer is sealed.");
            return Ok(ExitCode::SUCCESS);
        }
        Operator::Status => {
            let r = c.request("GET", "sys/seal-status", None).await?;
            print(conn, &r)?;
            let sealed = r.as_ref().and_then(|v| v["sealed"].as_bool()).unwrap_or(true);
            return Ok(if sealed { ExitCode::from(2) } else { ExitCode::SUCCESS });
        }
    };
    print(conn, &r)?;
    Ok(ExitCode::SUCCESS)
}
