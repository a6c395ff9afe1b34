# Shared helpers for scripts/setup, scripts/demo, scripts/test and ./camel.
# Source it; do not run it. Callers set `set -euo pipefail` themselves.
#
# Layout (everything heavy lives outside the work tree):
#   $CAMEL_CACHE/venv-<hash>   Python venv for requirements.txt + this Python
#   $CAMEL_CACHE/target        cargo's target dir
#   ./.venv  -> $CAMEL_CACHE/venv-<hash>   (symlink, recreated when stale)
#   ./target -> $CAMEL_CACHE/target        (symlink)
#
# Environment knobs:
#   CAMEL_DEV_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/camel-dev)
#   CAMEL_PYTHON      interpreter used to create the venv (default python3)
#   CARGO_TARGET_DIR  if set, it is honoured and ./target is left alone

CAMEL_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd -P)"
CAMEL_CACHE="${CAMEL_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/camel-dev}"
CAMEL_T0="${CAMEL_T0:-$(date +%s)}"
export CAMEL_T0

# shellcheck disable=SC2034 # C_GREEN is used by scripts/test
if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
  C_BLUE=$'\e[1;34m' C_YELLOW=$'\e[1;33m' C_RED=$'\e[1;31m' C_GREEN=$'\e[1;32m' C_OFF=$'\e[0m'
else
  C_BLUE='' C_YELLOW='' C_RED='' C_GREEN='' C_OFF=''
fi

# Progress messages go to stderr, with seconds since the script started.
log() { printf '%s==>%s [%3ss] %s\n' "$C_BLUE" "$C_OFF" "$(($(date +%s) - CAMEL_T0))" "$*" >&2; }
warn() { printf '%swarning:%s %s\n' "$C_YELLOW" "$C_OFF" "$*" >&2; }
die() {
  printf '%serror:%s %s\n' "$C_RED" "$C_OFF" "$*" >&2
  exit 1
}

# Replace (or create) symlink $1 so that it points to $2, atomically.
# Refuses to clobber a real directory or file.
link_to() {
  local link="$1" dest="$2"
  if [[ -L "$link" ]]; then
    if [[ "$(readlink "$link")" == "$dest" ]]; then return 0; fi
  elif [[ -e "$link" ]]; then
    die "'$link' exists and is not a symlink; move it away (it should link to $dest)"
  fi
  ln -sfn "$dest" "$link.tmp.$$"
  mv -Tf "$link.tmp.$$" "$link"
  log "linked $(basename "$link") -> $dest"
}

