//! `coffer_core::ciphertext::parse` on arbitrary UTF-8: it must never panic,
//! and whatever it accepts must survive `format` → `parse` unchanged.
#![no_main]

use coffer_core::ciphertext::{format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = parse(s) {
        let formatted = format(v.version, &v.payload);
        let again = parse(&formatted)
            .unwrap_or_else(|e| panic!("format() output {formatted:?} (from {s:?}) does not parse: {e}"));
        assert_eq!(
            again, v,
            "round trip changed the value of {s:?} (formatted {formatted:?})"
        );
    }
});
