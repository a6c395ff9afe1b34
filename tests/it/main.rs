//! camel's integration tests: one binary, modules by area. Each test runs the real `camel`
//! binary on pipelines in a temporary directory (see [`common::TestContext`]).

mod cli;
mod common;
mod demo;
mod docs;
mod engine;
mod eval;
mod full;
mod instructions;
mod invalid;
mod kinds;
mod launch;
mod linking;
mod notes;
mod slurm;
mod synth;
mod tokenize;
mod train;
