//! Pipeline files: parsing, `--set` overrides and `${params.x}` / `${env:NAME}` interpolation.
//! [`crate::plan`] turns the result into a validated DAG.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};

/// A pipeline file as written. Its stages are parsed one by one (`S` is first a YAML value, then
/// [`RawStage`]), so that a mistake in one stage does not hide those of the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline<S = RawStage> {
    pub name: String,
    #[serde(default)]
    #[allow(dead_code)]
    pub description: Option<String>,
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub params: Mapping,
    /// Hosts that stages may send notes to (LLM endpoints); loopback is always allowed.
    #[serde(default)]
    pub allowed_endpoints: Option<Vec<String>>,
    /// Defaults for stages placed on Slurm (see `crate::slurm::settings`), checked by the planner.
    #[serde(default)]
    pub slurm: Option<Value>,
    pub stages: IndexMap<String, S>,
}

impl<S> RawPipeline<S> {
    /// The same pipeline with each stage turned into a `T`, or the errors of those that could not.
    pub(crate) fn try_map_stages<T, E>(
        self,
        mut f: impl FnMut(&str, S) -> Result<T, E>,
    ) -> Result<RawPipeline<T>, Vec<E>> {
        let mut stages = IndexMap::new();
        let mut errors = Vec::new();
        for (name, s) in self.stages {
            match f(&name, s) {
                Ok(t) => {
                    stages.insert(name, t);
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RawPipeline {
            name: self.name,
            description: self.description,
            workspace: self.workspace,
            params: self.params,
            allowed_endpoints: self.allowed_endpoints,
            slurm: self.slurm,
            stages,
        })
    }
}

pub(crate) const PIPELINE_FIELDS: &[&str] =
    &["name", "description", "workspace", "params", "allowed_endpoints", "slurm", "stages"];
pub(crate) const STAGE_FIELDS: &[&str] =
    &["kind", "description", "inputs", "params", "executor", "resources"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: IndexMap<String, String>,
    #[serde(default)]
    pub params: Value,
    /// `local` (default) or `slurm`; checked by the planner.
    #[serde(default)]
    pub executor: Option<Value>,
    /// What a Slurm stage asks for, over the pipeline's `slurm:` defaults.
    #[serde(default)]
    pub resources: Option<Value>,
}

/// One `--set TARGET=VALUE` from the command line: `STAGE.PARAM[.SUB…]=VALUE` sets a stage param,
/// `params.NAME=VALUE` a pipeline param, `STAGE.executor=slurm` and `STAGE.resources.FIELD=VALUE`
/// a stage's placement, `slurm.FIELD=VALUE` the pipeline's Slurm defaults. VALUE is read as YAML (`4` is a number, `[a, b]` a list).
#[derive(Clone, Debug)]
pub struct Override {
    pub target: Vec<String>,
    pub value: Value,
    pub text: String,
}

impl Override {
    pub fn parse(s: &str) -> Result<Override, String> {
        let (target, value) =
            s.split_once('=').ok_or_else(|| format!("`--set {s}`: expected STAGE.PARAM=VALUE"))?;
        let target: Vec<String> = target.split('.').map(str::to_string).collect();
        if target.len() < 2 || target.iter().any(String::is_empty) {
            return Err(format!("`--set {s}`: expected STAGE.PARAM=VALUE or params.NAME=VALUE"));
        }
        let value = if value.is_empty() {
            Value::String(String::new())
        } else {
            serde_yaml::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
        };
        Ok(Override { target, value, text: s.to_string() })
    }
}

/// Sets `value` at `path` inside `root`, creating mappings on the way.
pub(crate) fn set_path(root: &mut Value, path: &[String], value: Value) {
    if path.is_empty() {
        *root = value;
        return;
    }
    if !root.is_mapping() {
        *root = Value::Mapping(Mapping::new());
    }
    let map = root.as_mapping_mut().expect("just made a mapping");
    let child = map.entry(Value::String(path[0].clone())).or_insert(Value::Null);
    set_path(child, &path[1..], value);
}

/// Why an `allowed_endpoints` entry is malformed: an entry is `host`, `host:port`, `*.domain`,
/// or `http(s)://host[:port]`. Stages that send notes (`camel-llm`'s PHI guard) match hosts
/// against these entries.
pub(crate) fn endpoint_problem(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        return Some("the endpoint is empty".into());
    }
    let rest = match t.split_once("://") {
        Some(("http" | "https", r)) => r,
        Some((scheme, _)) => return Some(format!("`{t}`: `{scheme}://` is not http:// or https://")),
        None => t,
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return Some(format!("`{t}` is not a host"));
    }
    let host = if let Some(r) = rest.strip_prefix('[') {
        match r.split_once(']') {
            Some((h, "")) => h,
            Some((h, p)) if p.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok()) => h,
            _ => return Some(format!("`{t}` is not a host")),
        }
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').expect("one colon");
        if p.parse::<u16>().is_err() {
            return Some(format!("`{t}`: the port `{p}` is not a number"));
        }
        h
    } else {
        rest
    };
    let bare = host.strip_prefix("*.").unwrap_or(host);
    if bare.is_empty() || bare.contains('*') {
        return Some(format!("`{t}`: a wildcard is written `*.domain`"));
    }
    None
}

