//! Running stages on a Slurm cluster. A stage says `executor: slurm` (and `resources:`); the
//! pipeline's `slurm:` section gives defaults. `camel run` stays where it was started (a login
//! node), runs the local stages itself, and submits each Slurm stage as one batch job that runs
//! `camel exec-stage` on the shared workspace. The job writes the stage's outputs into a
//! directory of the workspace; `camel run` commits them like a local stage's.
//!
//! - [`settings`]: the YAML side (placement, resources, defaults) and its validation.
//! - [`ctl`]: sbatch/squeue/scontrol/scancel, retried through a busy controller, and one
//!   rate-limited `squeue` for all the jobs being watched.
//! - [`job`]: one stage's job directory, batch script, submission record, and the wait that
//!   survives `camel run` itself being killed (reattach instead of resubmit).
//! - [`exec_stage`]: the other side, run inside the job.
//! - [`files`]: what the two sides write for each other (spec, result, progress).
//!
//! Where a stage runs is not part of its cache key: the same inputs and params give the same
//! outputs wherever they ran.

pub mod ctl;
pub mod exec_stage;
pub mod files;
pub mod job;
pub mod settings;

pub use ctl::{JobState, Slurm};
pub use exec_stage::exec_stage;
pub use files::{EXIT_RESUMABLE, StageSpec};
pub use job::{JobInfo, OtherJob, SlurmJobs};
pub use settings::{Executor, Resources, SlurmSettings};
