//! `coffer_core::shamir::combine` on the input cut into 33-byte shares (the
//! last one may be shorter): it must never panic, whatever the shares.
#![no_main]

use coffer_core::shamir::{Share, combine};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let shares: Vec<Share> = data.chunks(33).map(|c| Zeroizing::new(c.to_vec())).collect();
    let result = combine(&shares);
    // One share is the key itself (as Vault does): exactly 32 bytes work.
    if let [single] = shares.as_slice() {
        assert_eq!(
            result.is_ok(),
            single.len() == 32,
            "single share of {} bytes",
            single.len()
        );
    }
});
