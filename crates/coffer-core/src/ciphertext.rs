//! The transit ciphertext string: `vault:v<N>:<base64 of nonce‖ciphertext‖tag>`.
//!
//! The prefix is Vault's so stored ciphertexts and clients keep working; the
//! key version tells the keyring which key opens the payload. HMAC outputs
//! use the same shape with the MAC as payload.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::Error;

const PREFIX: &str = "vault:v";

/// A parsed transit ciphertext (or HMAC value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub version: u32,
    pub payload: Vec<u8>,
}

/// Parses `vault:v<N>:<base64>`. Never panics on any input.
pub fn parse(s: &str) -> Result<Versioned, Error> {
    let rest = s.strip_prefix(PREFIX).ok_or(Error::MalformedCiphertext("no prefix"))?;
    let (ver, body) = rest
        .split_once(':')
        .ok_or(Error::MalformedCiphertext("wrong number of fields"))?;
    if ver.is_empty() || ver.len() > 10 || !ver.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::MalformedCiphertext("could not parse the key version"));
    }
    let version: u32 = ver
        .parse()
        .map_err(|_| Error::MalformedCiphertext("could not parse the key version"))?;
    // Vault reads v0 as v1 (key versions once started at 0); stored
    // ciphertexts may carry it.
    let version = version.max(1);
    let payload = STANDARD
        .decode(body)
        .map_err(|_| Error::MalformedCiphertext("payload is not valid base64"))?;
    Ok(Versioned { version, payload })
}

/// Formats a version and payload; `parse(&format(v, p))` gives back `(v, p)`.
pub fn format(version: u32, payload: &[u8]) -> String {
    let mut s = String::with_capacity(PREFIX.len() + 11 + payload.len().div_ceil(3) * 4);
    s.push_str(PREFIX);
    s.push_str(&version.to_string());
    s.push(':');
    STANDARD.encode_string(payload, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_vault_ciphertexts() {
        let v = parse("vault:v3:AAEC").unwrap();
        assert_eq!(
            v,
            Versioned {
                version: 3,
                payload: vec![0, 1, 2]
            }
        );
        assert_eq!(format(3, &[0, 1, 2]), "vault:v3:AAEC");
    }

    #[test]
    fn v0_reads_as_v1_like_vault() {
        assert_eq!(parse("vault:v0:AAEC").unwrap().version, 1);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "garbage",
            "vault:",
            "vault:v",
            "vault:v1",
            "vault:vX:AAEC",
            "vault:v-1:AAEC",
            "vault:v1:!!!",
            "vault:v99999999999:AAEC",
            "vault:v+1:AAEC",
            "VAULT:v1:AAEC",
            "vault:v1:AAE",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(v in 1u32.., p in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(parse(&format(v, &p)).unwrap(), Versioned { version: v, payload: p });
        }

        #[test]
        fn prop_never_panics(s in ".*") {
            let _ = parse(&s);
        }
    }
}
