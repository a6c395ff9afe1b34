//! `cargo bench --workspace --bench notes`: the MIMIC-III path of the notes stage against
//! CAMEL's pandas preprocessing (tests/reference/notes_reference.py), in the same run, on the
//! same synthetic NOTEEVENTS.csv. Each side runs as its own child process, so that wall time and
//! peak resident memory (wait4's ru_maxrss) are measured the same way for both.
//!
//! - `NOTES_BENCH_MB` (default 1024): size of the generated NOTEEVENTS.csv.
//! - `NOTES_BENCH_CSV`: use this file instead of generating one.
//! - `NOTES_BENCH_DIR`: where the generated file and the outputs go (default: the system temp
//!   directory); the generated file is kept and reused by later runs.
//! - `NOTES_BENCH_RUNS` (default 2): runs of each side; the fastest wall time counts.
//! - `NOTES_BENCH_THREADS`: camel's threads (default: all cores).
//! - `NOTES_BENCH_MEMORY_LIMIT`: the stage's `memory_limit` (default: the stage's default).
//! - `NOTES_BENCH_COMPRESSION`: corpus.parquet's compression (default: the stage's default).
//!
//! The ROW_IDs cover CAMEL's filter list (`../shared/data/mimiciii_filter_index.txt`, or a
//! generated list of 404 ids where it is absent), so both sides drop the same 404 rows.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-camel") {
        child_camel(&args[2..]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let mb: u64 = std::env::var("NOTES_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(1024);
    let dir = std::env::var_os("NOTES_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("camel-notes-bench"));
    std::fs::create_dir_all(&dir).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let shared_ids = root.join("../shared/data/mimiciii_filter_index.txt");
    let ids_path = if shared_ids.exists() {
        shared_ids
    } else {
        let p = dir.join("filter_ids.txt");
        let ids: Vec<String> = (0..404u64).map(|i| (1000 + i * 37).to_string()).collect();
        std::fs::write(&p, ids.join("\n")).unwrap();
        eprintln!("note: {} is absent; using a generated list of 404 ids", shared_ids.display());
        p
    };
    let list: Vec<u64> = std::fs::read_to_string(&ids_path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let csv = match std::env::var_os("NOTES_BENCH_CSV") {
        Some(p) => PathBuf::from(p),
        None => {
            let p = dir.join(format!("NOTEEVENTS-{mb}MB.csv"));
            if !p.exists() {
                let t = Instant::now();
                let rows = generate(&p, mb << 20, &list);
                eprintln!("generated {} ({rows} rows) in {:.1}s", p.display(), t.elapsed().as_secs_f64());
            }
            p
        }
    };
    let size = std::fs::metadata(&csv).unwrap().len();
    println!("notes bench: NOTEEVENTS.csv {:.0} MB, filter list {} ids", size as f64 / 1e6, list.len());

    let out = dir.join("camel-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let exe = std::env::current_exe().unwrap();
    let runs: usize = std::env::var("NOTES_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(2).max(1);
    println!("each side runs {runs} times; the fastest wall time and the highest peak memory are reported");
    let camel =
        best(runs, || measure(Command::new(&exe).arg("--child-camel").arg(&csv).arg(&ids_path).arg(&out)));
    let corpus = std::fs::metadata(out.join("corpus.parquet")).map(|m| m.len()).unwrap_or(0);
    println!(
        "camel notes (DuckDB):  {:>7.2} s  peak {:>6.0} MB  (corpus.parquet {:.0} MB)",
        camel.0,
        camel.1,
        corpus as f64 / 1e6
    );

    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!("pandas reference: skipped ({} is absent; run scripts/setup)", python.display());
        return;
    }
    let ref_out = dir.join("reference-out.csv");
    let pandas = best(runs, || {
        measure(
            Command::new(&python)
                .arg(root.join("tests/reference/notes_reference.py"))
                .args(["mimic3", "--notes"])
                .arg(&csv)
                .arg("--filter")
                .arg(&ids_path)
                .arg("--out")
                .arg(&ref_out),
        )
    });
    let _ = std::fs::remove_file(&ref_out);
    println!("pandas (CAMEL's code): {:>7.2} s  peak {:>6.0} MB", pandas.0, pandas.1);
    println!(
        "camel is {:.1}x faster (goal >= 5x) and uses {:.2}x the peak memory (goal <= 0.5x)",
        pandas.0 / camel.0,
        camel.1 / pandas.1
    );
}

/// `runs` measurements: the fastest wall time (the least disturbed by other work on the machine)
/// and the highest peak memory.
fn best(runs: usize, mut f: impl FnMut() -> (f64, f64)) -> (f64, f64) {
    (0..runs).map(|_| f()).fold((f64::INFINITY, 0.0), |(w, m), (w2, m2)| (w.min(w2), m.max(m2)))
}

/// Runs `cmd` to completion; returns (wall seconds, peak RSS in MB). Panics if it fails.
// wait4 reaps the child itself (std's Child has no way to return its rusage).
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, f64) {
    let t = Instant::now();
    let child = cmd.spawn().expect("start the child");
    let mut status = 0i32;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid for writes.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = t.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed (status {status})");
    (wall, usage.ru_maxrss as f64 / 1024.0)
}

struct Quiet;

impl camel_notes::Env for Quiet {
    fn log(&self, _line: &str) {}
    fn rows(&self, _n: u64) {}
    fn message(&self, _m: &str) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// The notes stage, CAMEL's MIMIC-III semantics, in this (child) process.
fn child_camel(args: &[String]) {
    let (csv, ids, out) = (&args[0], &args[1], Path::new(&args[2]));
    let mut params = serde_json::json!({
        "sources": [{"type": "mimic3", "notes": "notes", "exclude": {"ids": "ids"}}],
    });
    if let Ok(t) = std::env::var("NOTES_BENCH_THREADS") {
        params["threads"] = serde_json::json!(t.parse::<u32>().unwrap());
    }
    if let Ok(m) = std::env::var("NOTES_BENCH_MEMORY_LIMIT") {
        params["memory_limit"] = serde_json::json!(m);
    }
    if let Ok(c) = std::env::var("NOTES_BENCH_COMPRESSION") {
        params["parquet"] = serde_json::json!({"compression": c});
    }
    let params: camel_notes::params::NotesParams = serde_json::from_value(params).unwrap();
    let inputs =
        BTreeMap::from([("notes".to_string(), PathBuf::from(csv)), ("ids".to_string(), PathBuf::from(ids))]);
    let scratch = out.join("../camel-scratch");
    let stats = camel_notes::build(&params, &inputs, out, &scratch, &Quiet).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "camel: {} rows read, {} written, {} dropped by the list",
        stats.total.rows_read, stats.total.rows_written, stats.total.dropped["excluded_id"]
    );
}

/// A MIMIC-III-shaped NOTEEVENTS.csv of about `bytes` bytes whose ROW_IDs include every id of
/// `cover`. Returns the number of rows.
fn generate(path: &Path, bytes: u64, cover: &[u64]) -> u64 {
    const CATEGORIES: &[(&str, &str, u64)] = &[
        ("Discharge summary", "Report", 25),
        ("Radiology", "CHEST (PORTABLE AP)", 20),
        ("Nursing/other", "Report", 15),
        ("Nursing", "Nursing Progress Note", 8),
        ("Physician ", "Physician Resident Progress Note", 8),
        ("ECG", "Report", 6),
        ("Echo", "Report", 4),
        ("Respiratory ", "Respiratory Care Shift Note", 4),
        ("Nutrition", "Nutrition", 5),
        ("Social Work", "Social Work Note", 5),
    ];
    const WORDS: &[&str] = &[
        "patient",
        "was",
        "admitted",
        "with",
        "acute",
        "on",
        "chronic",
        "systolic",
        "heart",
        "failure",
        "and",
        "treated",
        "furosemide",
        "mg",
        "IV",
        "BID",
        "the",
        "of",
        "to",
        "in",
        "for",
        "denies",
        "chest",
        "pain",
        "shortness",
        "breath",
        "creatinine",
        "improved",
        "from",
        "baseline",
        "lisinopril",
        "held",
        "metoprolol",
        "restarted",
        "prior",
        "discharge",
        "follow-up",
        "PCP",
        "weeks",
        "blood",
        "pressure",
        "120/80",
        "HR",
        "88",
        "O2",
        "sat",
        "98%",
        "RA",
        "lungs",
        "clear",
        "auscultation",
        "bilaterally",
        "abdomen",
        "soft",
        "non-tender",
        "extremities",
        "warm",
        "edema",
        "café-au-lait",
        "señor",
        "résumé",
        "x-ray",
        "showed",
        "no",
        "acute",
        "cardiopulmonary",
        "process",
        "pneumonia",
        "vancomycin",
        "cefepime",
        "cultures",
        "negative",
    ];
    const MARKS: &[&str] = &[
        "[**Known lastname 1234**]",
        "[**2151-7-16**]",
        "[**Hospital1 18**]",
        "[**First Name8 (NamePattern2) 123**]",
        "[**Telephone/Fax (1) 62**]",
    ];
    let mut rng = camel_rng::SplitMix64::new(0x5eed);
    let mut next = move || rng.next_u64();
    let mut cover: Vec<u64> = cover.to_vec();
    cover.sort_unstable();
    cover.dedup();
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    f.write_all(b"\"ROW_ID\",\"SUBJECT_ID\",\"HADM_ID\",\"CHARTDATE\",\"CHARTTIME\",\"STORETIME\",\"CATEGORY\",\"DESCRIPTION\",\"CGID\",\"ISERROR\",\"TEXT\"\n").unwrap();
    let mut written = 0u64;
    let mut rows = 0u64;
    let mut next_dense = 1u64;
    let mut ci = 0usize;
    let mut text = String::new();
    while written < bytes || ci < cover.len() {
        // ROW_IDs ascending: the cover ids, interleaved with the integers between them.
        let id = if ci < cover.len() && (cover[ci] <= next_dense || written >= bytes) {
            ci += 1;
            if cover[ci - 1] == next_dense {
                next_dense += 1;
            }
            cover[ci - 1]
        } else {
            next_dense += 1;
            next_dense - 1
        };
        let pick = next() % 100;
        let mut acc = 0;
        let (cat, desc, _) = *CATEGORIES
            .iter()
            .find(|c| {
                acc += c.2;
                pick < acc
            })
            .unwrap_or(&CATEGORIES[0]);
        let target =
            (if cat == "Discharge summary" { 4000 + next() % 10000 } else { 300 + next() % 3500 }) as usize;
        text.clear();
        while text.len() < target {
            let words = 6 + next() % 14;
            for w in 0..words {
                if w > 0 {
                    text.push(' ');
                }
                if next() % 40 == 0 {
                    text.push_str(MARKS[(next() % MARKS.len() as u64) as usize]);
                } else {
                    text.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                }
            }
            text.push_str(match next() % 8 {
                0 => ".\n\n",
                1 => ", \"quoted\".\n",
                2 => ";\n",
                _ => ". ",
            });
        }
        let line = format!(
            "{id},{},{},2151-07-16,,,\"{cat}\",\"{desc}\",,{},\"{}\"\n",
            10_000 + next() % 90_000,
            100_000 + next() % 99_999,
            if next() % 100 == 0 { "1" } else { "" },
            text.replace('"', "\"\"")
        );
        f.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        rows += 1;
    }
    f.flush().unwrap();
    rows
}
