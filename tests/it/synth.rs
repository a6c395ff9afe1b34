//! `kind: synth` through the camel binary, with the files cross-checked by Python's standard
//! library (`csv`, `json`, `xml.etree`): what reads them later must read them the same way.

use std::path::Path;
use std::process::Command;

use crate::common::{TestContext, shared_data, snapshot_outputs};

/// The system Python 3 (standard library only), or `None` with a visible skip message.
fn python3(test: &str) -> Option<&'static str> {
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => Some("python3"),
        _ => {
            eprintln!("SKIP {test}: python3 is not on PATH");
            None
        }
    }
}

/// Runs `script` with `args`; returns the JSON object it prints last.
fn py(python: &str, script: &str, args: &[&Path]) -> serde_json::Value {
    let out = Command::new(python).arg("-c").arg(script).args(args).output().expect("run python3");
    assert!(out.status.success(), "python failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().expect("python printed a line")).unwrap()
}

/// Reads NOTEEVENTS.csv with `csv.DictReader` and summarizes it.
const READ_MIMIC3: &str = r#"
import csv, json, sys
csv.field_size_limit(1 << 30)
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    r = csv.DictReader(f, restkey="EXTRA")
    rows = list(r)
    header = r.fieldnames
print(json.dumps({
    "header": header,
    "rows": len(rows),
    "extra": sum("EXTRA" in row or None in row.values() for row in rows),
    "ids": [int(row["ROW_ID"]) for row in rows],
    "multiline": sum("\n" in row["TEXT"] for row in rows),
    "marked": sum("[**" in row["TEXT"] for row in rows),
    "quotes": sum('"' in row["TEXT"] for row in rows),
    "categories": sorted(set(row["CATEGORY"] for row in rows)),
    "iserror": sorted(set(row["ISERROR"] for row in rows)),
    "empty_hadm": sum(row["HADM_ID"] == "" for row in rows),
}))
"#;

/// Reads discharge.csv and radiology.csv with `csv.DictReader`.
const READ_MIMIC4: &str = r#"
import csv, json, sys
csv.field_size_limit(1 << 30)
out = {}
for path in sys.argv[1:]:
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f, restkey="EXTRA")
        rows = list(r)
    out[path.rsplit("/", 1)[-1]] = {
        "header": r.fieldnames,
        "rows": len(rows),
        "extra": sum("EXTRA" in row or None in row.values() for row in rows),
        "types": sorted(set(row["note_type"] for row in rows)),
        "ids_unique": len(set(row["note_id"] for row in rows)) == len(rows),
        "ids_shaped": all(row["note_id"] == "%s-%s-%s" % (row["subject_id"], row["note_type"], row["note_seq"]) for row in rows),
        "multiline": sum("\n" in row["text"] for row in rows),
        "masked": sum("___" in row["text"] for row in rows),
        "times": all(len(row["charttime"]) == 19 for row in rows),
    }
print(json.dumps(out))
"#;

/// Parses every i2b2 XML with ElementTree, checks each tag's offsets into the TEXT, and compares
/// the notes with the SQuAD JSON.
const READ_I2B2: &str = r#"
import json, os, sys
import xml.etree.ElementTree as ET
d, squad = sys.argv[1], sys.argv[2]
with open(squad, encoding="utf-8") as f:
    data = json.load(f)["data"]
contexts = {e["title"]: e["paragraphs"][0]["context"] for e in data}
tags = bad = 0
xmls = sorted(n for n in os.listdir(d) if n.endswith(".xml"))
for name in xmls:
    root = ET.parse(os.path.join(d, name)).getroot()
    text = root.find("TEXT").text
    with open(os.path.join(d, name[:-4] + ".txt"), encoding="utf-8", newline="") as f:
        assert f.read() == text == contexts[name[:-4]], name
    for t in root.find("TAGS"):
        tags += 1
        if text[int(t.get("start")):int(t.get("end"))] != t.get("text"):
            bad += 1
