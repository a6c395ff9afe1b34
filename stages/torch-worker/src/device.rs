//! Which device and dtype a job computes on, from its `device` and `dtype` params. One place for
//! the device strings (`auto`, `cpu`, `cuda`, `cuda:N`), shared by training, generation and the
//! ranks of a distributed run, so that they all accept and reject the same names.

use anyhow::{Result, bail, ensure};
use tch::{Device, Kind};

use crate::job::TrainParams;
use crate::model;

/// The device a single-process job asks for.
pub fn parse_device(s: &str) -> Result<Device> {
    Ok(match s {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => {
            ensure!(
                tch::Cuda::is_available(),
                "device `cuda` was asked for but libtorch sees no CUDA device"
            );
            Device::Cuda(0)
        }
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => {
                ensure!(
                    (n as i64) < tch::Cuda::device_count(),
                    "device {other} does not exist ({} CUDA devices)",
                    tch::Cuda::device_count()
                );
                Device::Cuda(n)
            }
            None => bail!("unknown device {other:?} (auto, cpu, cuda or cuda:N)"),
        },
    })
}

/// The device of one rank of a distributed job: the CPU, or the node's CUDA device
/// `local_rank` (torchrun's one process per GPU), whatever `cuda:N` the job names.
pub fn rank_device(s: &str, local_rank: usize) -> Result<Device> {
    Ok(match s {
        "cpu" => Device::Cpu,
        "auto" if !tch::Cuda::is_available() => Device::Cpu,
        _ => {
            ensure!(tch::Cuda::is_available(), "device `{s}` was asked for but libtorch sees no CUDA device");
            let n = tch::Cuda::device_count() as usize;
            ensure!(local_rank < n, "LOCAL_RANK={local_rank} but this node has {n} CUDA devices");
            Device::Cuda(local_rank)
        }
    })
}

/// The dtype the model computes in: `auto` is bf16 on CUDA and fp32 on the CPU.
pub fn compute_kind(p: &TrainParams, device: Device) -> Result<Kind> {
    if p.dtype == "auto" {
        return Ok(if device.is_cuda() { Kind::BFloat16 } else { Kind::Float });
    }
    model::kind_from_name(&p.dtype)
}
