use thiserror::Error as ThisError;

/// Errors from the core. Cryptographic failures are deliberately opaque.
#[derive(Debug, ThisError, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Authentication failed: wrong key, wrong associated data or tampering.
    #[error("cipher: message authentication failed")]
    DecryptionFailed,
    /// A ciphertext string or blob is not in a format we know.
    #[error("invalid ciphertext: {0}")]
    MalformedCiphertext(&'static str),
    /// The ciphertext names a key version this keyring does not have.
    #[error("invalid ciphertext: key version {0} does not exist")]
    UnknownVersion(u32),
    /// The version exists but may no longer be used for this operation.
    #[error("key version {version} is {state}: {why}")]
    VersionNotUsable {
        version: u32,
        state: &'static str,
        why: &'static str,
    },
    /// A request parameter is out of range or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),
    /// An unseal share could not be parsed or the shares do not combine.
    #[error("{0}")]
    Shamir(&'static str),
    /// An ACL policy could not be parsed.
    #[error("failed to parse policy: {0}")]
    Policy(String),
    /// The system random generator failed; nothing was produced.
    #[error("random generator failure")]
    Random,
}
