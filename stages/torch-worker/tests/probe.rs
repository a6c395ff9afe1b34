//! Runs the built worker binary the way the engine will: as a subprocess, with
//! no `LD_LIBRARY_PATH` (cargo's test runner sets one that would hide a missing
//! rpath), and checks how it was linked.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const WORKER: &str = env!("CARGO_BIN_EXE_camel-torch-worker");
const LIBTORCH_LIB: &str = env!("CAMEL_LIBTORCH_LIB");

fn canonical(p: impl AsRef<Path>) -> PathBuf {
    let p = p.as_ref();
    p.canonicalize().unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

fn probe(cmd: &mut Command) -> Value {
    let out = cmd.arg("probe").output().expect("spawn camel-torch-worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "probe failed with {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "probe must print exactly one line, got {stdout:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("probe output is not JSON ({e}): {stdout}"))
}

#[test]
fn probe_runs_with_a_clean_environment() {
    let info = probe(Command::new(WORKER).env_clear());

    let version = info["torch_version"].as_str().expect("torch_version is a string");
    assert!(version.starts_with("2.11"), "unexpected torch version {version:?}");
    assert_eq!(info["smoke_ok"], Value::Bool(true));
    let cuda = info["cuda_available"].as_bool().expect("cuda_available is a bool");
    let count = info["cuda_device_count"].as_i64().expect("cuda_device_count is an integer");
    assert!(count >= 0 && (cuda == (count > 0)), "cuda_available={cuda} but cuda_device_count={count}");
    info["cudnn_available"].as_bool().expect("cudnn_available is a bool");
    assert!(info["num_threads"].as_i64().expect("num_threads is an integer") >= 1);

    // The rpath, not the environment, found libtorch: the loaded copy is the
    // one we linked against.
    let linked = info["libtorch_lib"].as_str().expect("libtorch_lib is a string");
    assert_eq!(linked, LIBTORCH_LIB);
    let loaded = info["libtorch_loaded"].as_str().expect("libtorch_loaded is reported on Linux");
    assert_eq!(canonical(loaded), canonical(linked));
}

#[test]
fn probe_ignores_cargo_ld_library_path() {
    let info = probe(Command::new(WORKER).env_remove("LD_LIBRARY_PATH"));
    assert!(info["torch_version"].as_str().unwrap_or_default().starts_with("2.11"), "{info}");
}

#[test]
fn unknown_command_fails_with_usage() {
    let out = Command::new(WORKER).arg("frobnicate").output().expect("spawn camel-torch-worker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("usage: camel-torch-worker"), "{stderr}");
}

/// `readelf -d` entries of the worker binary as (tag, value) pairs, or `None`
/// when readelf is not installed.
fn dynamic_section(binary: &str) -> Option<Vec<(String, String)>> {
    let out = match Command::new("readelf").args(["-d", "-W", binary]).output() {
        Ok(out) => out,
        Err(e) => {
            println!("skipping: cannot run readelf ({e})");
            return None;
        }
    };
    assert!(out.status.success(), "readelf failed: {}", String::from_utf8_lossy(&out.stderr));
    // Lines look like: ` 0x0000000000000001 (NEEDED)  Shared library: [libtorch_cuda.so]`
    let entries = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once('(')?;
            let (tag, rest) = rest.split_once(')')?;
            let value = rest.split_once('[').and_then(|(_, v)| v.rsplit_once(']')).map(|(v, _)| v);
            Some((tag.to_string(), value.unwrap_or(rest.trim()).to_string()))
        })
        .collect();
    Some(entries)
}

#[cfg(target_os = "linux")]
#[test]
fn binary_links_torch_cuda_and_has_an_rpath_to_libtorch() {
    let Some(entries) = dynamic_section(WORKER) else { return };
    let values = |tag: &str| -> Vec<&str> {
        entries.iter().filter(|(t, _)| t == tag).map(|(_, v)| v.as_str()).collect()
    };
    let needed = values("NEEDED");
    assert!(needed.contains(&"libtorch_cpu.so"), "NEEDED: {needed:?}");

    let search: Vec<&str> =
        values("RUNPATH").into_iter().chain(values("RPATH")).flat_map(|v| v.split(':')).collect();
    assert!(search.contains(&LIBTORCH_LIB), "RUNPATH/RPATH {search:?} lacks {LIBTORCH_LIB}");

    if Path::new(LIBTORCH_LIB).join("libtorch_cuda.so").exists() {
        assert!(
            needed.contains(&"libtorch_cuda.so"),
            "libtorch_cuda.so exists in {LIBTORCH_LIB} but the linker dropped it; NEEDED: {needed:?}"
        );
    } else {
        println!("CPU-only libtorch in {LIBTORCH_LIB}: not expecting libtorch_cuda.so");
    }
}

/// A panic (here a libtorch error through tch's panicking API) ends the worker with an error line,
/// the last on stderr, which the stage's error is made of: libtorch's message without its C++
/// backtrace.
#[test]
fn a_panic_ends_with_an_error_line_carrying_its_message() {
    let out =
        Command::new(WORKER).env_clear().env("CAMEL_WORKER_FAULT", "panic").arg("probe").output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        last.starts_with("camel-torch-worker: error: internal error at ")
            && last.contains("index out of range"),
        "{stderr}"
    );
    assert!(!stderr.contains("Exception raised from"), "{stderr}");
}
