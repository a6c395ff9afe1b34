//! JSON Schemas of params and of whole pipeline files.
//!
//! Every kind's params are a typed struct deriving `schemars::JsonSchema`, so the schema, with the
//! doc comments as descriptions and the validated ranges as `minimum`/`maximum`, is the one place
//! a param is documented: `camel kinds KIND` prints it as a table ([`ParamDoc`]) and
//! `camel schema` ([`pipeline_schema`]) combines the kinds' schemas into a schema of pipeline files
//! that editors with a YAML language server validate and complete against.

use serde_json::{Map, Value, json};

use crate::slurm::Resources;
use crate::stage::Registry;

/// What a string that stands for another value looks like: exactly one `${params.NAME}` (which
/// takes the param's value with its type) or `${env:NAME}` (secrets).
pub const REFERENCE_PATTERN: &str = r"^\$\{(params\.[^}]+|env:[^}]+)\}$";

/// One param of a kind, as `camel kinds KIND` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDoc {
    /// Dotted below a struct (`distributed.strategy`), with `[]` for the entries of a list
    /// (`sources[].columns`); a field only some variants of a tagged choice have says which in
    /// its meaning (`(type: table) …`).
    pub name: String,
    /// `number`, `integer`, `bool`, `string`, `list`, `map`, or `a | b` for a choice.
    pub ty: String,
    /// The valid range (`≥ 1`, `> 0`, `0 ≤ x < 1`), empty where any value of the type goes.
    pub range: String,
    /// The first sentence of the field's doc comment.
    pub meaning: String,
    /// The param may be left out (an `Option`), and then has no value.
    pub optional: bool,
    /// The param must be given (where the struct or entry holding it is).
    pub required: bool,
    /// The schema's default, where it has one.
    pub default: Option<Value>,
}

/// How deep [`param_docs`] follows structs, lists of structs and tagged choices.
const MAX_DEPTH: usize = 5;

/// The params of a kind's schema (from [`crate::KindEntry::params_schema`]), by name; a param
/// that is a struct of its own (`distributed`, `limits`) is followed by its fields
/// (`distributed.strategy`), a list of structs by its entries' fields (`systems[].input`), and a
/// choice of structs tagged by a field (`provider: {type: azure, …}`, `sources[].type`) by its
/// tag and every variant's fields.
pub fn param_docs(schema: &Value) -> Vec<ParamDoc> {
    let mut out = Vec::new();
    fields_of(schema, schema, "", 0, &mut out);
    // A field that several variants share with different docs is followed once per variant:
    // what it holds is listed once.
    let mut seen: Vec<ParamDoc> = Vec::new();
    out.retain(|d| {
        let dup = seen.contains(d);
        if !dup {
            seen.push(d.clone());
        }
        !dup
    });
    out
}

/// The names in an object schema's `required`.
fn required_of(node: &Value) -> Vec<&str> {
    node.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect()
}

/// The fields of the object schema `node`, named `{prefix}{field}`.
fn fields_of(root: &Value, node: &Value, prefix: &str, depth: usize, out: &mut Vec<ParamDoc>) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else { return };
    let required = required_of(node);
    for (name, p) in props {
        let doc = field_doc(root, p, &format!("{prefix}{name}"), required.contains(&name.as_str()));
        field(root, p, doc, depth, out);
    }
}

/// The row of field schema `p` named `name`.
fn field_doc(root: &Value, p: &Value, name: &str, required: bool) -> ParamDoc {
    let (inner, optional) = strip_null(root, p);
    ParamDoc {
        name: name.to_string(),
        ty: type_name(root, inner),
        range: range_text(inner),
        meaning: first_sentence(
            p.get("description").or_else(|| inner.get("description")).and_then(Value::as_str),
        ),
        optional,
        required,
        default: p.get("default").or_else(|| inner.get("default")).cloned(),
    }
}

