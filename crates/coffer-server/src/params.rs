//! Typed access to a request's JSON body, with Vault's leniency (numbers
//! and booleans may arrive as strings) and a clear 400 for anything else.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult};

/// Parameters are wiped when dropped: plaintexts and tokens arrive as strings.
#[derive(Default, Clone)]
pub(crate) struct Params(pub(crate) Map<String, Value>);

/// Names only: the values may be plaintexts, tokens or unseal shares.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        self.0.values_mut().for_each(crate::hygiene::wipe_value);
    }
}

impl Params {
    /// Parses a request body: empty means no parameters; anything but a
    /// JSON object is refused.
    pub(crate) fn from_body(body: &[u8]) -> ApiResult<Self> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Params::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => Ok(Params(m)),
            Ok(_) => Err(ApiError::bad(
                "failed to parse JSON input: the body must be a JSON object",
            )),
            Err(e) => Err(ApiError::bad(format!("failed to parse JSON input: {e}"))),
        }
    }

    /// A batch item as parameters of its own, moved out of the request.
    pub(crate) fn from_object(v: Value) -> ApiResult<Self> {
        match v {
            Value::Object(m) => Ok(Params(m)),
            mut other => {
                crate::hygiene::wipe_value(&mut other);
                Err(ApiError::bad("each batch_input item must be a JSON object"))
            }
        }
    }

    /// Moves a string out (a batch item's `reference`), refusing other types.
    pub(crate) fn take_str(&mut self, k: &str) -> ApiResult<Option<String>> {
        self.str(k)?;
        Ok(match self.0.remove(k) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        })
    }

    /// Moves a list out (empty if absent or not a list; check with [`Params::array`] first).
    pub(crate) fn take_array(&mut self, k: &str) -> Vec<Value> {
        match self.0.remove(k) {
            Some(Value::Array(a)) => a,
            Some(mut other) => {
                crate::hygiene::wipe_value(&mut other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    pub(crate) fn insert(&mut self, k: &str, v: Value) {
        self.0.insert(k.to_owned(), v);
    }

    fn present(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, k: &str) -> ApiResult<Option<&str>> {
        match self.present(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad(format!("field {k:?} must be a string"))),
        }
    }

    pub(crate) fn required_str(&self, k: &str) -> ApiResult<&str> {
        self.str(k)?
            .ok_or_else(|| ApiError::bad(format!("missing {k} to process")))
    }

    pub(crate) fn bool(&self, k: &str) -> ApiResult<Option<bool>> {
        match self.present(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "1" => Ok(Some(true)),
            Some(Value::String(s)) if s == "false" || s == "0" => Ok(Some(false)),
            Some(_) => Err(ApiError::bad(format!("field {k:?} must be a boolean"))),
        }
    }

    pub(crate) fn u64(&self, k: &str) -> ApiResult<Option<u64>> {
        let bad = || ApiError::bad(format!("field {k:?} must be a non-negative integer"));
        match self.present(k) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    pub(crate) fn u32(&self, k: &str) -> ApiResult<Option<u32>> {
        match self.u64(k)? {
            None => Ok(None),
            Some(v) => u32::try_from(v)
                .map(Some)
                .map_err(|_| ApiError::bad(format!("field {k:?} is out of range"))),
        }
    }

    /// A duration in seconds: an integer, or a Go-style string like "1h30m".
    pub(crate) fn duration(&self, k: &str) -> ApiResult<Option<u64>> {
        match self.present(k) {
            None => Ok(None),
            Some(Value::Number(_)) => self.u64(k),
            Some(Value::String(s)) => parse_duration(s)
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("field {k:?}: invalid duration {s:?}"))),
            Some(_) => Err(ApiError::bad(format!("field {k:?} must be a duration"))),
        }
    }

    /// A list of strings, also accepted as one comma-separated string.
    pub(crate) fn str_list(&self, k: &str) -> ApiResult<Option<Vec<String>>> {
        match self.present(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_owned()),
                    _ => Err(ApiError::bad(format!("field {k:?} must be a list of strings"))),
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(_) => Err(ApiError::bad(format!("field {k:?} must be a list of strings"))),
        }
    }

    /// Standard base64, as Vault takes plaintexts, inputs and AAD; the
    /// decoded bytes are wiped when dropped.
    pub(crate) fn base64(&self, k: &str) -> ApiResult<Option<Zeroizing<Vec<u8>>>> {
        match self.str(k)? {
            None => Ok(None),
            Some(s) => {
                // `base64` wraps lines at 76 and Go's decoder (Vault's) skips line breaks: so do we.
                let unwrapped;
                let s = if s.contains(['\n', '\r']) {
                    unwrapped = Zeroizing::new(s.replace(['\n', '\r'], ""));
                    unwrapped.as_str()
                } else {
                    s
                };
                // Decode into a buffer sized up front, so no reallocation leaves a copy behind.
                let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 4 * 3 + 3));
                STANDARD
                    .decode_vec(s, &mut out)
                    .map_err(|_| ApiError::bad(format!("failed to base64-decode {k}")))?;
                Ok(Some(out))
            }
        }
    }

    pub(crate) fn array(&self, k: &str) -> ApiResult<Option<&Vec<Value>>> {
        match self.present(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(ApiError::bad(format!("field {k:?} must be a list"))),
        }
    }

    pub(crate) fn string_map(&self, k: &str) -> ApiResult<Map<String, Value>> {
        match self.present(k) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(m.clone()),
            Some(_) => Err(ApiError::bad(format!("field {k:?} must be a map of strings"))),
        }
    }
}

/// Parses "90", "90s", "15m", "1h30m", "768h" (Go's units up to hours, plus "d").
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !num.is_empty() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("768h"), Some(768 * 3600));
        assert_eq!(parse_duration("2d"), Some(172800));
        for bad in ["h", "1x", "1h3", "-1s", "99999999999999999999h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_shows_names_not_values() {
        let p = Params::from_body(br#"{"plaintext":"c2VjcmV0LXZhbHVl","token":"s.hidden"}"#).unwrap();
        let shown = format!("{p:?}");
        assert!(shown.contains("plaintext") && shown.contains("token"), "{shown}");
        assert!(
            !shown.contains("c2VjcmV0LXZhbHVl") && !shown.contains("s.hidden"),
            "{shown}"
        );
    }

    #[test]
    fn body_must_be_an_object() {
        assert!(Params::from_body(b"").is_ok());
        assert!(Params::from_body(b"[1]").is_err());
        assert!(Params::from_body(b"{bad").is_err());
        let p = Params::from_body(br#"{"n": "5", "b": "true", "s": 3}"#).unwrap();
        assert_eq!(p.u32("n").unwrap(), Some(5));
        assert_eq!(p.bool("b").unwrap(), Some(true));
        assert!(p.str("s").is_err());
    }
}
