//! Key wrapping: every stored key is sealed under its parent with AAD that
//! names it, so a wrapped key copied into another row fails to unwrap.
//!
//! Layout: `0x01 (format version) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`;
//! AAD: `"coffer/wrap/v1\0" ‖ label`. See `docs/formats.md`.

use crate::{Error, Key256, Plaintext, aead};

const FORMAT_V1: u8 = 1;
const AAD_PREFIX: &[u8] = b"coffer/wrap/v1\0";

/// What a wrapped key is, written into its AAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label(String);

impl Label {
    /// The root key, wrapped by the unseal key, of a store from before its
    /// rows carried MACs (see [`Label::root_v2`]).
    pub fn root() -> Self {
        Label("root".into())
    }
    /// The root key, wrapped by the unseal key, of a store whose rows all
    /// carry MACs: unwrapping it under this label tells the unseal that a row
    /// without one is an edit, a fact no edit of other rows can take back.
    pub fn root_v2() -> Self {
        Label("root\0v2".into())
    }
    /// A version of a tenant (namespace) key, wrapped by the root key.
    pub fn tenant(namespace: &str, version: u32) -> Self {
        Label(format!("tenant\0{namespace}\0{version}"))
    }
    /// A version of a named transit key, wrapped by its tenant key.
    pub fn transit(namespace: &str, mount: &str, name: &str, version: u32) -> Self {
        Label(format!("transit\0{namespace}\0{mount}\0{name}\0{version}"))
    }
    /// An audit key (`record` or `signing`) version, wrapped by the root key.
    pub fn audit(kind: &str, version: u32) -> Self {
        Label(format!("audit\0{kind}\0{version}"))
    }
    /// A purpose-specific check value (e.g. the unseal key check).
    pub fn check(purpose: &str) -> Self {
        Label(format!("check\0{purpose}"))
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = AAD_PREFIX.to_vec();
        aad.extend_from_slice(self.0.as_bytes());
        aad
    }
}

/// Wrapped key bytes as stored; safe to write anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey(pub Vec<u8>);

pub fn wrap(kek: &Key256, label: &Label, secret: &[u8]) -> Result<WrappedKey, Error> {
    let sealed = aead::seal(kek, &label.aad(), secret)?;
    let mut out = Vec::with_capacity(1 + sealed.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&sealed);
    Ok(WrappedKey(out))
}

pub fn unwrap(kek: &Key256, label: &Label, wrapped: &[u8]) -> Result<Plaintext, Error> {
    match wrapped.split_first() {
        Some((&FORMAT_V1, sealed)) => aead::open(kek, &label.aad(), sealed),
        Some(_) => Err(Error::MalformedCiphertext("unknown wrapped-key format version")),
        None => Err(Error::MalformedCiphertext("empty wrapped key")),
    }
}

pub fn wrap_key(kek: &Key256, label: &Label, key: &Key256) -> Result<WrappedKey, Error> {
    wrap(kek, label, key.expose())
}

pub fn unwrap_key(kek: &Key256, label: &Label, wrapped: &[u8]) -> Result<Key256, Error> {
    let pt = unwrap(kek, label, wrapped)?;
    Key256::from_slice(pt.as_bytes()).ok_or(Error::DecryptionFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_under_another_label_fails() {
        let kek = Key256::generate().unwrap();
        let child = Key256::generate().unwrap();
        let a = Label::transit("", "transit", "orders", 1);
        let w = wrap_key(&kek, &a, &child).unwrap();
        assert_eq!(unwrap_key(&kek, &a, &w.0).unwrap().expose(), child.expose());
        for other in [
            Label::transit("", "transit", "orders", 2),
            Label::transit("", "transit", "users", 1),
            Label::transit("acme", "transit", "orders", 1),
            Label::tenant("", 1),
        ] {
            assert_eq!(unwrap_key(&kek, &other, &w.0).unwrap_err(), Error::DecryptionFailed);
        }
    }

    #[test]
    fn labels_cannot_collide_through_separators() {
        // The NUL separator keeps ("a/b","c") and ("a","b/c") apart.
        assert_ne!(Label::transit("", "a/b", "c", 1), Label::transit("", "a", "b/c", 1));
    }

    #[test]
    fn unknown_format_and_empty_are_rejected() {
        let kek = Key256::generate().unwrap();
        let mut w = wrap(&kek, &Label::root(), b"x").unwrap().0;
        w[0] = 2;
        assert!(matches!(
            unwrap(&kek, &Label::root(), &w),
            Err(Error::MalformedCiphertext(_))
        ));
        assert!(unwrap(&kek, &Label::root(), &[]).is_err());
    }
}
