//! The server configuration file (TOML).
//!
//! ```toml
//! [storage]
//! path = "/var/lib/coffer"        # embedded SQLite data directory
//! [listener]
//! address = "127.0.0.1:8200"
//! tls_disable = true              # plain HTTP only allowed on loopback
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub storage: Storage,
    pub listener: Listener,
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
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            check_interval_secs: 60,
            tenant_key_period: "0".into(),
            default_period: Default::default(),
        }
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub address: SocketAddr,
    #[serde(default)]
    pub tls_disable: bool,
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
        let period = |s: &str| crate::params::parse_duration(s).ok_or_else(|| format!("invalid duration {s:?}"));
        let mut default_rotation = std::collections::HashMap::new();
        for (ty, p) in &self.rotation.default_period {
            coffer_core::keyring::KeyType::parse(ty).map_err(|e| format!("[rotation.default_period]: {e}"))?;
            let secs = period(p)?;
            if secs != 0 && secs < coffer_core::keyring::MIN_AUTO_ROTATE_PERIOD {
                return Err(format!("[rotation.default_period] {ty}: at least an hour, or 0"));
            }
            default_rotation.insert(ty.clone(), secs);
        }
        Ok(crate::core::CoreOptions {
            key_cache: self.cache.keys.max(1),
            tenant_cache: self.cache.tenants.max(1),
            default_rotation,
            tenant_rotation: period(&self.rotation.tenant_key_period)?,
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

    pub fn parse(text: &str) -> Result<Self, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        self.core_options()?;
        if !self.listener.tls_disable {
            return Err("TLS listeners are not available yet: set tls_disable = true on a loopback address".into());
        }
        if !self.listener.address.ip().is_loopback() {
            return Err(format!(
                "refusing plain HTTP on non-loopback address {}: plain HTTP is only allowed on loopback",
                self.listener.address
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c = Config::parse(
            "[storage]\npath = \"/var/lib/coffer\"\n[listener]\naddress = \"127.0.0.1:8200\"\ntls_disable = true\n",
        )
        .unwrap();
        assert_eq!(c.listener.address.port(), 8200);
    }

    #[test]
    fn refuses_plain_http_off_loopback_and_unknown_fields() {
        let off = "[storage]\npath = \"/x\"\n[listener]\naddress = \"0.0.0.0:8200\"\ntls_disable = true\n";
        assert!(Config::parse(off).unwrap_err().contains("non-loopback"));
        let typo = "[storage]\npath = \"/x\"\nsize = 3\n[listener]\naddress = \"127.0.0.1:1\"\ntls_disable = true\n";
        assert!(Config::parse(typo).is_err());
    }
}
