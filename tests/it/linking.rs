//! The built `camel` starts with an empty environment: it finds DuckDB's shared library (the
//! prebuilt path) by its rpath, not through `LD_LIBRARY_PATH` (which cargo's test runner sets and
//! which would hide a missing rpath). The worker's libtorch has the same check in
//! stages/torch-worker/tests/probe.rs; scripts/test repeats both for an installed copy.

use std::process::Command;

use crate::common::camel_bin;

/// `readelf -d` lines of a binary, or `None` where readelf is not installed.
fn dynamic_section(binary: &str) -> Option<String> {
    let out = Command::new("readelf").args(["-d", "-W", binary]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn camel_starts_with_an_empty_environment() {
    let out = Command::new(camel_bin()).arg("--version").env_clear().output().expect("spawn camel");
    assert!(
        out.status.success(),
        "camel --version with no environment failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("camel "));
}

#[test]
fn libduckdb_is_found_relative_to_the_binary() {
    let Some(dynamic) = dynamic_section(camel_bin()) else {
        eprintln!("skipped: readelf is not installed");
        return;
    };
    if !dynamic.contains("libduckdb.so") {
        // The bundled fallback links DuckDB statically: nothing to find at run time.
        eprintln!("skipped: this build links DuckDB statically (--features camel-notes/bundled)");
        return;
    }
    let runpath = dynamic
        .lines()
        .find(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"))
        .unwrap_or_else(|| panic!("camel needs libduckdb.so but has no RUNPATH:\n{dynamic}"));
    assert!(runpath.contains("$ORIGIN/../lib/camel"), "{runpath}");
    let lib = std::path::Path::new(camel_bin()).parent().unwrap().join("../lib/camel/libduckdb.so");
    assert!(lib.is_file(), "{} is missing", lib.display());
}