# Absolute path of cargo's target dir; maintains ./target -> $CAMEL_CACHE/target.
ensure_target_dir() {
  if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    [[ "$CARGO_TARGET_DIR" == /* ]] || CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
    export CARGO_TARGET_DIR
    CAMEL_TARGET="$CARGO_TARGET_DIR"
    return 0
  fi
  local want="$CAMEL_CACHE/target"
  CAMEL_TARGET="$CAMEL_ROOT/target"
  if [[ -L "$CAMEL_TARGET" && "$(readlink "$CAMEL_TARGET")" == "$want" && -d "$want" ]]; then
    return 0
  fi
  mkdir -p "$want"
  if [[ -d "$CAMEL_TARGET" && ! -L "$CAMEL_TARGET" ]]; then
    # A plain `cargo build` before the first setup made a real ./target:
    # adopt it if the cache has none yet, otherwise drop it (build outputs only).
    if [[ -z "$(ls -A "$want")" ]]; then
      log "moving existing ./target to $want"
      rmdir "$want" && mv -T "$CAMEL_TARGET" "$want"
    else
      log "removing stale real ./target (the cache already has $want)"
      rm -rf "$CAMEL_TARGET"
    fi
  fi
  link_to "$CAMEL_TARGET" "$want"
}

require_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH. $2"
}

# Picks the interpreter and computes the venv path (sets CAMEL_PY, CAMEL_VENV).
venv_path() {
  CAMEL_PY="${CAMEL_PYTHON:-python3}"
  require_cmd "$CAMEL_PY" "Install Python >= 3.10 (e.g. apt-get install python3 python3-venv) or set CAMEL_PYTHON."
  local pyid
  pyid="$("$CAMEL_PY" -c 'import platform, sys
assert sys.version_info >= (3, 10), "Python >= 3.10 required, got " + platform.python_version()
print(platform.python_implementation(), platform.python_version(), platform.machine())')" ||
    die "$CAMEL_PY is unusable (need Python >= 3.10); set CAMEL_PYTHON to another interpreter"
  local hash
  hash="$({ cat "$CAMEL_ROOT/requirements.txt"; printf 'python: %s\n' "$pyid"; } | sha256sum | cut -c1-12)"
  CAMEL_VENV="$CAMEL_CACHE/venv-$hash"
  CAMEL_PYID="$pyid"
}

venv_ok() {
  [[ -f "$1/.camel-complete" ]] && "$1/bin/python" -c '' >/dev/null 2>&1
}

# `python -m venv` fails on Debian/Ubuntu without the python3-venv package.
make_venv() {
  local venv="$1" err
  if err="$("$CAMEL_PY" -m venv "$venv" 2>&1)"; then return 0; fi
  rm -rf "$venv"
  local mm
  mm="$("$CAMEL_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "'$CAMEL_PY -m venv' failed; installing python3-venv with apt-get"
    apt-get update -qq >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade "python$mm-venv" >&2 ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade python3-venv >&2 ||
      die "apt-get could not install python3-venv"
    "$CAMEL_PY" -m venv "$venv" || { rm -rf "$venv"; die "'$CAMEL_PY -m venv' still fails after installing python3-venv"; }
  else
    printf '%s\n' "$err" >&2
    die "'$CAMEL_PY -m venv' failed. On Debian/Ubuntu install the venv module: sudo apt-get install python$mm-venv (or python3-venv); or set CAMEL_PYTHON to a Python that has it."
  fi
}

# Creates $CAMEL_VENV if needed (serialised with a lock) and points ./.venv at it.
ensure_venv() {
  venv_path
  local venv="$CAMEL_VENV"
  if ! venv_ok "$venv"; then
    mkdir -p "$CAMEL_CACHE"
    local lockfd
    if command -v flock >/dev/null 2>&1; then
      exec {lockfd}>"$venv.lock"
      flock "$lockfd" || die "cannot lock $venv.lock"
    fi
    if ! venv_ok "$venv"; then # someone else may have built it meanwhile
      # Venvs are not relocatable: build in place; the marker is written last,
      # so a venv without it (interrupted, failed pip) is wiped and rebuilt.
      if [[ -e "$venv" ]]; then
        log "removing incomplete venv $venv"
        rm -rf "$venv"
      fi
      log "creating venv $venv ($CAMEL_PYID)"
      make_venv "$venv"
      log "pip install -r requirements.txt (torch is ~4.6 GB; first time takes a few minutes)"
      # --no-compile: no .pyc for the ~12,000 modules up front (CPU that the parallel build needs);
      # Python compiles what it imports, on first import.
      "$venv/bin/python" -m pip install --no-input --disable-pip-version-check --no-compile \
        -r "$CAMEL_ROOT/requirements.txt" >&2 || die "pip install failed (venv left incomplete at $venv; rerun to retry)"
      "$venv/bin/python" -m pip check >&2 ||
        die "the pins in requirements.txt are not mutually compatible (pip check above)"
      {
        printf 'python: %s\n' "$CAMEL_PYID"
        printf 'created: %s\n' "$(date -u +%FT%TZ)"
        printf -- '--- requirements.txt\n'
        cat "$CAMEL_ROOT/requirements.txt"
      } >"$venv/.camel-complete"
      log "venv ready"
      local other
      for other in "$CAMEL_CACHE"/venv-*/; do
        other="${other%/}"
        if [[ "$other" != "$venv" && -d "$other" ]]; then
          warn "older venv still in the cache (other checkouts may use it; else rm -rf it): $other"
        fi
      done
    fi
    if [[ -n "${lockfd:-}" ]]; then exec {lockfd}>&-; fi
  fi
  link_to "$CAMEL_ROOT/.venv" "$venv"
}

# The links .cargo/config.toml names, so that the scripts and a plain `cargo` in this checkout
# build with one environment (and so one set of fingerprints: nothing is compiled twice):
#   $venv/torch         -> the venv's torch package (LIBTORCH: libtorch's lib/ and include/)
#   $venv/gloo-include  -> gloo's headers (CAMEL_GLOO_INCLUDE)
# torch-sys is pointed at the files directly (LIBTORCH) rather than asking the venv's python
# (LIBTORCH_USE_PYTORCH), which needed the venv on PATH.
torch_build_env() {
  unset PYTHONHOME LIBTORCH_USE_PYTORCH
  local torch
  torch="$("$CAMEL_VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')" ||
    die "the venv's torch does not import ($CAMEL_VENV); remove the venv and rerun scripts/setup"
  link_to "$CAMEL_VENV/torch" "$torch"
  local own_gloo="${CAMEL_GLOO_INCLUDE:-}"
  ensure_gloo_headers
  link_to "$CAMEL_VENV/gloo-include" "$CAMEL_GLOO_INCLUDE"
  # Exported, it would differ from .cargo/config.toml's value and rebuild the worker's shim.
  if [[ -z "$own_gloo" ]]; then unset CAMEL_GLOO_INCLUDE; fi
  # Outside the checkout's target dir, the relative paths of .cargo/config.toml do not apply.
  if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then export DUCKDB_LIB_DIR="$CAMEL_TARGET/lib/camel"; fi
}

# The torch wheel ships c10d's headers but not gloo's, which ProcessGroupGloo.hpp
# includes; the worker's distributed shim (stages/torch-worker/src/dist.cpp)
# needs them at compile time only (the gloo code itself is inside libtorch_cpu).
# Debian's libgloo-dev has them: its .deb is downloaded (no root, nothing
# installed) and unpacked into $CAMEL_CACHE/gloo-<version>; build.rs reads the
# include dir from CAMEL_GLOO_INCLUDE.
ensure_gloo_headers() {
  if [[ -n "${CAMEL_GLOO_INCLUDE:-}" && -f "$CAMEL_GLOO_INCLUDE/gloo/config.h" ]]; then
    return
  fi
  local have
  for have in "$CAMEL_CACHE"/gloo-*/usr/include; do
    if [[ -f "$have/gloo/config.h" ]]; then
      export CAMEL_GLOO_INCLUDE="$have"
      return
    fi
  done
  command -v apt-get >/dev/null 2>&1 ||
    die "the gloo headers are missing and apt-get is not available to fetch them: install the headers of Debian/Ubuntu's libgloo-dev (gloo/config.h etc.) and set CAMEL_GLOO_INCLUDE to their include dir"
  log "fetching gloo headers (Debian package libgloo-dev) into $CAMEL_CACHE"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download libgloo-dev >&2) ||
    die "apt-get download libgloo-dev failed (run apt-get update, or install libgloo-dev's headers and set CAMEL_GLOO_INCLUDE)"
  local deb version
  deb=$(ls "$tmp"/libgloo-dev_*.deb)
  version=$(dpkg-deb -f "$deb" Version | tr '~:' '__')
  mkdir -p "$CAMEL_CACHE"
  rm -rf "$CAMEL_CACHE/gloo-$version.tmp"
  dpkg-deb -x "$deb" "$CAMEL_CACHE/gloo-$version.tmp" || die "failed to unpack $deb"
  rm -rf "$CAMEL_CACHE/gloo-$version"
  mv "$CAMEL_CACHE/gloo-$version.tmp" "$CAMEL_CACHE/gloo-$version"
  rm -rf "$tmp"
  [[ -f "$CAMEL_CACHE/gloo-$version/usr/include/gloo/config.h" ]] ||
    die "libgloo-dev $version has no usr/include/gloo/config.h"
  export CAMEL_GLOO_INCLUDE="$CAMEL_CACHE/gloo-$version/usr/include"
}

# DuckDB: the official prebuilt libduckdb.so from DuckDB's own Node bindings package on the npm
# registry (linux-x64, glibc; parquet, json, icu and core_functions built in), pinned by version
# and by the sha256 of the library. It must match the `duckdb` crate's version in
# stages/notes/Cargo.toml (=1.10506.0 is DuckDB 1.5.6). Where it cannot be had (no npm, another
# platform, a registry error, CAMEL_DUCKDB=bundled), the workspace is built with
# `--features camel-notes/bundled`, which compiles DuckDB's C++ (about 15 more minutes on 2 cores, once
# per dev cache). Sets CAMEL_CARGO_FEATURES for every cargo call of the scripts.
DUCKDB_NPM_PACKAGE="@duckdb/node-bindings-linux-x64"
DUCKDB_NPM_VERSION="1.5.6-r.1"
DUCKDB_SO_SHA256="3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633"
CAMEL_CARGO_FEATURES=()

duckdb_bundled() {
  warn "DuckDB: $1; compiling DuckDB from source instead (--features camel-notes/bundled: about 15 more minutes on 2 cores, once per dev cache)"
  CAMEL_CARGO_FEATURES=(--features camel-notes/bundled)
  CAMEL_DUCKDB_PATH="compiled from source ($1)"
}

ensure_duckdb() {
  local dir="$CAMEL_TARGET/lib/camel" so="$CAMEL_TARGET/lib/camel/libduckdb.so"
  if [[ "${CAMEL_DUCKDB:-prebuilt}" == bundled ]]; then
    duckdb_bundled "CAMEL_DUCKDB=bundled"
    return
  fi
  if [[ -f "$so" ]] && [[ "$(sha256sum "$so" | cut -d' ' -f1)" == "$DUCKDB_SO_SHA256" ]]; then
    CAMEL_DUCKDB_PATH="prebuilt $DUCKDB_NPM_VERSION (cached)"
    return
  fi
  # (Not `ldd --version | grep -q`: grep's early exit makes ldd die of SIGPIPE, and pipefail
  # turns that into a failed check.)
  local libc
  libc="$(ldd --version 2>&1 || true)"
  if [[ "$(uname -s)/$(uname -m)" != Linux/x86_64 || ! "${libc,,}" =~ glibc|"gnu libc" ]]; then
    duckdb_bundled "no prebuilt library for $(uname -s)/$(uname -m) (only Linux x86-64 with glibc)"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    duckdb_bundled "npm not found, so the prebuilt library ($DUCKDB_NPM_PACKAGE) cannot be fetched (apt-get install npm for the fast path)"
    return
  fi
  log "DuckDB: fetching the prebuilt library ($DUCKDB_NPM_PACKAGE@$DUCKDB_NPM_VERSION, 24 MB, npm)"
  local tmp got
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && timeout 300 npm pack --silent "$DUCKDB_NPM_PACKAGE@$DUCKDB_NPM_VERSION" >/dev/null 2>"$tmp/err" &&
    tar -xzf ./*.tgz package/libduckdb.so); then
    duckdb_bundled "npm pack $DUCKDB_NPM_PACKAGE@$DUCKDB_NPM_VERSION failed: $(tail -n 1 "$tmp/err" 2>/dev/null)"
    rm -rf "$tmp"
    return
  fi
  got="$(sha256sum "$tmp/package/libduckdb.so" | cut -d' ' -f1)"
  if [[ "$got" != "$DUCKDB_SO_SHA256" ]]; then
    rm -rf "$tmp"
    duckdb_bundled "the fetched libduckdb.so has sha256 $got, not the pinned $DUCKDB_SO_SHA256"
    return
  fi
  mkdir -p "$dir"
  mv -f "$tmp/package/libduckdb.so" "$so.tmp.$$" && mv -f "$so.tmp.$$" "$so"
  rm -rf "$tmp"
  CAMEL_DUCKDB_PATH="prebuilt $DUCKDB_NPM_VERSION (fetched)"
}

ensure_toolchain() {
  require_cmd cargo "Install Rust (https://rustup.rs)."
  if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
    die "no C++ compiler found (the torch worker compiles libtorch bindings). On Debian: apt-get install g++"
  fi
}

# The file whose mtime says when this checkout last built (one per checkout: checkouts sharing
# the cached target dir must not trust each other's builds).
launcher_stamp() {
  printf '%s/release/.camel-launcher-stamp-%s' "$CAMEL_TARGET" "$(printf '%s' "$CAMEL_ROOT" | cksum | cut -d' ' -f1)"
}

# The one build every script and the launcher run (same command, features and environment, so
# nothing is compiled twice): the whole workspace, the torch worker included, in release.
camel_build() {
  cargo build --release --workspace ${CAMEL_CARGO_FEATURES[@]+"${CAMEL_CARGO_FEATURES[@]}"} "$@"
}

# Everything scripts/setup does: DuckDB, venv, target link, release build of the whole workspace
# (default members + the torch worker). Prints each phase with its time. On a first run the venv
# (mostly torch's download) is made in the background while everything but the torch worker
# builds (the same feature sets: see the pins in ./Cargo.toml), then the worker builds.
camel_setup() {
  cd "$CAMEL_ROOT" || die "cannot cd to $CAMEL_ROOT"
  local t0 td tv tb
  t0=$(date +%s)
  ensure_toolchain
  ensure_target_dir
  ensure_duckdb
  td=$(date +%s)
  log "DuckDB: $CAMEL_DUCKDB_PATH"
  # The launcher's stamp (./camel): its mtime is the build's start, so edits made during the build
  # count; it holds the binary's mtime after the build, so a binary replaced since is noticed.
  # (A file touched now keeps the start to the nanosecond: a whole-second start would count files
  # written earlier in that same second, e.g. by `git clone … && scripts/demo`, as edits.)
  local stamp
  stamp="$(launcher_stamp)"
  mkdir -p "$(dirname "$stamp")"
  touch "$stamp.started"
  venv_path
  if ! venv_ok "$CAMEL_VENV"; then
    mkdir -p "$CAMEL_CACHE"
    local vlog="$CAMEL_CACHE/venv-setup.log" vpid
    log "venv: creating $CAMEL_VENV in the background (torch is ~4.6 GB; pip's output: $vlog)"
    (ensure_venv) >"$vlog" 2>&1 &
    vpid=$!
    # cargo's output goes to a log (a progress line every 30 s here instead), in a process group of
    # its own (setsid) so that cargo and its rustc processes can be stopped together.
    local cpid blog="$CAMEL_CACHE/build-first.log" last n
    log "meanwhile: cargo build --release --workspace --exclude camel-torch-worker ${CAMEL_CARGO_FEATURES[*]+"${CAMEL_CARGO_FEATURES[*]}"} (output: $blog)"
    setsid cargo build --release --workspace ${CAMEL_CARGO_FEATURES[@]+"${CAMEL_CARGO_FEATURES[@]}"} \
      --exclude camel-torch-worker >"$blog" 2>&1 &
    cpid=$!
    # shellcheck disable=SC2064 # the pids are meant to be expanded now
    trap "kill -INT -- -$cpid 2>/dev/null; kill $vpid 2>/dev/null; exit 130" INT TERM
    last=$(date +%s)
    while kill -0 "$cpid" 2>/dev/null && kill -0 "$vpid" 2>/dev/null; do
      sleep 1
      if (($(date +%s) - last >= 30)); then
        last=$(date +%s)
        n=$(grep -c '^ *Compiling ' "$blog" || true)
        log "building ($n crates compiled so far) while the venv is being made"
      fi
    done
    if ! kill -0 "$vpid" 2>/dev/null; then
      if ! wait "$vpid"; then
        kill -INT -- "-$cpid" 2>/dev/null || true
        wait "$cpid" 2>/dev/null || true
        trap - INT TERM
        tail -n 30 "$vlog" >&2
        die "creating the venv failed (whole log: $vlog)"
      fi
      log "venv ready"
      if kill -0 "$cpid" 2>/dev/null; then
        # The worker's chain (torch-sys's C++ bindings, tch, the worker) needs the venv's libtorch
        # and would otherwise wait for everything else: stop this build (what it finished is kept;
        # only the crates being compiled this second start over) and build the whole workspace.
        log "stopping that build, so that the libtorch bindings compile alongside the rest"
        kill -INT -- "-$cpid" 2>/dev/null || true
        wait "$cpid" 2>/dev/null || true
      fi
    else
      if ! wait "$cpid"; then
        kill "$vpid" 2>/dev/null || true
        wait "$vpid" 2>/dev/null || true
        trap - INT TERM
        tail -n 40 "$blog" >&2
        die "cargo build failed (whole log: $blog)"
      fi
      log "built all but the torch worker; waiting for the venv"
      if ! wait "$vpid"; then
        trap - INT TERM
        tail -n 30 "$vlog" >&2
        die "creating the venv failed (whole log: $vlog)"
      fi
      log "venv ready"
    fi
    trap - INT TERM
  fi
  ensure_venv
  torch_build_env
  tv=$(date +%s)
  log "cargo build --release --workspace ${CAMEL_CARGO_FEATURES[*]+"${CAMEL_CARGO_FEATURES[*]}"}"
  camel_build || die "cargo build failed"
  stat -c %Y "$CAMEL_TARGET/release/camel" >"$stamp.new"
  touch -r "$stamp.started" "$stamp.new"
  mv -f "$stamp.new" "$stamp"
  rm -f "$stamp.started"
  tb=$(date +%s)
  log "setup done in $((tb - t0))s: DuckDB $((td - t0))s ($CAMEL_DUCKDB_PATH), venv and build $((tb - td))s"
}
