//! Link-time fixes that torch-sys cannot do for us, because `rustc-link-arg`
//! from a dependency's build script does not reach the final binary:
//!
//! * an rpath to the libtorch lib dir, so the worker runs without
//!   `LD_LIBRARY_PATH`;
//! * `libtorch_cuda.so` linked with `--no-as-needed`: nothing references its
//!   symbols directly (CUDA kernels register themselves from static
//!   initialisers), so with the default `--as-needed` the linker drops it and
//!   CUDA is silently unavailable on GPU machines.
//!
//! torch-sys (`links = "tch"`) exports the lib dir it linked against as
//! `cargo:libtorch_lib=...`, which cargo hands to direct dependents as
//! `DEP_TCH_LIBTORCH_LIB`.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report its libtorch lib dir \
             (build the worker through scripts/setup, which points torch-sys at the project venv)"
        );
    };
    let lib_dir = Path::new(&lib);
    println!("cargo:rustc-env=CAMEL_LIBTORCH_LIB={lib}");
    println!("cargo:rustc-env=CAMEL_TORCH_VERSION={}", torch_version(lib_dir));

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    compile_shim(lib_dir);
    if target_os == "linux" && lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// The small C++ piece tch lacks (the fused AdamW kernel), compiled against the torch headers
/// beside the lib dir with the same ABI flags torch-sys uses.
fn compile_shim(lib_dir: &Path) {
    println!("cargo:rerun-if-changed=src/fused_adamw.cpp");
    let include = lib_dir.parent().expect("libtorch lib dir has a parent").join("include");
    let abi = std::env::var("DEP_TCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/fused_adamw.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("camel_torch_shim");
}

/// The version of the libtorch we link against. libtorch has no runtime
/// version call; the Python package next to the lib dir (`torch/version.py`,
/// e.g. `__version__ = '2.11.0+cu130'`) or the C++ header records it.
fn torch_version(lib_dir: &Path) -> String {
    let Some(torch_dir) = lib_dir.parent() else { return "unknown".into() };
    let version_py = torch_dir.join("version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    if let Ok(text) = std::fs::read_to_string(&version_py) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let v = rest.trim_start_matches([' ', '=']).trim().trim_matches(['\'', '"']);
                if !v.is_empty() {
                    return v.to_string();
                }
            }
        }
    }
    // Fallback: the C++ header (`#define TORCH_VERSION_MAJOR 2` etc.).
    let header = torch_dir.join("include/torch/headeronly/version.h");
    if let Ok(text) = std::fs::read_to_string(&header) {
        let part =
            |name: &str| text.lines().find_map(|l| l.trim().strip_prefix(name)?.trim().parse::<u32>().ok());
        if let (Some(a), Some(b), Some(c)) = (
            part("#define TORCH_VERSION_MAJOR"),
            part("#define TORCH_VERSION_MINOR"),
            part("#define TORCH_VERSION_PATCH"),
        ) {
            return format!("{a}.{b}.{c}");
        }
    }
    "unknown".into()
}
