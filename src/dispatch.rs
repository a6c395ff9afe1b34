//! Runs one parsed command and decides the exit code: 0 ok, 1 a stage failed, 2 an invalid
//! pipeline or command line. This is the only place that maps errors to exit codes.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use camel_engine::{EngineError, Override, Plan, StageState};
use camel_stages::train::launch::{Leader, follow as follow_leader};
use camel_stages::train::{ExternalRank, worker_path};
use clap::Parser;

use crate::cli::{Cli, Command, DagFormat};
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

fn load(pipeline: &Path, set: &[String]) -> Result<Plan, EngineError> {
    let overrides =
        set.iter().map(|s| Override::parse(s)).collect::<Result<Vec<_>, _>>().map_err(EngineError::Usage)?;
    camel_engine::load(pipeline, &overrides, &camel_stages::registry())
}

fn execute(command: Command) -> Result<i32, EngineError> {
    match command {
        Command::Run { pipeline, force, until, only, set, jobs, wait } => {
            let plan = load(&pipeline, &set)?;
            // Started by torchrun/srun as one rank of a group: rank 0 runs the pipeline, the
            // others follow its training jobs (stages/src/train/launch.rs).
            let external = ExternalRank::from_env().map_err(EngineError::Usage)?;
            if let Some(ext) = external.as_ref().filter(|e| !e.is_leader()) {
                return follow(&plan, ext);
            }
            let leader = match &external {
                Some(ext) => Some(
                    Leader::start(&plan.workspace, ext)
                        .map_err(EngineError::io("write the job list for the other ranks"))?,
                ),
                None => None,
            };
            let cancel = Arc::new(AtomicBool::new(false));
            let c = cancel.clone();
            let _ = ctrlc::set_handler(move || {
                if c.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: leave now; staging directories are cleaned by the next run.
                    std::process::exit(130);
                }
                eprintln!("camel: interrupting; press Ctrl-C again to leave at once");
            });
            let reporter = Reporter::new(&plan);
            let opts = camel_engine::RunOptions { force, until, only, jobs: jobs as usize, wait };
            let result = camel_engine::run(&plan, &opts, reporter.sink(), cancel);
            reporter.finish();
            if let Some(leader) = leader {
                leader.end(result.is_ok());
            }
            result.map(|()| 0)
        }
        Command::Status { pipeline, json, set } => {
            let overrides = set
                .iter()
                .map(|s| Override::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(EngineError::Usage)?;
            let plan = camel_engine::load_for_status(&pipeline, &overrides, &camel_stages::registry())?;
            let st = camel_engine::status(&plan)?;
            let mut out = std::io::stdout().lock();
            if json {
                let _ = writeln!(out, "{}", serde_json::to_string_pretty(&st).expect("status serializes"));
            } else {
                let w = st.iter().map(|s| s.stage.len()).max().unwrap_or(5).max(5);
                for s in &st {
                    let state = match s.state {
                        StageState::Cached => "cached",
                        StageState::Stale => "stale",
                        StageState::Missing => "missing",
                    };
                    let key = s.key.as_deref().map_or("-".to_string(), |k| k[..12].to_string());
                    let _ = writeln!(out, "{:<w$}  {:<7}  {:<12}  {}", s.stage, state, key, s.kind);
                    for r in &s.reasons {
                        let _ = writeln!(out, "{:<w$}    - {r}", "");
                    }
                }
            }
            Ok(0)
        }
        Command::Dag { pipeline, format } => {
            let plan = load(&pipeline, &[])?;
            print!("{}", render_dag(&plan, format));
            Ok(0)
        }
        Command::Show { pipeline, stage, json } => {
            let plan = load(&pipeline, &[])?;
            let r = camel_engine::show(&plan, &stage)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).expect("show serializes"));
            } else {
                println!("stage:   {}", r.stage);
                println!("key:     {}", r.key);
                println!("entry:   {}", r.entry.display());
                for o in &r.outputs {
                    println!(
                        "output:  {} = {} ({}, {}, blake3 {})",
                        o.name,
                        o.path.display(),
                        o.kind,
                        human_bytes(o.size),
                        &o.hash[..16]
                    );
                }
                let p = &r.provenance;
                for field in ["started", "finished", "host", "camel_version"] {
                    if let Some(v) = p.get(field).and_then(|v| v.as_str()) {
                        println!("{:<8} {v}", format!("{field}:"));
                    }
                }
                if let Some(file) = p.pointer("/pipeline/file").and_then(|v| v.as_str()) {
                    println!("pipeline: {file}");
                }
                if let Some(inputs) = p.get("inputs").and_then(|v| v.as_object()) {
                    for (name, i) in inputs {
                        println!(
                            "input:   {name} <- {} (blake3 {})",
                            i["from"].as_str().unwrap_or("?"),
                            &i["hash"].as_str().unwrap_or("")
                                [..16.min(i["hash"].as_str().unwrap_or("").len())]
                        );
                    }
                }
                println!("log:     {}", r.log.display());
            }
            Ok(0)
        }
        Command::Gc { pipelines, dry_run } => {
            let plans = pipelines.iter().map(|p| load(p, &[])).collect::<Result<Vec<_>, _>>()?;
            for r in camel_engine::gc(&plans, dry_run)? {
                let verb = if dry_run { "would remove" } else { "removed" };
                println!(
                    "{}: kept {} entries, {verb} {} ({}), {verb} {} scratch dirs",
                    r.workspace.display(),
                    r.kept,
                    r.removed.len(),
                    human_bytes(r.freed_bytes),
                    r.scratch_removed
                );
                if dry_run {
                    for k in &r.removed {
                        println!("  {k}");
                    }
                }
            }
            Ok(0)
        }
        Command::Verify { pipeline } => {
            let plan = load(&pipeline, &[])?;
            let entries = camel_engine::verify(&plan)?;
            let mut bad = 0;
            for e in &entries {
                match e.result.as_str() {
                    "corrupt" => {
                        bad += 1;
                        println!(
                            "{}: CORRUPT ({}); entry removed, the next run rebuilds it",
                            e.stage,
                            e.problem.as_deref().unwrap_or("")
                        );
                    }
                    other => println!("{}: {other}", e.stage),
                }
            }
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
            alpaca,
            sample,
            temperature,
            top_p,
            seed,
            num_beams,
            device,
            json,
        } => {
            let job = serde_json::json!({
                "model": std::path::absolute(&model).map_err(EngineError::io("resolve the model path"))?,
                "prompts": prompt,
                "template": alpaca.then_some(camel_stages::train::ALPACA_PROMPT_NO_INPUT),
                "device": device,
                "params": {"max_new_tokens": max_new_tokens, "do_sample": sample, "temperature": temperature,
                           "top_p": top_p, "seed": seed, "num_beams": num_beams},
            });
            generate(&job, json)
        }
        Command::Kinds { kind } => {
            let reg = camel_stages::registry();
            match kind {
                None => {
                    for k in reg.kinds() {
                        println!("{:<12} v{}  {}", k.kind, k.version, k.summary);
                    }
                }
                Some(k) => {
                    let Some(e) = reg.get(&k) else {
                        let hint = camel_engine::did_you_mean(&k, reg.kinds().map(|e| e.kind))
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        return Err(EngineError::Usage(format!("no stage kind `{k}`{hint}")));
                    };
                    println!("{} (implementation version {}): {}", e.kind, e.version, e.summary);
                    let names = e.param_names();
                    if !names.is_empty() {
                        println!("params: {}", names.join(", "));
                    }
                    if !e.unhashed.is_empty() {
                        println!(
                            "params that are not hashed (may use ${{env:NAME}}): {}",
                            e.unhashed.join(", ")
                        );
                    }
                }
            }
            Ok(0)
        }
    }
}

