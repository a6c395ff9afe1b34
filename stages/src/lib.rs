//! The light stage kinds (`command`, `synth`, `tokenize`), and [`registry`], the one table that
//! names every kind camel ships, including those of the heavier crates. Adding a kind: a module
//! implementing [`camel_engine::Stage`], one line here.

pub mod command;
pub mod synth;
pub mod tokenize;

// Kinds with heavy dependencies live in their own crates (DuckDB for `notes`, reqwest/tokio for
// `instructions`), so that edits elsewhere never rebuild them. The kinds that run the libtorch
// worker process (`pretrain`, `finetune`, `answer`) are in camel-torch.

use camel_engine::Registry;

/// Every kind a pipeline may use.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<command::Command>();
    r.register::<camel_instructions::Instructions>();
    r.register::<camel_eval::Judge>();
    r.register::<camel_eval::Metrics>();
    r.register::<synth::Synth>();
    r.register::<camel_notes::Notes>();
    r.register::<camel_eval::Report>();
    r.register::<tokenize::Tokenize>();
    camel_torch::register(&mut r);
    r
}
