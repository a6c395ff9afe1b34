//! What a pipeline says about Slurm: a stage's `executor:` and `resources:`, and the pipeline's
//! `slurm:` defaults. Checked while planning, so that a bad time limit or memory size is an error
//! at its line before anything runs, not an `sbatch` refusal hours later.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a stage runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// In the `camel run` process (or its children), as always.
    #[default]
    Local,
    /// As a Slurm batch job.
    Slurm,
}

impl Executor {
    pub fn as_str(self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm => "slurm",
        }
    }
}

/// What a Slurm stage asks for. Every field is optional: a stage's `resources:` is laid over the
/// pipeline's `slurm:` defaults field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Nodes (`--nodes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    /// GPUs per node (`--gpus-per-node`); also the tasks per node unless `tasks_per_node` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_node: Option<u32>,
    /// Tasks (ranks) per node (`--ntasks-per-node`); default: `gpus_per_node`, else 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_per_node: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// Memory per node, as sbatch takes it: `400G`, `16000M`, `64000` (megabytes).
    // A YAML number is taken as written (text_or_number).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "text_or_number")]
    #[schemars(schema_with = "text_or_number_schema")]
    pub mem: Option<String>,
    /// Time limit, as sbatch takes it: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    // `time: 30` (a YAML number) is 30 minutes, as in sbatch (text_or_number).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "text_or_number")]
    #[schemars(schema_with = "text_or_number_schema")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// More sbatch options, passed as written (e.g. `["--exclusive"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbatch: Option<Vec<String>>,
    /// Seconds before the time limit at which the job is told (SIGUSR1) to checkpoint and
    /// requeue. Default 120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_grace: Option<u64>,
    /// How many times the stage's job may be requeued after a time limit or preemption.
    /// Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requeues: Option<u32>,
}

/// The fields of [`Resources`], for suggestions.
pub const RESOURCE_FIELDS: &[&str] = &[
    "nodes",
    "gpus_per_node",
    "tasks_per_node",
    "cpus_per_task",
    "mem",
    "time",
    "partition",
    "account",
    "qos",
    "constraint",
    "sbatch",
    "signal_grace",
    "max_requeues",
];

pub const DEFAULT_SIGNAL_GRACE_S: u64 = 120;
/// How often Slurm checks time limits, at most (seconds): the notice comes between
/// `signal_grace` and `signal_grace` + this before the limit.
pub const SLURM_TIME_CHECK_S: u64 = 30;
pub const DEFAULT_MAX_REQUEUES: u32 = 3;

impl Resources {
    /// `self` with every field it leaves unset taken from `defaults`.
    pub fn over(&self, defaults: &Resources) -> Resources {
        macro_rules! pick {
            ($($f:ident),*) => { Resources { $($f: self.$f.clone().or_else(|| defaults.$f.clone())),* } };
        }
        pick!(
            nodes,
            gpus_per_node,
            tasks_per_node,
            cpus_per_task,
            mem,
            time,
            partition,
            account,
            qos,
            constraint,
            sbatch,
            signal_grace,
            max_requeues
        )
    }

    pub fn nodes(&self) -> u32 {
        self.nodes.unwrap_or(1)
    }

    pub fn tasks_per_node(&self) -> u32 {
        self.tasks_per_node.or(self.gpus_per_node.filter(|&g| g > 0)).unwrap_or(1)
    }

    /// Every rank of the job: one task per GPU (or per `tasks_per_node`) on every node.
    pub fn tasks(&self) -> u32 {
        self.nodes() * self.tasks_per_node()
    }

    pub fn signal_grace(&self) -> u64 {
        self.signal_grace.unwrap_or(DEFAULT_SIGNAL_GRACE_S)
    }

    pub fn max_requeues(&self) -> u32 {
        self.max_requeues.unwrap_or(DEFAULT_MAX_REQUEUES)
    }