/// A rank other than 0 of an external launch: run this rank of each training job rank 0 publishes.
fn follow(plan: &Plan, ext: &ExternalRank) -> Result<i32, EngineError> {
    let worker = worker_path().map_err(|e| EngineError::Usage(e.to_string()))?;
    let wait = std::env::var(FOLLOW_WAIT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(std::time::Duration::from_secs(24 * 3600), std::time::Duration::from_secs);
    match follow_leader(&plan.workspace, ext, &worker, wait) {
        Ok(()) => Ok(0),
        Err(message) => {
            Err(EngineError::StageFailed { stage: format!("rank {}", ext.rank), message, log: None })
        }
    }
}

/// How long a follower waits for rank 0 to publish its next job (seconds; default a day).
const FOLLOW_WAIT_ENV: &str = "CAMEL_FOLLOW_WAIT_S";

fn render_dag(plan: &Plan, format: DagFormat) -> String {
    let mut s = String::new();
    let edges = |i: usize| {
        plan.stages[i].inputs.iter().filter_map(|(name, input)| match input {
            camel_engine::InputRef::Stage { name: up, output, .. } => {
                Some((up.clone(), output.clone(), name.clone()))
            }
            _ => None,
        })
    };
    match format {
        DagFormat::Text => {
            for &i in &plan.order {
                let st = &plan.stages[i];
                s.push_str(&format!("{} ({})\n", st.name, st.bound.kind()));
                for (name, input) in &st.inputs {
                    s.push_str(&format!("  {name} <- {}\n", input.describe()));
                }
            }
        }
        DagFormat::Dot => {
            s.push_str(&format!("digraph {:?} {{\n  rankdir=LR;\n", plan.name));
            for &i in &plan.order {
                let st = &plan.stages[i];
                s.push_str(&format!("  {:?} [label=\"{}\\n({})\"];\n", st.name, st.name, st.bound.kind()));
                for (up, output, input) in edges(i) {
                    s.push_str(&format!(
                        "  {:?} -> {:?} [label={:?}];\n",
                        up,
                        st.name,
                        format!("{output} → {input}")
                    ));
                }
            }
            s.push_str("}\n");
        }
        DagFormat::Mermaid => {
            s.push_str("graph LR\n");
            for &i in &plan.order {
                let st = &plan.stages[i];
                s.push_str(&format!("  {}[\"{} ({})\"]\n", st.name, st.name, st.bound.kind()));
                for (up, output, input) in edges(i) {
                    s.push_str(&format!("  {up} -->|{output} → {input}| {}\n", st.name));
                }
            }
        }
    }
    s
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Runs the torch worker's `generate` on a job; the worker reports its own errors on stderr.
fn generate(job: &serde_json::Value, json: bool) -> Result<i32, EngineError> {
    let worker = match camel_stages::train::worker_path() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("camel: {e}");
            return Ok(1);
        }
    };
    let mut file = tempfile_in_tmp()?;
    file.1.write_all(job.to_string().as_bytes()).map_err(EngineError::io("write the generation job"))?;
    let out = std::process::Command::new(&worker)
        .arg("generate")
        .arg(&file.0)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(EngineError::io(format!("start {}", worker.display())))?;
    let _ = std::fs::remove_file(&file.0);
    if !out.status.success() {
        return Ok(1);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if json {
            println!("{line}");
        } else if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            println!("{}\n", v["text"].as_str().unwrap_or_default());
        }
    }
    Ok(0)
}

fn tempfile_in_tmp() -> Result<(std::path::PathBuf, std::fs::File), EngineError> {
    let path = std::env::temp_dir().join(format!("camel-generate-{}.json", std::process::id()));
    let f = std::fs::File::create(&path).map_err(EngineError::io(format!("create {}", path.display())))?;
    Ok((path, f))
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
        EngineError::StageFailed { log: Some(log), .. } => {
            out.push_str(&format!("camel: {e}\n  log: {}\n", log.display()));
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
