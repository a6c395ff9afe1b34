//! A temporary project for each test, and helpers to run camel in it and read what happened.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestContext {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stages the run executed (not cached), from the reporter's `✓ STAGE done` lines.
    pub fn ran(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("✓ "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    pub fn cached(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("· "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "camel failed:\n{}\n{}", self.stdout, self.stderr);
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The project's root (where Cargo.toml is).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project venv's Python (`scripts/setup` creates it), or `None` with a visible skip message.
pub fn venv_python() -> Option<PathBuf> {
    let p = project_root().join(".venv/bin/python");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} is absent (scripts/setup creates it)", p.display());
        None
    }
}

/// A file of the shared test data beside the project (`../shared/data/NAME`), absolute, or `None`
/// with a visible skip message where it is absent.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let p = project_root().join("../shared/data").join(name);
    if p.exists() {
        Some(std::fs::canonicalize(p).unwrap())
    } else {
        eprintln!("SKIP: {} is absent (shared test data)", p.display());
        None
    }
}

/// Copies a directory tree (plain files and directories).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

pub fn camel_bin() -> &'static str {
    env!("CARGO_BIN_EXE_camel")
}

impl TestContext {
    pub fn new() -> Self {
        TestContext { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(camel_bin());
        c.args(args).current_dir(self.dir.path()).env_remove("CAMEL_LOG").env("NO_COLOR", "1");
        c
    }

    pub fn camel(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run camel").into()
    }

    /// `camel status --json`, parsed.
    /// Entries in the workspace's cache (0 when there is no cache yet).
    pub fn cache_entries(&self) -> usize {
        std::fs::read_dir(self.path(".camel/cache")).map(|d| d.count()).unwrap_or(0)
    }

    pub fn status(&self, pipeline: &str) -> Vec<serde_json::Value> {
        let r = self.camel(&["status", pipeline, "--json"]);
        r.assert_ok();
        serde_json::from_str(&r.stdout).expect("status --json is JSON")
    }

    pub fn state_of(&self, pipeline: &str, stage: &str) -> (String, Vec<String>) {
        let st = self.status(pipeline);
        let s = st.iter().find(|s| s["stage"] == stage).unwrap_or_else(|| panic!("no stage {stage}"));
        let reasons =
            s["reasons"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
        (s["state"].as_str().unwrap().to_string(), reasons)
    }
}

/// Every file below `dir` (following the `out/` links) with its bytes, for comparing two runs.
pub fn snapshot_outputs(ws: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let out = ws.join("out");
    let mut stages: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()).collect();
    stages.sort();
    for s in stages {
        let name = s.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        collect(&s, &name, &mut files);
    }
    files
}

fn collect(p: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let meta = std::fs::metadata(p).unwrap();
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for e in entries {
            let name = e.file_name().unwrap().to_string_lossy().into_owned();
            collect(&e, &format!("{rel}/{name}"), out);
        }
    } else {
        out.push((rel.to_string(), std::fs::read(p).unwrap()));
    }
}
