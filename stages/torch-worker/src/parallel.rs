//! Data parallelism over c10d (issue 8): which rank this process is (from torchrun's environment),
//! its device, its process group, and DDP's gradient averaging. The DDP step is src/replicated.rs,
//! FSDP's src/fsdp.rs.
//!
//! Environment, as torchrun sets it: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
//! `MASTER_PORT` (and `LOCAL_WORLD_SIZE`). Rank 0 serves the TCPStore on `MASTER_ADDR:MASTER_PORT`
//! unless torchrun's agent already does (`TORCHELASTIC_USE_AGENT_STORE=True`).

use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tch::{Device, Kind, Tensor};

use crate::device;
use crate::dist::{self, Backend, ProcessGroup, ReduceOp, Rendezvous};
use crate::job::{BackendChoice, Strategy, TrainParams};

/// Gradients are all-reduced in flat buckets of about this many bytes (torch DDP's default).
pub const BUCKET_BYTES: i64 = 25 * 1024 * 1024;

/// This process's place in a data-parallel group.
#[derive(Clone)]
pub struct Dist {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    /// `None`: plain single-process training.
    pub strategy: Option<Strategy>,
    pub pg: Option<Rc<ProcessGroup>>,
}

fn env_usize(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            Ok(Some(v.trim().parse().with_context(|| format!("{name}={v:?} is not a number"))?))
        }
        _ => Ok(None),
    }
}

impl Dist {
    pub const SINGLE: Dist = Dist { rank: 0, world: 1, local_rank: 0, strategy: None, pg: None };

    /// The group this process belongs to, from the job's `distributed` params and torchrun's
    /// environment, with the device the rank computes on. Joins the process group (blocking
    /// until every rank is there) when the job is distributed.
    pub fn from_env(p: &TrainParams) -> Result<(Dist, Device)> {
        let world = env_usize("WORLD_SIZE")?.unwrap_or(1);
        let Some(dp) = &p.distributed else {
            ensure!(
                world == 1,
                "WORLD_SIZE={world} but the job has no `distributed` params (strategy ddp or fsdp)"
            );
            return Ok((Dist::SINGLE, device::parse_device(&p.device)?));
        };
        let rank = env_usize("RANK")?.unwrap_or(0);
        let local_rank = env_usize("LOCAL_RANK")?.unwrap_or(rank);
        ensure!(world >= 1 && rank < world, "RANK={rank} is not below WORLD_SIZE={world}");
        let device = device::rank_device(&p.device, local_rank)?;
        let backend = match dp.backend {
            BackendChoice::Auto if device.is_cuda() => Backend::Nccl,
            BackendChoice::Auto | BackendChoice::Gloo => Backend::Gloo,
            BackendChoice::Nccl => {
                ensure!(device.is_cuda(), "backend nccl needs CUDA devices (the device is the CPU)");
                Backend::Nccl
            }
        };
        let addr = std::env::var("MASTER_ADDR").unwrap_or_else(|_| "127.0.0.1".into());
        let port = match env_usize("MASTER_PORT")? {
            Some(p) => u16::try_from(p).with_context(|| format!("MASTER_PORT={p} is not a port"))?,
            None if world == 1 => free_port()?,
            None => bail!("MASTER_PORT is not set (WORLD_SIZE={world})"),
        };
        let agent_store = std::env::var("TORCHELASTIC_USE_AGENT_STORE").is_ok_and(|v| v == "True");
        let rv = Rendezvous {
            addr,
            port,
            rank,
            world,
            serve_store: rank == 0 && !agent_store,
            timeout: Duration::from_secs(dp.timeout_s.max(1)),
            cuda_device: match device {
                Device::Cuda(i) => Some(i),
                _ => None,
            },
        };
        let pg = ProcessGroup::new(&rv, backend)?;
        Ok((Dist { rank, world, local_rank, strategy: Some(dp.strategy), pg: Some(Rc::new(pg)) }, device))
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }

    pub fn is_fsdp(&self) -> bool {
        self.strategy == Some(Strategy::Fsdp)
    }

    /// This rank's part of a global micro-batch (every `world`-th example from `rank`), so that a
    /// global batch is per-device batch × accumulation × world, as HF Trainer's.
    pub fn shard(&self, global: &[usize]) -> Vec<usize> {
        global.iter().skip(self.rank).step_by(self.world).copied().collect()
    }

