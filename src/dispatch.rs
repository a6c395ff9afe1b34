//! Runs one parsed command and decides the exit code: 0 ok, 1 a stage failed, 2 an invalid
//! pipeline or command line. [`main`] is the only place that maps errors to exit codes; each
//! command is one function below that returns its code or an [`EngineError`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use camel_engine::{EngineError, Override, Plan, StageState};
use camel_torch::cli::{FollowError, GenJob, GenParams, GenerateError, Role};
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::render::{human_bytes, render_dag};
use crate::reporter::Reporter;

pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("CAMEL_LOG"))
        .with_writer(std::io::stderr)
        .try_init();
    match execute(cli.command) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            e.exit_code()
        }
    }
}

fn execute(command: Command) -> Result<i32, EngineError> {
    match command {
        Command::Run { pipeline, force, until, only, set, jobs, wait, detach, keep_going } => {
            let opts = camel_engine::RunOptions {
                force,
                until,
                only,
                jobs: jobs as usize,
                wait,
                detach,
                keep_going,
            };
            run(&pipeline, &set.set, &opts)
        }
        Command::ExecStage { spec } => exec_stage(&spec),
        Command::Status { pipeline, json, set } => status(&pipeline, &set.set, json),
        Command::Diff { a, b, set, set_a, set_b, json } => {
            let b = b.unwrap_or_else(|| a.clone());
            crate::compare::diff(&a, &b, &[set.clone(), set_a].concat(), &[set, set_b].concat(), json)
        }
        Command::Dag { pipeline, format, set } => {
            out!("{}", render_dag(&load_lenient(&pipeline, &set.set)?, format));
            Ok(0)
        }
        Command::Show { pipeline, stage, json, set } => show(&pipeline, &set.set, &stage, json),
        Command::Gc { pipelines, dry_run } => gc(&pipelines, dry_run),
        Command::Verify { pipeline, set } => verify(&pipeline, &set.set),
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
            alpaca,
            sample,
            temperature,
            top_p,
            top_k,
            seed,
            num_beams,
            device,
            json,
        } => {
            if !model.is_dir() {
                let what = if model.exists() { "is not a directory" } else { "does not exist" };
                return Err(EngineError::Usage(format!(
                    "the model {} {what}: give a checkpoint directory (config.json and safetensors), such as a \
                     training stage's output `<workspace>/out/finetune/model`",
                    model.display()
                )));
            }
            let job = GenJob {
                model: std::path::absolute(&model).map_err(EngineError::io("resolve the model path"))?,
                prompts: prompt,
                template: alpaca.then(|| camel_torch::cli::ALPACA_PROMPT_NO_INPUT.to_string()),
                device,
                dtype: "auto".into(),
                params: GenParams {
                    max_new_tokens,
                    do_sample: sample,
                    temperature,
                    top_p,
                    top_k,
                    seed,
                    num_beams: num_beams as usize,
                    ..GenParams::default()
                },
            };
            generate(&job, json)
        }
        Command::Kinds { kind } => kinds(kind.as_deref()),
        Command::Schema => {
            outln!("{}", pipeline_schema_text());
            Ok(0)
        }
    }
}

fn overrides(set: &[String]) -> Result<Vec<Override>, EngineError> {
    set.iter().map(|s| Override::parse(s)).collect::<Result<Vec<_>, _>>().map_err(EngineError::Usage)
}

/// As [`load`], but an input file that is not there is not an error (as for `camel status`):
/// for commands that look at a workspace, which stay useful before or after the data is there.
fn load_lenient(pipeline: &Path, set: &[String]) -> Result<Plan, EngineError> {
    camel_engine::load_for_status(pipeline, &overrides(set)?, &camel_stages::registry())
}

