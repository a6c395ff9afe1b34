//! What a checkpoint's `generation_config.json` asks of decoding, as transformers' `generate`
//! reads it, for `camel generate` and the `answer` stage: camel-torch-job's
//! [`generation_config`](camel_torch_job::generation_config), the check the `answer` stage runs
//! when the pipeline is planned, applied to the dir the worker decodes with.

use std::path::Path;

use anyhow::{Context, Result};
use camel_torch_job::GenParams;
pub use camel_torch_job::generation_config::{read, resolve_with};

use crate::config::LlamaConfig;
use crate::hf_files::GENERATION_CONFIG;

/// `p` with the checkpoint's eos ids (unless `p` names its own) and pad id filled in from `dir`'s
/// `generation_config.json` (else `cfg`), as transformers' `generate` takes them; notes for the
/// log; an error for a setting transformers would apply that camel does not implement.
pub fn resolve(dir: &Path, cfg: &LlamaConfig, p: &GenParams) -> Result<(GenParams, Vec<String>)> {
    let file = read(dir)?;
    resolve_with(file.as_ref(), cfg, p)
        .with_context(|| format!("cannot decode as {} asks", dir.join(GENERATION_CONFIG).display()))
}