    /// Problems with the values, each with the field it concerns.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v) in [("nodes", self.nodes), ("tasks_per_node", self.tasks_per_node)] {
            if v == Some(0) {
                out.push((field, format!("`{field}` must be at least 1")));
            }
        }
        if self.cpus_per_task == Some(0) {
            out.push(("cpus_per_task", "`cpus_per_task` must be at least 1".into()));
        }
        if let Some(t) = &self.time
            && parse_time_limit(t).is_none()
        {
            out.push((
                "time",
                format!(
                    "`time: {t}` is not a Slurm time limit: write MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or \
                     D-HH:MM:SS (e.g. \"24:00:00\")"
                ),
            ));
        }
        if let Some(m) = &self.mem
            && !valid_mem(m)
        {
            out.push((
                "mem",
                format!("`mem: {m}` is not a memory size: a whole number with an optional K, M, G or T (e.g. 400G)"),
            ));
        }
        for (field, v) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("constraint", &self.constraint),
        ] {
            if let Some(v) = v
                && (v.trim().is_empty() || v.contains(char::is_whitespace))
            {
                out.push((field, format!("`{field}` must be one word, without spaces")));
            }
        }
        for a in self.sbatch.iter().flatten() {
            if !a.starts_with('-') {
                out.push((
                    "sbatch",
                    format!("`sbatch` entries are sbatch options starting with `-`; `{a}` is not"),
                ));
            } else if a.contains('\n') {
                out.push(("sbatch", "an `sbatch` entry cannot contain a line break".into()));
            }
        }
        if let (Some(g), Some(t)) = (self.signal_grace, self.time.as_deref().and_then(parse_time_limit))
            && Duration::from_secs(g) >= t
        {
            out.push((
                "signal_grace",
                format!(
                    "`signal_grace: {g}` (seconds before the time limit) is not shorter than the time limit \
                     itself ({} s)",
                    t.as_secs()
                ),
            ));
        }
        out
    }

    /// Problems that only show once a stage's `resources:` are laid over the pipeline's `slurm:`
    /// defaults (and the built-in defaults): a `signal_grace` (120 s unless written) that leaves
    /// a short `time` no room, so that Slurm would signal every attempt at its first check and
    /// the stage would be requeued until `max_requeues` without getting anywhere. `problems()`
    /// sees one mapping at a time; this is for the merged resources of a Slurm stage.
    pub fn merged_problems(&self) -> Vec<(&'static str, String)> {
        let Some(limit) = self.time.as_deref().and_then(parse_time_limit) else { return Vec::new() };
        let (limit, grace) = (limit.as_secs(), self.signal_grace());
        if grace.saturating_add(SLURM_TIME_CHECK_S) < limit {
            return Vec::new();
        }
        let t = self.time.as_deref().unwrap_or_default();
        let written = if self.signal_grace.is_some() { "" } else { " (the default)" };
        let fix = match limit.checked_sub(SLURM_TIME_CHECK_S + 1).filter(|&g| g > 0) {
            Some(g) => format!("raise `time`, or set `signal_grace` to at most {g}"),
            None => "raise `time`".to_string(),
        };
        // Blame what the user wrote: `signal_grace` if they set it, else the short `time`.
        let field = if self.signal_grace.is_some() { "signal_grace" } else { "time" };
        vec![(
            field,
            format!(
                "`time: {t}` ({limit} s) leaves no room for `signal_grace: {grace}`{written}: Slurm tells the \
                 job to checkpoint {grace} to {} s before its time limit, so every attempt would be \
                 interrupted at once; {fix} (it must leave time for one optimizer step and a checkpoint)",
                grace + SLURM_TIME_CHECK_S
            ),
        )]
    }
}

/// `mem:` and `time:` as sbatch takes them: text, or a whole number written as a YAML number
/// (`time: 30`, `mem: 64000`), which is the same to sbatch. (The JSON Schema still says
/// string: `schema/pipeline.schema.json` is generated and committed elsewhere.)
/// The schema of a [`text_or_number`] field, so that editors accept `time: 30` as camel does.
fn text_or_number_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": ["string", "integer", "null"]})
}

fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a string or a whole number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            // Negative numbers are kept as written, for `problems()` to name.
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V)
}

/// The pipeline's `slurm:` section: default resources for every Slurm stage, and how camel
/// talks to the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SlurmSettings {
    pub defaults: Resources,
    /// Seconds between two `squeue` calls while jobs are watched. Default 10.
    pub poll_interval: f64,
    /// How long a failing `sbatch`/`squeue`/`scontrol` is retried (seconds) before the stage
    /// fails. Default 600.
    pub retry_for: f64,
    /// The camel executable the job runs (a path that compute nodes see); default: this one.
    pub camel: Option<String>,
}

pub const SETTINGS_FIELDS: &[&str] = &["poll_interval", "retry_for", "camel"];

impl SlurmSettings {
    pub const DEFAULT_POLL_S: f64 = 10.0;
    pub const DEFAULT_RETRY_S: f64 = 600.0;

    pub fn new() -> SlurmSettings {
        SlurmSettings {
            defaults: Resources::default(),
            poll_interval: Self::DEFAULT_POLL_S,
            retry_for: Self::DEFAULT_RETRY_S,
            camel: None,
        }
    }
}

