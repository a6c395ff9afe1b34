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
    // torch-sys reports the dir it was pointed at (through the checkout's `.venv/torch` link, see
    // .cargo/config.toml); the rpath names the real directory, so an installed worker keeps
    // finding libtorch wherever the checkout is.
    let lib = std::fs::canonicalize(&lib)
        .unwrap_or_else(|e| panic!("libtorch lib dir {lib}: {e} (scripts/setup makes the venv)"))
        .to_string_lossy()
        .into_owned();
    println!("cargo:rerun-if-changed={lib}");
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

/// The C++ pieces tch lacks, compiled against the torch headers beside the lib dir with the same
/// ABI flags torch-sys uses: the fused AdamW kernel and the c10d shim (TCPStore, Gloo, and NCCL
/// where the venv has the CUDA and NCCL headers; elsewhere a stand-in that reports NCCL missing).
/// Gloo's own headers are not in the wheel: scripts/setup fetches Debian's libgloo-dev headers
/// and links them as .venv/gloo-include, which .cargo/config.toml passes as CAMEL_GLOO_INCLUDE.
fn compile_shim(lib_dir: &Path) {
    println!("cargo:rerun-if-changed=src/cuda_compat/nv/target");
    for f in ["src/fused_adamw.cpp", "src/dist.cpp", "src/dist_cuda.cpp", "src/dist_nocuda.cpp"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=CAMEL_GLOO_INCLUDE");
    let include = lib_dir.parent().expect("libtorch lib dir has a parent").join("include");
    let gloo = match std::env::var("CAMEL_GLOO_INCLUDE") {
        Ok(dir) if Path::new(&dir).join("gloo/config.h").is_file() => dir,
        Ok(dir) => {
            panic!("CAMEL_GLOO_INCLUDE={dir} has no gloo/config.h (scripts/setup fetches the headers)")
        }
        Err(_) => panic!(
            "CAMEL_GLOO_INCLUDE is not set: the c10d shim needs gloo's headers, which the torch wheel \
             lacks; .cargo/config.toml sets it to .venv/gloo-include, which scripts/setup makes (it \
             fetches Debian's libgloo-dev headers)"
        ),
    };
    // The venv's nvidia-* wheels: site-packages/nvidia/{cu13,cuda_runtime}/include, nvidia/nccl/include.
    let site = lib_dir.parent().and_then(Path::parent);
    let find = |subdirs: &[&str], header: &str| {
        let site = site?;
        subdirs.iter().map(|d| site.join("nvidia").join(d).join("include")).find(|d| d.join(header).is_file())
    };
    let cuda_inc = find(&["cu13", "cuda_runtime", "cu12"], "cuda_runtime_api.h");
    let nccl_inc = find(&["nccl"], "nccl.h");
    // The CUDA 13 runtime wheel leaves out the compiler-internal `crt/` headers that
    // cuda_runtime.h includes (host_config.h, host_defines.h: macros for the host compiler);
    // triton's bundled CUDA headers have them.
    let crt_inc = cuda_inc.as_ref().and_then(|inc| {
        if inc.join("crt/host_config.h").is_file() {
            return Some(inc.clone());
        }
        let triton = site?.join("triton/backends/nvidia/include");
        triton.join("crt/host_config.h").is_file().then_some(triton)
    });
    let nccl = cuda_inc.is_some()
        && nccl_inc.is_some()
        && crt_inc.is_some()
        && lib_dir.join("libtorch_cuda.so").exists();
    if !nccl && lib_dir.join("libtorch_cuda.so").exists() {
        println!(
            "cargo:warning=libtorch has CUDA but the venv lacks the CUDA runtime, crt or NCCL headers: \
             building the distributed shim without NCCL"
        );
    }
    let abi = std::env::var("DEP_TCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("src/fused_adamw.cpp")
        .file("src/dist.cpp")
        .file(if nccl { "src/dist_cuda.cpp" } else { "src/dist_nocuda.cpp" })
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .flag("-DUSE_DISTRIBUTED")
        .flag("-DUSE_C10D_GLOO")
        .warnings(false);
    if nccl {
        build.flag("-DUSE_C10D_NCCL").flag("-DUSE_CUDA");
        for dir in [cuda_inc.as_ref(), nccl_inc.as_ref(), crt_inc.as_ref()].into_iter().flatten() {
            build.include(dir);
        }
        // Last: a host-only <nv/target> for wheels without CCCL's headers.
        build.include("src/cuda_compat");
    }
    build.compile("camel_torch_shim");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if nccl {
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    println!("cargo:rustc-check-cfg=cfg(camel_nccl)");
    if nccl {
        println!("cargo:rustc-cfg=camel_nccl");
    }
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
