//! SIGUSR1: Slurm's notice that the job's time limit is near (`--signal=USR1@grace`) or that it
//! is being preempted. Training stops at the next step boundary that every rank agrees on, saves
//! a checkpoint there, and exits with [`EXIT_INTERRUPTED`]; the job is requeued and the next
//! attempt resumes from that checkpoint, ending at the same weights as an uninterrupted run.

use std::sync::atomic::{AtomicBool, Ordering};

/// The exit status of a run stopped by SIGUSR1 after saving a checkpoint (EX_TEMPFAIL), which
/// camel's Slurm job script turns into a requeue.
pub const EXIT_INTERRUPTED: i32 = 75;

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Catches SIGUSR1 from now on (its default action would kill the process mid-step).
pub fn install() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
}

/// Whether this process was asked to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// The error a training run (or an answer job) ends with when it stopped for SIGUSR1.
#[derive(Debug)]
pub struct Interrupted {
    /// The step of the checkpoint it saved (answer: the rows written).
    pub step: u64,
    /// What was saved: "a checkpoint at step" or "the answers to the first".
    pub saved: &'static str,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted by SIGUSR1 (time limit near, or preempted); saved {} {} to resume from",
            self.saved, self.step
        )
    }
}

impl std::error::Error for Interrupted {}
