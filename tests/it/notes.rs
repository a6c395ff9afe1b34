//! `kind: notes` through the camel binary: parity with CAMEL's pandas preprocessing on `synth`
//! data, and bad inputs (exit 1, the file named, no note text, no cache entry).

use std::path::Path;
use std::process::Command;

use crate::common::{TestContext, project_root, shared_data, venv_python};

/// Runs the pandas reference with `args`; returns its stdout (one JSON object).
fn reference(py: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(py)
        .arg(project_root().join("tests/reference/notes_reference.py"))
        .args(args)
        .output()
        .expect("run the pandas reference");
    assert!(out.status.success(), "reference {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn stats(t: &TestContext) -> serde_json::Value {
    serde_json::from_str(&t.read(".camel/out/notes/stats.json")).unwrap()
}

#[test]
fn mimic3_matches_camels_pandas_code_and_drops_exactly_the_404_rows() {
    let (Some(py), Some(list)) = (venv_python(), shared_data("mimiciii_filter_index.txt")) else { return };
    let t = TestContext::new();
    t.write(
        "p.yaml",
        &format!(
            r#"
name: parity3
stages:
  synth:
    kind: synth
    inputs: {{cover_ids: {list}}}
    params: {{format: mimic3, notes: 1500, seed: 7}}
  notes:
    kind: notes
    inputs: {{noteevents: synth.notes, filter: {list}}}
    params:
      sources: [{{type: mimic3, notes: noteevents, exclude: {{ids: filter}}}}]
"#,
            list = list.display()
        ),
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let csv = t.path(".camel/out/synth/NOTEEVENTS.csv");
    let ref_out = t.path("ref.parquet");
    let r = reference(
        &py,
        &[
            "mimic3",
            "--notes",
            csv.to_str().unwrap(),
            "--filter",
            list.to_str().unwrap(),
            "--out",
            ref_out.to_str().unwrap(),
        ],
    );
    assert_eq!(r["rows_read"], 1500);
    assert_eq!(r["rows_written"], 1500 - 404);
    let corpus = t.path(".camel/out/notes/corpus.parquet");
    let c = reference(
        &py,
        &["compare", "--camel", corpus.to_str().unwrap(), "--reference", ref_out.to_str().unwrap()],
    );
    assert_eq!(c["identical"], true, "{c}");
    let s = stats(&t);
    let src = &s["sources"][0];
    assert_eq!(src["rows_read"], 1500);
    assert_eq!(src["dropped"]["excluded_id"], 404);
    assert_eq!(src["exclude"]["listed"], 404);
    assert_eq!(src["exclude"]["matched"], 404);
    assert_eq!(s["warnings"].as_array().unwrap().len(), 0);

    // A rerun is all cached; a param that does not change the output (threads) changes nothing.
    let r = t.camel(&["run", "p.yaml", "--set", "notes.threads=1"]);
    r.assert_ok();
    assert!(r.ran().is_empty(), "{}", r.stderr);
}

#[test]
fn mimic4_matches_camels_pandas_code() {
    let Some(py) = venv_python() else { return };
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: parity4
stages:
  synth:
    kind: synth
    params: {format: mimic4, notes: 400, seed: 3}
  notes:
    kind: notes
    inputs: {discharge: synth.discharge, radiology: synth.radiology}
    params:
      sources: [{type: mimic4, discharge: discharge, radiology: radiology}]
"#,
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let d = t.path(".camel/out/synth/discharge.csv");
    let r = t.path(".camel/out/synth/radiology.csv");
    let ref_out = t.path("ref.parquet");
    let out = reference(
        &py,
        &[
            "mimic4",
            "--discharge",
            d.to_str().unwrap(),
            "--radiology",
            r.to_str().unwrap(),
            "--out",
            ref_out.to_str().unwrap(),
        ],
    );
    assert_eq!(out["rows_written"], 400);
    let corpus = t.path(".camel/out/notes/corpus.parquet");
    let c = reference(
        &py,
        &["compare", "--camel", corpus.to_str().unwrap(), "--reference", ref_out.to_str().unwrap()],
    );
    assert_eq!(c["identical"], true, "{c}");
}

#[test]
fn every_source_and_option_on_synth_data() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: all
stages:
  m3:
    kind: synth
    params: {format: mimic3, notes: 300, seed: 1}
  m4:
    kind: synth
    params: {format: mimic4, notes: 60, seed: 1}
  i2:
    kind: synth
    params: {format: i2b2, notes: 20, seed: 1}
  notes:
    kind: notes
    inputs: {n3: m3.notes, d: m4.discharge, r: m4.radiology, idir: i2.notes, squad: i2.squad}
    params:
      sources:
        - {type: mimic3, notes: n3, deid: tags, iserror: drop, categories: [Discharge summary, Radiology]}
        - {type: mimic4, discharge: d, radiology: r, anon: tag}
        - {type: i2b2, notes: idir}
        - {type: i2b2, name: squad, notes: squad, limit: 5}
      marks: {unknown: 'tag:[PHI]'}
      drop: {empty: true, duplicates: true}
"#,
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let s = stats(&t);
    let names: Vec<&str> =
        s["sources"].as_array().unwrap().iter().map(|x| x["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mimic3", "mimic4", "i2b2", "squad"]);
    let m3 = &s["sources"][0];
    assert_eq!(m3["rows_read"], 300);
    assert!(m3["dropped"]["category"].as_u64().unwrap() > 0);
    let tags = m3["marks"]["tags"].as_object().unwrap();
    for tag in ["[Name]", "[Company]", "[LOC]", "[Reg#]", "[#]", "[YR]", "[MO]", "[DAY]"] {
        assert!(tags.contains_key(tag), "no {tag} in {tags:?}");
    }
    assert!(m3["marks"]["kept_date"].as_u64().unwrap() > 0);
    assert!(s["sources"][1]["anon_replaced"].as_u64().unwrap() > 0);
    assert_eq!(s["sources"][2]["rows_read"], 20, "one note per stem (.txt and .xml hold the same)");
    assert_eq!(s["sources"][3]["rows_read"], 5);
    // The i2b2 directory and the SQuAD JSON hold the same notes (neither has a prefix): the
    // SQuAD source's five are duplicates of the directory's first five.
    assert_eq!(s["sources"][3]["dropped"]["duplicate"], 5);
    assert_eq!(s["sources"][3]["rows_written"], 0);
}

/// A pipeline whose notes stage reads `file` as MIMIC-III.
fn bad_input(file_name: &str, content: Option<&[u8]>) -> (TestContext, crate::common::Run) {
    let t = TestContext::new();
    match content {
        Some(c) => {
            std::fs::write(t.path(file_name), c).unwrap();
        }
        None => std::fs::create_dir_all(t.path(file_name)).unwrap(),
    }
    t.write(
        "p.yaml",
        &format!(
            r#"
name: bad
stages:
  notes:
    kind: notes
    inputs: {{n: {file_name}}}
    params:
      sources: [{{type: mimic3, notes: n}}]
"#
        ),
    );
    let r = t.camel(&["run", "p.yaml"]);
    (t, r)
}

const HEADER: &str = "\"ROW_ID\",\"SUBJECT_ID\",\"HADM_ID\",\"CHARTDATE\",\"CHARTTIME\",\"STORETIME\",\"CATEGORY\",\"DESCRIPTION\",\"CGID\",\"ISERROR\",\"TEXT\"\n";
const ROW: &str = "1,2,,2151-01-01,,,\"Nursing\",\"Report\",,,\"SECRET first\nnote\"\n";

#[test]
fn bad_inputs_fail_with_the_file_named_and_leave_no_entry() {
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("missing.csv", Some(HEADER.replace(",\"TEXT\"", ",\"BODY\"").into_bytes()), "no column `TEXT`"),
        (
            "tabs.csv",
            Some(format!("{}{}", HEADER.replace(',', "\t"), ROW.replace(',', "\t")).into_bytes()),
            "wrong delimiter",
        ),
        (
            "latin1.csv",
            Some(
                [HEADER.as_bytes(), ROW.as_bytes(), b"2,2,,,,,\"Nursing\",\"R\",,,\"SECRET caf\xe9\"\n"]
                    .concat(),
            ),
            "not valid UTF-8",
        ),
        (
            "quote.csv",
            Some(format!("{HEADER}{ROW}2,2,,,,,\"Nursing\",\"R\",,,\"SECRET never closed\n").into_bytes()),
            "unterminated quote",
        ),
        ("empty.csv", Some(Vec::new()), "is empty"),
        ("adir.csv", None, "is a directory"),
    ];
    for (name, content, want) in cases {
        let (t, r) = bad_input(name, content.as_deref());
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        assert!(r.stderr.contains("stage `notes` failed"), "{name}: {}", r.stderr);
        assert!(r.stderr.contains(name), "{name}: the file is not named: {}", r.stderr);
        assert!(r.stderr.contains(want), "{name}: {}", r.stderr);
        let log = std::fs::read_to_string(t.path(".camel/logs/notes.log")).unwrap_or_default();
        assert!(!r.stderr.contains("SECRET") && !log.contains("SECRET"), "{name}: note text leaked");
        assert_eq!(t.cache_entries(), 0, "{name}: a cache entry was written");
        assert!(!t.path(".camel/out/notes").exists(), "{name}");
    }
}