/// Pushes `doc` (the row of field schema `p`), then what is inside the field.
fn field(root: &Value, p: &Value, doc: ParamDoc, depth: usize, out: &mut Vec<ParamDoc>) {
    let name = doc.name.clone();
    out.push(doc);
    if depth < MAX_DEPTH {
        inside(root, strip_null(root, p).0, &name, depth + 1, out);
    }
}

/// The rows inside a field `name` whose schema is `inner`: a struct's fields, a list's entries',
/// a tagged choice's tag and variants' fields. A free-form map (`env`) has none.
fn inside(root: &Value, inner: &Value, name: &str, depth: usize, out: &mut Vec<ParamDoc>) {
    if inner.get("properties").is_some() {
        fields_of(root, inner, &format!("{name}."), depth, out);
    } else if let Some(items) = inner.get("items").filter(|_| type_name(root, inner) == "list") {
        inside(root, strip_null(root, items).0, &format!("{name}[]"), depth, out);
    } else if let Some((tag, variants)) = tagged(root, inner) {
        variants_of(root, inner, &tag, &variants, name, depth, out);
    }
}

/// A choice of structs told apart by a field (serde's `#[serde(tag = "type")]`): the tag's name
/// and each variant (its tag value and schema).
fn tagged<'a>(root: &'a Value, node: &'a Value) -> Option<(String, Vec<(String, &'a Value)>)> {
    let alts = node.get("oneOf").or_else(|| node.get("anyOf")).and_then(Value::as_array)?;
    let alts: Vec<&Value> = alts.iter().map(|a| resolve(root, a)).collect();
    let first = alts.first()?.get("properties")?.as_object()?;
    let tag_value = |a: &Value, tag: &str| -> Option<String> {
        let t = strip_null(root, a.get("properties")?.get(tag)?).0;
        t.get("const").and_then(Value::as_str).map(str::to_string)
    };
    // The field every variant fixes to a value of its own.
    let tag = first
        .keys()
        .find(|k| {
            let mut vs: Vec<Option<String>> = alts.iter().map(|a| tag_value(a, k)).collect();
            let all = vs.iter().all(Option::is_some);
            vs.sort();
            vs.dedup();
            all && vs.len() == alts.len()
        })?
        .clone();
    Some((tag.clone(), alts.iter().map(|a| (tag_value(a, &tag).expect("checked above"), *a)).collect()))
}

/// The rows of a tagged choice `name`: its tag, then each field with the variants that have it
/// (one row per distinct doc), in name order.
fn variants_of(
    root: &Value,
    node: &Value,
    tag: &str,
    variants: &[(String, &Value)],
    name: &str,
    depth: usize,
    out: &mut Vec<ParamDoc>,
) {
    let values: Vec<&str> = variants.iter().map(|(v, _)| v.as_str()).collect();
    out.push(ParamDoc {
        name: format!("{name}.{tag}"),
        ty: values.join(" | "),
        range: String::new(),
        meaning: match first_sentence(node.get("description").and_then(Value::as_str)) {
            m if m.is_empty() => format!("Which one; the fields marked ({tag}: …) below are its own"),
            m => m,
        },
        optional: false,
        required: variants.iter().all(|(_, v)| required_of(v).contains(&tag)),
        default: None,
    });
    let mut fields: Vec<&str> = variants
        .iter()
        .flat_map(|(_, v)| v.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.keys()))
        .map(String::as_str)
        .filter(|f| *f != tag)
        .collect();
    fields.sort_unstable();
    fields.dedup();
    for f in fields {
        // Variants whose field reads the same share a row.
        let mut groups: Vec<(ParamDoc, Vec<&str>, &Value)> = Vec::new();
        for (value, v) in variants {
            let Some(p) = v.get("properties").and_then(|ps| ps.get(f)) else { continue };
            let doc = field_doc(root, p, &format!("{name}.{f}"), required_of(v).contains(&f));
            match groups.iter_mut().find(|(d, _, _)| *d == doc) {
                Some((_, vs, _)) => vs.push(value),
                None => groups.push((doc, vec![value], p)),
            }
        }
        for (mut doc, vs, p) in groups {
            if vs.len() < variants.len() {
                let note = format!("({tag}: {})", vs.join(", "));
                doc.meaning = if doc.meaning.is_empty() { note } else { format!("{note} {}", doc.meaning) };
            }
            field(root, p, doc, depth, out);
        }
    }
}

