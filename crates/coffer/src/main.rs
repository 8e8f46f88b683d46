//! `coffer`: the server (`coffer server`) and a CLI over its HTTP API.
//!
//! The CLI only parses arguments and calls `coffer-client`; the server only
//! parses its configuration and calls `coffer-server`.
#![forbid(unsafe_code)]

mod cli;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "Encryption and key management for SaaS applications"
)]
struct Args {
    #[command(flatten)]
    conn: cli::Conn,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Server(server::ServerArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

/// Vault's CLI takes long flags with one dash (`-format=json`); accept both.
fn normalise_args() -> Vec<String> {
    const LONG: [&str; 14] = [
        "format",
        "ca-cert",
        "client-cert",
        "client-key",
        "dev-tls",
        "dev-tls-cert-dir",
        "address",
        "token",
        "namespace",
        "mount",
        "dev",
        "dev-root-token-id",
        "dev-listen-address",
        "config",
    ];
    std::env::args()
        .map(|a| match a.strip_prefix('-') {
            Some(rest)
                if !rest.starts_with('-') && LONG.iter().any(|l| rest == *l || rest.starts_with(&format!("{l}="))) =>
            {
                format!("-{a}")
            }
            _ => a,
        })
        .collect()
}

// Many small, short-lived allocations per request (JSON, buffers); mimalloc
// serves them from thread-local pages without glibc's locking and coalescing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Scheduler ticks between the runtime's polls for I/O with the audit on
/// (tokio's default, 61, otherwise). A request read a few tasks earlier
/// joins the audit commit being gathered instead of waiting a whole commit
/// for the next one: +7–12% single requests at 16 connections; without a
/// commit to join the extra polls only cost CPU (BENCHMARKS.md).
const AUDITED_EVENT_INTERVAL: u32 = 2;
const DEFAULT_EVENT_INTERVAL: u32 = 61;

/// `None` is `--dev`, whose audit is always on.
fn event_interval(config: Option<&coffer_server::Config>) -> u32 {
    if config.is_none_or(|c| c.audit.enabled) {
        AUDITED_EVENT_INTERVAL
    } else {
        DEFAULT_EVENT_INTERVAL
    }
}

fn runtime(event_interval: u32) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(event_interval)
        .build()
        .map_err(|e| anyhow::anyhow!("starting the runtime: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse_from(normalise_args());
    let result = match args.command {
        Command::Server(s) => server::config(&s)
            .and_then(|config| runtime(event_interval(config.as_ref()))?.block_on(server::run(s, config))),
        Command::Client(c) => runtime(DEFAULT_EVENT_INTERVAL).and_then(|r| r.block_on(cli::run(args.conn, c))),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_for_io_often_only_with_the_audit_on() {
        let base = "[storage]\npath = \"/x\"\n[listener]\naddress = \"127.0.0.1:8200\"\ntls_disable = true\n";
        let on = coffer_server::Config::parse(base).unwrap();
        let off = coffer_server::Config::parse(&format!("{base}[audit]\nenabled = false\n")).unwrap();
        assert!(on.audit.enabled && !off.audit.enabled);
        assert_eq!(event_interval(None), AUDITED_EVENT_INTERVAL);
        assert_eq!(event_interval(Some(&on)), AUDITED_EVENT_INTERVAL);
        assert_eq!(event_interval(Some(&off)), DEFAULT_EVENT_INTERVAL);
    }
}