#[test]
fn input_names_are_checked_before_anything_runs() {
    let t = TestContext::new();
    t.write("n.csv", &format!("{HEADER}{ROW}"));
    t.write(
        "p.yaml",
        r#"
name: names
stages:
  notes:
    kind: notes
    inputs: {note: n.csv}
    params:
      sources: [{type: mimic3, notes: notes}]
"#,
    );
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // At the param that names it (line 8), pointing at the input the stage has; the input is
    // not blamed as well, nor asked to take the param's name.
    assert!(
        flat(&r.stderr).contains("p.yaml:8:39: stage `notes`: `sources[0].notes` names input `notes`, which `inputs:` does not have"),
        "{}",
        r.stderr
    );
    assert!(flat(&r.stderr).contains("did you mean `note`? (the stage's inputs: `note`)"), "{}", r.stderr);
    assert!(!r.stderr.contains("unknown input") && !r.stderr.contains("requires it"), "{}", r.stderr);
    assert!(!t.path(".camel/cache").exists() || t.cache_entries() == 0);
    t.write("p.yaml", &t.read("p.yaml").replace("{note: n.csv}", "{notes: n.csv}"));
    t.camel(&["run", "p.yaml"]).assert_ok();
    assert_eq!(stats(&t)["total"]["rows_written"], 1);
}

