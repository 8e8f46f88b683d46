//! Runs testdata/formats.txt: Coffer's wrapped-key and transit ciphertext
//! formats against committed known answers.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use coffer_core::Key256;
use coffer_core::keyring::{KeyConfig, KeyType, Keyring, VersionKeys};
use coffer_core::wrap::{self, Label};

fn label(spec: &str) -> Label {
    let p: Vec<&str> = spec.split(' ').collect();
    match p.as_slice() {
        ["root"] => Label::root(),
        ["root", "v2"] => Label::root_v2(),
        ["tenant", ns, v] => Label::tenant(ns, v.parse().unwrap()),
        ["transit", ns, mount, name, v] => Label::transit(ns, mount, name, v.parse().unwrap()),
        _ => panic!("bad label {spec}"),
    }
}

fn ring(key_type: KeyType, key: &[u8]) -> Keyring {
    let config = KeyConfig {
        name: "vector".into(),
        key_type,
        latest_version: 1,
        min_decryption_version: 1,
        min_encryption_version: 0,
        min_available_version: 0,
        deletion_allowed: false,
        exportable: false,
        allow_plaintext_backup: false,
        auto_rotate_period: 0,
        version_created: BTreeMap::from([(1, 0)]),
    };
    let keys = VersionKeys {
        encryption: Key256::from_slice(key).unwrap(),
        hmac: Key256::from_bytes([0; 32]),
    };
    Keyring::from_parts(config, BTreeMap::from([(1, keys)]))
}

#[test]
fn committed_format_vectors() {
    let text = include_str!("../testdata/formats.txt");
    let mut ran = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(" | ").collect();
        let (kind, name) = (f[0], f[1]);
        let must_fail = name.starts_with("fail_");
        match kind {
            "wrap" => {
                let kek = Key256::from_slice(&hex::decode(f[3]).unwrap()).unwrap();
                let got = wrap::unwrap(&kek, &label(f[2]), &hex::decode(f[4]).unwrap());
                if must_fail {
                    assert!(got.is_err(), "{name} opened");
                } else {
                    assert_eq!(got.unwrap().as_bytes(), &hex::decode(f[5]).unwrap()[..], "{name}");
                }
            }
            "transit" => {
                let r = ring(KeyType::parse(f[2]).unwrap(), &hex::decode(f[3]).unwrap());
                let got = r.decrypt(f[5], f[4].as_bytes());
                if must_fail {
                    assert!(got.is_err(), "{name} opened");
                } else {
                    assert_eq!(got.unwrap().0.as_bytes(), f[6].as_bytes(), "{name}");
                }
            }
            other => panic!("unknown vector kind {other}"),
        }
        ran += 1;
    }
    assert!(ran >= 13, "only {ran} vectors ran");
}
