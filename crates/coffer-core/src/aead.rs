//! The one AEAD seam: AES-256-GCM with a 96-bit random nonce and a 128-bit
//! tag. Transit keys, wrapped keys and data keys all seal through here.
//!
//! Wire layout of a sealed blob: `nonce (12) ‖ ciphertext ‖ tag (16)`, the
//! same as Vault's `aes256-gcm96` payload.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{Error, Key256, Plaintext};

pub const NONCE_BYTES: usize = NONCE_LEN;
pub const TAG_BYTES: usize = 16;
/// Bytes a sealed blob adds to its plaintext.
pub const OVERHEAD: usize = NONCE_BYTES + TAG_BYTES;

/// The AEADs behind the seam. All take a 96-bit nonce and give a 128-bit tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The default everywhere, and the only one used for key wrapping.
    Aes256Gcm,
    /// Uses the first 16 bytes of the key (Vault's `aes128-gcm96`).
    Aes128Gcm,
    ChaCha20Poly1305,
}

fn less_safe_key(alg: Algorithm, key: &Key256) -> LessSafeKey {
    let (algorithm, bytes) = match alg {
        Algorithm::Aes256Gcm => (&AES_256_GCM, &key.expose()[..]),
        Algorithm::Aes128Gcm => (&AES_128_GCM, &key.expose()[..16]),
        Algorithm::ChaCha20Poly1305 => (&CHACHA20_POLY1305, &key.expose()[..]),
    };
    // Each algorithm gets exactly its key length, so this cannot fail.
    LessSafeKey::new(UnboundKey::new(algorithm, bytes).expect("key length matches the algorithm"))
}

/// A key prepared for its algorithm: the key schedule is computed once and
/// reused for every message (aws-lc wipes it when it is freed).
pub struct Cipher {
    key: LessSafeKey,
}

impl Cipher {
    pub fn new(alg: Algorithm, key: &Key256) -> Self {
        Cipher {
            key: less_safe_key(alg, key),
        }
    }

    /// Seals with the next nonce from `nonces`: `nonce ‖ ciphertext ‖ tag`.
    pub fn seal(&self, nonces: &mut Nonces, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.seal_with_nonce(nonces.take()?, aad, plaintext))
    }

    fn seal_with_nonce(&self, nonce: [u8; NONCE_BYTES], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_BYTES..],
            )
            // Only fails for inputs beyond GCM's 64 GiB limit, which no caller can send.
            .expect("plaintext within AES-GCM limits");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens `nonce ‖ ciphertext ‖ tag`. Any failure is the one opaque error.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Plaintext, Error> {
        if sealed.len() < OVERHEAD {
            return Err(Error::DecryptionFailed);
        }
        let (nonce, rest) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::DecryptionFailed)?;
        let mut buf = rest.to_vec();
        match self.key.open_in_place(nonce, Aad::from(aad), &mut buf) {
            Ok(pt) => {
                let n = pt.len();
                buf.truncate(n);
                Ok(Plaintext::new(buf))
            }
            Err(_) => {
                // The buffer may hold unauthenticated plaintext: wipe it.
                zeroize::Zeroize::zeroize(&mut buf);
                Err(Error::DecryptionFailed)
            }
        }
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

/// Random 96-bit nonces, drawn from the CSPRNG many at a time (one draw per
/// batch request instead of one per item) and each handed out once.
pub struct Nonces {
    buf: Vec<u8>,
    used: usize,
    refill: usize,
}

impl Nonces {
    /// Room for `n` nonces now; more are drawn if more are taken.
    pub fn new(n: usize) -> Self {
        Nonces {
            buf: Vec::new(),
            used: 0,
            refill: n.clamp(1, 4096),
        }
    }

    pub fn take(&mut self) -> Result<[u8; NONCE_BYTES], Error> {
        if self.used == self.buf.len() {
            // Filled aside, so a failed draw leaves nothing to hand out.
            let mut fresh = vec![0u8; self.refill * NONCE_BYTES];
            crate::rand::fill(&mut fresh)?;
            self.buf = fresh;
            self.used = 0;
        }
        let mut nonce = [0u8; NONCE_BYTES];
        nonce.copy_from_slice(&self.buf[self.used..self.used + NONCE_BYTES]);
        self.used += NONCE_BYTES;
        Ok(nonce)
    }
}

/// Seals `plaintext` under `key` with AES-256-GCM, binding `aad`, with a fresh random nonce.
pub fn seal(key: &Key256, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    seal_with(Algorithm::Aes256Gcm, key, aad, plaintext)
}

/// Opens a blob made by [`seal`]. Any failure is the one opaque error.
pub fn open(key: &Key256, aad: &[u8], sealed: &[u8]) -> Result<Plaintext, Error> {
    open_with(Algorithm::Aes256Gcm, key, aad, sealed)
}

/// [`seal`] with a chosen algorithm.
pub fn seal_with(alg: Algorithm, key: &Key256, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    Cipher::new(alg, key).seal(&mut Nonces::new(1), aad, plaintext)
}

/// Seals with a caller-chosen nonce. Only for known-answer tests and for
/// callers that guarantee uniqueness; [`seal`] is the normal entry.
pub fn seal_with_nonce(
    alg: Algorithm,
    key: &Key256,
    nonce: [u8; NONCE_BYTES],
    aad: &[u8],
    plaintext: &[u8],
) -> Vec<u8> {
    Cipher::new(alg, key).seal_with_nonce(nonce, aad, plaintext)
}

