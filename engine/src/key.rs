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

/// The differences between two param values, one line per leaf that changed. Maps are compared
/// per key; lists per position, or per `name` where every entry of both lists is a map with a
/// distinct string `name` (so inserting a named source does not report every later one as
/// changed); lists of plain values as what was added and removed. Long values are elided around
/// the first difference, so that the part that changed is always shown.
fn diff_json(prefix: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let field = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let p = field(k);
                match a.get(k) {
                    Some(va) => diff_json(&p, va, vb, out),
                    None => out.push(format!("param `{p}` added: {}", short(vb))),
                }
            }
            for (k, va) in a {
                if !b.contains_key(k) {
                    out.push(format!("param `{}` removed (was {})", field(k), short(va)));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a != b => diff_list(prefix, a, b, out),
        (a, b) if a != b => {
            let p = if prefix.is_empty() { "params" } else { prefix };
            let (sa, sb) = elide_pair(&a.to_string(), &b.to_string());
            out.push(format!("param `{p}` changed from {sa} to {sb}"));
        }
        _ => {}
    }
}

/// Two lists that differ (see [`diff_json`]).
fn diff_list(prefix: &str, a: &[serde_json::Value], b: &[serde_json::Value], out: &mut Vec<String>) {
    use serde_json::Value;
    let p = if prefix.is_empty() { "params" } else { prefix };
    if let (Some(na), Some(nb)) = (names(a), names(b)) {
        for (i, vb) in b.iter().enumerate() {
            let at = format!("{p}[{}]", nb[i]);
            match na.iter().position(|n| *n == nb[i]) {
                Some(j) => diff_json(&at, &a[j], vb, out),
                None => out.push(format!("param `{at}` added: {}", short(vb))),
            }
        }
        for (j, va) in a.iter().enumerate() {
            if !nb.contains(&na[j]) {
                out.push(format!("param `{p}[{}]` removed (was {})", na[j], short(va)));
            }
        }
        if na.iter().filter(|n| nb.contains(n)).ne(nb.iter().filter(|n| na.contains(n))) {
            out.push(format!("param `{p}`: entries reordered"));
        }
        return;
    }
    let plain = |v: &[Value]| v.iter().all(|x| !x.is_object() && !x.is_array());
    if plain(a) && plain(b) {
        // A multiset difference: what a reader edits in such lists is membership.
        let mut left: Vec<&Value> = b.iter().collect();
        let mut removed = Vec::new();
        for v in a {
            match left.iter().position(|x| *x == v) {
                Some(k) => {
                    left.remove(k);
                }
                None => removed.push(v),
            }
        }
        let list = |vs: &[&Value]| vs.iter().map(|v| short(v)).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if !removed.is_empty() {
            parts.push(format!("removed {}", list(&removed)));
        }
        if !left.is_empty() {
            parts.push(format!("added {}", list(&left)));
        }
        if parts.is_empty() {
            parts.push("same entries, reordered".into());
        }
        out.push(format!("param `{p}`: {}", parts.join("; ")));
        return;
    }
    for (i, (va, vb)) in a.iter().zip(b).enumerate() {
        diff_json(&format!("{p}[{i}]"), va, vb, out);
    }
    for (i, vb) in b.iter().enumerate().skip(a.len()) {
        out.push(format!("param `{p}[{i}]` added: {}", short(vb)));
    }
    for (i, va) in a.iter().enumerate().skip(b.len()) {
        out.push(format!("param `{p}[{i}]` removed (was {})", short(va)));
    }
}

/// The `name` of every entry, when every entry is a map with a string `name` and no two share one.
fn names(list: &[serde_json::Value]) -> Option<Vec<&str>> {
    let names: Vec<&str> = list.iter().map(|v| v.get("name")?.as_str()).collect::<Option<_>>()?;
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.len() == names.len() && !names.is_empty()).then_some(names)
}

/// Values longer than this are elided.
const SHORT: usize = 60;
/// Characters kept before the first difference of two long values.
const BEFORE: usize = 20;

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > SHORT {
        format!("{}…", s.chars().take(SHORT - 3).collect::<String>())
    } else {
        s
    }
}