/// The default of param `name` (dotted for a field of a struct param): what the kind filled in
/// (`given`, its params parsed with nothing set, or null), else the schema's `default`.
pub fn default_of(root: &Value, given: &Value, name: &str) -> Option<Value> {
    let pointer = format!("/{}", name.replace('.', "/"));
    if let Some(v) = given.pointer(&pointer).filter(|v| !v.is_null()) {
        return Some(v.clone());
    }
    let parts: Vec<&str> = name.split('.').collect();
    let mut node = root;
    for (i, part) in parts.iter().enumerate() {
        let prop = node.get("properties")?.get(*part)?;
        let (inner, _) = strip_null(root, prop);
        let rest = format!("/{}", parts[i + 1..].join("/"));
        let default = prop.get("default").or_else(|| inner.get("default"));
        if i + 1 == parts.len() {
            return default.cloned();
        }
        if let Some(v) = default.and_then(|d| d.pointer(&rest)) {
            return Some(v.clone());
        }
        node = inner;
    }
    None
}

/// Follows a local `$ref` (`#/$defs/NAME`) within `root`.
pub fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => root.get("$defs").and_then(|d| d.get(name)).unwrap_or(node),
        None => node,
    }
}

/// An `Option<T>`'s schema is `T | null`: returns `T`'s (resolved) and whether null was allowed.
pub fn strip_null<'a>(root: &'a Value, node: &'a Value) -> (&'a Value, bool) {
    if let Some(alts) = node.get("anyOf").and_then(Value::as_array) {
        let non_null: Vec<&Value> = alts.iter().filter(|a| a.get("type") != Some(&json!("null"))).collect();
        if non_null.len() == 1 && alts.len() == 2 {
            return (resolve(root, non_null[0]), true);
        }
    }
    let nullable = match node.get("type") {
        Some(Value::Array(ts)) => ts.contains(&json!("null")),
        _ => false,
    };
    (resolve(root, node), nullable)
}