/// Warnings reach the console in the run's summary: an id of the exclusion list the export does
/// not have (an id whose row the category filter dropped first is not one of them), and empty
/// notes kept in the corpus.
#[test]
fn warnings_are_repeated_in_the_run_summary() {
    let t = TestContext::new();
    t.write(
        "NOTEEVENTS.csv",
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT\n\
         1,7,,2151-07-16,,,Discharge summary,Report,,,kept\n\
         2,14,,2151-07-16,,,Discharge summary,Report,,,\"\"\n\
         3,21,,2151-07-16,,,Nursing,Report,,,dropped by category\n",
    );
    t.write("ids.txt", "3\n99\n");
    t.write(
        "p.yaml",
        r#"
name: warnings
stages:
  notes:
    kind: notes
    inputs: {n: NOTEEVENTS.csv, ids: ids.txt}
    params:
      sources: [{type: mimic3, notes: n, categories: [Discharge summary], exclude: {ids: ids}}]
"#,
    );
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    let summary = r.stderr.rsplit_once("stage  ").map(|(_, s)| s).unwrap_or_default();
    assert!(summary.contains("2 warnings:"), "{}", r.stderr);
    assert!(
        summary.contains("notes: 1 of the 2 ids in `ids` are not in source `mimic3` (first: 99)"),
        "{}",
        r.stderr
    );
    assert!(summary.contains("notes: 1 empty notes of source `mimic3` are in the corpus"), "{}", r.stderr);
    let s = stats(&t);
    assert_eq!(s["sources"][0]["exclude"]["dropped_earlier"], 1);
    assert!(t.read(".camel/logs/notes.log").contains("dropped first"));
}

/// `s` with its words joined by single spaces and miette's frame characters gone (its messages
/// wrap at the terminal's width).
fn flat(s: &str) -> String {
    s.split_whitespace().filter(|w| !matches!(*w, "│" | "·")).collect::<Vec<_>>().join(" ")
}

