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
