//! `coffer server`: with `--config FILE`, or `--dev` (temporary store,
//! initialised and unsealed, root token printed; `--dev-tls` adds a
//! throwaway CA and server certificate).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use coffer_server::config::{Listener, Storage};
use coffer_server::{Config, DevOptions, Limits, Tls};
use tokio::net::TcpListener;

/// How often certificate files are checked for changes.
const TLS_POLL: Duration = Duration::from_secs(2);

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
    /// Serve --dev over TLS with a generated CA and certificate (prints the CA path for VAULT_CACERT).
    #[arg(long, requires = "dev")]
    dev_tls: bool,
    /// Where --dev-tls writes its CA, certificate and key (default: a temporary directory).
    #[arg(long, requires = "dev_tls")]
    dev_tls_cert_dir: Option<PathBuf>,
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

/// The configuration a `--config` server runs with; `None` for `--dev`.
pub(crate) fn config(args: &ServerArgs) -> anyhow::Result<Option<Config>> {
    if args.dev {
        return Ok(None);
    }
    let Some(path) = &args.config else {
        bail!("--config FILE or --dev is required")
    };
    Ok(Some(Config::load(path)?))
}

pub(crate) async fn run(args: ServerArgs, config: Option<Config>) -> anyhow::Result<ExitCode> {
    init_logging();
    let Some(config) = config else {
        return run_dev(
            DevOptions {
                root_token_id: args.dev_root_token_id,
                listen: args.dev_listen_address,
            },
            args.dev_tls,
            args.dev_tls_cert_dir,
        )
        .await;
    };
    coffer_server::harden_process(config.disable_mlock);
    let tls = tls_for(&config.listener)?;
    let core = coffer_server::open(&config).await.context("opening storage")?;
    coffer_server::scheduler::spawn(
        core.clone(),
        Duration::from_secs(config.rotation.check_interval_secs.max(1)),
    );
    let listener = TcpListener::bind(config.listener.address)
        .await
        .with_context(|| format!("listening on {}", config.listener.address))?;
    let state = if core.is_initialized() {
        "sealed"
    } else {
        "not initialised"
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!(
        "Coffer server {} listening on {scheme}://{} ({state})",
        coffer_server::VERSION,
        listener.local_addr()?
    );
    coffer_server::serve(core, config.limits, listener, tls, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The listener's TLS, watched for certificate changes; `None` for plain HTTP.
fn tls_for(listener: &Listener) -> anyhow::Result<Option<Arc<Tls>>> {
    if listener.tls_disable {
        return Ok(None);
    }
    let tls = Tls::load(listener).context("loading the TLS certificate")?;
    tls.watch(TLS_POLL);
    Ok(Some(tls))
}

async fn run_dev(opts: DevOptions, dev_tls: bool, cert_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // Dev storage is temporary anyway; only core dumps are worth refusing.
    coffer_server::harden_process(true);
    let dir = tempfile::Builder::new()
        .prefix("coffer-dev-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let mut listener = Listener::plain(opts.listen);
    let mut ca_path = None;
    if dev_tls {
        let tls_dir = cert_dir.unwrap_or_else(|| dir.path().join("tls"));
        let files = write_dev_certs(&tls_dir, opts.listen)?;
        listener.tls_disable = false;
        listener.tls_cert_file = Some(files.cert);
        listener.tls_key_file = Some(files.key);
        ca_path = Some(files.ca);
    } else if !opts.listen.ip().is_loopback() {
        tracing::warn!("dev server serving plain HTTP on non-loopback address {}", opts.listen);
    }
    let config = Config {
        storage: Storage {
            path: dir.path().join("data"),
        },
        listener,
        limits: Limits::default(),
        disable_mlock: true,
        node_name: None,
        audit: Default::default(),
        rotation: Default::default(),
        cache: Default::default(),
    };
    config.validate(true).map_err(anyhow::Error::msg)?;
    let tls = tls_for(&config.listener)?;
    let core = coffer_server::open(&config).await.context("opening storage")?;
    let creds = coffer_server::dev_init(&core, opts.root_token_id.as_deref()).await?;
    coffer_server::scheduler::spawn(
        core.clone(),
        Duration::from_secs(config.rotation.check_interval_secs.max(1)),
    );
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let ca_line = ca_path
        .map(|p| format!("    export VAULT_CACERT='{}'\n", p.display()))
        .unwrap_or_default();
    println!(
        "==> Coffer {} dev server started. Do not use it in production: storage is temporary.\n\n\
         \x20   export VAULT_ADDR='{scheme}://{addr}'\n{ca_line}\n\
         Unseal Key: {}\nRoot Token: {}\n\n\
         The transit engine is mounted at transit/.",
        coffer_server::VERSION,
        creds.unseal_key_b64,
        creds.root_token
    );
    coffer_server::serve(core, config.limits, listener, tls, shutdown_signal()).await?;
    drop(dir);
    Ok(ExitCode::SUCCESS)
}

struct DevCerts {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A throwaway CA and a server certificate for localhost and the listen address.
fn write_dev_certs(dir: &Path, listen: SocketAddr) -> anyhow::Result<DevCerts> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Coffer dev CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !listen.ip().is_unspecified() && !names.contains(&listen.ip().to_string()) {
        names.push(listen.ip().to_string());
    }
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    let files = DevCerts {
        ca: dir.join("coffer-ca.pem"),
        cert: dir.join("coffer-cert.pem"),
        key: dir.join("coffer-key.pem"),
    };
    std::fs::write(&files.ca, ca.pem())?;
    std::fs::write(&files.cert, cert.pem())?;
    write_private(&files.key, key.serialize_pem().as_bytes())?;
    Ok(files)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    // The mode above applies only to a new file: narrow an existing one before writing the key.
    #[cfg(unix)]
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(bytes)?;
    Ok(())
}