/// Both texts, each cut to a window that starts a little before their first difference (`…` marks
/// what was cut), so that two long values never print as the same truncated text.
fn elide_pair(a: &str, b: &str) -> (String, String) {
    let (ca, cb): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if ca.len() <= SHORT && cb.len() <= SHORT {
        return (a.to_string(), b.to_string());
    }
    let first = ca.iter().zip(&cb).take_while(|(x, y)| x == y).count();
    let start = first.saturating_sub(BEFORE);
    let window = |c: &[char]| {
        let end = (start + SHORT).min(c.len());
        let mut s = String::new();
        if start > 0 {
            s.push('…');
        }
        s.extend(&c[start..end]);
        if end < c.len() {
            s.push('…');
        }
        s
    };
    (window(&ca), window(&cb))
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

    fn params_diff(old: serde_json::Value, new: serde_json::Value) -> Vec<String> {
        let k = |p| CacheKey::new("notes", 1, p, BTreeMap::new());
        diff(&k(old), &k(new), &BTreeMap::new())
    }

    /// The case that printed the same truncated text on both sides: one category less in the
    /// first of several sources.
    #[test]
    fn lists_are_diffed_by_position_and_entry() {
        let cats = ["Discharge Summary", "Radiology", "Nursing", "Physician", "Progress Note"];
        let src =
            |cats: &[&str]| json!({"anon": "keep", "categories": cats, "path": "/data/NOTEEVENTS.csv.gz"});
        let old = json!({"sources": [src(&cats), src(&cats[..1])]});
        let new = json!({"sources": [src(&cats[..4]), src(&cats[..1])]});
        assert_eq!(params_diff(old, new), [r#"param `sources[0].categories`: removed "Progress Note""#]);

        let r = params_diff(json!({"l": [1, 2, 3]}), json!({"l": [3, 4, 1]}));
        assert_eq!(r, ["param `l`: removed 2; added 4"]);
        let r = params_diff(json!({"l": [1, 2]}), json!({"l": [2, 1]}));
        assert_eq!(r, ["param `l`: same entries, reordered"]);
        let r = params_diff(json!({"l": [{"a": 1}]}), json!({"l": [{"a": 2}, {"a": 3}]}));
        assert_eq!(r, ["param `l[0].a` changed from 1 to 2", r#"param `l[1]` added: {"a":3}"#]);
    }

    #[test]
    fn named_entries_are_matched_by_name() {
        let old = json!({"s": [{"name": "mimic", "n": 1}, {"name": "i2b2", "n": 2}]});
        let new =
            json!({"s": [{"name": "extra", "n": 0}, {"name": "mimic", "n": 1}, {"name": "i2b2", "n": 3}]});
        assert_eq!(
            params_diff(old, new),
            [r#"param `s[extra]` added: {"n":0,"name":"extra"}"#, "param `s[i2b2].n` changed from 2 to 3"]
        );
        let r = params_diff(
            json!({"s": [{"name": "a"}, {"name": "b"}]}),
            json!({"s": [{"name": "b"}, {"name": "a"}]}),
        );
        assert_eq!(r, ["param `s`: entries reordered"]);
    }

    #[test]
    fn long_values_are_elided_around_the_difference() {
        let a = format!("{}CHANGED here{}", "x".repeat(100), "y".repeat(100));
        let b = format!("{}altered here{}", "x".repeat(100), "y".repeat(100));
        let r = params_diff(json!({"run": a}), json!({"run": b}));
        let want_a = format!("…{}CHANGED here{}…", "x".repeat(20), "y".repeat(28));
        let want_b = format!("…{}altered here{}…", "x".repeat(20), "y".repeat(28));
        assert_eq!(r, [format!("param `run` changed from {want_a} to {want_b}")]);
        // A difference near the start keeps the start.
        let r = params_diff(
            json!({"run": format!("a{}", "z".repeat(80))}),
            json!({"run": format!("b{}", "z".repeat(80))}),
        );
        assert!(r[0].starts_with("param `run` changed from \"azzz"), "{r:?}");
    }
}
