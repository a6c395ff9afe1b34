//! The cache key of a stage: an explicit struct of everything that determines its outputs, hashed
//! with blake3. Because it is a struct (printed by `camel status --json`), "why did this rerun?"
//! is answered by diffing the struct recorded at the last run against today's. What goes in, and
//! what deliberately does not, is documented in `docs/caching.md`.

use std::collections::BTreeMap;

use camel_cache::{CACHE_FORMAT_VERSION, ContentHash, hash_bytes};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheKey {
    /// [`CACHE_FORMAT_VERSION`]: the layout of entries.
    pub format: u32,
    pub kind: String,
    /// The kind's implementation version ([`crate::Stage::VERSION`]).
    pub version: u32,
    /// The hashed params, normalized: defaults filled in, keys sorted, secrets removed.
    pub params: serde_json::Value,
    /// Content hash of each input (file, directory manifest, or upstream output). Paths are not
    /// part of the key: moving an input without changing it reruns nothing.
    pub inputs: BTreeMap<String, ContentHash>,
}

impl CacheKey {
    pub fn new(
        kind: &str,
        version: u32,
        params: serde_json::Value,
        inputs: BTreeMap<String, ContentHash>,
    ) -> Self {
        CacheKey { format: CACHE_FORMAT_VERSION, kind: kind.to_string(), version, params, inputs }
    }

    /// The hex digest naming the cache entry.
    pub fn digest(&self) -> String {
        // serde_json maps are sorted (no `preserve_order`), so this serialization is canonical.
        hash_bytes(&serde_json::to_vec(self).expect("cache keys serialize")).to_hex()
    }
}

/// Why a stage's key differs from the one it had at its last successful run, in words.
pub fn diff(old: &CacheKey, new: &CacheKey, sources: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    if old.format != new.format {
        out.push(format!("cache format changed from {} to {}", old.format, new.format));
    }
    if old.kind != new.kind {
        out.push(format!("kind changed from `{}` to `{}`", old.kind, new.kind));
    } else if old.version != new.version {
        out.push(format!(
            "implementation version of `{}` changed from {} to {}",
            new.kind, old.version, new.version
        ));
    }
    diff_json("", &old.params, &new.params, &mut out);
    for (name, h) in &new.inputs {
        let src = sources.get(name).map(|s| format!(" ({s})")).unwrap_or_default();
        match old.inputs.get(name) {
            None => out.push(format!("input `{name}`{src} added")),
            Some(o) if o != h => {
                out.push(format!("input `{name}`{src} content changed ({} -> {})", o.short(), h.short()))
            }
            _ => {}
        }
    }
    for name in old.inputs.keys() {
        if !new.inputs.contains_key(name) {
            out.push(format!("input `{name}` removed"));
        }
    }
    out
}

fn diff_json(prefix: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match a.get(k) {
                    Some(va) => diff_json(&p, va, vb, out),
                    None => out.push(format!("param `{p}` added: {}", short(vb))),
                }
            }
            for (k, va) in a {
                if !b.contains_key(k) {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    out.push(format!("param `{p}` removed (was {})", short(va)));
                }
            }
        }
        (a, b) if a != b => {
            let p = if prefix.is_empty() { "params" } else { prefix };
            out.push(format!("param `{p}` changed from {} to {}", short(a), short(b)));
        }
        _ => {}
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(57).collect::<String>()) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_ignores_map_order_and_changes_with_content() {
        let a = CacheKey::new("k", 1, json!({"a": 1, "b": 2}), BTreeMap::new());
        let b = CacheKey::new("k", 1, serde_json::from_str(r#"{"b": 2, "a": 1}"#).unwrap(), BTreeMap::new());
        assert_eq!(a.digest(), b.digest());
        let c = CacheKey::new("k", 2, json!({"a": 1, "b": 2}), BTreeMap::new());
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn diff_explains() {
        let h1 = hash_bytes(b"1");
        let h2 = hash_bytes(b"2");
        let old =
            CacheKey::new("command", 1, json!({"run": "a", "env": {"N": 2}}), [("x".to_string(), h1)].into());
        let new =
            CacheKey::new("command", 2, json!({"run": "a", "env": {"N": 4}}), [("x".to_string(), h2)].into());
        let r = diff(&old, &new, &[("x".to_string(), "data/x.csv".to_string())].into());
        assert_eq!(r[0], "implementation version of `command` changed from 1 to 2");
        assert_eq!(r[1], "param `env.N` changed from 2 to 4");
        assert!(r[2].starts_with("input `x` (data/x.csv) content changed"));
    }
}
