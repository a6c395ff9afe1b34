//! The `camel` command line. Everything happens in [`dispatch::main`]; see `camel --help`.

/// `print!` to stdout that ends the process quietly (exit 0) when stdout is a pipe whose reader
/// has gone (`camel schema | head -1`), instead of panicking as `print!` does.
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*)) };
}

/// [`out!`] with a newline, as `println!`.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

mod cli;
mod compare;
mod dispatch;
mod render;
mod reporter;

fn main() {
    std::process::exit(dispatch::main());
}

fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("failed printing to stdout: {e}");
    }
}