fn type_name(root: &Value, node: &Value) -> String {
    let node = resolve(root, node);
    if let Some(choices) = choices(node) {
        return choices.join(" | ");
    }
    let ty = match node.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("any"),
        _ => {
            // Alternatives (`true | false | "auto"`, a value or a map): each one's type or constant.
            let alts = node.get("anyOf").or_else(|| node.get("oneOf")).and_then(Value::as_array);
            let Some(alts) = alts else { return "any".to_string() };
            let mut names: Vec<String> = Vec::new();
            for a in alts {
                let name = match a.get("const") {
                    Some(c) => c.to_string(),
                    None => type_name(root, a),
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            return names.join(" | ");
        }
    };
    match ty {
        "boolean" => "bool",
        "array" => "list",
        "object" => "map",
        t => t,
    }
    .to_string()
}

/// The values of a choice: an `enum`, or a `oneOf` of `const`s (an enum with documented variants).
fn choices(node: &Value) -> Option<Vec<String>> {
    let show = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    if let Some(e) = node.get("enum").and_then(Value::as_array) {
        return Some(e.iter().filter(|v| !v.is_null()).map(show).collect());
    }
    // Documented variants are `const`s, the others one `enum` beside them.
    let alts = node.get("oneOf").and_then(Value::as_array)?;
    let mut out = Vec::new();
    for a in alts {
        match (a.get("const"), a.get("enum").and_then(Value::as_array)) {
            (Some(c), _) => out.push(show(c)),
            (None, Some(e)) => out.extend(e.iter().map(show)),
            _ => return None,
        }
    }
    Some(out)
}

fn range_text(node: &Value) -> String {
    let num = |k: &str| node.get(k).and_then(Value::as_f64);
    // Unsigned integers carry schemars' `minimum: 0`, which the type already says.
    let unsigned = node.get("format").and_then(Value::as_str).is_some_and(|f| f.starts_with("uint"));
    let lower = match (num("minimum"), num("exclusiveMinimum")) {
        (Some(m), _) if !(unsigned && m == 0.0) => Some(("≤", m)),
        (_, Some(m)) => Some(("<", m)),
        _ => None,
    };
    let upper = match (num("maximum"), num("exclusiveMaximum")) {
        (Some(m), _) => Some(("≤", m)),
        (_, Some(m)) => Some(("<", m)),
        _ => None,
    };
    let n = |x: f64| Value::from(x).to_string().trim_end_matches(".0").to_string();
    let flip = |op: &str| if op == "≤" { "≥" } else { ">" };
    match (lower, upper) {
        (Some((lo, a)), Some((hi, b))) => format!("{} {lo} x {hi} {}", n(a), n(b)),
        (Some((lo, a)), None) => format!("{} {}", flip(lo), n(a)),
        (None, Some((hi, b))) => format!("{hi} {}", n(b)),
        (None, None) => String::new(),
    }
}

/// The first sentence of a doc comment, on one line.
fn first_sentence(doc: Option<&str>) -> String {
    let doc = doc.unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
    let end = doc
        .match_indices(". ")
        .map(|(i, _)| i)
        .find(|&i| !doc[..i].ends_with("e.g") && !doc[..i].ends_with("i.e"))
        .unwrap_or(doc.len());
    doc[..end].trim_end_matches('.').to_string()
}

/// The JSON Schema (draft 2020-12) of pipeline files, for `camel schema`: the top level, and each
/// stage with `kind` selecting its params' schema. A value that is typed (a number, a bool, a
/// choice, a list) may also be written as a reference (`${params.lr}`), which the pipeline
/// resolves before the params are parsed.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut defs = Map::new();
    defs.insert(
        "reference".into(),
        json!({
            "description": "`${params.NAME}` (the pipeline param's value, with its type) or `${env:NAME}` (only in params that are not hashed)",
            "type": "string",
            "pattern": REFERENCE_PATTERN,
        }),
    );
    let mut kinds = Vec::new();
    let mut branches = Vec::new();
    for entry in registry.kinds() {
        let kind = entry.kind;
        kinds.push(json!({"const": kind, "description": entry.summary}));
        let mut schema = entry.params_schema();
        let prefix = format!("{kind}.");
        rename_refs(&mut schema, &prefix);
        let obj = schema.as_object_mut().expect("a params schema is an object");
        if let Some(Value::Object(sub)) = obj.remove("$defs") {
            for (name, mut def) in sub {
                allow_references(&mut def);
                defs.insert(format!("{prefix}{name}"), def);
            }
        }
        obj.remove("$schema");
        obj.remove("title");
        let mut schema = Value::Object(obj.clone());
        allow_references(&mut schema);
        defs.insert(format!("{kind}.params"), schema);
        branches.push(json!({
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"properties": {"params": {
                "anyOf": [{"$ref": format!("#/$defs/{kind}.params")}, {"type": "null"}]
            }}},
        }));
    }

    let mut resources = schemars::schema_for!(Resources).to_value();
    let res = resources.as_object_mut().expect("an object schema");
    res.remove("$schema");
    res.remove("title");
    let mut resources = Value::Object(res.clone());
    allow_references(&mut resources);
    // `slurm:` holds the default resources and three settings of its own (see plan.rs).
    let mut slurm = resources.clone();
    let props = slurm["properties"].as_object_mut().expect("resources have properties");
    props.insert(
        "poll_interval".into(),
        json!({"description": "Seconds between two `squeue` calls while jobs are watched (default 10).", "type": "number", "exclusiveMinimum": 0}),
    );
    props.insert(
        "retry_for".into(),
        json!({"description": "How long a failing `sbatch`/`squeue`/`scontrol` is retried, in seconds (default 600).", "type": "number", "minimum": 0}),
    );
    props.insert(
        "camel".into(),
        json!({"description": "The camel executable the jobs run, a path compute nodes see (default: this one).", "type": "string", "minLength": 1}),
    );
    slurm["description"] = json!("Defaults for every stage placed on Slurm, and how camel talks to Slurm.");
    for k in ["poll_interval", "retry_for", "camel"] {
        wrap_reference(&mut slurm["properties"][k]);
    }
    defs.insert("resources".into(), resources);
    defs.insert("slurm".into(), slurm);

    defs.insert(
        "stage".into(),
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["kind"],
            "properties": {
                "kind": {"description": "The stage kind (`camel kinds` lists them).", "oneOf": kinds},
                "description": {"type": "string"},
                "inputs": {
                    "description": "Input name → a path relative to the pipeline file, or `STAGE.OUTPUT` of another stage.",
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
                "params": {"description": "The kind's params (`camel kinds KIND`)."},
                "executor": {
                    "description": "Where the stage runs: `local` (default) or `slurm` (a batch job).",
                    "anyOf": [{"enum": ["local", "slurm"]}, {"$ref": "#/$defs/reference"}],
                },
                "resources": {
                    "description": "What a Slurm stage asks for, over the pipeline's `slurm:` defaults.",
                    "$ref": "#/$defs/resources",
                },
            },
            "allOf": branches,
        }),
    );

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "camel pipeline",
        "description": "A camel pipeline file (`camel schema` prints this schema).",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "stages"],
        "properties": {
            "name": {"description": "The pipeline's name.", "type": "string"},
            "description": {"type": "string"},
            "workspace": {
                "description": "Where caches, logs and outputs live (default `.camel/` beside this file).",
                "type": "string",
            },
            "allowed_endpoints": {
                "description": "Hosts besides loopback that may receive notes (LLM stages).",
                "type": "array",
                "items": {"type": "string"},
            },
            "params": {
                "description": "Pipeline params, referenced as `${params.NAME}`; override with `--set params.NAME=VALUE`.",
                "anyOf": [{"type": "object"}, {"type": "null"}],
            },
            "slurm": {"anyOf": [{"$ref": "#/$defs/slurm"}, {"type": "null"}]},
            "stages": {
                "description": "The stages, by name.",
                "type": "object",
                "additionalProperties": {"$ref": "#/$defs/stage"},
            },
        },
        "$defs": defs,
    })
}