/// Issue: the first line of a file without a header, a row of notes, was shown as "the header
/// of export.csv has: `John Smith`, …" by run, status and dag. Line 1 is quoted only where one of
/// its fields is an expected column.
#[test]
fn a_missing_header_is_said_without_quoting_line_1() {
    let t = TestContext::new();
    t.write("export.csv", "John ZZMARKER,Radiology,normal chest\nJane Doe,Radiology,normal abdomen\n");
    t.write("export.tsv", "ZZMARKER\tJohn\tnormal chest film\n");
    t.write("NOTEEVENTS.csv", "1,7,,2151-07-16,,,Nursing,Report,,,ZZMARKER text\n");
    for (file, extra) in [("export.csv", ""), ("export.tsv", ", format: tsv")] {
        t.write(
            "p.yaml",
            &format!(
                r#"
name: noheader
stages:
  notes:
    kind: notes
    inputs: {{x: {file}}}
    params:
      sources: [{{type: table, notes: x, columns: {{text: NOTE_TEXT, id: NOTE_ID, category: NOTE_TYPE}}{extra}}}]
"#
            ),
        );
        for cmd in [&["run", "p.yaml"][..], &["status", "p.yaml"], &["dag", "p.yaml"]] {
            let r = t.camel(cmd);
            let all = format!("{}{}", r.stdout, r.stderr);
            assert_eq!(r.code, 2, "{file} {cmd:?}: {all}");
            assert!(
                !all.contains("ZZMARKER") && !all.contains("John"),
                "{file} {cmd:?}: line 1 quoted: {all}"
            );
            assert!(
                flat(&all).contains("none of them is an expected column: is the header missing?"),
                "{file} {cmd:?}: {all}"
            );
        }
    }
    // MIMIC-III's header is read when the stage runs.
    t.write(
        "p.yaml",
        "name: noheader\nstages:\n  notes:\n    kind: notes\n    inputs: {n: NOTEEVENTS.csv}\n    params:\n      sources: [{type: mimic3, notes: n}]\n",
    );
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(!r.stderr.contains("ZZMARKER"), "{}", r.stderr);
    assert!(r.stderr.contains("is the header missing?"), "{}", r.stderr);
    let log = std::fs::read_to_string(t.path(".camel/logs/notes.log")).unwrap_or_default();
    assert!(!log.contains("ZZMARKER"), "{log}");
}

/// A table's `columns:` against its CSV header before anything runs: a used column that appears
/// twice is ambiguous (an unused one, or an unnamed one, is fine), and a name that differs by
/// spaces or case is pointed at.
#[test]
fn table_columns_are_checked_against_the_header_at_plan_time() {
    let t = TestContext::new();
    let pipeline = |file: &str| {
        format!(
            "name: cols\nstages:\n  notes:\n    kind: notes\n    inputs: {{x: {file}}}\n    params:\n      sources: [{{type: table, notes: x, columns: {{text: NOTE_TEXT, id: NOTE_ID}}}}]\n"
        )
    };
    t.write("dup.csv", "NOTE_ID,NOTE_TEXT,NOTE_TEXT\n1,ZZMARKER a,ZZMARKER b\n");
    t.write("p.yaml", &pipeline("dup.csv"));
    let r = t.camel(&["status", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        flat(&r.stderr)
            .contains("column `NOTE_TEXT` appears 2 times in the header of dup.csv (columns 2, 3)"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("ZZMARKER"), "{}", r.stderr);
    t.write("ok.csv", "NOTE_ID,NOTE_TEXT,X,X,\n1,ZZMARKER a,,,\n");
    t.write("p.yaml", &pipeline("ok.csv"));
    t.camel(&["run", "p.yaml"]).assert_ok();
    t.write("sp.tsv", "NOTE_ID \tNOTE_TEXT\n1\tZZMARKER a\n");
    t.write("p.yaml", &pipeline("sp.tsv"));
    let r = t.camel(&["status", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(flat(&r.stderr).contains("column `NOTE_ID` is not in the header of sp.tsv"), "{}", r.stderr);
    assert!(
        flat(&r.stderr).contains("the header has `NOTE_ID `, with spaces around the name"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("ZZMARKER"), "{}", r.stderr);
}