print(json.dumps({"xml": len(xmls), "squad": len(data), "tags": tags, "bad": bad,
                  "qas_empty": all(e["paragraphs"][0]["qas"] == [] for e in data)}))
"#;

const MIMIC3_HEADER: [&str; 11] = [
    "ROW_ID",
    "SUBJECT_ID",
    "HADM_ID",
    "CHARTDATE",
    "CHARTTIME",
    "STORETIME",
    "CATEGORY",
    "DESCRIPTION",
    "CGID",
    "ISERROR",
    "TEXT",
];

#[test]
fn mimic3_notes_run_through_camel_are_cached_and_python_reads_them() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        "name: s3\nstages:\n  synth:\n    kind: synth\n    params: {format: mimic3, notes: 400, seed: 3}\n",
    );
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["synth"]);
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.cached(), ["synth"], "{}", r.stderr);
    let csv = t.path(".camel/out/synth/NOTEEVENTS.csv");
    assert!(t.read(".camel/out/synth/NOTEEVENTS.csv").starts_with("\"ROW_ID\",\"SUBJECT_ID\","));

    let Some(python) = python3("mimic3_notes_run_through_camel_are_cached_and_python_reads_them") else {
        return;
    };
    let v = py(python, READ_MIMIC3, &[&csv]);
    assert_eq!(v["header"], serde_json::json!(MIMIC3_HEADER));
    assert_eq!(v["rows"], 400);
    assert_eq!(v["extra"], 0, "every row has exactly 11 fields");
    let ids: Vec<u64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(ids, (1..=400).collect::<Vec<u64>>());
    assert_eq!(v["multiline"], 400, "every TEXT spans lines");
    assert!(v["marked"].as_u64().unwrap() > 360, "{v}");
    assert!(v["quotes"].as_u64().unwrap() > 0, "doubled quotes come back as quotes");
    let cats: Vec<String> = serde_json::from_value(v["categories"].clone()).unwrap();
    assert!(cats.contains(&"Discharge summary".into()) && cats.contains(&"Physician ".into()), "{cats:?}");
    assert_eq!(v["iserror"], serde_json::json!(["", "1"]));
    assert!(v["empty_hadm"].as_u64().unwrap() > 0);
}

#[test]
fn mimic4_notes_python_reads_both_files() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        "name: s4\nstages:\n  m4:\n    kind: synth\n    params: {format: mimic4, notes: 300}\n",
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    assert!(t.read(".camel/out/m4/discharge.csv").starts_with("note_id,subject_id,hadm_id,note_type,"));
    let Some(python) = python3("mimic4_notes_python_reads_both_files") else { return };
    let (d, r) = (t.path(".camel/out/m4/discharge.csv"), t.path(".camel/out/m4/radiology.csv"));
    let v = py(python, READ_MIMIC4, &[&d, &r]);
    let header =
        ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"];
    let (ds, rr) = (&v["discharge.csv"], &v["radiology.csv"]);
    assert_eq!(ds["rows"].as_u64().unwrap() + rr["rows"].as_u64().unwrap(), 300);
    for (f, ty) in [(ds, "DS"), (rr, "RR")] {
        assert_eq!(f["header"], serde_json::json!(header));
        assert_eq!(f["extra"], 0);
        assert_eq!(f["types"], serde_json::json!([ty]));
        assert_eq!(f["ids_unique"], true);
        assert_eq!(f["ids_shaped"], true);
        assert_eq!(f["multiline"], f["rows"]);
        assert_eq!(f["masked"], f["rows"], "{f}");
        assert_eq!(f["times"], true);
    }
}

