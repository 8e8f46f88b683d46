//! `coffer server`: with `--config FILE`, or `--dev` (temporary store,
//! initialised and unsealed, root token printed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use coffer_server::{Config, DevOptions};
use tokio::net::TcpListener;

#[derive(Args)]
pub(crate) struct ServerArgs {
    /// Development mode: temporary storage, initialised and unsealed, root token printed. Never for production.
    #[arg(long)]
    dev: bool,
    /// Root token id for --dev (default: random).
    #[arg(long, requires = "dev")]
    dev_root_token_id: Option<String>,
    /// Listen address for --dev.
    #[arg(long, default_value = "127.0.0.1:8200", requires = "dev")]
    dev_listen_address: SocketAddr,
    /// Configuration file (TOML).
    #[arg(long, conflicts_with = "dev", required_unless_present = "dev")]
    config: Option<PathBuf>,
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG").unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    if args.dev {
        return run_dev(DevOptions {
            root_token_id: args.dev_root_token_id,
            listen: args.dev_listen_address,
        })
        .await;
    }
    let Some(path) = args.config else {
        bail!("--config FILE or --dev is required")
    };
    let config = Config::load(&path)?;
    let core = coffer_server::open(&config).await.context("opening storage")?;
    let listener = TcpListener::bind(config.listener.address)
        .await
        .with_context(|| format!("listening on {}", config.listener.address))?;
    let state = if core.is_initialized() {
        "sealed"
    } else {
        "not initialised"
    };
    println!(
        "Coffer server {} listening on http://{} ({state})",
        coffer_server::VERSION,
        listener.local_addr()?
    );
    coffer_server::serve(core, listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

async fn run_dev(opts: DevOptions) -> anyhow::Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("coffer-dev-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let config = Config::parse(&format!(
        "[storage]\npath = {:?}\n[listener]\naddress = \"{}\"\ntls_disable = true\n",
        dir.path().display().to_string(),
        opts.listen
    ))
    .map_err(anyhow::Error::msg)?;
    let core = coffer_server::open(&config).await.context("opening storage")?;
    let creds = coffer_server::dev_init(&core, opts.root_token_id.as_deref()).await?;
    coffer_server::scheduler::spawn(
        core.clone(),
        std::time::Duration::from_secs(config.rotation.check_interval_secs.max(1)),
    );
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    println!(
        "==> Coffer {} dev server started. Do not use it in production: storage is temporary.\n\n\
         \x20   export VAULT_ADDR='http://{addr}'\n\n\
         Unseal Key: {}\nRoot Token: {}\n\n\
         The transit engine is mounted at transit/.",
        coffer_server::VERSION,
        creds.unseal_key_b64,
        creds.root_token
    );
    coffer_server::serve(core, listener, shutdown_signal()).await?;
    drop(dir);
    Ok(ExitCode::SUCCESS)
}
