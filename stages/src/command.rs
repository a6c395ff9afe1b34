//! `kind: command` — a shell command with declared inputs and outputs, cached like any stage.
//!
//! For users' own scripts, and for exercising the engine before the real stages exist. The
//! command runs under `bash -e -o pipefail -c` in the pipeline file's directory with:
//!
//! | variable | value |
//! |---|---|
//! | `CAMEL_OUT` | the (empty) output directory; write every declared output below it |
//! | `CAMEL_OUT_<NAME>` | the path of each declared output |
//! | `CAMEL_IN_<NAME>` | the path of each input (a file, or a directory) |
//! | `CAMEL_SCRATCH` | a directory that survives failures, for resumable work |
//! | `CAMEL_STAGE` | the stage's name |
//! | each `env:` entry | as given (hashed) |
//! | each `secret_env:` entry | as given (not hashed, not recorded; may use `${env:NAME}`) |
//!
//! `<NAME>` is the name upper-cased with every other character than letters and digits as `_`.
//! A line `camel-progress: DONE/TOTAL [UNIT] [MESSAGE]` on stdout moves the stage's progress bar. Stdout
//! and stderr go to the stage's log. Scripts the command runs are only hashed if they are
//! declared as inputs: declare them, or an edit to a script will not rerun the stage.

use std::collections::BTreeMap;
use std::process::Command as Process;

use camel_engine::validate::{Problem, ValidateContext};
use camel_engine::{OutputSpec, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};

use camel_engine::process::{ChildOptions, run_child};

pub struct Command;

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// The command line, run by bash.
    pub run: String,
    /// Outputs: a mapping of name to path below `$CAMEL_OUT`, or a list of paths (each its own name).
    #[serde(default)]
    pub outputs: Outputs,
    /// Environment variables for the command; part of the cache key.
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// Environment variables that are secrets: never hashed nor recorded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    /// Run alone even with `--jobs N`.
    #[serde(default)]
    pub exclusive: bool,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Outputs {
    List(Vec<String>),
    Map(BTreeMap<String, String>),
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs::Map(BTreeMap::new())
    }
}

impl Outputs {
    fn specs(&self) -> Vec<OutputSpec> {
        match self {
            Outputs::List(l) => {
                l.iter().map(|p| OutputSpec::new(p.trim_end_matches('/'), p.as_str())).collect()
            }
            Outputs::Map(m) => m.iter().map(|(n, p)| OutputSpec::new(n.as_str(), p.as_str())).collect(),
        }
    }
}

/// An environment value as written: a string, number or boolean.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    String(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::String(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// `NAME` as part of an environment variable: upper case, other characters as `_`.
pub fn env_suffix(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn valid_env_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Stage for Command {
    type Params = CommandParams;
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "run a shell command with declared inputs and outputs";
    const UNHASHED: &'static [&'static str] = &["secret_env"];

    fn outputs(p: &CommandParams) -> Vec<OutputSpec> {
        p.outputs.specs()
    }

    fn exclusive(p: &CommandParams) -> bool {
        p.exclusive
    }

    /// Variable names that bash cannot have, and inputs or outputs whose `CAMEL_IN_`/`CAMEL_OUT_`
    /// variables would be the same (`my-out` and `My_Out` are both `CAMEL_OUT_MY_OUT`).
    fn validate(p: &CommandParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let mut problems = Vec::new();
        for (section, names) in
            [("env", p.env.keys().collect::<Vec<_>>()), ("secret_env", p.secret_env.keys().collect())]
        {
            for name in names.into_iter().filter(|n| !valid_env_name(n)) {
                problems.push(
                    Problem {
                        at: vec!["params".into(), section.into(), name.clone()],
                        message: format!("`{name}` is not a valid environment variable name"),
                        help: None,
                    }
                    .help("use letters, digits and `_`, not starting with a digit"),
                );
            }
        }
        let outputs: Vec<String> = p.outputs.specs().into_iter().map(|o| o.name).collect();
        let inputs: Vec<String> = ctx.input_names().map(str::to_string).collect();
        for (what, prefix, names) in [("outputs", "CAMEL_OUT_", outputs), ("inputs", "CAMEL_IN_", inputs)] {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for n in &names {
                let var = format!("{prefix}{}", env_suffix(n));
                let Some(first) = seen.get(&var) else {
                    seen.insert(var, n);
                    continue;
                };
                let message = format!("{what} `{first}` and `{n}` would both be ${var}");
                let problem = if what == "outputs" {
                    Problem::param("outputs", message)
                } else {
                    Problem::input(n, message)
                };
                problems.push(
                    problem.help("rename one: names become variables in upper case, other characters `_`"),
                );
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    fn run(p: &CommandParams, ctx: &StageContext) -> Result<(), StageError> {
        let mut cmd = Process::new("bash");
        cmd.arg("-e").arg("-o").arg("pipefail").arg("-c").arg(&p.run);
        cmd.current_dir(ctx.work_dir());
        cmd.env("CAMEL_OUT", ctx.out_dir());
        cmd.env("CAMEL_SCRATCH", ctx.scratch_dir());
        cmd.env("CAMEL_STAGE", ctx.stage());
        for o in p.outputs.specs() {
            cmd.env(format!("CAMEL_OUT_{}", env_suffix(&o.name)), ctx.out_dir().join(&o.path));
            // Outputs inside subdirectories get their parent created, so `> $CAMEL_OUT_X` works.
            if let Some(parent) = ctx.out_dir().join(&o.path).parent() {
                std::fs::create_dir_all(parent).map_err(StageError::io("create the output directory"))?;
            }
        }
        for (name, path) in ctx.inputs() {
            cmd.env(format!("CAMEL_IN_{}", env_suffix(name)), path);
        }
        for (k, v) in &p.env {
            cmd.env(k, v.text());
        }
        for (k, v) in &p.secret_env {
            cmd.env(k, v);
        }
        ctx.log(&format!("$ {}", p.run));
        run_child(ctx, cmd, ChildOptions { what: "the command", error_prefix: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_suffix("counts.txt"), "COUNTS_TXT");
        assert!(valid_env_name("A_1"));
        assert!(!valid_env_name("1A"));
        assert!(!valid_env_name("A-B"));
    }

    #[test]
    fn outputs_list_and_map() {
        let p: CommandParams = serde_yaml::from_str("run: x\noutputs: [a.txt, d/]").unwrap();
        assert_eq!(Command::outputs(&p), vec![OutputSpec::new("a.txt", "a.txt"), OutputSpec::new("d", "d/")]);
        let p: CommandParams = serde_yaml::from_str("run: x\noutputs: {a: x/a.txt}").unwrap();
        assert_eq!(Command::outputs(&p), vec![OutputSpec::new("a", "x/a.txt")]);
        assert!(serde_yaml::from_str::<CommandParams>("run: x\nrn: y").is_err());
    }
}
