//! Shamir's secret sharing of the unseal key (GF(256), via `vsss-rs`).
//!
//! Shares carry no integrity check, so a wrong or corrupted share combines
//! into a wrong key silently; the caller verifies the result against a
//! sealed check value (see `wrap::Label::check`).

use getrandom::SysRng;
use getrandom::rand_core::UnwrapErr;
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::{Error, Key256};

/// One unseal share. Wiped on drop.
pub type Share = Zeroizing<Vec<u8>>;

/// Bytes in one share of a 256-bit key (identifier + 32).
pub const SHARE_LEN: usize = 33;

/// Checks Vault's rules for `secret_shares` / `secret_threshold`.
pub fn check_parameters(shares: u32, threshold: u32) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::InvalidArgument(m.to_owned()));
    if shares == 0 {
        return bad("secret_shares must be at least 1");
    }
    if shares > 255 {
        return bad("secret_shares must be at most 255");
    }
    if threshold == 0 || threshold > shares {
        return bad("secret_threshold must be between 1 and secret_shares");
    }
    if shares > 1 && threshold == 1 {
        return bad("secret_threshold must be greater than one for multiple shares");
    }
    Ok(())
}

/// Splits `key` into `shares` shares, any `threshold` of which rebuild it.
/// With one share, the share is the key itself (as Vault does).
pub fn split(key: &Key256, shares: u32, threshold: u32) -> Result<Vec<Share>, Error> {
    check_parameters(shares, threshold)?;
    if shares == 1 {
        return Ok(vec![Zeroizing::new(key.expose().to_vec())]);
    }
    let parts = Gf256::split_bytes(threshold as usize, shares as usize, key.expose(), UnwrapErr(SysRng))
        .map_err(|_| Error::Shamir("splitting the key failed"))?;
    Ok(parts.into_iter().map(Zeroizing::new).collect())
}

/// Rebuilds a key from shares. The result must still be verified.
pub fn combine(shares: &[Share]) -> Result<Key256, Error> {
    if let [single] = shares {
        return Key256::from_slice(single).ok_or(Error::Shamir("invalid unseal key length"));
    }
    if shares.iter().any(|s| s.len() != SHARE_LEN) {
        return Err(Error::Shamir("invalid unseal key length"));
    }
    let mut raw: Vec<Vec<u8>> = shares.iter().map(|s| s.to_vec()).collect();
    let combined = Gf256::combine_bytes(&raw);
    // Wiped before any return, the failing one included.
    raw.iter_mut().for_each(zeroize::Zeroize::zeroize);
    let secret = Zeroizing::new(combined.map_err(|_| Error::Shamir("unseal keys do not combine"))?);
    Key256::from_slice(&secret).ok_or(Error::Shamir("unseal keys do not combine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_threshold_subset_recovers_the_key() {
        let key = Key256::generate().unwrap();
        let shares = split(&key, 5, 3).unwrap();
        assert_eq!(shares.len(), 5);
        assert!(shares.iter().all(|s| s.len() == SHARE_LEN));
        for subset in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let pick: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(combine(&pick).unwrap().expose(), key.expose());
        }
    }

    #[test]
    fn fewer_than_threshold_does_not_recover() {
        let key = Key256::generate().unwrap();
        let shares = split(&key, 5, 3).unwrap();
        let two = vec![shares[0].clone(), shares[1].clone()];
        assert!(combine(&two).map(|k| k.expose() != key.expose()).unwrap_or(true));
    }

    #[test]
    fn single_share_is_the_key() {
        let key = Key256::generate().unwrap();
        let shares = split(&key, 1, 1).unwrap();
        assert_eq!(combine(&shares).unwrap().expose(), key.expose());
    }

    #[test]
    fn parameters_follow_vault_rules() {
        assert!(check_parameters(5, 3).is_ok());
        assert!(check_parameters(1, 1).is_ok());
        for (n, t) in [(0, 0), (3, 1), (3, 4), (256, 3), (2, 0)] {
            assert!(check_parameters(n, t).is_err(), "{n}/{t}");
        }
    }
}
