//! Versioned transit keyrings, with Vault's numbering and rules.
//!
//! A keyring is a list of versions, each holding an encryption key and an
//! HMAC key (or nothing, once trimmed). `latest_version` encrypts;
//! `min_decryption_version` and `min_encryption_version` retire old ones;
//! `trim` destroys material below `min_available_version`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::ciphertext::{self, Versioned};
use crate::{Error, Key256, Plaintext, aead};

/// Key types this keyring supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    #[serde(rename = "aes128-gcm96")]
    Aes128Gcm96,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
}

impl KeyType {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "aes256-gcm96" => Ok(KeyType::Aes256Gcm96),
            "aes128-gcm96" => Ok(KeyType::Aes128Gcm96),
            "chacha20-poly1305" => Ok(KeyType::ChaCha20Poly1305),
            other => Err(Error::InvalidArgument(format!(
                "unknown key type {other:?}; supported: aes256-gcm96, aes128-gcm96, chacha20-poly1305"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    pub fn algorithm(self) -> aead::Algorithm {
        match self {
            KeyType::Aes256Gcm96 => aead::Algorithm::Aes256Gcm,
            KeyType::Aes128Gcm96 => aead::Algorithm::Aes128Gcm,
            KeyType::ChaCha20Poly1305 => aead::Algorithm::ChaCha20Poly1305,
        }
    }
}

/// HMAC algorithms accepted by `hmac` and `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HmacAlgorithm {
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "sha2-224" => Ok(Self::Sha224),
            "sha2-256" | "" => Ok(Self::Sha256),
            "sha2-384" => Ok(Self::Sha384),
            "sha2-512" => Ok(Self::Sha512),
            other => Err(Error::InvalidArgument(format!("unsupported algorithm {other}"))),
        }
    }

    fn algorithm(self) -> hmac::Algorithm {
        match self {
            Self::Sha224 => hmac::HMAC_SHA224,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha384 => hmac::HMAC_SHA384,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// The keys of one version. Serialised only to be wrapped.
#[derive(Clone)]
pub struct VersionKeys {
    pub encryption: Key256,
    pub hmac: Key256,
}

impl VersionKeys {
    pub fn generate() -> Result<Self, Error> {
        Ok(VersionKeys {
            encryption: Key256::generate()?,
            hmac: Key256::generate()?,
        })
    }

    /// 64 bytes, `encryption ‖ hmac`, for wrapping.
    pub fn to_plaintext(&self) -> Plaintext {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(self.encryption.expose());
        v.extend_from_slice(self.hmac.expose());
        Plaintext::new(v)
    }

    pub fn from_plaintext(p: &Plaintext) -> Result<Self, Error> {
        let b = p.as_bytes();
        if b.len() != 64 {
            return Err(Error::DecryptionFailed);
        }
        Ok(VersionKeys {
            encryption: Key256::from_slice(&b[..32]).ok_or(Error::DecryptionFailed)?,
            hmac: Key256::from_slice(&b[32..]).ok_or(Error::DecryptionFailed)?,
        })
    }
}

impl fmt::Debug for VersionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VersionKeys([redacted])")
    }
}

/// A key version's lifecycle state, derived from the keyring's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// May encrypt and decrypt.
    Active,
    /// Below `min_encryption_version`: decrypts only.
    DecryptOnly,
    /// Below `min_decryption_version`: kept, but refused.
    Retired,
    /// Trimmed: the material is gone.
    Destroyed,
}

/// Everything about a keyring except key material; stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    pub latest_version: u32,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    pub min_available_version: u32,
    pub deletion_allowed: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    /// Seconds; 0 disables automatic rotation.
    pub auto_rotate_period: u64,
    /// Creation time (unix seconds) of each version, including destroyed ones.
    pub version_created: BTreeMap<u32, i64>,
}

/// A keyring with its unwrapped material, held only while unsealed.
#[derive(Debug, Clone)]
pub struct Keyring {
    pub config: KeyConfig,
    versions: BTreeMap<u32, Version>,
}

/// One version's keys and, once used, its prepared cipher.
#[derive(Debug, Clone)]
struct Version {
    keys: VersionKeys,
    cipher: OnceLock<Arc<aead::Cipher>>,
    /// Shared by the copies a change makes, so a rotation keeps the count.
    allowance: Arc<Allowance>,
}

impl Version {
    fn new(keys: VersionKeys) -> Self {
        Version {
            keys,
            cipher: OnceLock::new(),
            allowance: Arc::default(),
        }
    }
}

/// The first reservation of encryptions for a version loaded into memory.
const FIRST_BLOCK: u64 = 64;

