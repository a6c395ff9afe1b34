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
    if let Err(err) = run() {
        eprintln!("{}", error_line(format_args!("{err:#}")));
        let interrupted = err.downcast_ref::<camel_torch_worker::interrupt::Interrupted>().is_some();
        std::process::exit(if interrupted { camel_torch_worker::interrupt::EXIT_INTERRUPTED } else { 1 });
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
