//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "camel",
    version,
    about = "Reproduce the CAMEL clinical-LLaMA recipe as a cached, resumable pipeline",
    long_about = "camel runs pipelines of stages described in YAML. Every stage's outputs are stored under a \
content hash of its kind, params and inputs; a second run does only what changed, a killed run resumes, and \
`camel status` says exactly why a stage would rerun.",
    after_help = "Examples:\n  camel run pipelines/demo.yaml\n  camel run pipelines/demo.yaml --set tokenize.seed=2\n  \
camel status pipelines/demo.yaml\n  camel dag pipelines/demo.yaml --format mermaid\n\nExit codes: 0 ok, 1 a stage failed, \
2 invalid pipeline or usage."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline: cached stages are reused, the rest run in dependency order.
    #[command(
        after_help = "Examples:\n  camel run pipelines/demo.yaml\n  camel run pipelines/demo.yaml --until tokenize\n  \
camel run pipelines/demo.yaml --force notes --jobs 2\n  camel run pipelines/full.yaml --set params.noteevents=/data/NOTEEVENTS.csv.gz"
    )]
    Run {
        pipeline: PathBuf,
        /// Rerun STAGE even if it is cached (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Run STAGE and what it depends on, nothing downstream of it.
        #[arg(long, value_name = "STAGE", conflicts_with = "only")]
        until: Option<String>,
        /// Run STAGE alone; everything it depends on must already be cached.
        #[arg(long, value_name = "STAGE")]
        only: Option<String>,
        #[command(flatten)]
        set: Sets,
        /// How many independent stages may run at once.
        #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: u16,
        /// Wait for another camel process using the same workspace instead of failing.
        #[arg(long)]
        wait: bool,
        /// Submit the stages placed on Slurm and return without waiting for their jobs; a later
        /// `camel run` (or `camel status`) picks them up.
        #[arg(long)]
        detach: bool,
        /// After a failure, still run the stages that do not depend on it.
        #[arg(long, short = 'k')]
        keep_going: bool,
    },
    /// Run one stage from a spec file that `camel run` wrote (what a Slurm job of a stage runs).
    #[command(
        name = "exec-stage",
        after_help = "camel run writes the spec and a batch script that calls this command into \
<workspace>/slurm/<key>/; see docs/slurm.md."
    )]
    ExecStage {
        /// The stage's spec.json.
        spec: PathBuf,
    },
    /// Say, per stage, whether it is cached, stale (and exactly why) or missing.
    #[command(
        after_help = "Examples:\n  camel status pipelines/demo.yaml\n  camel status pipelines/full.yaml --json"
    )]
    Status {
        pipeline: PathBuf,
        /// Print a JSON array of {stage, kind, state, key, reasons, cache_key, output_bytes, partial}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        set: Sets,
    },
    /// Compare two pipelines (or one under two sets of overrides): which stages differ and why, and
    /// their metrics side by side (final training loss, ROUGE-L/BLEU/F1, mean judge scores).
    #[command(after_help = "Examples:\n  camel diff pipelines/demo.yaml --set-b pretrain.lr=1e-3\n  \
camel diff pipelines/demo.yaml --set-a tokenize.seed=1 --set-b tokenize.seed=2 --json")]
    Diff {
        /// Pipeline A.
        a: PathBuf,
        /// Pipeline B (default: A again, so that only the overrides differ).
        b: Option<PathBuf>,
        /// Override a param on both sides (repeatable).
        #[arg(long = "set", value_name = "TARGET=VALUE")]
        set: Vec<String>,
        /// Override a param on side A only (repeatable).
        #[arg(long = "set-a", value_name = "TARGET=VALUE")]
        set_a: Vec<String>,
        /// Override a param on side B only (repeatable).
        #[arg(long = "set-b", value_name = "TARGET=VALUE")]
        set_b: Vec<String>,
        /// Print a JSON array of {stage, kind, verdict, reasons, a, b, metrics}.
        #[arg(long)]
        json: bool,
    },
    /// Print the pipeline's graph of stages.
    #[command(
        after_help = "Examples:\n  camel dag pipelines/demo.yaml\n  camel dag pipelines/demo.yaml --format dot"
    )]
    Dag {
        pipeline: PathBuf,
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
        #[command(flatten)]
        set: Sets,
    },
    /// Show a stage's outputs (paths, sizes, hashes) and what produced them.
    #[command(after_help = "Example:\n  camel show pipelines/demo.yaml notes")]
    Show {
        pipeline: PathBuf,
        stage: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        set: Sets,
    },
    /// Remove cache entries that none of the given pipelines uses any more. A stage whose inputs
    /// are not there (a path given with `--set` when it ran) keeps the entry of its last run.
    #[command(after_help = "Example:\n  camel gc pipelines/*.yaml --dry-run")]
    Gc {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// List what would be removed without removing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hash every output file of the pipeline's cached stages again; remove corrupt entries.
    #[command(after_help = "Example:\n  camel verify pipelines/demo.yaml")]
    Verify {
        pipeline: PathBuf,
        #[command(flatten)]
        set: Sets,
    },
    /// List the stage kinds, or describe one: inputs, outputs, and each param's type, default,
    /// valid range and meaning.
    #[command(after_help = "Examples:\n  camel kinds\n  camel kinds pretrain")]
    Kinds { kind: Option<String> },
    /// Print the JSON Schema of pipeline files (for editors: `# yaml-language-server: $schema=…`).
    #[command(after_help = "Example:\n  camel schema > schema/pipeline.schema.json")]
    Schema,
    /// Generate text with a checkpoint dir (a training stage's `model` output or any HF LLaMA).
    #[command(
        after_help = "Examples:\n  camel generate pipelines/.camel/out/finetune/model --alpaca --prompt 'List the discharge medications.'\n  \
camel generate ./llama-7b --prompt 'The patient' --sample --temperature 0.7 --top-p 0.9 --max-new-tokens 64"
    )]
    Generate {
        model: PathBuf,
        /// A prompt (repeatable; several are batched with left padding).
        #[arg(long, required = true)]
        prompt: Vec<String>,
        #[arg(long, default_value_t = 128)]
        max_new_tokens: usize,
        /// Put each prompt into the Alpaca instruction template (as fine-tuned models expect).
        #[arg(long)]
        alpaca: bool,
        /// Sample instead of greedy decoding.
        #[arg(long)]
        sample: bool,
        #[arg(long, default_value_t = 1.0)]
        temperature: f64,
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        /// Sample from the K most likely tokens only (0: all) [default: the checkpoint's
        /// generation_config.json top_k, else 50, as transformers]
        #[arg(long, value_name = "K")]
        top_k: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Beam search with this many beams (greedy when 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        num_beams: u16,
        /// auto, cpu, cuda or cuda:N.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Print one JSON object per prompt instead of the text.
        #[arg(long)]
        json: bool,
    },
}

/// `--set`, for every command that loads one pipeline: the same overrides as the run that is meant.
#[derive(clap::Args, Debug, Clone)]
pub struct Sets {
    /// Override a param: STAGE.PARAM=VALUE, or params.NAME=VALUE for a pipeline param (repeatable).
    #[arg(long = "set", value_name = "TARGET=VALUE")]
    pub set: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DagFormat {
    Text,
    Dot,
    Mermaid,
}
