//! Coffer's core: everything about keys and bytes, nothing about I/O.
//!
//! This crate owns the key types ([`Key256`], [`Plaintext`]), the one AEAD
//! seam every other part calls ([`aead`]), key wrapping with AAD that names
//! the wrapped key ([`wrap`]), versioned transit keyrings ([`keyring`]),
//! the `vault:vN:` ciphertext format ([`ciphertext`]), Shamir splitting of
//! the unseal key ([`shamir`]) and Vault-style ACL policies ([`policy`]).
//!
//! It must not depend on a runtime, a database or the network: the store
//! and the server are adapters around it, so everything here is testable
//! with plain values and fuzzable.
//!
//! Security notes: key material lives only in zeroize-on-drop types whose
//! `Debug` prints `[redacted]`; cryptography comes from `aws-lc-rs`; a
//! failed decryption is one opaque error that never says why.
#![forbid(unsafe_code)]

pub mod aead;
pub mod analytics;
pub mod audit;
pub mod ciphertext;
mod error;
pub mod keyring;
pub mod policy;
pub mod rand;
mod secret;
pub mod shamir;
pub mod wrap;

pub use error::Error;
pub use secret::{Key256, Plaintext};
