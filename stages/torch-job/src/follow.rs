//! The job list of an externally launched run (`<workspace>/dist/<run id>/jobs.jsonl`): rank 0
//! writes a `start` line when its run begins, a `job` line each time a distributed training stage
//! starts, and an `end` line with the run's outcome; every other rank reads it to run its own rank
//! of each job, and leaves at `end`.

use serde::{Deserialize, Serialize};

use crate::train::Job;

/// One line of `jobs.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JobListLine {
    /// The first line. `start` is a nonce of this run, so that a follower tells a fresh list from
    /// one an earlier launch left behind.
    Start { start: String, world_size: usize },
    /// A stage's training job, which every rank runs (its scratch and output paths are in the
    /// shared workspace).
    Job { stage: String, job: Box<Job> },
    /// The last line.
    End { end: RunEnd },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunEnd {
    Ok,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::round_trip;
    use crate::train::PretrainParams;

    #[test]
    fn job_list_lines_read_and_write_as_before() {
        round_trip(
            &JobListLine::Start { start: "123-1700000000000".into(), world_size: 16 },
            r#"{"start":"123-1700000000000","world_size":16}"#,
        );
        round_trip(&JobListLine::End { end: RunEnd::Ok }, r#"{"end":"ok"}"#);
        round_trip(&JobListLine::End { end: RunEnd::Failed }, r#"{"end":"failed"}"#);
        let params = PretrainParams { max_steps: Some(2), ..Default::default() };
        let job = Job::pretrain("/t".into(), Some("/m".into()), params, "/o".into(), "/s".into());
        let line = JobListLine::Job { stage: "pretrain".into(), job: Box::new(job) };
        round_trip(
            &line,
            r#"{"job":{"model":"/m","out_dir":"/o","params":{"activation_checkpointing":false,"adam_beta1":0.9,"adam_beta2":0.999,"adam_eps":1e-8,"batch_size":1,"checkpoint_every":50,"config":null,"device":"auto","dtype":"auto","epochs":1.0,"grad_accum":1,"lr":0.00002,"mask_ids":true,"max_grad_norm":1.0,"max_shard_mb":5000,"max_steps":2,"optim":"adamw_torch_fused","save_dtype":"auto","seed":42,"shuffle":true,"threads":0,"warmup_ratio":0.03,"weight_decay":0.0},"scratch_dir":"/s","task":"pretrain","tokens":"/t"},"stage":"pretrain"}"#,
        );
    }
}
