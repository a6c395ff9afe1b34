//! The camel engine: a pipeline YAML becomes a DAG of typed stages, each stage's outputs are
//! stored under a content hash of everything that determines them, and a run does only what
//! changed.
//!
//! - [`plan`] validates a pipeline file into a [`Plan`] (errors point at lines).
//! - [`Stage`] is the trait each stage kind implements; a [`Registry`] names the kinds.
//! - [`run`] executes a plan; [`status`] explains what a run would do.
//! - [`slurm`] runs stages placed on a Slurm cluster as batch jobs.
//! - [`process`] starts and supervises the child processes of stages and of the CLI.
//! - The engine reports through [`Event`]s and never prints.

mod compare;
mod error;
mod event;
mod exec;
mod key;
mod maintenance;
mod pipeline;
pub mod plan;
pub mod process;
mod provenance;
pub mod schema;
pub mod slurm;
mod spans;
mod stage;
#[cfg(test)]
mod testkit;
pub mod validate;
mod workspace;

pub use compare::{Side, StageComparison, Verdict, compare};
pub use error::{EngineError, PipelineError, did_you_mean};
pub use event::{Event, EventSink, Outcome, silent};
pub use exec::{Done, RunOptions, StageState, StageStatus, current_entries, run, status};
pub use key::{CacheKey, diff};
pub use maintenance::{GcReport, ShowOutput, ShowReport, VerifyEntry, gc, show, verify};
pub use pipeline::Override;
pub use plan::{InputRef, Plan, PlannedStage, Selection, load, load_for_run, load_for_status, plan_from_str};
pub use provenance::{PROVENANCE_FILE, Provenance, ProvenanceInput, ProvenancePipeline};
pub use stage::{
    BoundStage, InputSpec, KindEntry, OutputKind, OutputSpec, ParamError, Partial, PartialProbe, Progress,
    Registry, Stage, StageContext, StageError,
};
pub use validate::{InputInfo, Problem, ValidateContext};
pub use workspace::{StageRecord, Workspace, WorkspaceLock};