/// `camel run`. Started by torchrun/srun as one rank of a group, rank 0 runs the pipeline and the
/// others follow its training jobs (camel-torch's `launch`). With `--until`/`--only`, a missing
/// input file of a stage the run skips is no error.
fn run(pipeline: &Path, set: &[String], opts: &camel_engine::RunOptions) -> Result<i32, EngineError> {
    let selection = camel_engine::Selection { until: opts.until.clone(), only: opts.only.clone() };
    let plan = camel_engine::load_for_run(pipeline, &overrides(set)?, &camel_stages::registry(), &selection)?;
    let leader = match rank_role(&plan)? {
        Ok(leader) => leader,
        Err(follower) => return follower.map(|()| 0),
    };
    let cancel = cancel_on_ctrl_c();
    let reporter = Reporter::new(&plan);
    let result = camel_engine::run(&plan, opts, reporter.sink(), cancel);
    reporter.finish();
    if let Some(leader) = leader {
        leader.end(result.is_ok());
    }
    result.map(|()| 0)
}

/// This process's part in a group started by torchrun/srun: `Ok(leader)` runs the pipeline (as
/// the leader of a group, or alone), `Err(outcome)` is a follower's finished run of its ranks.
#[allow(clippy::type_complexity)]
fn rank_role(
    plan: &Plan,
) -> Result<Result<Option<camel_torch::cli::Leader>, Result<(), EngineError>>, EngineError> {
    Ok(match camel_torch::cli::role(&plan.workspace) {
        Ok(Role::Alone) => Ok(None),
        Ok(Role::Leader(leader)) => Ok(Some(leader)),
        Ok(Role::Follower(follower)) => {
            let rank = follower.rank();
            Err(match follower.run() {
                Ok(()) => Ok(()),
                Err(FollowError::NoWorker(message)) => Err(EngineError::Usage(message)),
                Err(FollowError::Failed(message)) => {
                    Err(EngineError::StageFailed { stage: format!("rank {rank}"), message, log: None })
                }
            })
        }
        Err(camel_torch::cli::LaunchError::Environment(message)) => return Err(EngineError::Usage(message)),
        Err(camel_torch::cli::LaunchError::JobList(e)) => {
            return Err(EngineError::io("write the job list for the other ranks")(e));
        }
    })
}

/// A flag set by the first Ctrl-C (SIGINT); a second one leaves at once. SIGTERM and SIGHUP keep
/// their default, ending camel at once like a kill -9, which a rerun survives: what camel started
/// locally dies with it (engine::process), and a Slurm stage's job goes on (a logout's SIGTERM
/// must not cancel it, as Ctrl-C's scancel would).
fn cancel_on_ctrl_c() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if c.swap(true, Ordering::SeqCst) {
            // A second Ctrl-C: leave now; staging directories are cleaned by the next run.
            std::process::exit(130);
        }
        eprintln!("camel: interrupting; press Ctrl-C again to leave at once");
    });
    cancel
}

/// `camel exec-stage SPEC`: inside a Slurm job, one stage (rank 0) or a follower's ranks of it.
/// Exits 75 when SIGUSR1 interrupted a stage that can resume, which the job script requeues.
fn exec_stage(spec_path: &Path) -> Result<i32, EngineError> {
    use camel_engine::slurm::{EXIT_RESUMABLE, exec_stage};
    exec_stage::catch_usr1();
    let spec = camel_engine::slurm::StageSpec::read(spec_path).map_err(EngineError::Usage)?;
    // Inputs of other stages may live where only the login node sees them: not an error here.
    let plan = camel_engine::load_for_status(
        &spec.pipeline,
        &overrides(&spec.overrides)?,
        &camel_stages::registry(),
    )?;
    let leader = match rank_role(&plan)? {
        Ok(leader) => leader,
        Err(Ok(())) => return Ok(0),
        Err(Err(_)) if exec_stage::usr1_received() => return Ok(EXIT_RESUMABLE),
        Err(Err(e)) => return Err(e),
    };
    let code = exec_stage::exec_stage(&plan, &spec, cancel_on_ctrl_c());
    if let Some(leader) = leader {
        leader.end(code == 0);
    }
    Ok(code)
}

