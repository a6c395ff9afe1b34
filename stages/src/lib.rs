//! The stage kinds camel ships. Each kind is one module implementing [`camel_engine::Stage`];
//! [`registry`] is the one table that names them. Adding a kind: a new module, one line here.

pub mod command;
pub mod process;
pub mod synth;
pub mod train;

use camel_engine::Registry;

/// Every kind a pipeline may use.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<command::Command>();
    r.register::<synth::Synth>();
    r.register::<train::Pretrain>();
    r.register::<train::Finetune>();
    r
}
