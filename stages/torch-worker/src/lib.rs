//! The libtorch side of camel: the LLaMA model, Hugging Face checkpoints, the training loop and
//! generation. The `camel-torch-worker` binary (src/main.rs) runs jobs that the `pretrain`,
//! `finetune` and `answer` stages of camel-torch hand it (the job types are camel-torch-job's); the
//! integration tests call this library directly and compare it with transformers.

pub mod answer;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod eval;
pub mod examples;
pub mod fsdp;
pub mod generate;
pub mod generation_config;
pub mod hf_files;
pub mod interrupt;
pub mod job;
pub mod memory;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod replicated;
pub mod resume;
pub mod schedule;
pub mod sft;
pub mod step;
pub mod train;
