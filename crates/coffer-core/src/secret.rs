use std::fmt;

use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

/// A 256-bit symmetric key. Wiped on drop; never printed.
pub struct Key256(SecretBox<[u8; 32]>);

impl Key256 {
    /// Takes ownership of key bytes; the caller's copy should be a temporary.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut boxed = Box::new([0u8; 32]);
        boxed.copy_from_slice(&bytes);
        Key256(SecretBox::new(boxed))
    }

    /// Builds a key from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: &[u8; 32] = bytes.try_into().ok()?;
        let mut boxed = Box::new([0u8; 32]);
        boxed.copy_from_slice(arr);
        Some(Key256(SecretBox::new(boxed)))
    }

    /// A fresh key from the system CSPRNG.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut boxed = Box::new([0u8; 32]);
        crate::rand::fill(&mut boxed[..])?;
        Ok(Key256(SecretBox::new(boxed)))
    }

    /// The raw bytes, for handing to a primitive or wrapping.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }
}

impl Clone for Key256 {
    fn clone(&self) -> Self {
        // Copied box to box: no stack copy of the key is left behind.
        let mut boxed = Box::new([0u8; 32]);
        boxed.copy_from_slice(self.expose());
        Key256(SecretBox::new(boxed))
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256([redacted])")
    }
}

/// Decrypted or to-be-encrypted user data: wiped on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Plaintext {
    fn from(v: Vec<u8>) -> Self {
        Plaintext::new(v)
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext([redacted; {} bytes])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = Key256::from_bytes([0xab; 32]);
        let s = format!("{k:?}");
        assert!(!s.contains("ab") && !s.contains("171"), "{s}");
        let p = Plaintext::new(b"canary-secret".to_vec());
        assert!(!format!("{p:?}").contains("canary"));
    }
}