/// `camel status`: one line per stage (and why it would run), or the JSON of the key structs.
fn status(pipeline: &Path, set: &[String], json: bool) -> Result<i32, EngineError> {
    let plan = load_lenient(pipeline, set)?;
    let st = camel_engine::status(&plan)?;
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&st).expect("status serializes"));
        return Ok(0);
    }
    let w = st.iter().map(|s| s.stage.len()).max().unwrap_or(5).max(5);
    for s in &st {
        let state = match s.state {
            StageState::Cached => "cached",
            StageState::Stale => "stale",
            StageState::Missing => "missing",
        };
        let key = s.key.as_deref().map_or("-".to_string(), |k| k[..12].to_string());
        let place = if s.executor == "local" { String::new() } else { format!(" (on {})", s.executor) };
        let _ = writeln!(out, "{:<w$}  {:<7}  {:<12}  {}{place}", s.stage, state, key, s.kind);
        if let Some(job) = &s.job {
            let id = job.job_id.as_deref().unwrap_or("?");
            let what = if job.finished_ok {
                "finished; `camel run` commits its outputs".to_string()
            } else {
                match &job.reason {
                    Some(r) => format!("{} ({r})", job.state),
                    None => job.state.clone(),
                }
            };
            let _ = writeln!(out, "{:<w$}    - Slurm job {id}: {what}", "");
        }
        for o in &s.other_jobs {
            let _ = writeln!(out, "{:<w$}    - {}: `scancel {}` stops it", "", o.describe(), o.job_id);
        }
        for r in &s.reasons {
            let _ = writeln!(out, "{:<w$}    - {r}", "");
        }
        // A secret is never stored: a stage that is to run needs it each time.
        let unset = plan.stages.iter().find(|p| p.name == s.stage).map_or(&[][..], |p| &p.missing_env[..]);
        if s.state != StageState::Cached {
            for var in unset {
                let _ = writeln!(
                    out,
                    "{:<w$}    - environment variable `{var}` is not set (read with ${{env:{var}}}): export \
                     it before `camel run` runs this stage",
                    ""
                );
            }
        }
        if let Some(p) = &s.partial {
            let _ = writeln!(out, "{:<w$}    partial: {}", "", p.state);
        }
    }
    Ok(0)
}

/// `camel show`: a cached stage's outputs and provenance.
fn show(pipeline: &Path, set: &[String], stage: &str, json: bool) -> Result<i32, EngineError> {
    let plan = load_lenient(pipeline, set)?;
    // An unknown stage is a mistake on the command line (2); a stage without outputs yet is
    // not (1): the command was right, the workspace has nothing to show.
    plan.require(stage)?;
    let r = match camel_engine::show(&plan, stage) {
        Ok(r) => r,
        Err(EngineError::Usage(m)) => {
            eprintln!("camel: {m}");
            return Ok(1);
        }
        Err(e) => return Err(e),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&r).expect("show serializes"));
        return Ok(0);
    }
    outln!("stage:   {}", r.stage);
    outln!("key:     {}", r.key);
    outln!("entry:   {}", r.entry.display());
    for o in &r.outputs {
        outln!(
            "output:  {} = {} ({}, {}, blake3 {})",
            o.name,
            o.path.display(),
            o.kind,
            human_bytes(o.size),
            &o.hash[..16]
        );
    }
    if let Some(p) = &r.record {
        for (field, v) in [
            ("started", &p.started),
            ("finished", &p.finished),
            ("host", &p.host),
            ("camel_version", &p.camel_version),
        ] {
            outln!("{:<8} {v}", format!("{field}:"));
        }
        outln!("pipeline: {}", p.pipeline.file.display());
        for (name, i) in &p.inputs {
            outln!("input:   {name} <- {} (blake3 {})", i.from, &i.hash[..16.min(i.hash.len())]);
        }
    }
    outln!("log:     {}", r.log.display());
    Ok(0)
}

