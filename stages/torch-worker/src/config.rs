//! The model configuration (`config.json`): camel-torch-job's, so that the stages check it at
//! plan time with the worker's own checks.

pub use camel_torch_job::model_config::{ARCHITECTURES, ConfigError, LlamaConfig, RopeScaling};
