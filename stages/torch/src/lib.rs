//! The stage kinds that run in the libtorch worker process `camel-torch-worker` (`pretrain`,
//! `finetune`, `answer`), and everything about running it: finding the binary ([`worker`]),
//! starting and supervising it (one function, [`worker::Worker::run`]), and launching its ranks
//! for distributed training, locally or as one rank of a torchrun/Slurm launch ([`launch`]).
//!
//! The jobs and lines exchanged with the worker are the types of `camel-torch-job`, which the
//! worker compiles against too. This crate never links libtorch. The CLI reaches it through
//! [`cli`] only.

mod answer;
pub mod cli;
mod launch;
mod partial;
mod train;
pub mod worker;

pub use answer::{Answer, AnswerParams};
pub use train::{Finetune, Pretrain};

/// Registers the kinds of this crate.
pub fn register(r: &mut camel_engine::Registry) {
    r.register::<Answer>();
    r.register::<Pretrain>();
    r.register::<Finetune>();
}