/// An interpolation problem at `path` (relative to the value interpolated).
#[derive(Debug)]
pub(crate) struct InterpError {
    pub path: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

pub(crate) struct Interpolator<'a> {
    pub params: &'a Mapping,
    /// Top-level fields where `${env:…}` is allowed; `None` forbids it everywhere.
    pub env_allowed: Option<&'a [&'static str]>,
    /// Environment variables referenced but not set.
    pub missing_env: Vec<String>,
}

impl Interpolator<'_> {
    pub fn value(&mut self, v: &Value, path: &mut Vec<String>) -> Result<Value, InterpError> {
        Ok(match v {
            Value::String(s) => self.string(s, path)?,
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    out.push(self.value(item, path)?);
                    path.pop();
                }
                Value::Sequence(out)
            }
            Value::Mapping(m) => {
                let mut out = Mapping::new();
                for (k, item) in m {
                    path.push(key_string(k));
                    out.insert(k.clone(), self.value(item, path)?);
                    path.pop();
                }
                Value::Mapping(out)
            }
            Value::Tagged(t) => {
                let mut t = (**t).clone();
                t.value = self.value(&t.value, path)?;
                Value::Tagged(Box::new(t))
            }
            other => other.clone(),
        })
    }

    fn string(&mut self, s: &str, path: &[String]) -> Result<Value, InterpError> {
        if !s.contains("${") {
            return Ok(Value::String(s.to_string()));
        }
        // A string that is exactly one reference takes the referenced value with its type.
        if let Some(name) = s.strip_prefix("${params.").and_then(|r| r.strip_suffix('}'))
            && !name.contains('}')
        {
            return self.param(name, path);
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(t) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = t;
            } else if let Some(t) = tail.strip_prefix("${params.") {
                let end = t.find('}').ok_or_else(|| self.err(path, "unterminated `${params.`", None))?;
                let v = self.param(&t[..end], path)?;
                out.push_str(&scalar_text(&v).ok_or_else(|| {
                    self.err(
                        path,
                        &format!(
                            "`${{params.{}}}` is a list or mapping and cannot be spliced into text",
                            &t[..end]
                        ),
                        Some("use the reference as the whole value instead"),
                    )
                })?);
                rest = &t[end + 1..];
            } else if let Some(t) = tail.strip_prefix("${env:") {
                let end = t.find('}').ok_or_else(|| self.err(path, "unterminated `${env:`", None))?;
                let name = &t[..end];
                let allowed =
                    self.env_allowed.is_some_and(|a| path.first().is_some_and(|f| a.contains(&f.as_str())));
                if !allowed {
                    let help = match self.env_allowed {
                        Some(a) if !a.is_empty() => format!(
                            "environment variables are secrets and never enter the cache key: use them only in {}",
                            a.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
                        ),
                        _ => {
                            "environment variables are secrets and never enter the cache key; this field is \
                              hashed, so it cannot take one"
                                .to_string()
                        }
                    };
                    return Err(self.err(
                        path,
                        &format!("`${{env:{name}}}` is not allowed in a hashed field"),
                        Some(&help),
                    ));
                }
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => self.missing_env.push(name.to_string()),
                }
                rest = &t[end + 1..];
            } else {
                // Any other `$`: shell syntax such as `$HOME` or `${VAR}`, left as written.
                out.push('$');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    fn param(&self, name: &str, path: &[String]) -> Result<Value, InterpError> {
        let mut cur: Option<&Value> = None;
        for (i, seg) in name.split('.').enumerate() {
            let map = if i == 0 { Some(self.params) } else { cur.and_then(Value::as_mapping) };
            cur = map.and_then(|m| m.get(seg));
            if cur.is_none() {
                let known: Vec<String> = self.params.keys().map(key_string).collect();
                let help = match crate::error::did_you_mean(name, known.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `${{params.{s}}}`?"),
                    None if known.is_empty() => "the pipeline has no `params:` section".to_string(),
                    None => format!("pipeline params: {}", known.join(", ")),
                };
                return Err(self.err(path, &format!("unknown pipeline param `{name}`"), Some(&help)));
            }
        }
        Ok(cur.cloned().unwrap_or(Value::Null))
    }

    fn err(&self, path: &[String], message: &str, help: Option<&str>) -> InterpError {
        InterpError { path: path.to_vec(), message: message.to_string(), help: help.map(str::to_string) }
    }
}

