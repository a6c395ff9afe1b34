//! c10d from Rust: a process group (TCPStore rendezvous, then Gloo or NCCL) over the C++ shim in
//! src/dist.cpp, with the collectives data-parallel training uses. Tensors are passed in place as
//! tch's `at::Tensor*`; every collective waits with the group's timeout and returns C++ failures
//! (a peer gone, a timeout) as errors. All-gathers and reduce-scatters can also be started and
//! waited for later ([`Started`]): FSDP (src/fsdp.rs) runs them while it computes.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_longlong, c_void};
use std::time::Duration;

use anyhow::{Result, bail};
use tch::Tensor;

type T = *mut torch_sys::C_tensor;

unsafe extern "C" {
    fn camel_pg_new(
        backend: c_int,
        addr: *const c_char,
        port: c_int,
        server: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_longlong,
        device: c_int,
        err: *mut c_char,
        err_len: c_int,
    ) -> *mut c_void;
    fn camel_pg_free(g: *mut c_void);
    fn camel_pg_all_reduce(g: *mut c_void, t: T, op: c_int, err: *mut c_char, err_len: c_int) -> c_int;
    fn camel_pg_broadcast(g: *mut c_void, t: T, root: c_int, err: *mut c_char, err_len: c_int) -> c_int;
    fn camel_pg_all_gather(g: *mut c_void, out: T, input: T, err: *mut c_char, err_len: c_int) -> c_int;
    fn camel_pg_reduce_scatter(g: *mut c_void, out: T, input: T, err: *mut c_char, err_len: c_int) -> c_int;
    fn camel_pg_barrier(g: *mut c_void, err: *mut c_char, err_len: c_int) -> c_int;
    fn camel_pg_all_gather_start(
        g: *mut c_void,
        out: T,
        input: T,
        err: *mut c_char,
        err_len: c_int,
    ) -> *mut c_void;
    fn camel_pg_reduce_scatter_start(
        g: *mut c_void,
        out: T,
        input: T,
        err: *mut c_char,
        err_len: c_int,
    ) -> *mut c_void;
    fn camel_work_wait(g: *mut c_void, w: *mut c_void, err: *mut c_char, err_len: c_int) -> c_int;
    fn camel_work_free(w: *mut c_void);
    fn camel_has_nccl() -> c_int;
    fn camel_cuda_peak_bytes(device: c_int) -> c_longlong;
    fn camel_cuda_reset_peak(device: c_int);
    fn camel_cuda_mem_info(device: c_int, free: *mut c_longlong, total: *mut c_longlong) -> c_int;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// Whether this build has ProcessGroupNCCL (the venv's torch came with CUDA and NCCL headers).
pub fn has_nccl() -> bool {
    // SAFETY: no arguments, no state.
    unsafe { camel_has_nccl() != 0 }
}

/// Peak bytes the CUDA caching allocator has held on `device` (None without CUDA).
pub fn cuda_peak_bytes(device: usize) -> Option<u64> {
    // SAFETY: the shim catches every failure and returns -1.
    let v = unsafe { camel_cuda_peak_bytes(device as c_int) };
    (v >= 0).then_some(v as u64)
}

/// Free and total bytes of CUDA `device` as the driver reports them (None without CUDA).
pub fn cuda_mem_info(device: usize) -> Option<(u64, u64)> {
    let (mut free, mut total) = (0 as c_longlong, 0 as c_longlong);
    // SAFETY: the shim writes the two values or returns -1; it catches every failure.
    let ok = unsafe { camel_cuda_mem_info(device as c_int, &mut free, &mut total) } == 0;
    ok.then_some((free as u64, total as u64))
}

pub fn cuda_reset_peak(device: usize) {
    // SAFETY: as above.
    unsafe { camel_cuda_reset_peak(device as c_int) }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// Where the group meets and who this process is in it.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    pub addr: String,
    pub port: u16,
    pub rank: usize,
    pub world: usize,
    /// Whether this process serves the TCPStore (rank 0, unless torchrun's agent already does).
    pub serve_store: bool,
    pub timeout: Duration,
    /// NCCL: the CUDA device index this rank uses.
    pub cuda_device: Option<usize>,
}

/// A c10d process group: one Gloo or NCCL backend over a TCPStore.
pub struct ProcessGroup {
    raw: *mut c_void,
    pub rank: usize,
    pub world: usize,
    pub backend: Backend,
}

/// A collective that was started and not yet waited for ([`ProcessGroup::wait`]). It owns the
/// tensors the collective reads and writes, so they stay alive and unmoved until it is done:
/// Gloo's threads (or NCCL's stream) use them while the caller computes.
pub struct Started {
    raw: *mut c_void,
    what: &'static str,
    /// The output, then the input.
    tensors: [Tensor; 2],
}

impl Started {
    /// The collective's output tensor (read it only after the wait).
    pub fn output(&self) -> &Tensor {
        &self.tensors[0]
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: `raw` came from a `camel_pg_*_start` and is freed once. Gloo's work keeps its
        // own references to the tensors, so a collective dropped unwaited does not write into
        // freed memory. On NCCL the tensors could go back to the caching allocator while the
        // communication stream still uses them; only an error path drops a collective unwaited,
        // and the run ends with that error.
        unsafe { camel_work_free(self.raw) }
    }
}

const ERR_LEN: usize = 2048;

fn call(what: &str, f: impl FnOnce(*mut c_char, c_int) -> c_int) -> Result<()> {
    let mut err = vec![0 as c_char; ERR_LEN];
    if f(err.as_mut_ptr(), ERR_LEN as c_int) != 0 {
        // SAFETY: the shim NUL-terminates the message within the buffer.
        let msg = unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy().into_owned();
        bail!("{what} failed: {}", msg.trim());
    }
    Ok(())
}

fn ptr(t: &Tensor) -> T {
    t.as_ptr() as T
}

impl ProcessGroup {
    /// Joins the group: blocks until every rank has connected (or the timeout passes).
    pub fn new(rv: &Rendezvous, backend: Backend) -> Result<Self> {
        if backend == Backend::Nccl && !has_nccl() {
            bail!("the NCCL backend was asked for but this worker was built without NCCL support");
        }
        let addr = CString::new(rv.addr.as_str())?;
        let mut raw = std::ptr::null_mut();
        call(
            &format!(
                "joining the {} process group at {}:{} as rank {} of {}",
                backend.name(),
                rv.addr,
                rv.port,
                rv.rank,
                rv.world
            ),
            |err, len| {
                // SAFETY: `addr` outlives the call; the shim returns null on failure with `err` set.
                raw = unsafe {
                    camel_pg_new(
                        (backend == Backend::Nccl) as c_int,
                        addr.as_ptr(),
                        rv.port as c_int,
                        rv.serve_store as c_int,
                        rv.rank as c_int,
                        rv.world as c_int,
                        rv.timeout.as_millis() as c_longlong,
                        rv.cuda_device.map_or(-1, |d| d as c_int),
                        err,
                        len,
                    )
                };
                raw.is_null() as c_int
            },
        )?;
        Ok(ProcessGroup { raw, rank: rv.rank, world: rv.world, backend })
    }

    /// Reduces `t` in place across ranks.
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        let op = (op == ReduceOp::Max) as c_int;
        // SAFETY: `t` is a live tensor for the call; the shim does not keep it.
        call("all_reduce", |e, l| unsafe { camel_pg_all_reduce(self.raw, ptr(t), op, e, l) })
    }

    /// Overwrites `t` on every rank with rank `root`'s.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<()> {
        // SAFETY: as above.
        call("broadcast", |e, l| unsafe { camel_pg_broadcast(self.raw, ptr(t), root as c_int, e, l) })
    }

    /// `output` (contiguous, world × `input`'s numel) receives every rank's `input` in rank order.
    pub fn all_gather_into(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        // SAFETY: as above.
        call("all_gather_into_tensor", |e, l| unsafe {
            camel_pg_all_gather(self.raw, ptr(output), ptr(input), e, l)
        })
    }

    /// `output` receives the sum over ranks of this rank's chunk of `input` (world × its numel).
    pub fn reduce_scatter_into(&self, output: &Tensor, input: &Tensor) -> Result<()> {
        // SAFETY: as above.
        call("reduce_scatter_tensor", |e, l| unsafe {
            camel_pg_reduce_scatter(self.raw, ptr(output), ptr(input), e, l)
        })
    }

    /// Starts [`Self::all_gather_into`]: returns at once, the gather going on (on Gloo's threads,
    /// or NCCL's communication stream after the compute queued so far) until [`Self::wait`].
    pub fn all_gather_start(&self, output: Tensor, input: Tensor) -> Result<Started> {
        self.start("all_gather_into_tensor", [output, input], camel_pg_all_gather_start)
    }

    /// Starts [`Self::reduce_scatter_into`], as [`Self::all_gather_start`].
    pub fn reduce_scatter_start(&self, output: Tensor, input: Tensor) -> Result<Started> {
        self.start("reduce_scatter_tensor", [output, input], camel_pg_reduce_scatter_start)
    }

    fn start(
        &self,
        what: &'static str,
        tensors: [Tensor; 2],
        f: unsafe extern "C" fn(*mut c_void, T, T, *mut c_char, c_int) -> *mut c_void,
    ) -> Result<Started> {
        let mut raw = std::ptr::null_mut();
        call(what, |e, l| {
            // SAFETY: the tensors live in the returned `Started` until the collective is waited
            // for or dropped; the shim returns null on failure with `e` set.
            raw = unsafe { f(self.raw, ptr(&tensors[0]), ptr(&tensors[1]), e, l) };
            raw.is_null() as c_int
        })?;
        Ok(Started { raw, what, tensors })
    }

    /// Waits for a started collective (Gloo: blocks, with the group's timeout; NCCL: makes the
    /// compute stream wait) and hands back its output.
    pub fn wait(&self, started: Started) -> Result<Tensor> {
        // SAFETY: `started.raw` is a live handle of this group's.
        call(started.what, |e, l| unsafe { camel_work_wait(self.raw, started.raw, e, l) })?;
        Ok(started.tensors[0].shallow_clone())
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: as above.
        call("barrier", |e, l| unsafe { camel_pg_barrier(self.raw, e, l) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from camel_pg_new and is freed once.
        unsafe { camel_pg_free(self.raw) }
    }
}