/// How many messages this process may still seal under one version.
///
/// Random 96-bit nonces stay safe for about 2^32 messages per key (NIST SP
/// 800-38D), so each version's encryptions are counted in storage, where
/// blocks are reserved ahead; this holds the local side: what was granted
/// from storage, and what was taken from it. Nothing is ever given back, so
/// a crash or a cache eviction only over-counts.
#[derive(Debug, Default)]
pub struct Allowance {
    taken: AtomicU64,
    granted: AtomicU64,
    exhausted: AtomicBool,
}

impl Allowance {
    /// Takes `n` messages; false when that goes past what was granted, and
    /// the caller must [`Allowance::grant`] more before sealing them.
    pub fn take(&self, n: u64) -> bool {
        let taken = self.taken.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        taken <= self.granted.load(Ordering::Acquire)
    }

    /// Messages taken beyond the grant (0 when all are covered).
    pub fn shortfall(&self) -> u64 {
        self.taken
            .load(Ordering::Acquire)
            .saturating_sub(self.granted.load(Ordering::Acquire))
    }

    pub fn grant(&self, n: u64) {
        self.granted.fetch_add(n, Ordering::AcqRel);
    }

    /// What to reserve next to cover `need`: small at first, so a key loaded
    /// and dropped again wastes little of its count, then doubling to `max`.
    pub fn next_block(&self, need: u64, max: u64) -> u64 {
        let granted = self.granted.load(Ordering::Acquire);
        granted.clamp(FIRST_BLOCK, max.max(FIRST_BLOCK)).max(need)
    }

    /// Storage refused more: the version has sealed all it may.
    pub fn exhaust(&self) {
        self.exhausted.store(true, Ordering::Release);
    }

    pub fn is_exhausted(&self) -> bool {
        self.exhausted.load(Ordering::Acquire)
    }
}

/// A settings change; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct ConfigChange {
    pub min_decryption_version: Option<u32>,
    pub min_encryption_version: Option<u32>,
    pub deletion_allowed: Option<bool>,
    pub exportable: Option<bool>,
    pub allow_plaintext_backup: Option<bool>,
    pub auto_rotate_period: Option<u64>,
}

/// Vault refuses rotation periods below an hour (other than 0, "off").
pub const MIN_AUTO_ROTATE_PERIOD: u64 = 3600;
/// A century: longer periods would overflow a deadline in seconds.
pub const MAX_AUTO_ROTATE_PERIOD: u64 = 100 * 365 * 86_400;

impl Keyring {
    /// A new keyring with version 1.
    pub fn create(name: &str, key_type: KeyType, now: i64) -> Result<(Self, VersionKeys), Error> {
        let keys = VersionKeys::generate()?;
        let config = KeyConfig {
            name: name.to_owned(),
            key_type,
            latest_version: 1,
            min_decryption_version: 1,
            min_encryption_version: 0,
            min_available_version: 0,
            deletion_allowed: false,
            exportable: false,
            allow_plaintext_backup: false,
            auto_rotate_period: 0,
            version_created: BTreeMap::from([(1, now)]),
        };
        let ring = Keyring {
            config,
            versions: BTreeMap::from([(1, Version::new(keys.clone()))]),
        };
        Ok((ring, keys))
    }