#[test]
fn i2b2_notes_offsets_hold_for_elementtree_and_squad_matches() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        "name: si\nstages:\n  i2:\n    kind: synth\n    params: {format: i2b2, notes: 40, seed: 2}\n",
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let dir = t.path(".camel/out/i2/notes");
    assert!(dir.join("100-01.txt").exists() && dir.join("107-05.xml").exists());
    let Some(python) = python3("i2b2_notes_offsets_hold_for_elementtree_and_squad_matches") else { return };
    let v = py(python, READ_I2B2, &[&dir, &t.path(".camel/out/i2/i2b2.json")]);
    assert_eq!(v["xml"], 40);
    assert_eq!(v["squad"], 40);
    assert!(v["tags"].as_u64().unwrap() > 400, "{v}");
    assert_eq!(v["bad"], 0, "tag offsets that miss their text: {v}");
    assert_eq!(v["qas_empty"], true);
}

#[test]
fn the_same_params_give_the_same_bytes_in_another_workspace() {
    let pipeline = "name: d\nstages:\n  a:\n    kind: synth\n    params: {notes: 700, seed: 11}\n  b:\n    kind: synth\n    params: {format: mimic4, notes: 200, seed: 11}\n";
    let (t1, t2) = (TestContext::new(), TestContext::new());
    for t in [&t1, &t2] {
        t.write("p.yaml", pipeline);
        t.camel(&["run", "p.yaml"]).assert_ok();
    }
    let (a, b) = (snapshot_outputs(&t1.path(".camel")), snapshot_outputs(&t2.path(".camel")));
    assert_eq!(a.len(), 3);
    assert!(a == b, "two runs of the same params differ");
    // Same kind, params and inputs: the same cache key.
    let key = |t: &TestContext| t.status("p.yaml").iter().map(|s| s["key"].clone()).collect::<Vec<_>>();
    assert_eq!(key(&t1), key(&t2));
}

#[test]
fn cover_ids_with_camels_filter_list() {
    let Some(list) = shared_data("mimiciii_filter_index.txt") else { return };
    let t = TestContext::new();
    t.write(
        "p.yaml",
        &format!(
            "name: c\nstages:\n  synth:\n    kind: synth\n    inputs: {{cover_ids: {}}}\n    params: {{notes: 1000, seed: 5}}\n",
            list.display()
        ),
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let want: Vec<u64> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(want.len(), 404);
    let csv = t.path(".camel/out/synth/NOTEEVENTS.csv");
    let Some(python) = python3("cover_ids_with_camels_filter_list") else { return };
    let v = py(python, READ_MIMIC3, &[&csv]);
    assert_eq!(v["rows"], 1000);
    let ids: Vec<u64> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "unique, ascending");
    let missing: Vec<u64> = want.iter().copied().filter(|i| ids.binary_search(i).is_err()).collect();
    assert!(missing.is_empty(), "ids of the filter list not generated: {missing:?}");

    // Changing the list's content reruns the stage.
    t.write("ids.txt", "5\n");
    t.write("p.yaml", "name: c\nstages:\n  synth:\n    kind: synth\n    inputs: {cover_ids: ids.txt}\n    params: {notes: 1000, seed: 5}\n");
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["synth"]);
}

#[test]
fn bad_params_and_inputs_fail_with_a_clear_message() {
    let t = TestContext::new();
    let run = |yaml: &str| {
        t.write("p.yaml", &format!("name: bad\nstages:\n  s:\n    kind: synth\n{yaml}"));
        t.camel(&["run", "p.yaml"])
    };
    // Out of the range the schema declares: refused before anything runs.
    let r = run("    params: {notes: 0}\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`notes` is 0; it must be at least 1"), "{}", r.stderr);

    t.write("ids.txt", "17\n18\nnineteen\n");
    let r = run("    inputs: {cover_ids: ids.txt}\n    params: {notes: 10}\n");
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("ids.txt, line 3: `nineteen` is not a positive integer"), "{}", r.stderr);

    let r = run("    inputs: {cover_ids: ids.txt}\n    params: {format: mimic4, notes: 10}\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("unknown input `cover_ids`"), "{}", r.stderr);

    let r = run("    params: {notes: 10, seeds: 1}\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("seeds"), "{}", r.stderr);

    let r = run("    params: {seed: 1}\n");
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("notes"), "{}", r.stderr);
}
