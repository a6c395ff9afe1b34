//! Says early and plainly when the prebuilt DuckDB library is missing, instead of a linker error
//! (`cannot find -lduckdb`) at the end of a long build.
//!
//! Without the `bundled` feature libduckdb-sys links `libduckdb.so` from `DUCKDB_LIB_DIR`, which
//! .cargo/config.toml points at `target/lib/camel/`; scripts/setup puts the pinned library there.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED").is_some() {
        println!("cargo:rustc-env=CAMEL_DUCKDB_BUILD=bundled");
        return;
    }
    println!("cargo:rustc-env=CAMEL_DUCKDB_BUILD=prebuilt");
    let how = "scripts/setup fetches DuckDB's official prebuilt library (pinned version and hash) into \
               target/lib/camel/; run it once, or compile DuckDB from source instead with \
               `--features camel-notes/bundled` (about 15 more minutes on 2 cores, once)";
    match std::env::var("DUCKDB_LIB_DIR") {
        Ok(dir) if Path::new(&dir).join("libduckdb.so").is_file() => {
            println!("cargo:rerun-if-changed={dir}/libduckdb.so");
        }
        Ok(dir) => panic!("{dir}/libduckdb.so does not exist: {how}"),
        Err(_) => panic!("DUCKDB_LIB_DIR is not set (.cargo/config.toml sets it): {how}"),
    }
}
