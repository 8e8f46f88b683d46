//! ACL policies in Vault's HCL subset and their evaluation.
//!
//! ```hcl
//! path "transit/encrypt/app-*" { capabilities = ["update"] }
//! path "transit/decrypt/+"     { capabilities = ["deny"] }
//! ```
//!
//! Matching follows Vault: an exact path beats every pattern; among
//! patterns (`*` suffix glob, `+` one segment) the most specific wins; rules
//! for the same pattern in several policies merge, and `deny` beats all.
//! Parameter constraints (`allowed_parameters`, ...) are not supported and
//! are refused at parse time rather than silently ignored.

use std::collections::HashMap;

use crate::Error;

/// One capability, as a bit in a [`CapSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Capability {
    Create = 1,
    Read = 2,
    Update = 4,
    Patch = 8,
    Delete = 16,
    List = 32,
    Sudo = 64,
    Deny = 128,
}

impl Capability {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => Self::Create,
            "read" => Self::Read,
            "update" => Self::Update,
            "patch" => Self::Patch,
            "delete" => Self::Delete,
            "list" => Self::List,
            "sudo" => Self::Sudo,
            "deny" => Self::Deny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Read => "read",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::List => "list",
            Self::Sudo => "sudo",
            Self::Deny => "deny",
        }
    }

    const ALL: [Capability; 8] = [
        Self::Create,
        Self::Read,
        Self::Update,
        Self::Patch,
        Self::Delete,
        Self::List,
        Self::Sudo,
        Self::Deny,
    ];
}

/// A set of capabilities; a set containing `deny` grants nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSet(u16);

impl CapSet {
    pub const ROOT: CapSet = CapSet(0x7f);

    pub fn contains(self, c: Capability) -> bool {
        self.0 & (Capability::Deny as u16) == 0 && self.0 & (c as u16) != 0
    }

    fn insert(&mut self, c: Capability) {
        self.0 |= c as u16;
    }

    fn merge(&mut self, other: CapSet) {
        self.0 |= other.0;
    }

    /// Names, as Vault's `capabilities-self` returns them.
    pub fn names(self) -> Vec<&'static str> {
        if self.0 & (Capability::Deny as u16) != 0 {
            return vec!["deny"];
        }
        Capability::ALL
            .iter()
            .filter(|c| self.0 & (**c as u16) != 0)
            .map(|c| c.as_str())
            .collect()
    }
}

/// A parsed policy: its name, its source text and its path rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub text: String,
    rules: Vec<(String, CapSet)>,
}

/// Policies every token may hold but nobody may write.
pub const RESERVED: [&str; 2] = ["root", "default"];

/// The built-in `default` policy: a token may look itself up and revoke itself.
pub const DEFAULT_POLICY: &str = r#"
path "auth/token/lookup-self" { capabilities = ["read"] }
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/revoke-self" { capabilities = ["update"] }
path "sys/capabilities-self" { capabilities = ["update"] }
"#;

impl Policy {
    /// Parses a policy; every error says where and what.
    pub fn parse(name: &str, text: &str) -> Result<Self, Error> {
        check_shape(text)?;
        let body: hcl::Body = hcl::from_str(text).map_err(|e| Error::Policy(e.to_string()))?;
        let mut rules = Vec::new();
        for structure in body.into_iter() {
            let block = match structure {
                hcl::Structure::Block(b) => b,
                hcl::Structure::Attribute(a) => {
                    return Err(Error::Policy(format!(
                        "unexpected top-level attribute {:?}",
                        a.key.as_str()
                    )));
                }
            };
            if block.identifier.as_str() != "path" {
                return Err(Error::Policy(format!(
                    "unknown block {:?}; only \"path\" is supported",
                    block.identifier.as_str()
                )));
            }
            let [label] = block.labels.as_slice() else {
                return Err(Error::Policy("a path block takes exactly one path".into()));
            };
            let pattern = label.as_str().trim_start_matches('/').to_owned();
            validate_pattern(&pattern)?;
            let mut caps = CapSet::default();
            let mut saw_caps = false;
            for inner in block.body.into_iter() {
                let hcl::Structure::Attribute(attr) = inner else {
                    return Err(Error::Policy(format!(
                        "path {pattern:?}: nested blocks are not supported"
                    )));
                };
                match attr.key.as_str() {
                    "capabilities" => {
                        saw_caps = true;
                        let hcl::Expression::Array(items) = attr.expr else {
                            return Err(Error::Policy(format!(
                                "path {pattern:?}: capabilities must be a list of strings"
                            )));
                        };
                        for item in items {
                            let hcl::Expression::String(s) = item else {
                                return Err(Error::Policy(format!("path {pattern:?}: capabilities must be strings")));
                            };
                            let c = Capability::parse(&s)
                                .ok_or_else(|| Error::Policy(format!("path {pattern:?}: unknown capability {s:?}")))?;
                            caps.insert(c);
                        }
                    }
                    other => {
                        return Err(Error::Policy(format!(
                            "path {pattern:?}: {other:?} is not supported (only capabilities)"
                        )));
                    }
                }
            }
            if !saw_caps {
                return Err(Error::Policy(format!("path {pattern:?}: missing capabilities")));
            }
            rules.push((pattern, caps));
        }
        Ok(Policy {
            name: name.to_owned(),
            text: text.to_owned(),
            rules,
        })
    }
}

