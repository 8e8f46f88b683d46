//! `coffer_core::wrap::unwrap` with a fixed key and label: arbitrary bytes
//! must never panic and never unwrap (nobody can forge a GCM tag), and a
//! genuine wrapped key with any byte changed, cut or extended must not
//! unwrap either.
//!
//! Nothing is ever wrapped under the fixed key, so any success on the raw
//! input is a forgery. The tampering checks use a genuine wrapped key made
//! under a *random* key per process: the fuzzer sees the genuine bytes
//! through its comparison hooks and can store them in the corpus, and they
//! must mean nothing to a later process (or to the raw check).
#![no_main]

use std::sync::OnceLock;

use coffer_core::Key256;
use coffer_core::wrap::{Label, unwrap, unwrap_key, wrap_key};
use libfuzzer_sys::fuzz_target;

/// Never used to wrap anything.
fn fixed_key() -> &'static (Key256, Label) {
    static FIXED: OnceLock<(Key256, Label)> = OnceLock::new();
    FIXED.get_or_init(|| (Key256::from_bytes([0x5a; 32]), Label::check("fuzz-unwrap")))
}

struct Fixture {
    kek: Key256,
    label: Label,
    secret: Key256,
    /// A real wrapped key (random key and nonce, made once per process).
    wrapped: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let kek = Key256::generate().expect("random fixture key");
        let label = Label::transit("", "transit", "fuzz", 1);
        let secret = Key256::from_bytes([0x07; 32]);
        let wrapped = wrap_key(&kek, &label, &secret).expect("wrapping the fixture key").0;
        Fixture {
            kek,
            label,
            secret,
            wrapped,
        }
    })
}

fn must_fail(fx: &Fixture, bytes: &[u8], what: &str) {
    if bytes == fx.wrapped.as_slice() {
        return;
    }
    assert!(
        unwrap(&fx.kek, &fx.label, bytes).is_err(),
        "{what}: forged wrapped key unwrapped: {}",
        hex::encode(bytes)
    );
    assert!(
        unwrap_key(&fx.kek, &fx.label, bytes).is_err(),
        "{what}: forged wrapped key unwrapped as a key: {}",
        hex::encode(bytes)
    );
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();

    // 1. The input itself as a wrapped key, under the fixed key and label.
    let (fixed, label) = fixed_key();
    assert!(
        unwrap(fixed, label, data).is_err() && unwrap_key(fixed, label, data).is_err(),
        "raw input unwrapped under the fixed key (a forgery): {}",
        hex::encode(data)
    );

    // 2. The input as an XOR mask over a genuine wrapped key (same length):
    //    only the all-zero mask may unwrap, and then to the right key.
    if data.len() == fx.wrapped.len() {
        let tampered: Vec<u8> = fx.wrapped.iter().zip(data).map(|(w, m)| w ^ m).collect();
        if data.iter().all(|&b| b == 0) {
            let k = unwrap_key(&fx.kek, &fx.label, &tampered).expect("the genuine wrapped key must unwrap");
            assert_eq!(k.expose(), fx.secret.expose());
        } else {
            must_fail(fx, &tampered, "xor mask");
        }
    }

    // 3. A prefix of the genuine wrapped key followed by the input's tail.
    if let Some((&cut, tail)) = data.split_first() {
        let cut = usize::from(cut) % (fx.wrapped.len() + 1);
        let mut spliced = fx.wrapped[..cut].to_vec();
        spliced.extend_from_slice(tail);
        must_fail(fx, &spliced, "splice");
    }
});