/// Rewrites `#/$defs/X` to `#/$defs/{prefix}X`, so that the kinds' definitions live side by side.
fn rename_refs(v: &mut Value, prefix: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("#/$defs/{prefix}{name}");
            }
            m.values_mut().for_each(|x| rename_refs(x, prefix));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rename_refs(x, prefix)),
        _ => {}
    }
}

/// Lets every property of an object schema (and of the objects inside it) be written as a
/// reference too.
fn allow_references(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = m.get_mut(key) {
            alts.iter_mut().for_each(allow_references);
        }
    }
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        for p in props.values_mut() {
            allow_references(p);
            wrap_reference(p);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v @ Value::Object(_)) = m.get_mut(key) {
            allow_references(v);
            wrap_reference(v);
        }
    }
}

/// `node` or a reference. A plain string already admits one, and so does anything.
fn wrap_reference(node: &mut Value) {
    let Value::Object(m) = node else { return };
    let plain_string = m.get("type") == Some(&json!("string"))
        && !["enum", "const", "pattern", "minLength"].iter().any(|k| m.contains_key(*k));
    let constrained =
        ["type", "enum", "const", "$ref", "anyOf", "oneOf", "allOf"].iter().any(|k| m.contains_key(*k));
    if plain_string || !constrained {
        return;
    }
    // Descriptions and defaults stay on the outside, where editors show them.
    let mut outer = Map::new();
    for k in ["description", "default", "title"] {
        if let Some(v) = m.remove(k) {
            outer.insert(k.into(), v);
        }
    }
    let inner = Value::Object(std::mem::take(m));
    outer.insert("anyOf".into(), json!([inner, {"$ref": "#/$defs/reference"}]));
    *m = outer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_sentences_read_as_written() {
        assert_eq!(range_text(&json!({"type": "number", "exclusiveMinimum": 0})), "> 0");
        assert_eq!(range_text(&json!({"type": "integer", "format": "uint", "minimum": 0})), "");
        assert_eq!(range_text(&json!({"type": "integer", "format": "uint", "minimum": 1})), "≥ 1");
        assert_eq!(range_text(&json!({"minimum": 0.0, "exclusiveMaximum": 1.0})), "0 ≤ x < 1");
        assert_eq!(
            first_sentence(Some("Peak rate, e.g. 2e-5.\nThen more. And more")),
            "Peak rate, e.g. 2e-5"
        );
        assert_eq!(first_sentence(None), "");
    }

    /// What `camel kinds` lists inside a param: a struct's fields, a list's entries' fields, and a
    /// tagged choice's tag and fields, those of only some variants marked with them.
    #[test]
    fn nested_fields_are_listed_with_their_variants() {
        let schema = json!({
            "type": "object",
            "required": ["sources"],
            "properties": {
                "sources": {"type": "array", "description": "Where from.", "items": {"$ref": "#/$defs/Source"}},
                "sets": {"type": "array", "items": {"$ref": "#/$defs/Set"}},
            },
            "$defs": {
                "Set": {"type": "object", "required": ["input"], "properties": {
                    "input": {"type": "string", "description": "The input."},
                }},
                "Source": {"description": "Which source.", "oneOf": [
                    {"type": "object", "required": ["type", "notes"], "properties": {
                        "type": {"type": "string", "const": "a"},
                        "notes": {"type": "string", "description": "Notes of a."},
                        "limit": {"type": ["integer", "null"], "minimum": 1, "default": null, "description": "At most."},
                    }},
                    {"type": "object", "required": ["type"], "properties": {
                        "type": {"type": "string", "const": "b"},
                        "limit": {"type": ["integer", "null"], "minimum": 1, "default": null, "description": "At most."},
                        "cols": {"$ref": "#/$defs/Cols", "description": "Columns."},
                    }},
                ]},
                "Cols": {"type": "object", "required": ["text"], "properties": {
                    "text": {"type": "string", "description": "Text column."},
                }},
            },
        });
        let rows: Vec<(String, String, bool, String)> =
            param_docs(&schema).into_iter().map(|d| (d.name, d.ty, d.required, d.meaning)).collect();
        let row = |n: &str, t: &str, r: bool, m: &str| (n.to_string(), t.to_string(), r, m.to_string());
        assert_eq!(
            rows,
            [
                row("sets", "list", false, ""),
                row("sets[].input", "string", true, "The input"),
                row("sources", "list", true, "Where from"),
                row("sources[].type", "a | b", true, "Which source"),
                row("sources[].cols", "map", false, "(type: b) Columns"),
                row("sources[].cols.text", "string", true, "Text column"),
                row("sources[].limit", "integer", false, "At most"),
                row("sources[].notes", "string", true, "(type: a) Notes of a"),
            ]
        );
    }

    #[test]
    fn typed_values_may_be_references() {
        let mut s = json!({"type": "object", "properties": {
            "lr": {"type": "number", "description": "rate", "default": 1},
            "name": {"type": "string"},
        }});
        allow_references(&mut s);
        assert_eq!(
            s["properties"]["lr"],
            json!({"description": "rate", "default": 1, "anyOf": [{"type": "number"}, {"$ref": "#/$defs/reference"}]})
        );
        assert_eq!(s["properties"]["name"], json!({"type": "string"}));
    }
}
