//! The server configuration file (TOML).
//!
//! ```toml
//! [storage]
//! path = "/var/lib/coffer"        # embedded SQLite data directory
//! [listener]
//! address = "0.0.0.0:8200"
//! tls_cert_file = "/etc/coffer/tls/server.pem"   # chain, leaf first
//! tls_key_file = "/etc/coffer/tls/server.key"
//! # tls_min_version = "tls12"                    # default "tls13"
//! # tls_client_ca_file = "/etc/coffer/tls/clients-ca.pem"
//! # tls_require_client_cert = true
//! # tls_disable = true                           # plain HTTP: loopback only
//! [limits]
//! max_request_bytes = 33554432
//! max_batch_items = 10000
//! rate_limit = 0                  # requests per second per token; 0 = off
//! request_timeout = "90s"
//! max_inflight_bytes = 268435456  # request data held at once, all requests (503 above it)
//! max_connections = 4096
//! idle_timeout = "5m"             # a connection silent this long either way is closed
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub storage: Storage,
    pub listener: Listener,
    #[serde(default)]
    pub limits: Limits,
    /// Skip locking the server's memory into RAM (as Vault's `disable_mlock`).
    #[serde(default)]
    pub disable_mlock: bool,
    /// This node's name in audit records (default: $HOSTNAME, else "coffer").
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub audit: crate::audit::AuditConfig,
    #[serde(default)]
    pub rotation: Rotation,
    #[serde(default)]
    pub cache: Cache,
}

/// `[rotation]`: automatic rotation policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// How often due keys are looked for, seconds.
    pub check_interval_secs: u64,
    /// Tenant key rotation period (e.g. "8760h"); "0" = never.
    pub tenant_key_period: String,
    /// Default `auto_rotate_period` for new keys, by type, e.g. `"aes256-gcm96" = "2160h"`.
    pub default_period: std::collections::BTreeMap<String, String>,
    /// Messages a transit key version may seal before it is rotated out
    /// (default 0.9 × 2^32, as Vault's barrier key).
    pub max_encryptions_per_version: u64,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            check_interval_secs: 60,
            tenant_key_period: "0".into(),
            default_period: Default::default(),
            max_encryptions_per_version: crate::usage::DEFAULT_LIMIT,
        }
    }
}

/// The fewest messages a key version may be allowed to seal.
const MIN_ENCRYPTION_LIMIT: u64 = 10_000;

/// Entries a cache may be given (each is allocated when the cache is made).
const MAX_CACHE: usize = 10_000_000;
/// Longest scheduler interval, seconds: a day.
const MAX_CHECK_INTERVAL: u64 = 86_400;

/// `[cache]`: how much unwrapped key material stays in memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    pub keys: usize,
    pub tenants: usize,
}