/// A Slurm time limit in any of sbatch's forms, or `None` when it is not one. `UNLIMITED` and
/// `INFINITE` are unlimited (a very long duration).
pub fn parse_time_limit(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("infinite") {
        return Some(Duration::from_secs(u64::MAX / 4));
    }
    let num = |p: &str| -> Option<u64> {
        (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit())).then(|| p.parse().ok()).flatten()
    };
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => num(m)? * 60,
        (None, [m, s]) => num(m)? * 60 + num(s)?,
        (None, [h, m, s]) => num(h)? * 3600 + num(m)? * 60 + num(s)?,
        (Some(d), [h]) => d * 86400 + num(h)? * 3600,
        (Some(d), [h, m]) => d * 86400 + num(h)? * 3600 + num(m)? * 60,
        (Some(d), [h, m, s]) => d * 86400 + num(h)? * 3600 + num(m)? * 60 + num(s)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn valid_mem(s: &str) -> bool {
    let s = s.trim();
    let digits = s.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let suffix = s.len() - digits.len();
    suffix <= 1 && !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits != "0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_in_every_sbatch_form() {
        let s = |x: &str| parse_time_limit(x).map(|d| d.as_secs());
        assert_eq!(s("30"), Some(1800));
        assert_eq!(s("1:30"), Some(90));
        assert_eq!(s("24:00:00"), Some(86400));
        assert_eq!(s("2-12"), Some(2 * 86400 + 12 * 3600));
        assert_eq!(s("1-00:30"), Some(86400 + 1800));
        assert_eq!(s("1-00:00:10"), Some(86410));
        for bad in ["", "24h", "1:2:3:4", "-5", "0", "a-1", "1-"] {
            assert_eq!(s(bad), None, "{bad}");
        }
    }

    #[test]
    fn stage_resources_override_defaults_field_by_field() {
        let d = Resources { partition: Some("gpu".into()), time: Some("10".into()), ..Default::default() };
        let s = Resources { time: Some("20".into()), nodes: Some(2), ..Default::default() };
        let r = s.over(&d);
        assert_eq!(r.partition.as_deref(), Some("gpu"));
        assert_eq!(r.time.as_deref(), Some("20"));
        assert_eq!(r.tasks(), 2);
        let r = Resources { nodes: Some(2), gpus_per_node: Some(8), ..Default::default() };
        assert_eq!(r.tasks(), 16);
    }

    #[test]
    fn bad_values_are_named() {
        let r = Resources {
            mem: Some("lots".into()),
            time: Some("1 day".into()),
            nodes: Some(0),
            sbatch: Some(vec!["exclusive".into()]),
            ..Default::default()
        };
        let fields: Vec<&str> = r.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["nodes", "time", "mem", "sbatch"]);
        assert!(valid_mem("400G") && valid_mem("64000") && !valid_mem("4GB") && !valid_mem("0"));
    }

    #[test]
    fn time_and_mem_may_be_yaml_numbers() {
        let r: Resources = serde_yaml::from_str("{time: 30, mem: 64000}").unwrap();
        assert_eq!((r.time.as_deref(), r.mem.as_deref()), (Some("30"), Some("64000")));
        assert!(r.problems().is_empty());
        let r: Resources = serde_yaml::from_str("{time: -5}").unwrap();
        assert_eq!(r.problems().len(), 1);
        let e = serde_yaml::from_str::<Resources>("{mem: 1.5}").unwrap_err().to_string();
        assert!(e.contains("a string or a whole number"), "{e}");
    }

    #[test]
    fn the_default_signal_grace_is_checked_against_a_short_time_limit() {
        let d = Resources { time: Some("1".into()), ..Default::default() };
        // `time: 1` from the defaults, the default grace (120 s): no room.
        let merged = Resources::default().over(&d);
        let p = merged.merged_problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "time");
        assert!(p[0].1.contains("`signal_grace: 120` (the default)"), "{}", p[0].1);
        assert!(p[0].1.contains("set `signal_grace` to at most 29"), "{}", p[0].1);
        // A grace that leaves room, written in the stage.
        let ok = Resources { signal_grace: Some(10), ..Default::default() }.over(&d);
        assert!(ok.merged_problems().is_empty());
        let tight = Resources { signal_grace: Some(30), ..Default::default() }.over(&d);
        assert_eq!(tight.merged_problems()[0].0, "signal_grace");
        for fine in ["3", "24:00:00", "UNLIMITED"] {
            let r = Resources { time: Some(fine.into()), ..Default::default() };
            assert!(r.merged_problems().is_empty(), "{fine}");
        }
        assert!(Resources::default().merged_problems().is_empty(), "no time limit: the partition's");
        let tiny = Resources { time: Some("0:20".into()), signal_grace: Some(1), ..Default::default() };
        assert!(tiny.merged_problems()[0].1.contains("; raise `time` (it"), "{:?}", tiny.merged_problems());
    }
}