/// Largest policy accepted, bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Deepest bracket nesting accepted; a policy needs 2 (`path {` and `[`).
const MAX_NESTING: usize = 8;

/// Refuses what no policy needs before the HCL parser sees it: that parser
/// takes exponential time on deeply nested unclosed brackets.
fn check_shape(text: &str) -> Result<(), Error> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(Error::Policy(format!("policy is larger than {MAX_POLICY_BYTES} bytes")));
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' | '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Error::Policy(format!("brackets nested deeper than {MAX_NESTING}")));
                }
            }
            '}' | ']' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn validate_pattern(p: &str) -> Result<(), Error> {
    if p.find('*').is_some_and(|i| i != p.len() - 1) {
        return Err(Error::Policy(format!("path {p:?}: '*' is only allowed at the end")));
    }
    Ok(())
}

/// Whether `pattern` (with `+` segments and an optional trailing `*`) matches `path`.
fn pattern_matches(pattern: &str, path: &str) -> bool {
    let (pat, glob) = match pattern.strip_suffix('*') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    if !pat.contains('+') {
        return if glob { path.starts_with(pat) } else { path == pat };
    }
    let pat_segs: Vec<&str> = pat.split('/').collect();
    let path_segs: Vec<&str> = path.split('/').collect();
    if path_segs.len() < pat_segs.len() || (!glob && path_segs.len() != pat_segs.len()) {
        return false;
    }
    let last = pat_segs.len() - 1;
    for (i, (ps, s)) in pat_segs.iter().zip(&path_segs).enumerate() {
        let ok = if *ps == "+" {
            // A glob's last segment may be partially typed, e.g. "+/app-" matching "x/app-1".
            !s.is_empty() || (glob && i == last)
        } else if glob && i == last {
            s.starts_with(ps)
        } else {
            ps == s
        };
        if !ok {
            return false;
        }
    }
    glob || path_segs.len() == pat_segs.len()
}

/// Vault's ordering of two matching patterns: true if `a` is less specific.
fn lower_priority(a: &str, b: &str) -> bool {
    let first_wild = |p: &str| p.find(['+', '*']).unwrap_or(usize::MAX);
    let (fa, fb) = (first_wild(a), first_wild(b));
    if fa != fb {
        return fa < fb;
    }
    let (ga, gb) = (a.ends_with('*'), b.ends_with('*'));
    if ga != gb {
        return ga;
    }
    let plus = |p: &str| p.split('/').filter(|s| *s == "+").count();
    let (pa, pb) = (plus(a), plus(b));
    if pa != pb {
        return pa > pb;
    }
    if a.len() != b.len() {
        return a.len() < b.len();
    }
    a < b
}

/// The merged rules of a token's policies, ready to answer "may it do this?".
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    exact: HashMap<String, CapSet>,
    patterns: Vec<(String, CapSet)>,
}