/// [`open`] with a chosen algorithm.
pub fn open_with(alg: Algorithm, key: &Key256, aad: &[u8], sealed: &[u8]) -> Result<Plaintext, Error> {
    Cipher::new(alg, key).open(aad, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> Key256 {
        Key256::from_bytes([b; 32])
    }

    #[test]
    fn nonces_are_distinct_across_refills() {
        let mut n = Nonces::new(3);
        let taken: std::collections::HashSet<_> = (0..50).map(|_| n.take().unwrap()).collect();
        assert_eq!(taken.len(), 50);
    }

    #[test]
    fn a_prepared_cipher_matches_the_one_shot_functions() {
        let k = key(7);
        let c = Cipher::new(Algorithm::Aes256Gcm, &k);
        let mut nonces = Nonces::new(2);
        let a = c.seal(&mut nonces, b"aad", b"same").unwrap();
        let b = c.seal(&mut nonces, b"aad", b"same").unwrap();
        assert_ne!(a[..NONCE_BYTES], b[..NONCE_BYTES], "each message gets its own nonce");
        assert_eq!(open(&k, b"aad", &a).unwrap().as_bytes(), b"same");
        let nonce: [u8; NONCE_BYTES] = b[..NONCE_BYTES].try_into().unwrap();
        assert_eq!(seal_with_nonce(Algorithm::Aes256Gcm, &k, nonce, b"aad", b"same"), b);
        assert!(c.open(b"other", &b).is_err());
    }

    #[test]
    fn round_trip_with_aad() {
        let k = key(1);
        let blob = seal(&k, b"tenant=a", b"hello").unwrap();
        assert_eq!(blob.len(), OVERHEAD + 5);
        assert_eq!(open(&k, b"tenant=a", &blob).unwrap().as_bytes(), b"hello");
    }

    #[test]
    fn wrong_aad_wrong_key_and_short_input_fail() {
        let k = key(1);
        let blob = seal(&k, b"row=1", b"hello").unwrap();
        assert_eq!(open(&k, b"row=2", &blob), Err(Error::DecryptionFailed));
        assert_eq!(open(&key(2), b"row=1", &blob), Err(Error::DecryptionFailed));
        assert_eq!(open(&k, b"row=1", &blob[..10]), Err(Error::DecryptionFailed));
    }

    #[test]
    fn every_algorithm_round_trips_and_they_do_not_mix() {
        let k = key(4);
        let all = [Algorithm::Aes256Gcm, Algorithm::Aes128Gcm, Algorithm::ChaCha20Poly1305];
        for alg in all {
            let blob = seal_with(alg, &k, b"a", b"msg").unwrap();
            assert_eq!(open_with(alg, &k, b"a", &blob).unwrap().as_bytes(), b"msg");
            for other in all.into_iter().filter(|o| *o != alg) {
                assert!(open_with(other, &k, b"a", &blob).is_err());
            }
        }
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = key(3);
        let a = seal(&k, b"", b"same").unwrap();
        let b = seal(&k, b"", b"same").unwrap();
        assert_ne!(a[..NONCE_BYTES], b[..NONCE_BYTES]);
    }

    proptest! {
        #[test]
        fn prop_round_trip(pt in proptest::collection::vec(any::<u8>(), 0..512),
                           aad in proptest::collection::vec(any::<u8>(), 0..64)) {
            let k = key(7);
            let blob = seal(&k, &aad, &pt).unwrap();
            let opened = open(&k, &aad, &blob).unwrap();
            prop_assert_eq!(opened.as_bytes(), &pt[..]);
        }

        #[test]
        fn prop_any_bit_flip_is_detected(pt in proptest::collection::vec(any::<u8>(), 0..128),
                                         pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let k = key(9);
            let mut blob = seal(&k, b"aad", &pt).unwrap();
            let i = pos.index(blob.len());
            blob[i] ^= 1 << bit;
            prop_assert_eq!(open(&k, b"aad", &blob), Err(Error::DecryptionFailed));
        }
    }
}

#[cfg(test)]
mod known_answers {
    use super::*;

    fn field(s: &str) -> Vec<u8> {
        if s == "-" {
            Vec::new()
        } else {
            hex::decode(s).expect("hex in vector file")
        }
    }

    /// Runs every vector in testdata/aes256gcm_nist.txt through seal and open.
    #[test]
    fn nist_vectors() {
        let text = include_str!("../testdata/aes256gcm_nist.txt");
        let mut ran = 0;
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 7, "bad vector line: {line}");
            let key = Key256::from_slice(&field(f[1])).expect("32-byte key");
            let nonce: [u8; 12] = field(f[2]).try_into().expect("12-byte nonce");
            let (aad, pt, ct, tag) = (field(f[3]), field(f[4]), field(f[5]), field(f[6]));
            let mut blob = nonce.to_vec();
            blob.extend_from_slice(&ct);
            blob.extend_from_slice(&tag);
            if f[0].starts_with("fail_") {
                assert_eq!(open(&key, &aad, &blob), Err(Error::DecryptionFailed), "{}", f[0]);
            } else {
                assert_eq!(
                    seal_with_nonce(Algorithm::Aes256Gcm, &key, nonce, &aad, &pt),
                    blob,
                    "{}",
                    f[0]
                );
                assert_eq!(open(&key, &aad, &blob).expect(f[0]).as_bytes(), &pt[..], "{}", f[0]);
            }
            ran += 1;
        }
        assert!(ran >= 12, "only {ran} vectors ran");
    }
}