/// `camel gc`: cache entries none of the pipelines reaches.
fn gc(pipelines: &[PathBuf], dry_run: bool) -> Result<i32, EngineError> {
    let plans = pipelines.iter().map(|p| load_lenient(p, &[])).collect::<Result<Vec<_>, _>>()?;
    for r in camel_engine::gc(&plans, dry_run)? {
        let verb = if dry_run { "would remove" } else { "removed" };
        outln!(
            "{}: kept {} entries, {verb} {} ({}), {verb} {} scratch dirs",
            r.workspace.display(),
            r.kept,
            r.removed.len(),
            human_bytes(r.freed_bytes),
            r.scratch_removed
        );
        if dry_run {
            for k in &r.removed {
                outln!("  {k}");
            }
        }
        for j in &r.kept_jobs {
            outln!("  {}", j.message);
        }
    }
    Ok(0)
}

/// `camel verify`: 1 when a cached output was corrupt (and has been dropped).
fn verify(pipeline: &Path, set: &[String]) -> Result<i32, EngineError> {
    let plan = load_lenient(pipeline, set)?;
    let entries = camel_engine::verify(&plan)?;
    let mut bad = 0;
    for e in &entries {
        match e.result.as_str() {
            "corrupt" => {
                bad += 1;
                outln!(
                    "{}: CORRUPT ({}); entry removed, the next run rebuilds it",
                    e.stage,
                    e.problem.as_deref().unwrap_or("")
                );
            }
            other => match &e.problem {
                // `unknown`: the key cannot be computed (an input is missing, an upstream not cached).
                Some(why) => outln!("{}: {other} ({why})", e.stage),
                None => outln!("{}: {other}", e.stage),
            },
        }
    }
    Ok(if bad > 0 { 1 } else { 0 })
}

/// `camel generate`: the torch worker's text per prompt. The worker reports its own errors on
/// stderr, so a failure only sets the exit code.
fn generate(job: &GenJob, json: bool) -> Result<i32, EngineError> {
    let problems = job.params.problems();
    if !problems.is_empty() {
        let flags: Vec<String> =
            problems.iter().map(|(name, m)| format!("--{}: {m}", name.replace('_', "-"))).collect();
        return Err(EngineError::Usage(flags.join("; ")));
    }
    let outputs = match camel_torch::cli::generate(job) {
        Ok(o) => o,
        Err(GenerateError::Worker(_)) => return Ok(1),
        Err(e @ GenerateError::NoWorker(_)) => {
            eprintln!("camel: {e}");
            return Ok(1);
        }
        Err(GenerateError::Start(source)) => {
            eprintln!(
                "camel: cannot run camel-torch-worker: {source}: {}",
                std::error::Error::source(&source).map(|s| s.to_string()).unwrap_or_default()
            );
            return Ok(1);
        }
        Err(GenerateError::WriteJob { path, source }) => {
            return Err(EngineError::io(format!("write {}", path.display()))(source));
        }
    };
    for o in outputs {
        if json {
            outln!("{}", serde_json::to_string(&o).expect("an output serializes"));
        } else {
            outln!("{}\n", o.text);
        }
    }
    Ok(0)
}

/// `camel kinds [KIND]`: the registry, or one kind's params.
fn kinds(kind: Option<&str>) -> Result<i32, EngineError> {
    let reg = camel_stages::registry();
    let Some(k) = kind else {
        for k in reg.kinds() {
            outln!("{:<12} v{}  {}", k.kind, k.version, k.summary);
        }
        return Ok(0);
    };
    let Some(e) = reg.get(k) else {
        let hint = camel_engine::did_you_mean(k, reg.kinds().map(|e| e.kind))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(EngineError::Usage(format!("no stage kind `{k}`{hint}")));
    };
    outln!("{} (implementation version {}): {}", e.kind, e.version, e.summary);
    out!("{}", describe_kind(e));
    if !e.unhashed.is_empty() {
        outln!("params that are not hashed (may use ${{env:NAME}}): {}", e.unhashed.join(", "));
    }
    Ok(0)
}

