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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// Time limit, as sbatch takes it: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
}