impl Default for Cache {
    fn default() -> Self {
        let d = crate::core::CoreOptions::default();
        Cache {
            keys: d.key_cache,
            tenants: d.tenant_cache,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Data directory of the embedded store.
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum TlsVersion {
    Tls12,
    #[default]
    Tls13,
}

impl TryFrom<String> for TlsVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "tls12" => Ok(TlsVersion::Tls12),
            "tls13" => Ok(TlsVersion::Tls13),
            "tls10" | "tls11" => Err(format!("tls_min_version {s:?}: TLS 1.0 and 1.1 are not supported")),
            _ => Err(format!("tls_min_version {s:?}: use \"tls12\" or \"tls13\"")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: SocketAddr,
    #[serde(default)]
    pub tls_disable: bool,
    /// PEM certificate chain, leaf first.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_min_version: TlsVersion,
    /// PEM CA certificates that client certificates must chain to (mTLS).
    pub tls_client_ca_file: Option<PathBuf>,
    /// Refuse the handshake of a client without a valid certificate.
    #[serde(default)]
    pub tls_require_client_cert: bool,
}

impl Listener {
    /// Plain HTTP on `address`.
    pub fn plain(address: SocketAddr) -> Self {
        Listener {
            address,
            tls_disable: true,
            tls_cert_file: None,
            tls_key_file: None,
            tls_min_version: TlsVersion::Tls13,
            tls_client_ca_file: None,
            tls_require_client_cert: false,
        }
    }
}

/// Request limits; each breach gets its own status and a JSON error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (413 above it).
    pub max_request_bytes: usize,
    /// Most `batch_input` items in one request (400 above it).
    pub max_batch_items: usize,
    /// Sustained requests per second per token (or certificate identity); 0 = no limit (429 above it).
    pub rate_limit: f64,
    /// Requests a token may make in a burst; default: one second's worth.
    pub rate_limit_burst: Option<u32>,
    /// Longest a request may take, body included (503 after it); "0" = no limit.
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// Request bodies, and the JSON parsed from them, held at once across all
    /// requests (503 with Retry-After above it), so many large bodies cannot exhaust memory.
    pub max_inflight_bytes: usize,
    /// Open client connections; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection whose reads or writes wait this long is closed (Vault's
    /// `http_idle_timeout`); at least `request_timeout` (and kept a second
    /// past it); "0" = never.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Vault's default max_request_size.
            max_request_bytes: 32 * 1024 * 1024,
            max_batch_items: 10_000,
            rate_limit: 0.0,
            rate_limit_burst: None,
            // Vault's default max_request_duration.
            request_timeout: Duration::from_secs(90),
            max_inflight_bytes: 256 * 1024 * 1024,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A duration as seconds (integer) or text with units: "250ms", "90s", "5m", "1h".
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| serde::de::Error::custom(format!("invalid duration {t:?}"))),
    }
}