pub(crate) fn key_string(k: &Value) -> String {
    scalar_text(k).unwrap_or_else(|| "?".into())
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(params: &str, v: &str, allowed: Option<&[&'static str]>) -> Result<Value, InterpError> {
        let params: Mapping = serde_yaml::from_str(params).unwrap();
        let v: Value = serde_yaml::from_str(v).unwrap();
        let mut i = Interpolator { params: &params, env_allowed: allowed, missing_env: vec![] };
        i.value(&v, &mut vec![])
    }

    #[test]
    fn whole_references_keep_their_type_and_partial_ones_splice() {
        let v = interp(
            "{n: 4, s: x}",
            "{a: '${params.n}', b: 'f-${params.s}-${params.n}', c: '$HOME ${X} $${params.n}'}",
            None,
        )
        .unwrap();
        assert_eq!(v["a"], Value::from(4));
        assert_eq!(v["b"], Value::from("f-x-4"));
        assert_eq!(v["c"], Value::from("$HOME ${X} ${params.n}"));
    }

    #[test]
    fn unknown_param_suggests() {
        let e = interp("{seed: 1}", "{a: '${params.sed}'}", None).unwrap_err();
        assert_eq!(e.path, ["a"]);
        assert!(e.help.unwrap().contains("params.seed"));
    }

    #[test]
    fn env_only_in_unhashed_fields() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("CAMEL_TEST_SECRET", "s3cret") };
        let e = interp("{}", "{cmd: '${env:CAMEL_TEST_SECRET}'}", Some(&["secret_env"])).unwrap_err();
        assert!(e.message.contains("not allowed"));
        let v = interp("{}", "{secret_env: {K: '${env:CAMEL_TEST_SECRET}'}}", Some(&["secret_env"])).unwrap();
        assert_eq!(v["secret_env"]["K"], Value::from("s3cret"));
    }

    #[test]
    fn allowed_endpoints_entries() {
        for ok in
            ["x.org", "x.org:8443", "*.openai.azure.com", "https://x.org/", "http://10.0.0.5:8000", "[::1]:9"]
        {
            assert_eq!(endpoint_problem(ok), None, "{ok}");
        }
        for bad in ["", "ftp://x", "https://x/v1", "x:port", "*", "a*.b", "user@x"] {
            assert!(endpoint_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn overrides() {
        let o = Override::parse("train.lr=0.5").unwrap();
        assert_eq!(o.target, ["train", "lr"]);
        assert_eq!(o.value, Value::from(0.5));
        assert!(Override::parse("nodot=1").is_err());
        let mut root = Value::Null;
        set_path(&mut root, &["a".into(), "b".into()], Value::from(1));
        assert_eq!(root["a"]["b"], Value::from(1));
    }
}