impl Acl {
    pub fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>, root: bool) -> Self {
        let mut merged: HashMap<String, CapSet> = HashMap::new();
        for p in policies {
            for (pattern, caps) in &p.rules {
                merged.entry(pattern.clone()).or_default().merge(*caps);
            }
        }
        let mut acl = Acl {
            root,
            ..Default::default()
        };
        for (pattern, caps) in merged {
            if pattern.contains(['*', '+']) {
                acl.patterns.push((pattern, caps));
            } else {
                acl.exact.insert(pattern, caps);
            }
        }
        acl
    }

    /// The capabilities this ACL grants on `path` (no leading slash).
    pub fn capabilities(&self, path: &str) -> CapSet {
        self.matched(path).unwrap_or_default()
    }

    /// The capabilities of the rule that governs `path`; `None` if no rule matches it.
    pub fn matched(&self, path: &str) -> Option<CapSet> {
        if self.root {
            return Some(CapSet::ROOT);
        }
        if let Some(c) = self.exact.get(path) {
            return Some(*c);
        }
        let mut best: Option<&(String, CapSet)> = None;
        for rule in self.patterns.iter().filter(|(p, _)| pattern_matches(p, path)) {
            if best.is_none_or(|b| lower_priority(&b.0, &rule.0)) {
                best = Some(rule);
            }
        }
        best.map(|(_, c)| *c)
    }

    /// The capabilities for a list of `path`: as Vault, the rules for `path/`
    /// govern it (so `deny` on `path/*` holds); a rule for `path` alone applies
    /// only when none matches `path/`.
    pub fn list_capabilities(&self, path: &str) -> CapSet {
        self.matched(&format!("{path}/"))
            .unwrap_or_else(|| self.capabilities(path))
    }

    pub fn allows(&self, path: &str, cap: Capability) -> bool {
        self.capabilities(path).contains(cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acl(texts: &[&str]) -> Acl {
        let ps: Vec<Policy> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Policy::parse(&format!("p{i}"), t).unwrap())
            .collect();
        Acl::new(ps.iter(), false)
    }

    #[test]
    fn encrypt_allowed_decrypt_not() {
        let a = acl(&[r#"path "transit/encrypt/orders" { capabilities = ["update"] }"#]);
        assert!(a.allows("transit/encrypt/orders", Capability::Update));
        assert!(!a.allows("transit/decrypt/orders", Capability::Update));
        assert!(!a.allows("transit/encrypt/orders", Capability::Read));
    }

    #[test]
    fn globs_plus_and_precedence() {
        let a = acl(&[r#"path "transit/*" { capabilities = ["read", "update"] }
               path "transit/decrypt/+" { capabilities = ["deny"] }
               path "transit/encrypt/app-*" { capabilities = ["update", "create"] }"#]);
        assert!(a.allows("transit/keys/x", Capability::Read));
        assert!(
            !a.allows("transit/decrypt/x", Capability::Update),
            "deny on the more specific + rule"
        );
        assert!(a.allows("transit/encrypt/app-1", Capability::Create));
        assert!(!a.allows("transit/encrypt/other", Capability::Create));
        assert!(a.allows("transit/encrypt/other", Capability::Update));
    }

    #[test]
    fn deny_in_one_policy_beats_allow_in_another_for_the_same_path() {
        let a = acl(&[
            r#"path "transit/decrypt/k" { capabilities = ["update"] }"#,
            r#"path "transit/decrypt/k" { capabilities = ["deny"] }"#,
        ]);
        assert!(!a.allows("transit/decrypt/k", Capability::Update));
        assert_eq!(a.capabilities("transit/decrypt/k").names(), vec!["deny"]);
    }

    #[test]
    fn a_list_is_governed_by_the_rules_for_the_path_with_its_slash() {
        let a = acl(&[r#"path "transit/*" { capabilities = ["list"] }
                         path "transit/keys/*" { capabilities = ["deny"] }
                         path "sys/policies/acl/" { capabilities = ["list"] }
                         path "sys/mounts" { capabilities = ["list"] }"#]);
        assert!(!a.list_capabilities("transit/keys").contains(Capability::List));
        assert!(a.list_capabilities("transit/other").contains(Capability::List));
        assert!(a.list_capabilities("sys/policies/acl").contains(Capability::List));
        // No rule for `sys/mounts/`: the one for `sys/mounts` applies.
        assert!(a.list_capabilities("sys/mounts").contains(Capability::List));
        assert!(!a.list_capabilities("sys/nothing").contains(Capability::List));
    }

    #[test]
    fn exact_beats_glob() {
        let a = acl(&[r#"path "secret/*" { capabilities = ["deny"] }
                         path "secret/ok" { capabilities = ["read"] }"#]);
        assert!(a.allows("secret/ok", Capability::Read));
        assert!(!a.allows("secret/other", Capability::Read));
    }

    #[test]
    fn root_and_empty() {
        assert!(Acl::new([], true).allows("anything/at/all", Capability::Sudo));
        assert!(!Acl::new([], false).allows("transit/encrypt/x", Capability::Update));
    }

    #[test]
    fn rejects_what_it_cannot_enforce() {
        for bad in [
            r#"path "a" { capabilities = ["fly"] }"#,
            r#"path "a" { capabilities = "read" }"#,
            r#"path "a" { capabilities = ["read"] allowed_parameters = { x = [] } }"#,
            r#"path "a*b" { capabilities = ["read"] }"#,
            r#"path "a" {}"#,
            r#"key "a" { capabilities = ["read"] }"#,
            r#"path "a" { capabilities = ["read"] "#,
            "x = 1",
        ] {
            assert!(Policy::parse("bad", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deeply_nested_input_is_refused_before_the_hcl_parser() {
        // Found by fuzzing: the HCL parser takes exponential time on this shape.
        let hostile = format!("a = {}", "c%{by % ".repeat(40));
        let started = std::time::Instant::now();
        assert!(Policy::parse("x", &hostile).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused at once");
        assert!(Policy::parse("x", &"x".repeat(MAX_POLICY_BYTES + 1)).is_err());
        let braces_in_strings = r#"path "a/{b}/[c]/{{{{{{{{{{" { capabilities = ["read"] }"#;
        assert!(Policy::parse("x", braces_in_strings).is_ok());
    }

    #[test]
    fn default_policy_parses() {
        let p = Policy::parse("default", DEFAULT_POLICY).unwrap();
        let a = Acl::new([&p], false);
        assert!(a.allows("auth/token/lookup-self", Capability::Read));
        assert!(!a.allows("auth/token/create", Capability::Update));
    }

    proptest! {
        #[test]
        fn prop_parse_never_panics(s in ".{0,200}") {
            let _ = Policy::parse("fuzz", &s);
        }

        #[test]
        fn prop_pattern_match_never_panics(p in "[a-z/+*]{0,20}", s in "[a-z/]{0,20}") {
            let _ = pattern_matches(&p, &s);
        }
    }
}
