//! camel's integration tests: one binary, modules by area. Each test runs the real `camel`
//! binary on pipelines in a temporary directory (see [`common::TestContext`]).

mod cli;
mod common;
mod engine;
mod invalid;
mod synth;
mod train;