    /// The `[rank N] ` prefix of this rank's log lines (empty for one process).
    pub fn prefix(&self) -> String {
        if self.pg.is_some() { format!("[rank {}] ", self.rank) } else { String::new() }
    }

    /// Makes every rank's parameters rank 0's.
    pub fn broadcast_parameters(&self, params: &[(String, Tensor)]) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        tch::no_grad(|| {
            for (name, p) in params {
                pg.broadcast(&p.detach(), 0).with_context(|| format!("broadcasting `{name}`"))?;
            }
            Ok(())
        })
    }

    /// Averages gradients across ranks (a no-op for one process): flat buckets of about
    /// [`BUCKET_BYTES`] in parameter order, each summed by one all-reduce and divided by world.
    pub fn reduce_gradients(&self, params: &[(String, Tensor)]) -> Result<()> {
        let Some(pg) = &self.pg else { return Ok(()) };
        if self.world == 1 {
            return Ok(());
        }
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(Tensor::defined).collect();
        tch::no_grad(|| {
            let mut start = 0;
            while start < grads.len() {
                let mut end = start;
                let mut bytes = 0i64;
                while end < grads.len() && (end == start || bytes < BUCKET_BYTES) {
                    bytes += (grads[end].numel() * grads[end].kind().elt_size_in_bytes()) as i64;
                    end += 1;
                }
                let bucket = &grads[start..end];
                let flat = Tensor::cat(&bucket.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
                pg.all_reduce(&flat, ReduceOp::Sum).context("all-reducing gradients")?;
                let flat = flat / self.world as f64;
                let mut off = 0;
                for g in bucket {
                    let n = g.numel() as i64;
                    g.shallow_clone().copy_(&flat.narrow(0, off, n).view_as(g));
                    off += n;
                }
                start = end;
            }
            Ok(())
        })
    }

    /// Sums numbers over ranks (losses, token counts), on `device` (NCCL needs CUDA tensors).
    pub fn sum(&self, values: &[f64], device: Device) -> Result<Vec<f64>> {
        let Some(pg) = &self.pg else { return Ok(values.to_vec()) };
        let t = Tensor::from_slice(values).to_kind(Kind::Double).to_device(device);
        pg.all_reduce(&t, ReduceOp::Sum).context("summing the step's loss across ranks")?;
        Ok(Vec::<f64>::try_from(&t.to_device(Device::Cpu))?)
    }

    pub fn barrier(&self) -> Result<()> {
        match &self.pg {
            Some(pg) => pg.barrier(),
            None => Ok(()),
        }
    }
}

/// A free TCP port on the loopback interface (for a world of 1 without MASTER_PORT).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Bytes this rank holds in training state: parameters, gradients and optimizer moments.
pub fn state_bytes(tensors: &[&Tensor]) -> u64 {
    tensors.iter().filter(|t| t.defined()).map(|t| (t.numel() * t.kind().elt_size_in_bytes()) as u64).sum()
}

/// Peak CUDA memory of the rank's device, if it is one.
pub fn cuda_peak(device: Device) -> Option<u64> {
    match device {
        Device::Cuda(i) => dist::cuda_peak_bytes(i),
        _ => None,
    }
}

/// Puts `[rank N]` in front of a distributed job's error, so the stage can tell whose it was.
pub fn rank_context(e: anyhow::Error, p: &TrainParams) -> anyhow::Error {
    if p.distributed.is_none() {
        return e;
    }
    let rank = std::env::var("RANK").unwrap_or_else(|_| "0".into());
    anyhow::anyhow!("[rank {rank}] {e:#}")
}

/// Fault injection for the tests: `CAMEL_WORKER_FAULT=R:S` makes rank R abort (as a `kill -9`
/// would end it: no cleanup, sockets closed by the kernel) in the middle of optimizer step S,
/// after its first micro-batch and before the step's collectives complete.
pub fn fault_point(dist: &Dist, step: u64) {
    let Ok(spec) = std::env::var("CAMEL_WORKER_FAULT") else { return };
    let Some((r, s)) = spec.split_once(':') else { return };
    if r.parse() == Ok(dist.rank) && s.parse() == Ok(step) {
        eprintln!("{}CAMEL_WORKER_FAULT: aborting in step {step}", dist.prefix());
        std::process::abort();
    }
}
