//! The `camel` command line. Everything happens in [`dispatch::main`]; see `camel --help`.

mod cli;
mod compare;
mod dispatch;
mod render;
mod reporter;

fn main() {
    std::process::exit(dispatch::main());
}
