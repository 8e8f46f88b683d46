//! `Policy::parse` on arbitrary text (HCL); whatever parses is turned into an
//! ACL and queried for a few paths taken from the input itself.
#![no_main]

use coffer_core::policy::{Acl, CapSet, Capability, Policy};
use libfuzzer_sys::fuzz_target;

const CAPS: [Capability; 8] = [
    Capability::Create,
    Capability::Read,
    Capability::Update,
    Capability::Patch,
    Capability::Delete,
    Capability::List,
    Capability::Sudo,
    Capability::Deny,
];

/// Paths to query: the quoted strings of the input (the `path "..."` labels
/// when it is a policy), with their wildcards made concrete, plus a few
/// derived ones, so lookups hit exact, glob and `+` rules.
fn paths(text: &str) -> Vec<String> {
    let mut out = vec![String::new(), "transit/encrypt/x".to_owned()];
    for quoted in text.split('"').skip(1).step_by(2).take(4) {
        let p = quoted.trim_start_matches('/');
        out.push(p.to_owned());
        out.push(p.replace('+', "seg").replace('*', "tail/more"));
        out.push(format!("{}/extra", p.trim_end_matches('*')));
        if let Some((head, _)) = p.rsplit_once('/') {
            out.push(head.to_owned());
        }
    }
    let tail: String = text
        .chars()
        .rev()
        .take(32)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    out.push(tail);
    out
}

fn check(caps: CapSet) {
    let names = caps.names();
    if caps.contains(Capability::Read) || caps.contains(Capability::Update) {
        assert!(
            !names.contains(&"deny"),
            "a set that grants must not be named deny: {names:?}"
        );
    }
    if names == ["deny"] {
        for c in CAPS {
            assert!(!caps.contains(c), "deny must grant nothing, yet grants {c:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = Policy::parse("fuzz", text) else {
        return;
    };
    assert_eq!(p.text, text);
    let acl = Acl::new([&p], false);
    let root = Acl::new([&p], true);
    for path in paths(text) {
        let caps = acl.capabilities(&path);
        check(caps);
        assert_eq!(
            caps,
            acl.capabilities(&path),
            "capabilities({path:?}) is not deterministic"
        );
        assert_eq!(
            root.capabilities(&path),
            CapSet::ROOT,
            "root ACL must grant everything on {path:?}"
        );
        for c in CAPS {
            assert_eq!(acl.allows(&path, c), caps.contains(c));
        }
    }
});