fn parse_duration(t: &str) -> Option<Duration> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "" | "s" => Some(Duration::from_secs(n)),
        "ms" => Some(Duration::from_millis(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Config {
    /// Cache sizes and rotation policies for the server state.
    pub fn core_options(&self) -> Result<crate::core::CoreOptions, String> {
        use coffer_core::keyring::{MAX_AUTO_ROTATE_PERIOD, MIN_AUTO_ROTATE_PERIOD};
        let period = |s: &str| crate::params::parse_duration(s).ok_or_else(|| format!("invalid duration {s:?}"));
        let mut default_rotation = std::collections::HashMap::new();
        for (ty, p) in &self.rotation.default_period {
            coffer_core::keyring::KeyType::parse(ty).map_err(|e| format!("[rotation.default_period]: {e}"))?;
            let secs = period(p)?;
            if secs != 0 && !(MIN_AUTO_ROTATE_PERIOD..=MAX_AUTO_ROTATE_PERIOD).contains(&secs) {
                return Err(format!(
                    "[rotation.default_period] {ty}: between an hour and 100 years, or 0"
                ));
            }
            default_rotation.insert(ty.clone(), secs);
        }
        Ok(crate::core::CoreOptions {
            key_cache: self.cache.keys.max(1),
            tenant_cache: self.cache.tenants.max(1),
            default_rotation,
            tenant_rotation: match period(&self.rotation.tenant_key_period)? {
                p if p > MAX_AUTO_ROTATE_PERIOD => return Err("[rotation] tenant_key_period: at most 100 years".into()),
                p => p,
            },
            encryption_limit: self.rotation.max_encryptions_per_version,
        })
    }

    pub fn node_name(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "coffer".into())
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and validates a production configuration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate(false)?;
        Ok(cfg)
    }

    /// Checks what types cannot; `dev` allows plain HTTP off loopback.
    pub fn validate(&self, dev: bool) -> Result<(), String> {
        self.core_options()?;
        // The caches are allocated up front; the interval is added to an instant by the timer.
        if self.cache.keys > MAX_CACHE || self.cache.tenants > MAX_CACHE {
            return Err(format!("cache.keys and cache.tenants must be at most {MAX_CACHE}"));
        }
        if !(1..=MAX_CHECK_INTERVAL).contains(&self.rotation.check_interval_secs) {
            return Err(format!(
                "rotation.check_interval_secs must be 1 to {MAX_CHECK_INTERVAL}"
            ));
        }
        let l = &self.listener;
        if l.tls_disable {
            if !l.address.ip().is_loopback() && !dev {
                return Err(format!(
                    "refusing plain HTTP on non-loopback address {}: configure tls_cert_file and tls_key_file \
                     (plain HTTP is only allowed on loopback, or with --dev)",
                    l.address
                ));
            }
            let set = [
                ("tls_cert_file", l.tls_cert_file.is_some()),
                ("tls_key_file", l.tls_key_file.is_some()),
                ("tls_client_ca_file", l.tls_client_ca_file.is_some()),
                ("tls_require_client_cert", l.tls_require_client_cert),
            ];
            if let Some((name, _)) = set.iter().find(|(_, on)| *on) {
                return Err(format!("{name} is set but tls_disable = true"));
            }
        } else {
            if l.tls_cert_file.is_none() || l.tls_key_file.is_none() {
                return Err(
                    "TLS needs tls_cert_file and tls_key_file (or tls_disable = true on a loopback address)".into(),
                );
            }
            if l.tls_require_client_cert && l.tls_client_ca_file.is_none() {
                return Err("tls_require_client_cert needs tls_client_ca_file".into());
            }
        }
        let lim = &self.limits;
        if lim.max_request_bytes < 1024 {
            return Err("limits.max_request_bytes must be at least 1024".into());
        }
        if lim.max_batch_items == 0 {
            return Err("limits.max_batch_items must be at least 1".into());
        }
        let most = self.rotation.max_encryptions_per_version;
        if !(MIN_ENCRYPTION_LIMIT..=crate::usage::DEFAULT_LIMIT).contains(&most) || most < lim.max_batch_items as u64 {
            return Err(format!(
                "rotation.max_encryptions_per_version must be between {MIN_ENCRYPTION_LIMIT} (and limits.max_batch_items) and {}",
                crate::usage::DEFAULT_LIMIT
            ));
        }
        if !lim.rate_limit.is_finite() || lim.rate_limit < 0.0 {
            return Err("limits.rate_limit must be a non-negative number (0 = off)".into());
        }
        if lim.rate_limit_burst == Some(0) {
            return Err("limits.rate_limit_burst must be at least 1".into());
        }
        // A body being read may briefly take three times its size, and its parsed JSON more.
        if lim.max_inflight_bytes / 4 < lim.max_request_bytes {
            return Err("limits.max_inflight_bytes must be at least 4 times limits.max_request_bytes".into());
        }
        if lim.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        // A request's connection is silent while it runs: it must not be cut
        // first (the listener also keeps it a second past the request deadline).
        let unbounded = |d: Duration| if d.is_zero() { Duration::MAX } else { d };
        if unbounded(lim.idle_timeout) < unbounded(lim.request_timeout) {
            return Err(
                "limits.idle_timeout must be at least limits.request_timeout (\"0\" for both: no deadline)".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TLS: &str = "[storage]\npath = \"/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\n\
                       tls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n";

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(
            "[storage]\npath = \"/var/lib/coffer\"\n[listener]\naddress = \"127.0.0.1:8200\"\ntls_disable = true\n",
        )
        .unwrap();
        assert_eq!(c.listener.address.port(), 8200);
        assert_eq!(c.limits.max_request_bytes, 32 << 20);
        assert_eq!(c.limits.request_timeout, Duration::from_secs(90));
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .filter_map(|l| l.strip_prefix("//! "))
            .skip_while(|l| !l.starts_with("```"))
            .skip(1)
            .take_while(|l| !l.starts_with("```"))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&example).unwrap();
        assert_eq!(c.listener.tls_min_version, TlsVersion::Tls13);
    }

    #[test]
    fn tls_is_the_default_and_13_only() {
        let c = Config::parse(TLS).unwrap();
        assert!(!c.listener.tls_disable);
        assert_eq!(c.listener.tls_min_version, TlsVersion::Tls13);
        let c = Config::parse(&format!("{TLS}tls_min_version = \"tls12\"\n")).unwrap();
        assert_eq!(c.listener.tls_min_version, TlsVersion::Tls12);
        for old in ["tls10", "tls11", "ssl3"] {
            let e = Config::parse(&format!("{TLS}tls_min_version = \"{old}\"\n")).unwrap_err();
            assert!(e.contains("tls_min_version"), "{e}");
        }
        let no_key = "[storage]\npath = \"/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\ntls_cert_file = \"/c\"\n";
        assert!(Config::parse(no_key).unwrap_err().contains("tls_key_file"));
        let e = Config::parse(&format!("{TLS}tls_require_client_cert = true\n")).unwrap_err();
        assert!(e.contains("tls_client_ca_file"), "{e}");
    }

    #[test]
    fn refuses_plain_http_off_loopback_unless_dev() {
        let off = "[storage]\npath = \"/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\ntls_disable = true\n";
        assert!(Config::parse(off).unwrap_err().contains("non-loopback"));
        let c: Config = toml::from_str(off).unwrap();
        assert!(c.validate(true).is_ok());
        let typo = "[storage]\npath = \"/x\"\nsize = 3\n[listener]\naddress = \"127.0.0.1:1\"\ntls_disable = true\n";
        assert!(Config::parse(typo).is_err());
        let mixed = "[storage]\npath = \"/x\"\n[listener]\naddress = \"127.0.0.1:1\"\ntls_disable = true\n\
                     tls_cert_file = \"/c\"\n";
        assert!(Config::parse(mixed).unwrap_err().contains("tls_cert_file"));
    }

    #[test]
    fn limits_parse_and_refuse_nonsense() {
        let base = "[storage]\npath = \"/x\"\n[listener]\naddress = \"127.0.0.1:1\"\ntls_disable = true\n[limits]\n";
        let c = Config::parse(&format!(
            "{base}max_batch_items = 5\nrate_limit = 2.5\nrate_limit_burst = 3\nrequest_timeout = \"250ms\"\n"
        ))
        .unwrap();
        assert_eq!(c.limits.max_batch_items, 5);
        assert_eq!(c.limits.rate_limit_burst, Some(3));
        assert_eq!(c.limits.request_timeout, Duration::from_millis(250));
        assert_eq!(
            Config::parse(&format!("{base}request_timeout = 7\n"))
                .unwrap()
                .limits
                .request_timeout,
            Duration::from_secs(7)
        );
        for bad in [
            "max_batch_items = 0",
            "max_connections = 0",
            "max_inflight_bytes = 2048",
            "idle_timeout = \"10s\"",
            "rate_limit = -1",
            "max_request_bytes = 10",
            "request_timeout = \"soon\"",
            "burst = 1",
        ] {
            assert!(Config::parse(&format!("{base}{bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn rotation_periods_are_bounded() {
        let base = "[storage]\npath = \"/x\"\n[listener]\naddress = \"127.0.0.1:1\"\ntls_disable = true\n[rotation]\n";
        let ok = Config::parse(&format!(
            "{base}tenant_key_period = \"8760h\"\ndefault_period.\"aes256-gcm96\" = \"2160h\"\n"
        ))
        .unwrap()
        .core_options()
        .unwrap();
        assert_eq!(ok.tenant_rotation, 8760 * 3600);
        assert_eq!(ok.default_rotation["aes256-gcm96"], 2160 * 3600);
        assert_eq!(ok.encryption_limit, 3_865_470_566);
        let low = Config::parse(&format!(
            "{base}max_encryptions_per_version = 20000
"
        ))
        .unwrap();
        assert_eq!(low.core_options().unwrap().encryption_limit, 20_000);
        // Periods past a century would overflow a deadline in seconds (u64::MAX wraps to -1).
        for bad in [
            "tenant_key_period = \"18446744073709551615\"",
            "tenant_key_period = \"9223372036854775807\"",
            "default_period.\"aes256-gcm96\" = \"18446744073709551615\"",
            "default_period.\"aes256-gcm96\" = \"876001h\"",
            "default_period.\"aes256-gcm96\" = \"10m\"",
            "check_interval_secs = 0",
            "check_interval_secs = 18446744073709551615",
            "max_encryptions_per_version = 9999",
            "max_encryptions_per_version = 4294967296",
        ] {
            assert!(Config::parse(&format!("{base}{bad}\n")).is_err(), "{bad}");
        }
        let huge_cache = "[storage]\npath = \"/x\"\n[listener]\naddress = \"127.0.0.1:1\"\ntls_disable = true\n\
                          [cache]\nkeys = 18446744073709551615\n";
        assert!(Config::parse(huge_cache).is_err());
    }
}
