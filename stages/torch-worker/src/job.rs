//! The jobs the worker runs, as camel writes them: the types of `camel-torch-job`, which camel
//! compiles against too, re-exported under the names the worker has always used. The stage fills
//! in every default, so the worker reads the same values that went into the cache key; the
//! defaults only serve tests that build jobs by hand.

pub use camel_torch_job::{
    ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, BackendChoice, Checkpointing, DistParams, Job,
    LossNormalization, Strategy, Task, TrainParams,
};
