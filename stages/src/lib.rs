//! The stage kinds camel ships. Each kind is one module implementing [`camel_engine::Stage`];
//! [`registry`] is the one table that names them. Adding a kind: a new module, one line here.

pub mod answer;
pub mod command;
pub mod process;
pub mod synth;
pub mod tokenize;
pub mod train;

// Kinds with heavy dependencies live in their own crates (DuckDB for `notes`, reqwest/tokio for
// `instructions`), so that edits elsewhere never rebuild them; libtorch lives in a separate process
// (`stages/torch-worker`), which `train` spawns.

use camel_engine::Registry;

/// Every kind a pipeline may use.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<answer::Answer>();
    r.register::<command::Command>();
    r.register::<camel_instructions::Instructions>();
    r.register::<camel_eval::Judge>();
    r.register::<camel_eval::Metrics>();
    r.register::<synth::Synth>();
    r.register::<camel_notes::Notes>();
    r.register::<camel_eval::Report>();
    r.register::<tokenize::Tokenize>();
    r.register::<train::Pretrain>();
    r.register::<train::Finetune>();
    r
}
