//! `camel-torch-worker`: the process that links libtorch, so that the main
//! `camel` binary never has to. The engine runs it as a subprocess.
//!
//! Subcommands:
//! * `probe`: print one JSON line describing the libtorch build and devices,
//!   after a small smoke check (a 2x2 matmul on the CPU, and on `cuda:0` when
//!   CUDA is available). Exits non-zero if the smoke check fails.
//! * `train JOB.json`: run a pretraining or fine-tuning job written by the
//!   `pretrain`/`finetune` stages; progress lines (`camel-progress: …`) on
//!   stdout, log lines on stderr, errors as `camel-torch-worker: error: …`.
//! * `answer JOB.json`: answer instructions with a checkpoint for the `answer` stage (rows
//!   appended to the scratch dir's `rows.jsonl`, resumable), same conventions.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use camel_torch_job::line::{Progress, error_line};
use camel_torch_job::{AnswerJob, GenJob};
use camel_torch_worker::job::{Job, Task};
use camel_torch_worker::train::{self, Event};
use serde_json::json;
use tch::{Device, Kind, Tensor};

/// The libtorch lib dir the worker was linked against (and has an rpath to).
const LIBTORCH_LIB: &str = env!("CAMEL_LIBTORCH_LIB");
/// The version of that libtorch, read from the torch install at build time.
const TORCH_VERSION: &str = env!("CAMEL_TORCH_VERSION");

const USAGE: &str = "usage: camel-torch-worker <command>

commands:
  probe              print libtorch/device information as one JSON line and run a smoke check
  train JOB.json     run a pretrain/finetune job written by camel's training stages
  generate JOB.json  generate text for prompts (camel generate writes the job)
  answer JOB.json    answer instructions for camel's `answer` stage";

fn main() {
    camel_torch_worker::interrupt::install();
    std::panic::set_hook(Box::new(report_panic));
    if let Err(err) = run() {
        eprintln!("{}", error_line(format_args!("{err:#}")));
        let interrupted = err.downcast_ref::<camel_torch_worker::interrupt::Interrupted>().is_some();
        std::process::exit(if interrupted { camel_torch_worker::interrupt::EXIT_INTERRUPTED } else { 1 });
    }
}

/// A panic (a libtorch error through tch's panicking API, or a bug) ends the worker with an
/// error line like any other error, so the stage's error says what happened instead of only "exited
/// with status 101". libtorch's C++ backtrace is cut off the message; with `RUST_BACKTRACE` set the
/// Rust backtrace is printed first, so the error line stays the last thing on stderr.
fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        eprintln!("{}", std::backtrace::Backtrace::force_capture());
    }
    let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
    eprintln!("{}", error_line(format_args!("internal error{at}: {}", panic_text(&msg))));
}

/// The first line of a panic message, without libtorch's C++ backtrace (tch unwraps its error,
/// `Torch("…\nException raised from …")`, whose newlines are then written as `\n`).
fn panic_text(msg: &str) -> String {
    let msg = match msg.split_once("Torch(\"") {
        Some((_, rest)) => format!("libtorch: {rest}"),
        None => msg.to_string(),
    };
    let msg = msg.split("Exception raised from").next().unwrap_or(&msg);
    let first = msg.lines().next().unwrap_or("");
    first.trim_end().trim_end_matches("\\n").trim_end_matches("\")").replace("\\n", "; ")
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Fault injection for the tests: a libtorch error through tch's panicking API (an embedding
    // index out of range), to check that it reaches the stage's error.
    if std::env::var("CAMEL_WORKER_FAULT").as_deref() == Ok("panic") {
        let weight = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let _ = Tensor::embedding(&weight, &Tensor::from_slice(&[5i64]), -1, false, false);
    }
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["probe"] => probe(),
        ["train", job] => train(Path::new(job)),
        ["generate", job] => {
            let job = GenJob::from_file(Path::new(job))?;
            camel_torch_worker::generate::run_job(&job, &mut std::io::stdout().lock())
        }
        ["answer", job] => answer(Path::new(job)),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        ["-V" | "--version"] => {
            println!("camel-torch-worker {} (libtorch {TORCH_VERSION})", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        [] => bail!("no command given\n\n{USAGE}"),
        [other, ..] => bail!("unknown command or arguments starting at {other:?}\n\n{USAGE}"),
    }
}

fn train(job_path: &Path) -> Result<()> {
    let job = Job::from_file(job_path)?;
    if job.params.threads > 0 {
        tch::set_num_threads(job.params.threads as i32);
    }
    let mut report = |e: Event| match e {
        Event::Log(line) => eprintln!("{line}"),
        Event::Step { step, total, loss, tokens_per_s } => progress(Progress {
            pos: step,
            total: Some(total),
            unit: "steps".into(),
            message: Some(format!("loss {loss:.4} · {tokens_per_s:.0} tok/s")),
        }),
    };
    let summary = match job.task {
        Task::Pretrain => train::run_pretrain(&job, &mut report)?,
        Task::Finetune => camel_torch_worker::sft::run_finetune(&job, &mut report)?,
    };
    eprintln!("{}{}", summary.prefix, serde_json::to_string(&summary)?);
    Ok(())
}

fn answer(job_path: &Path) -> Result<()> {
    let job = AnswerJob::from_file(job_path)?;
    camel_torch_worker::answer::run(&job, &mut |done, total, tokens, secs| {
        let (rows_s, tok_s) =
            if secs > 0.0 { (done as f64 / secs, tokens as f64 / secs) } else { (0.0, 0.0) };
        progress(Progress {
            pos: done as u64,
            total: Some(total as u64),
            unit: "rows".into(),
            message: Some(format!("{rows_s:.2} rows/s · {tok_s:.0} tok/s")),
        })
    })
}

/// A progress line on stdout, flushed at once (camel moves the stage's bar as it reads it).
fn progress(p: Progress) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{p}");
    let _ = out.flush();
}

fn probe() -> Result<()> {
    let cuda_available = tch::Cuda::is_available();
    smoke_check(Device::Cpu).context("CPU smoke check failed")?;
    if cuda_available {
        smoke_check(Device::Cuda(0)).context("CUDA smoke check failed")?;
    }
    let info = json!({
        "torch_version": TORCH_VERSION,
        "cuda_available": cuda_available,
        "cuda_device_count": tch::Cuda::device_count(),
        "cudnn_available": tch::Cuda::cudnn_is_available(),
        "num_threads": tch::get_num_threads(),
        "libtorch_lib": LIBTORCH_LIB,
        "libtorch_loaded": loaded_libtorch_dir(),
        "smoke_ok": true,
    });
    println!("{info}");
    Ok(())
}

/// `[[1, 2], [3, 4]] @ [[1, 2], [3, 4]] == [[7, 10], [15, 22]]` on `device`.
fn smoke_check(device: Device) -> Result<()> {
    let a = Tensor::from_slice(&[1f32, 2., 3., 4.]).reshape([2, 2]).to_device(device);
    let product = a.matmul(&a).to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1]);
    let got = Vec::<f32>::try_from(&product).context("reading back the matmul result")?;
    ensure!(got == [7., 10., 15., 22.], "2x2 matmul on {device:?} gave {got:?}");
    Ok(())
}

/// Where the dynamic loader actually found libtorch (from /proc/self/maps), to
/// tell a stale rpath or an `LD_LIBRARY_PATH` override from the intended lib.
fn loaded_libtorch_dir() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        let (dir, file) = path.rsplit_once('/')?;
        (file == "libtorch_cpu.so").then(|| dir.to_string())
    })
}