    /// Rebuilds a keyring from stored settings and unwrapped versions.
    pub fn from_parts(config: KeyConfig, versions: BTreeMap<u32, VersionKeys>) -> Self {
        let versions = versions.into_iter().map(|(v, k)| (v, Version::new(k))).collect();
        Keyring { config, versions }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The encryption allowance of a version that has material.
    pub fn allowance(&self, version: u32) -> Option<&Arc<Allowance>> {
        self.versions.get(&version).map(|v| &v.allowance)
    }

    pub fn version_keys(&self, version: u32) -> Option<&VersionKeys> {
        self.versions.get(&version).map(|v| &v.keys)
    }

    /// Adds a new latest version and returns its keys (to be wrapped and stored).
    pub fn rotate(&mut self, now: i64) -> Result<(u32, VersionKeys), Error> {
        let v = self
            .config
            .latest_version
            .checked_add(1)
            .ok_or_else(|| Error::InvalidArgument("key has reached the maximum version".into()))?;
        let keys = VersionKeys::generate()?;
        self.versions.insert(v, Version::new(keys.clone()));
        self.config.latest_version = v;
        self.config.version_created.insert(v, now);
        Ok((v, keys))
    }

    pub fn state(&self, version: u32) -> Option<VersionState> {
        if version == 0 || version > self.config.latest_version {
            return None;
        }
        Some(if !self.versions.contains_key(&version) {
            VersionState::Destroyed
        } else if version < self.config.min_decryption_version {
            VersionState::Retired
        } else if version < self.config.min_encryption_version {
            VersionState::DecryptOnly
        } else {
            VersionState::Active
        })
    }

    /// The version to encrypt (or HMAC) with, checked against the settings.
    pub fn encryption_version(&self, requested: Option<u32>) -> Result<u32, Error> {
        let c = &self.config;
        let v = match requested {
            None | Some(0) => c.latest_version,
            Some(v) => v,
        };
        if v > c.latest_version {
            return Err(Error::InvalidArgument(format!(
                "requested key version {v} is greater than the latest version {}",
                c.latest_version
            )));
        }
        if c.min_encryption_version > 0 && v < c.min_encryption_version {
            return Err(Error::VersionNotUsable {
                version: v,
                state: "decrypt-only",
                why: "it is below min_encryption_version",
            });
        }
        self.usable_for_decrypt(v)?;
        Ok(v)
    }

    fn usable_for_decrypt(&self, v: u32) -> Result<&Version, Error> {
        match self.state(v) {
            None => Err(Error::UnknownVersion(v)),
            Some(VersionState::Destroyed) => Err(Error::VersionNotUsable {
                version: v,
                state: "destroyed",
                why: "its material was trimmed",
            }),
            Some(VersionState::Retired) => Err(Error::VersionNotUsable {
                version: v,
                state: "retired",
                why: "it is below min_decryption_version",
            }),
            Some(_) => self.versions.get(&v).ok_or(Error::UnknownVersion(v)),
        }
    }

    fn cipher<'a>(&self, version: &'a Version) -> &'a aead::Cipher {
        version.cipher.get_or_init(|| {
            Arc::new(aead::Cipher::new(
                self.config.key_type.algorithm(),
                &version.keys.encryption,
            ))
        })
    }

    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8], version: Option<u32>) -> Result<(String, u32), Error> {
        self.encrypt_with(&mut aead::Nonces::new(1), plaintext, aad, version)
    }

    /// [`Keyring::encrypt`] taking its nonce from `nonces` (one draw for a whole batch).
    pub fn encrypt_with(
        &self,
        nonces: &mut aead::Nonces,
        plaintext: &[u8],
        aad: &[u8],
        version: Option<u32>,
    ) -> Result<(String, u32), Error> {
        let v = self.encryption_version(version)?;
        let blob = self.cipher(self.usable_for_decrypt(v)?).seal(nonces, aad, plaintext)?;
        Ok((ciphertext::format(v, &blob), v))
    }

    /// Decrypts, returning the plaintext and the version that opened it.
    pub fn decrypt(&self, ct: &str, aad: &[u8]) -> Result<(Plaintext, u32), Error> {
        let Versioned { version, payload } = ciphertext::parse(ct)?;
        let cipher = self.cipher(self.usable_for_decrypt(version)?);
        Ok((cipher.open(aad, &payload)?, version))
    }

    pub fn hmac(&self, input: &[u8], algorithm: HmacAlgorithm, version: Option<u32>) -> Result<(String, u32), Error> {
        let v = self.encryption_version(version)?;
        let keys = self.usable_for_decrypt(v)?;
        let tag = hmac::sign(&hmac::Key::new(algorithm.algorithm(), keys.keys.hmac.expose()), input);
        Ok((ciphertext::format(v, tag.as_ref()), v))
    }

    /// Constant-time check of an HMAC made by [`Keyring::hmac`].
    pub fn verify_hmac(&self, input: &[u8], mac: &str, algorithm: HmacAlgorithm) -> Result<bool, Error> {
        let Versioned { version, payload } = ciphertext::parse(mac)?;
        let keys = self.usable_for_decrypt(version)?;
        let key = hmac::Key::new(algorithm.algorithm(), keys.keys.hmac.expose());
        Ok(hmac::verify(&key, input, &payload).is_ok())
    }

    /// Applies a settings change, all or nothing, with Vault's rules.
    pub fn configure(&mut self, change: &ConfigChange) -> Result<(), Error> {
        let mut c = self.config.clone();
        if let Some(v) = change.min_decryption_version {
            if v > c.latest_version {
                return Err(Error::InvalidArgument(format!(
                    "cannot set min_decryption_version to {v}: greater than the latest version {}",
                    c.latest_version
                )));
            }
            // 0 means "1", as in Vault.
            c.min_decryption_version = v.max(1);
            if c.min_decryption_version < c.min_available_version {
                return Err(Error::InvalidArgument(format!(
                    "cannot set min_decryption_version below min_available_version {}",
                    c.min_available_version
                )));
            }
        }
        if let Some(v) = change.min_encryption_version {
            if v > c.latest_version {
                return Err(Error::InvalidArgument(format!(
                    "cannot set min_encryption_version to {v}: greater than the latest version {}",
                    c.latest_version
                )));
            }
            c.min_encryption_version = v;
        }
        if c.min_encryption_version > 0 && c.min_encryption_version < c.min_decryption_version {
            return Err(Error::InvalidArgument(format!(
                "min_encryption_version {} must be at least min_decryption_version {}",
                c.min_encryption_version, c.min_decryption_version
            )));
        }
        if let Some(p) = change.auto_rotate_period {
            if p != 0 && !(MIN_AUTO_ROTATE_PERIOD..=MAX_AUTO_ROTATE_PERIOD).contains(&p) {
                return Err(Error::InvalidArgument(
                    "auto rotate period must be 0 to disable, or between an hour and 100 years".into(),
                ));
            }
            c.auto_rotate_period = p;
        }
        if let Some(b) = change.deletion_allowed {
            c.deletion_allowed = b;
        }
        if let Some(b) = change.exportable {
            if c.exportable && !b {
                return Err(Error::InvalidArgument(
                    "exportable key cannot be made non-exportable".into(),
                ));
            }
            c.exportable = b;
        }
        if let Some(b) = change.allow_plaintext_backup {
            if c.allow_plaintext_backup && !b {
                return Err(Error::InvalidArgument(
                    "plaintext backup cannot be disabled once allowed".into(),
                ));
            }
            c.allow_plaintext_backup = b;
        }
        self.config = c;
        Ok(())
    }

    /// Destroys every version below `min_available`; returns those versions.
    pub fn trim(&mut self, min_available: u32) -> Result<Vec<u32>, Error> {
        let c = &self.config;
        if min_available == 0 {
            return Err(Error::InvalidArgument("minimum available version cannot be 0".into()));
        }
        if min_available < c.min_available_version {
            return Err(Error::InvalidArgument(format!(
                "minimum available version cannot be decreased from {}",
                c.min_available_version
            )));
        }
        if min_available > c.min_decryption_version {
            return Err(Error::InvalidArgument(format!(
                "cannot set minimum available version to {min_available}: greater than min_decryption_version {}",
                c.min_decryption_version
            )));
        }
        // As in Vault, trimming needs min_encryption_version set (0 refuses any trim).
        if min_available > c.min_encryption_version {
            return Err(Error::InvalidArgument(format!(
                "cannot set minimum available version to {min_available}: greater than min_encryption_version {}",
                c.min_encryption_version
            )));
        }
        let gone: Vec<u32> = self.versions.range(..min_available).map(|(v, _)| *v).collect();
        for v in &gone {
            self.versions.remove(v);
        }
        self.config.min_available_version = min_available;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_covers_only_what_was_granted() {
        let a = Allowance::default();
        assert!(!a.take(1), "nothing is granted at first");
        assert_eq!(a.shortfall(), 1);
        assert_eq!(a.next_block(1, 1 << 20), FIRST_BLOCK);
        a.grant(FIRST_BLOCK);
        assert_eq!(a.shortfall(), 0);
        assert!(a.take(FIRST_BLOCK - 1), "the rest of the block");
        assert!(!a.take(1));
        // Blocks double with what was granted, up to the cap, and cover a large need.
        assert_eq!(a.next_block(1, 1 << 20), FIRST_BLOCK);
        a.grant(FIRST_BLOCK);
        assert_eq!(a.next_block(1, 1 << 20), 2 * FIRST_BLOCK);
        assert_eq!(a.next_block(1, 100), FIRST_BLOCK.max(100));
        assert_eq!(a.next_block(5000, 100), 5000);
        assert!(!a.is_exhausted());
        a.exhaust();
        assert!(a.is_exhausted());
        // A copy of the keyring (a settings change) shares the count.
        let (ring, _) = Keyring::create("k", KeyType::Aes256Gcm96, 0).unwrap();
        ring.allowance(1).unwrap().grant(10);
        let copy = ring.clone();
        assert!(copy.allowance(1).unwrap().take(10));
        assert!(!ring.allowance(1).unwrap().take(1));
        assert!(ring.allowance(2).is_none());
    }
    fn ring() -> Keyring {
        Keyring::create("orders", KeyType::Aes256Gcm96, 1_700_000_000)
            .unwrap()
            .0
    }

    #[test]
    fn rotate_keeps_old_versions_decryptable() {
        let mut r = ring();
        let (c1, v1) = r.encrypt(b"one", b"", None).unwrap();
        assert_eq!(v1, 1);
        assert!(c1.starts_with("vault:v1:"));
        r.rotate(1).unwrap();
        let (c2, _) = r.encrypt(b"two", b"", None).unwrap();
        assert!(c2.starts_with("vault:v2:"));
        assert_eq!(r.decrypt(&c1, b"").unwrap().0.as_bytes(), b"one");
        assert_eq!(r.decrypt(&c2, b"").unwrap().0.as_bytes(), b"two");
    }

    #[test]
    fn version_states_follow_the_settings() {
        let mut r = ring();
        let (c1, _) = r.encrypt(b"one", b"", None).unwrap();
        r.rotate(1).unwrap();
        r.rotate(2).unwrap();
        r.configure(&ConfigChange {
            min_encryption_version: Some(3),
            min_decryption_version: Some(2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.state(1), Some(VersionState::Retired));
        assert_eq!(r.state(2), Some(VersionState::DecryptOnly));
        assert_eq!(r.state(3), Some(VersionState::Active));
        assert_eq!(r.state(4), None);
        assert!(matches!(
            r.decrypt(&c1, b""),
            Err(Error::VersionNotUsable {
                version: 1,
                state: "retired",
                ..
            })
        ));
        assert!(matches!(
            r.encrypt(b"x", b"", Some(2)),
            Err(Error::VersionNotUsable {
                state: "decrypt-only",
                ..
            })
        ));
        assert!(ring().trim(1).is_err(), "min_encryption_version 0 refuses trim");
        assert_eq!(r.trim(2).unwrap(), vec![1]);
        assert_eq!(r.state(1), Some(VersionState::Destroyed));
        assert!(matches!(
            r.decrypt(&c1, b""),
            Err(Error::VersionNotUsable { state: "destroyed", .. })
        ));
    }

    #[test]
    fn config_rules() {
        let mut r = ring();
        let before = r.config.clone();
        assert!(
            r.configure(&ConfigChange {
                min_decryption_version: Some(5),
                ..Default::default()
            })
            .is_err()
        );
        for p in [10, MAX_AUTO_ROTATE_PERIOD + 1, u64::MAX] {
            assert!(
                r.configure(&ConfigChange {
                    auto_rotate_period: Some(p),
                    ..Default::default()
                })
                .is_err(),
                "period {p}"
            );
        }
        assert_eq!(r.config, before, "a refused change must change nothing");
        assert!(r.trim(2).is_err());
        assert!(r.trim(0).is_err());
    }

    #[test]
    fn hmac_verifies_and_detects_changes() {
        let mut r = ring();
        let (m1, _) = r.hmac(b"alice@example.com", HmacAlgorithm::Sha256, None).unwrap();
        assert!(r.verify_hmac(b"alice@example.com", &m1, HmacAlgorithm::Sha256).unwrap());
        assert!(!r.verify_hmac(b"bob@example.com", &m1, HmacAlgorithm::Sha256).unwrap());
        assert!(!r.verify_hmac(b"alice@example.com", &m1, HmacAlgorithm::Sha512).unwrap());
        r.rotate(1).unwrap();
        let (m2, v) = r.hmac(b"alice@example.com", HmacAlgorithm::Sha256, None).unwrap();
        assert_eq!(v, 2);
        assert_ne!(m1, m2);
        assert!(r.verify_hmac(b"alice@example.com", &m1, HmacAlgorithm::Sha256).unwrap());
    }

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231 test case 2, with the key placed in version 1's hmac slot.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let cfg = ring().config;
        let keys = VersionKeys {
            encryption: Key256::from_bytes([0; 32]),
            hmac: Key256::from_bytes(key),
        };
        let r = Keyring::from_parts(cfg, BTreeMap::from([(1, keys)]));
        let (m, _) = r
            .hmac(b"what do ya want for nothing?", HmacAlgorithm::Sha256, None)
            .unwrap();
        // HMAC pads short keys with zeros, so "Jefe" and "Jefe\0..." are the same key.
        let expected = hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").unwrap();
        assert_eq!(ciphertext::parse(&m).unwrap().payload, expected);
    }

    #[test]
    fn key_material_round_trips_through_plaintext() {
        let k = VersionKeys::generate().unwrap();
        let back = VersionKeys::from_plaintext(&k.to_plaintext()).unwrap();
        assert_eq!(back.encryption.expose(), k.encryption.expose());
        assert_eq!(back.hmac.expose(), k.hmac.expose());
        assert!(VersionKeys::from_plaintext(&Plaintext::new(vec![0; 63])).is_err());
    }
}