/// `camel schema`'s output: the pipeline schema, pretty-printed (what `schema/pipeline.schema.json`
/// holds).
pub fn pipeline_schema_text() -> String {
    serde_json::to_string_pretty(&camel_engine::schema::pipeline_schema(&camel_stages::registry()))
        .expect("a schema serializes")
}

/// A kind's inputs, outputs and params, each param with its type, default, valid range and
/// meaning. Types, ranges and meanings come from the params' JSON Schema (the params struct's
/// doc comments and range attributes); defaults and outputs from the kind itself, its params
/// parsed with nothing given. A kind with required params cannot be parsed so; its defaults are
/// then the schema's.
fn describe_kind(e: &camel_engine::KindEntry) -> String {
    let mut out = String::new();
    let schema = e.params_schema();
    let docs = camel_engine::schema::param_docs(&schema);
    let mut given = serde_json::Value::Null;
    match e.parse(serde_yaml::Value::Mapping(Default::default())) {
        Ok(bound) => {
            match bound.inputs() {
                camel_engine::InputSpec::Any => {
                    out.push_str("inputs: any names (each becomes CAMEL_IN_<NAME>)\n")
                }
                camel_engine::InputSpec::Named { required, optional } => {
                    let mut all: Vec<String> = required.iter().map(|r| format!("{r} (required)")).collect();
                    all.extend(optional.iter().map(|o| format!("{o} (optional)")));
                    out.push_str(&format!(
                        "inputs: {}\n",
                        if all.is_empty() { "none".into() } else { all.join(", ") }
                    ));
                }
            }
            let outs: Vec<String> =
                bound.outputs().iter().map(|o| format!("{} ({})", o.name, o.path)).collect();
            out.push_str(&format!("outputs: {}\n", outs.join(", ")));
            given = bound.params_json();
        }
        Err(err) => {
            // Without its required params the kind cannot say its inputs and outputs.
            let why = match err.message.strip_prefix("missing field ") {
                Some(field) => format!("{} has no default", field.split(' ').next().unwrap_or(field)),
                None => err.message.clone(),
            };
            out.push_str(&format!("  (its inputs and outputs depend on its params, and {why})\n"));
        }
    }
    out.push_str("params (name, type, default, valid range, meaning):\n");
    let cell = |v: Option<&serde_json::Value>, required: bool| match v {
        _ if required => "required".to_string(),
        None | Some(serde_json::Value::Null) => "unset".to_string(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 24 { format!("{}…", s.chars().take(23).collect::<String>()) } else { s }
        }
    };
    let rows: Vec<[String; 5]> = docs
        .iter()
        .map(|d| {
            // What the kind filled in where it could be parsed, else the schema's (an entry of
            // a list, a variant's field).
            let default =
                camel_engine::schema::default_of(&schema, &given, &d.name).or_else(|| d.default.clone());
            [
                d.name.clone(),
                d.ty.clone(),
                cell(default.as_ref(), d.required),
                d.range.clone(),
                d.meaning.clone(),
            ]
        })
        .collect();
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let w = [width(0), width(1), width(2), width(3)];
    for r in &rows {
        let line = format!(
            "  {:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn report_error(e: &EngineError) {
    let stderr = std::io::stderr();
    let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let handler = miette::GraphicalReportHandler::new_themed(if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    })
    .with_width(100);
    let mut out = String::new();
    match e {
        EngineError::Invalid(errors) => {
            for err in errors {
                let _ = handler.render_report(&mut out, err);
                out.push('\n');
            }
            out.push_str(&format!("camel: {e}; nothing was run\n"));
        }
        EngineError::StageFailed { log: Some(log), message, .. } => {
            let hint = crate::render::failure_hint(message).map(|h| format!(" ({h})")).unwrap_or_default();
            out.push_str(&format!("camel: {e}\n  log: {}{hint}\n", log.display()));
        }
        _ => {
            out.push_str(&format!("camel: {e}"));
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                out.push_str(&format!(": {s}"));
                src = s.source();
            }
            out.push('\n');
        }
    }
    let _ = stderr.lock().write_all(out.as_bytes());
}
