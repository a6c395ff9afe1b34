//! The stage end to end on small files, without the engine: `build` into a temporary directory,
//! corpus.parquet read back with DuckDB.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;

#[derive(Default)]
struct TestEnv {
    logs: Mutex<Vec<String>>,
}

impl Env for TestEnv {
    fn log(&self, line: &str) {
        self.logs.lock().unwrap().push(line.to_string());
    }
    fn rows(&self, _n: u64) {}
    fn message(&self, _m: &str) {}
    fn cancelled(&self) -> bool {
        false
    }
}

struct T {
    dir: tempfile::TempDir,
    inputs: BTreeMap<String, PathBuf>,
}

type Row = (String, Option<String>, Option<String>, String);

impl T {
    fn new() -> T {
        T { dir: tempfile::tempdir().unwrap(), inputs: BTreeMap::new() }
    }

    fn file(&mut self, name: &str, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join("in").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        self.inputs.insert(name.to_string(), p.clone());
        p
    }

    fn bind(&mut self, name: &str, p: &Path) {
        self.inputs.insert(name.to_string(), p.to_path_buf());
    }

    fn run(&self, yaml: &str) -> Result<(Vec<Row>, Stats, Vec<String>), String> {
        let p: NotesParams = serde_yaml::from_str(yaml).map_err(|e| format!("params: {e}"))?;
        let out = self.dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let scratch = self.dir.path().join("scratch");
        let env = TestEnv::default();
        let stats = build(&p, &self.inputs, &out, &scratch, &env).map_err(|e| e.to_string())?;
        let logs = env.logs.into_inner().unwrap();
        for l in &logs {
            assert!(!l.contains("SECRET"), "note text in a log line: {l}");
        }
        Ok((read_corpus(&out.join("corpus.parquet")), stats, logs))
    }

    fn texts(&self, yaml: &str) -> Vec<String> {
        self.run(yaml).unwrap().0.into_iter().map(|r| r.3).collect()
    }

    fn err(&self, yaml: &str) -> String {
        let e = self.run(yaml).map(|r| r.0.len()).unwrap_err();
        assert!(!e.contains("SECRET"), "note text in an error: {e}");
        e
    }
}

fn read_corpus(p: &Path) -> Vec<Row> {
    let conn = Connection::open_in_memory().unwrap();
    let sql = format!(
        "SELECT source, id, category, text FROM read_parquet({})",
        read::sql_str(&p.to_string_lossy())
    );
    let mut stmt = conn.prepare(&sql).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

const M3_HEADER: &str = "\"ROW_ID\",\"SUBJECT_ID\",\"HADM_ID\",\"CHARTDATE\",\"CHARTTIME\",\"STORETIME\",\"CATEGORY\",\"DESCRIPTION\",\"CGID\",\"ISERROR\",\"TEXT\"\n";

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn m3_row(id: u64, cat: &str, iserror: bool, text: &str) -> String {
    format!(
        "{id},{},,2151-07-16,,,{},\"Report\",,{},{}\n",
        id * 7,
        q(cat),
        if iserror { "1" } else { "" },
        q(text)
    )
}

fn m3(rows: &[(u64, &str, bool, &str)]) -> String {
    let mut s = M3_HEADER.to_string();
    for (id, cat, e, t) in rows {
        s.push_str(&m3_row(*id, cat, *e, t));
    }
    s
}

const M4_HEADER: &str = "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n";

fn m4(kind: &str, texts: &[&str]) -> String {
    let mut s = M4_HEADER.to_string();
    for (i, t) in texts.iter().enumerate() {
        s.push_str(&format!("100-{kind}-{i},100,200,{kind},{i},2180-01-01 00:00:00,,{}\n", q(t)));
    }
    s
}

#[test]
fn mimic3_is_camels_semantics() {
    let mut t = T::new();
    t.file(
        "notes",
        "NOTEEVENTS.csv",
        m3(&[
            (1, "Discharge summary", false, "Admission Date: [**2151-7-16**]\nline, with \"quotes\""),
            (2, "Physician ", false, "dropped by the list"),
            (3, "Physician ", true, "ISERROR is kept by default; café"),
            (4, "Radiology", false, ""),
        ]),
    );
    t.file("ids", "ids.txt", "2\n99");
    let (rows, stats, _) = t.run("sources: [{type: mimic3, notes: notes, exclude: {ids: ids}}]").unwrap();
    let texts: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Discharge summary\nAdmission Date: [**2151-7-16**]\nline, with \"quotes\"",
            "Physician \nISERROR is kept by default; café",
            "Radiology\n",
        ]
    );
    assert_eq!(rows[0].0, "mimic3");
    assert_eq!(rows[1].1.as_deref(), Some("3"));
    assert_eq!(rows[1].2.as_deref(), Some("Physician "));
    let s = &stats.sources[0];
    assert_eq!((s.rows_read, s.rows_written, s.dropped["excluded_id"]), (4, 3, 1));
    let ex = s.exclude.as_ref().unwrap();
    assert_eq!((ex.listed, ex.matched, ex.absent), (2, 1, 1));
    assert_eq!(ex.blake3, blake3::hash(b"2\n99").to_hex().to_string());
    // The unknown id, and the empty note kept (CAMEL keeps them; issue 16 asks for a warning).
    assert_eq!(stats.warnings.len(), 2, "{:?}", stats.warnings);
    assert!(
        stats.warnings[0].contains("1 of the 2 ids") && stats.warnings[0].contains("99"),
        "{:?}",
        stats.warnings
    );
    assert!(stats.warnings[1].starts_with("1 empty notes of source"), "{:?}", stats.warnings);
    assert_eq!(s.empty_written, 1);
}

/// An id whose row the category filter dropped is in the export: it is not reported missing,
/// and is counted apart.
#[test]
fn exclusion_ids_are_counted_against_the_rows_read() {
    let mut t = T::new();
    t.file(
        "notes",
        "NOTEEVENTS.csv",
        m3(&[
            (1, "Discharge summary", false, "kept"),
            (2, "Discharge summary", false, "dropped by the list"),
            (3, "Nursing", false, "dropped by the category filter"),
        ]),
    );
    t.file("ids", "ids.txt", "2\n3\n99");
    let (rows, stats, logs) = t
        .run("sources: [{type: mimic3, notes: notes, categories: [Discharge summary], exclude: {ids: ids}}]")
        .unwrap();
    assert_eq!(rows.len(), 1);
    let s = &stats.sources[0];
    assert_eq!((s.dropped["category"], s.dropped["excluded_id"]), (1, 1));
    let ex = s.exclude.as_ref().unwrap();
    assert_eq!((ex.listed, ex.matched, ex.dropped_earlier, ex.absent), (3, 1, 1, 1));
    assert_eq!(stats.warnings.len(), 1, "{:?}", stats.warnings);
    assert!(
        stats.warnings[0].starts_with("1 of the 3 ids in `ids` are not in source"),
        "{:?}",
        stats.warnings
    );
    assert!(stats.warnings[0].contains("(first: 99)"), "only the absent id is named: {:?}", stats.warnings);
    assert!(
        logs.iter()
            .any(|l| l.contains("1 of the 3 ids in `ids` are in rows of source")
                && l.contains("dropped first")),
        "{logs:?}"
    );
}

#[test]
fn mimic3_options_filter_and_convert() {
    let mut t = T::new();
    t.file(
        "notes",
        "NOTEEVENTS.csv.gz",
        gzip(&m3(&[
            (
                1,
                "Discharge summary",
                false,
                "Dr. [**Last Name (NamePattern1) 12**] on [**2151-7-16**] at [**Hospital1 18**]",
            ),
            (2, "Nursing", false, "nursing"),
            (3, "Discharge summary", true, "an error"),
            (4, "discharge summary ", false, "[**Known lastname 3**] [****]x"),
            (5, "Discharge summary", false, "the last"),
        ])),
    );
    let y = r#"
sources:
  - {type: mimic3, notes: notes, categories: [Discharge summary], iserror: drop, deid: tags, limit: 4, prefix: ""}
"#;
    let (rows, stats, _) = t.run(y).unwrap();
    let texts: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(texts, ["Dr. [Name] on 2151-7-16 at [Company]", "[Name] x"]);
    let s = &stats.sources[0];
    assert_eq!(s.rows_read, 4, "limit");
    assert_eq!((s.dropped["category"], s.dropped["iserror"]), (1, 1));
    let m = s.marks.as_ref().unwrap();
    assert_eq!(m.marks, 5);
    assert_eq!(m.tags, BTreeMap::from([("[Name]".into(), 2), ("[Company]".into(), 1)]));
    assert_eq!((m.kept_date, m.removed_empty), (1, 1));
}

fn gzip(s: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

#[test]
fn unknown_marks_follow_the_policy() {
    let mut t = T::new();
    t.file(
        "notes",
        "NOTEEVENTS.csv",
        m3(&[(1, "Nursing", false, "ok"), (2, "Nursing", false, "SECRET [**Protected Entity 1**]")]),
    );
    let e = t.err("sources: [{type: mimic3, notes: notes, deid: tags}]");
    assert!(e.contains("NOTEEVENTS.csv: data row 2 (id 2)") && e.contains("character 7"), "{e}");
    let texts =
        t.texts("sources: [{type: mimic3, notes: notes, deid: tags, prefix: ''}]\nmarks: {unknown: keep}");
    assert_eq!(texts[1], "SECRET [**Protected Entity 1**]");
    let (rows, stats, _) = t
        .run("sources: [{type: mimic3, notes: notes, deid: tags, prefix: ''}]\nmarks: {unknown: 'tag:[PHI]', table: {Entity: '[E]'}}")
        .unwrap();
    assert_eq!(rows[1].3, "SECRET [E]");
    assert_eq!(stats.sources[0].marks.as_ref().unwrap().unknown, 0);
}

#[test]
fn mimic4_discharge_then_radiology_and_anon() {
    let mut t = T::new();
    t.file("d", "discharge.csv", m4("DS", &["Name: ___ Unit No: ___\nx", "second, \"q\""]));
    t.file("r", "radiology.csv.gz", gzip(&m4("RR", &["EXAM: CHEST ___"])));
    let texts = t.texts("sources: [{type: mimic4, discharge: d, radiology: r}]");
    assert_eq!(
        texts,
        [
            "Discharge summary\nName: ___ Unit No: ___\nx",
            "Discharge summary\nsecond, \"q\"",
            "Radiology\nEXAM: CHEST ___"
        ]
    );
    let (rows, stats, _) = t
        .run("sources: [{type: mimic4, discharge: d, radiology: r, anon: tag, categories: [radiology]}]")
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].3, "Radiology\nEXAM: CHEST [ANON]");
    assert_eq!(rows[0].1.as_deref(), Some("100-RR-0"));
    assert_eq!(stats.sources[0].anon_replaced, Some(1));
    let texts = t.texts("sources: [{type: mimic4, discharge: d, radiology: r, limit: 2}]");
    assert_eq!(texts.len(), 2);
}

#[test]
fn i2b2_directory_and_squad_json() {
    let mut t = T::new();
    t.file(
        "x",
        "i2b2/b/2.xml",
        "<?xml version=\"1.0\"?><deIdi2b2><TEXT><![CDATA[xml note\n&]]></TEXT><TAGS/></deIdi2b2>",
    );
    t.file("x", "i2b2/a.txt", "txt note");
    t.file("x", "i2b2/a.xml", "<TEXT>the same note</TEXT>");
    let dir = t.dir.path().join("in/i2b2");
    t.file("x", "i2b2/readme.md", "ignored");
    t.bind("x", &dir);
    let (rows, stats, _) = t.run("sources: [{type: i2b2, notes: x}]").unwrap();
    assert_eq!(
        rows.iter().map(|r| (r.1.clone().unwrap(), r.3.clone())).collect::<Vec<_>>(),
        [("a".to_string(), "txt note".to_string()), ("b/2".into(), "xml note\n&".into())]
    );
    assert_eq!(rows[0].2, None);
    assert_eq!(stats.sources[0].files_skipped, Some(1));
    t.file(
        "j",
        "squad.json",
        r#"{"data": [{"title": "t", "paragraphs": [{"context": "one"}, {"context": ["tw", "o"]}]}]}"#,
    );
    let (rows, ..) = t.run("sources: [{type: i2b2, notes: j, prefix: '{source}: '}]").unwrap();
    assert_eq!(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(), ["i2b2: one", "i2b2: two"]);
    assert_eq!(rows[1].1.as_deref(), Some("0.1"));
}

#[test]
fn tables_of_every_format() {
    let mut t = T::new();
    t.file("c", "notes.csv", "note_id,kind,body\n7,Progress,\"multi\nline\"\n8,Consult,plain\n");
    t.file("s", "notes.tsv", "note_id\tkind\tbody\n7\tProgress\tx y\n");
    t.file("j", "notes.jsonl", "{\"body\": \"from json\", \"kind\": \"K\", \"note_id\": 1}\n{\"body\": \"second\", \"kind\": \"K\", \"note_id\": 2}\n");
    let y = |input: &str| {
        format!(
            "sources: [{{type: table, name: site, notes: {input}, columns: {{text: body, id: note_id, category: kind}}, prefix: '{{category}}: '}}]"
        )
    };
    let (rows, ..) = t.run(&y("c")).unwrap();
    assert_eq!(
        rows[0],
        (
            "site".to_string(),
            Some("7".to_string()),
            Some("Progress".to_string()),
            "Progress: multi\nline".to_string()
        )
    );
    assert_eq!(rows[1].3, "Consult: plain");
    assert_eq!(t.texts(&y("s")), ["Progress: x y"]);
    assert_eq!(t.texts(&y("j")), ["K: from json", "K: second"]);
    // Parquet: the corpus of the CSV run, read as a table.
    t.run(&y("c")).unwrap();
    let pq = t.dir.path().join("corpus-copy.parquet");
    std::fs::copy(t.dir.path().join("out/corpus.parquet"), &pq).unwrap();
    t.bind("p", &pq);
    let texts = t.texts("sources: [{type: table, notes: p, columns: {text: text, category: category}, categories: [consult]}]");
    assert_eq!(texts, ["Consult: plain"]);
}

#[test]
fn optional_drops() {
    let mut t = T::new();
    t.file(
        "notes",
        "NOTEEVENTS.csv",
        m3(&[
            (1, "A", false, "same text"),
            (2, "A", false, "   "),
            (3, "A", false, "short"),
            (4, "A", false, "same text"),
            (5, "B", false, "same text"),
        ]),
    );
    let (rows, stats, _) = t
        .run("sources: [{type: mimic3, notes: notes}]\ndrop: {empty: true, min_chars: 6, duplicates: true}")
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.1.clone().unwrap()).collect::<Vec<_>>(),
        ["1", "5"],
        "B's prefix differs"
    );
    let d = &stats.sources[0].dropped;
    assert_eq!((d["empty"], d["too_short"], d["duplicate"]), (1, 1, 1));
    assert_eq!(stats.total.dropped["duplicate"], 1);
}

#[test]
fn decontamination_drops_notes_sharing_ngrams() {
    let mut t = T::new();
    let eval = "The patient made some progress during therapy and accomplished two of her five goals today";
    t.file("ev", "eval.json", format!("[{{\"input\": \"{eval}\", \"instruction\": \"x\"}}]"));
    t.file(
        "notes",
        "NOTEEVENTS.csv",
        m3(&[
            (1, "A", false, "unrelated note about something else entirely with many words in it ok"),
            (2, "A", false, &format!("Copied: {}", eval.to_uppercase())),
        ]),
    );
    let (rows, stats, _) = t
        .run("sources: [{type: mimic3, notes: notes}]\ndecontaminate: {sets: [{input: ev, field: input}]}")
        .unwrap();
    assert_eq!(rows.len(), 1);
    let d = stats.decontamination.as_ref().unwrap();
    assert_eq!((d.dropped, d.sets[0].texts, d.sets[0].notes_dropped), (1, 1, 1));
    assert_eq!(d.sets[0].ngrams, 3, "15 words, 13-grams");
    assert_eq!(d.dropped_ids, ["mimic3:2"]);
    let e =
        t.err("sources: [{type: mimic3, notes: notes}]\ndecontaminate: {sets: [{input: ev, field: prompt}]}");
    assert!(e.contains("eval.json") && e.contains("`prompt`"), "{e}");
}

#[test]
fn the_real_eval_set_reads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mtsamples_instructions.json");
    if !p.exists() {
        eprintln!("skipped: {} is absent", p.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conn = read::open_duckdb(2, "1GB", dir.path()).unwrap();
    let texts = read::read_eval_texts(&conn, &p, "input").unwrap();
    assert_eq!(texts.len(), 1048);
}

#[test]
fn a_wrong_list_is_an_error() {
    let mut t = T::new();
    t.file("notes", "NOTEEVENTS.csv", m3(&[(1, "A", false, "x")]));
    t.file("ids", "ids.txt", "1\n");
    let e = t.err(&format!(
        "sources: [{{type: mimic3, notes: notes, exclude: {{ids: ids, blake3: {}}}}}]",
        "0".repeat(64)
    ));
    assert!(e.contains("ids.txt: its blake3 is") && e.contains("not the expected id list"), "{e}");
    t.file("ids", "ids.txt", "1\nabc\n");
    let e = t.err("sources: [{type: mimic3, notes: notes, exclude: {ids: ids}}]");
    assert!(e.contains("ids.txt: line 2 is not an integer"), "{e}");
}

#[test]
fn bad_inputs_name_the_file() {
    let mut t = T::new();
    let y = "sources: [{type: mimic3, notes: notes}]";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "missing column",
            M3_HEADER.replace(",\"TEXT\"", ",\"NOTE\"").into_bytes(),
            "no column `TEXT` in its header",
        ),
        ("wrong delimiter", M3_HEADER.replace(',', "\t").into_bytes(), "wrong delimiter"),
        (
            "non-UTF-8",
            [
                M3_HEADER.as_bytes(),
                &m3_row(1, "A", false, "ok").into_bytes(),
                b"2,1,,,,,\"A\",\"R\",,,\"SECRET \xff\xfe\"\n",
            ]
            .concat(),
            "not valid UTF-8",
        ),
        (
            "unterminated quote",
            format!(
                "{M3_HEADER}{}3,1,,,,,\"A\",\"R\",,,\"SECRET never closed\n",
                m3_row(1, "A", false, "ok")
            )
            .into_bytes(),
            "unterminated quote",
        ),
        (
            "wrong field count",
            format!("{M3_HEADER}{}4,SECRET,x\n", m3_row(1, "A", false, "ok")).into_bytes(),
            "a row has 3 fields where the header has 11",
        ),
        ("empty", Vec::new(), "is empty"),
        (
            "ROW_ID",
            format!("{M3_HEADER}SECRET,1,,,,,\"A\",\"R\",,,\"t\"\n").into_bytes(),
            "ROW_ID is something else",
        ),
    ];
    for (what, content, want) in cases {
        let p = t.file("notes", "NOTEEVENTS.csv", content);
        let e = t.err(y);
        assert!(e.starts_with(&p.display().to_string()), "{what}: {e}");
        assert!(e.contains(want), "{what}: {e}");
    }
    let dir = t.dir.path().join("in/adir");
    std::fs::create_dir_all(&dir).unwrap();
    t.bind("notes", &dir);
    let e = t.err(y);
    assert!(e.contains("adir: is a directory"), "{e}");
}

#[test]
fn parallel_reading_keeps_file_order() {
    // ~40 MB: several of DuckDB's parallel scan ranges, each with quoted newlines.
    let mut t = T::new();
    let mut s = String::with_capacity(41 << 20);
    s.push_str(M3_HEADER);
    let body = "Line one, with a comma.\nLine \"two\".\n".repeat(30);
    let n = 40_000u64;
    for id in 1..=n {
        s.push_str(&m3_row(id, "Nursing", false, &body));
    }
    t.file("notes", "NOTEEVENTS.csv", s);
    let (rows, stats, _) = t.run("sources: [{type: mimic3, notes: notes}]\nthreads: 4").unwrap();
    assert_eq!(stats.total.rows_written, n);
    let ids: Vec<u64> = rows.iter().map(|r| r.1.as_ref().unwrap().parse().unwrap()).collect();
    assert!(ids.iter().copied().eq(1..=n), "rows out of order");
    let expect = format!("Nursing\n{body}");
    assert!(rows.iter().all(|r| r.3 == expect));
    // Same bytes with one thread: the output does not depend on `threads`.
    let a = std::fs::read(t.dir.path().join("out/corpus.parquet")).unwrap();
    t.run("sources: [{type: mimic3, notes: notes}]\nthreads: 1").unwrap();
    let b = std::fs::read(t.dir.path().join("out/corpus.parquet")).unwrap();
    assert!(a == b, "corpus.parquet differs between 4 threads and 1");
}

#[test]
fn stage_contract() {
    let p: NotesParams = serde_yaml::from_str(
        "sources: [{type: mimic3, notes: n, exclude: {ids: f}}, {type: i2b2, notes: i}]\nthreads: 3",
    )
    .unwrap();
    match Notes::inputs(&p) {
        InputSpec::Named { required, optional } => {
            assert_eq!(required, ["f", "i", "n"]);
            assert!(optional.is_empty());
        }
        InputSpec::Any => panic!("named inputs"),
    }
    assert_eq!(
        Notes::outputs(&p),
        [OutputSpec::file("corpus", "corpus.parquet"), OutputSpec::file("stats", "stats.json")]
    );
    assert_eq!(Notes::UNHASHED, ["threads", "memory_limit"]);
    assert!(duckdb_version().starts_with('v'));
}

/// Issue: a byte-order mark at the start of an exclusion list stayed in the first id, which
/// then matched nothing (or was "not an integer ROW_ID").
#[test]
fn a_byte_order_mark_is_not_part_of_the_first_id() {
    let mut t = T::new();
    t.file("notes", "NOTEEVENTS.csv", m3(&[(1, "A", false, "SECRET x"), (2, "A", false, "SECRET y")]));
    t.file("ids", "ids.txt", "\u{feff}2\r\n");
    let (rows, stats, _) = t.run("sources: [{type: mimic3, notes: notes, exclude: {ids: ids}}]").unwrap();
    assert_eq!(rows.iter().map(|r| r.1.as_deref().unwrap()).collect::<Vec<_>>(), ["1"]);
    assert_eq!(
        stats.sources[0].exclude.as_ref().unwrap().blake3,
        blake3::hash(b"\xef\xbb\xbf2\r\n").to_hex().to_string()
    );
    t.file("d", "discharge.csv", m4("DS", &["SECRET a", "SECRET b"]));
    t.file("ids", "ids.txt", "\u{feff}100-DS-0\n");
    let (rows, stats, _) = t.run("sources: [{type: mimic4, discharge: d, exclude: {ids: ids}}]").unwrap();
    assert_eq!(rows.iter().map(|r| r.1.as_deref().unwrap()).collect::<Vec<_>>(), ["100-DS-1"]);
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
}

/// Issue: a `.csv.gz` cut short was read without an error, its last rows missing; gzip data
/// in a file named `.csv` was "not valid UTF-8".
#[test]
fn a_truncated_or_corrupt_gzip_fails_and_a_misnamed_one_is_said() {
    let mut t = T::new();
    let rows: Vec<(u64, &str, bool, &str)> = (1..=3000)
        .map(|i| (i, "Nursing", false, "SECRET words of a note, repeated to fill the file"))
        .collect();
    let gz = gzip(&m3(&rows));
    let y = "sources: [{type: mimic3, notes: notes}]";
    t.file("notes", "NOTEEVENTS.csv.gz", &gz);
    assert_eq!(t.run(y).unwrap().1.total.rows_written, 3000);
    for (what, bytes) in [
        ("cut mid-stream", gz[..gz.len() * 6 / 10].to_vec()),
        ("cut before the trailer", gz[..gz.len() - 4].to_vec()),
        ("a wrong CRC", {
            let mut b = gz.clone();
            let n = b.len();
            b[n - 8] ^= 0xff;
            b
        }),
    ] {
        t.file("notes", "NOTEEVENTS.csv.gz", &bytes);
        let e = t.err(y);
        assert!(
            e.contains("NOTEEVENTS.csv.gz: truncated or corrupt gzip") && e.ends_with("re-download it"),
            "{what}: {e}"
        );
    }
    t.file("notes", "NOTEEVENTS.csv", &gz);
    let e = t.err(y);
    assert!(e.contains("NOTEEVENTS.csv: is gzip-compressed, but its name does not end in .gz"), "{e}");
    t.file("j", "notes.jsonl", gzip("{\"body\": \"SECRET\"}\n"));
    let e = t.err("sources: [{type: table, notes: j, columns: {text: body}}]");
    assert!(e.contains("notes.jsonl: is gzip-compressed"), "{e}");
}

/// Issue: JSON-lines errors said only "malformed JSON at byte N". They name the line (DuckDB
/// counts records from 2, and skips blank lines), the parser's reason, and an array file.
#[test]
fn json_lines_errors_name_the_line() {
    let mut t = T::new();
    let y = "sources: [{type: table, notes: j, columns: {text: body}}]";
    let ok = "{\"body\": \"a\"}\n";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            format!("{ok}{ok}{{\"body\": SECRET}}\n{ok}").into_bytes(),
            "line 3 is not valid JSON (unexpected character, at byte 10)",
        ),
        (
            format!("\n{ok}\n  \n{{\"body\": SECRET}}\n").into_bytes(),
            "line 5 is not valid JSON (unexpected character",
        ),
        (format!("{{\"body\": SECRET}}\n{ok}").into_bytes(), "line 1 is not valid JSON"),
        (
            format!("{ok}{{\"body\": \"a\"}} SECRET\n").into_bytes(),
            "line 2 is not valid JSON (unexpected content after document",
        ),
        (
            [ok.as_bytes(), b"{\"body\": \"SECRET \xff\"}\n"].concat(),
            "line 2 is not valid JSON (invalid UTF-8 encoding in string, at byte 18); convert the file to UTF-8",
        ),
        (
            b"\n [{\"body\": \"SECRET\"},\n{\"body\": \"b\"}]\n".to_vec(),
            "a JSON array is not JSON lines; write one object per line",
        ),
    ];
    for (content, want) in cases {
        t.file("j", "notes.jsonl", content);
        let e = t.err(y);
        assert!(e.contains(&format!("notes.jsonl: {want}")), "{want}: {e}");
    }
    // Far into a file read by several threads.
    let mut s = ok.repeat(150_000);
    s.push_str("{\"body\": SECRET}\n");
    s.push_str(&ok.repeat(10));
    t.file("j", "notes.jsonl.gz", gzip(&s));
    let e = t.err(&format!("{y}\nthreads: 2"));
    assert!(e.contains("notes.jsonl.gz: line 150001 is not valid JSON"), "{e}");
}

/// Issue: an empty column name (a trailing comma in an Excel export's header) or a repeated one
/// made DuckDB refuse the file ("Binder Error"). Columns no param uses may be unnamed or
/// repeated; a used one that is repeated is an error naming it.
#[test]
fn unnamed_and_repeated_columns_are_read_unless_used() {
    let mut t = T::new();
    let y = "sources: [{type: table, notes: c, columns: {text: NOTE_TEXT, id: NOTE_ID}}]";
    let cases = [
        "NOTE_ID,NOTE_TYPE,NOTE_TEXT,\n1,a,SECRET x,\n2,b,\"SECRET y\",\n",
        "NOTE_ID,X,NOTE_TEXT,x,,_camel_column_5\n1,a,SECRET x,b,,c\n2,a,SECRET y,b,,c\n",
        ",NOTE_ID,NOTE_TEXT\nq,1,SECRET x\nq,2,SECRET y\n",
    ];
    for c in cases {
        t.file("c", "export.csv", c);
        let (rows, ..) = t.run(y).unwrap();
        let got: Vec<(Option<&str>, &str)> = rows.iter().map(|r| (r.1.as_deref(), r.3.as_str())).collect();
        assert_eq!(got, [(Some("1"), "SECRET x"), (Some("2"), "SECRET y")], "{c:?}");
    }
    t.file("c", "export.csv", "NOTE_ID,NOTE_TEXT,NOTE_TEXT\n1,SECRET x,SECRET y\n");
    let e = t.err(y);
    assert!(e.contains("export.csv: column `NOTE_TEXT` appears 2 times in the header (columns 2, 3)"), "{e}");
    // MIMIC-III with a trailing comma: the same corpus.
    let rows = [(1, "Nursing", false, "SECRET a"), (2, "Radiology", false, "SECRET b")];
    t.file("notes", "NOTEEVENTS.csv", m3(&rows));
    let want = t.texts("sources: [{type: mimic3, notes: notes}]");
    let trailing = m3(&rows).replace('\n', ",\n").replacen("\"TEXT\",", "\"TEXT\",\"\"", 1);
    t.file("notes", "NOTEEVENTS.csv", trailing);
    assert_eq!(t.texts("sources: [{type: mimic3, notes: notes}]"), want);
}

/// Issue: column names that differ by case or spaces (`row_id` from a BigQuery export, `NOTE_ID `
/// in a TSV) had no hint. The fixed MIMIC layouts take them; a table's `columns:` are compared
/// exactly and the error says what is near.
#[test]
fn column_names_differing_by_case_or_spaces() {
    let mut t = T::new();
    let rows = [(1, "Nursing", true, "SECRET a"), (2, "Radiology", false, "SECRET b")];
    t.file("notes", "NOTEEVENTS.csv", m3(&rows));
    let y = "sources: [{type: mimic3, notes: notes, iserror: drop}]";
    let want = t.texts(y);
    assert_eq!(want, ["Radiology\nSECRET b"]);
    for header in [M3_HEADER.to_lowercase(), M3_HEADER.replace(',', ", ")] {
        t.file("notes", "NOTEEVENTS.csv", m3(&rows).replacen(M3_HEADER, &header, 1));
        assert_eq!(t.texts(y), want, "{header}");
    }
    t.file(
        "d",
        "discharge.csv",
        m4("DS", &["SECRET a"]).replacen("note_id", "NOTE_ID", 1).replacen(",text", ",TEXT", 1),
    );
    assert_eq!(t.texts("sources: [{type: mimic4, discharge: d}]"), ["Discharge summary\nSECRET a"]);
    t.file("x", "export.tsv", "NOTE_ID \t NOTE_TYPE\tnote_text\nN1\tR\tSECRET a\n");
    let e = t.err(
        "sources: [{type: table, notes: x, columns: {text: NOTE_TEXT, id: NOTE_ID, category: NOTE_TYPE}}]",
    );
    for want in [
        "no column `NOTE_TEXT`, `NOTE_ID`, `NOTE_TYPE` in its header",
        "for `NOTE_TEXT`, the header has `note_text` (names are compared exactly, case included)",
        "for `NOTE_ID`, the header has `NOTE_ID `, with spaces around the name",
        "for `NOTE_TYPE`, the header has ` NOTE_TYPE`, with spaces",
    ] {
        assert!(e.contains(want), "{want}: {e}");
    }
    t.file("x", "export.tsv", "NOTE_ID\tNOTE_TEXTT\nN1\tSECRET a\n");
    let e = t.err("sources: [{type: table, notes: x, columns: {text: NOTE_TEXT, id: NOTE_ID}}]");
    assert!(e.contains("for `NOTE_TEXT`, did you mean `NOTE_TEXTT`?"), "{e}");
}

/// Issue: a CSV record over 2 MB (DuckDB's default `max_line_size`) failed. Up to 16 MB reads;
/// beyond, the error says the limit.
#[test]
fn long_csv_records_read_up_to_the_limit() {
    let mut t = T::new();
    let long = format!("SECRET {}", "word, and \"quoted\"\n".repeat(3 << 20 >> 4));
    t.file(
        "notes",
        "NOTEEVENTS.csv",
        m3(&[(1, "A", false, "short"), (2, "A", false, &long), (3, "A", false, "x")]),
    );
    let texts = t.texts("sources: [{type: mimic3, notes: notes, prefix: ''}]");
    assert!(texts.len() == 3 && texts[1] == long && long.len() > 3 << 20);
    let longer = "SECRET ".repeat((17 << 20) / 7);
    t.file("notes", "NOTEEVENTS.csv", m3(&[(1, "A", false, "short"), (2, "A", false, &longer)]));
    let e = t.err("sources: [{type: mimic3, notes: notes}]");
    assert!(e.contains("NOTEEVENTS.csv: a CSV record is longer than 16 MB, the most that is read"), "{e}");
}

/// Issue: an input with a header and no rows gave 0 notes without a word. Each such input is a
/// warning.
#[test]
fn an_input_without_rows_is_a_warning() {
    let mut t = T::new();
    t.file("notes", "NOTEEVENTS.csv", M3_HEADER.trim_end());
    t.file("d", "discharge.csv", m4("DS", &["SECRET a"]));
    t.file("r", "radiology.csv.gz", gzip(M4_HEADER));
    t.file("x", "export.tsv", "id\tbody\n");
    let (rows, stats, _) = t
        .run("sources: [{type: mimic3, notes: notes}, {type: mimic4, discharge: d, radiology: r}, {type: table, notes: x, columns: {text: body}}]")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        stats.warnings,
        [
            "input `notes` has no rows (a header and nothing else?): source `mimic3` read nothing from it",
            "input `r` has no rows (a header and nothing else?): source `mimic4` read nothing from it",
            "input `x` has no rows (a header and nothing else?): source `table` read nothing from it",
        ]
    );
}

/// docs/notes.md said a stray quote is an error: a quote inside an unquoted value is kept as
/// written (as pandas reads it); text after a closing quote is an error.
#[test]
fn a_quote_inside_an_unquoted_value_is_kept() {
    let mut t = T::new();
    let body = format!("{M3_HEADER}1,1,,,,,Nursing,R,,,SECRET he said \"hi\" unquoted\n");
    t.file("notes", "NOTEEVENTS.csv", &body);
    assert_eq!(
        t.texts("sources: [{type: mimic3, notes: notes}]"),
        ["Nursing\nSECRET he said \"hi\" unquoted"]
    );
    t.file("notes", "NOTEEVENTS.csv", format!("{body}2,1,,,,,Nursing,R,,,\"SECRET closed\" then more\n"));
    let e = t.err("sources: [{type: mimic3, notes: notes}]");
    assert!(e.contains("NOTEEVENTS.csv: ") && e.contains("(CSV record 3)"), "{e}");
}

/// Issue: one number among the strings of a JSON column made DuckDB type it JSON, and every
/// note became JSON text; ids of mixed kinds kept their quotes, so the exclusion list missed
/// them. Mapped columns are text as written.
#[test]
fn json_lines_columns_are_text_and_ids_as_written() {
    let mut t = T::new();
    t.file(
        "j",
        "notes.jsonl",
        concat!(
            "{\"body\": \"SECRET one\\nline two \\u00e9\", \"id\": 1, \"at\": \"2020-01-01T10:00:00\"}\n",
            "{\"body\": 12345, \"id\": \"A4\", \"at\": 2.50}\n",
            "{\"body\": \"SECRET withdrawn\", \"id\": \"A5\", \"at\": true}\n",
            "{\"body\": null, \"id\": 3}\n",
        ),
    );
    t.file("w", "withdrawn.txt", "A5\n");
    let (rows, stats, _) = t
        .run("sources: [{type: table, notes: j, columns: {text: body, id: id, category: at}, exclude: {ids: w}}]")
        .unwrap();
    let got: Vec<(Option<&str>, Option<&str>, &str)> =
        rows.iter().map(|r| (r.1.as_deref(), r.2.as_deref(), r.3.as_str())).collect();
    assert_eq!(
        got,
        [
            (Some("1"), Some("2020-01-01T10:00:00"), "SECRET one\nline two é"),
            (Some("A4"), Some("2.5"), "12345"),
            (Some("3"), None, ""),
        ]
    );
    let ex = stats.sources[0].exclude.as_ref().unwrap();
    assert_eq!((ex.matched, ex.absent), (1, 0), "the withdrawn note is dropped");
    // An object or a list is not text: the row and the column are named, not the value.
    for (value, what) in [("{\"x\": \"SECRET\"}", "a JSON object"), ("[\"SECRET\", 2]", "a JSON list")] {
        t.file("j", "notes.jsonl", format!("{{\"body\": \"ok\"}}\n{{\"body\": {value}}}\n"));
        let e = t.err("sources: [{type: table, notes: j, columns: {text: body}}]");
        assert!(e.contains("notes.jsonl: data row 2: column `body` holds ") && e.contains(what), "{e}");
    }
}

/// Issue: Parquet text stored as BINARY came out as `\xC3\xA9` escapes. BINARY is decoded as
/// UTF-8 (or the row is named); a list is not text.
#[test]
fn parquet_binary_is_utf8_text_and_nested_columns_are_refused() {
    let mut t = T::new();
    let dir = t.dir.path().to_path_buf();
    let conn = Connection::open_in_memory().unwrap();
    let pq = |name: &str, select: &str| {
        let p = dir.join(name);
        conn.execute_batch(&format!(
            "COPY ({select}) TO {} (FORMAT parquet)",
            read::sql_str(&p.to_string_lossy())
        ))
        .unwrap();
        p
    };
    let good = pq(
        "bin.parquet",
        "SELECT * FROM (VALUES (7, encode('SECRET café 38°C\nline')), (8, NULL)) v(note_id, body)",
    );
    t.bind("p", &good);
    let (rows, ..) = t.run("sources: [{type: table, notes: p, columns: {text: body, id: note_id}}]").unwrap();
    let got: Vec<(Option<&str>, &str)> = rows.iter().map(|r| (r.1.as_deref(), r.3.as_str())).collect();
    assert_eq!(got, [(Some("7"), "SECRET café 38°C\nline"), (Some("8"), "")]);
    let bad = pq("cp1252.parquet", "SELECT * FROM (VALUES ('a'::BLOB), ('SECRET caf\\xE9'::BLOB)) v(body)");
    t.bind("p", &bad);
    let e = t.err("sources: [{type: table, notes: p, columns: {text: body}}]");
    assert!(e.contains("cp1252.parquet: data row 2: column `body` is binary that is not UTF-8"), "{e}");
    let list = pq("list.parquet", "SELECT ['SECRET', 'b'] AS body");
    t.bind("p", &list);
    let e = t.err("sources: [{type: table, notes: p, columns: {text: body}}]");
    assert!(e.contains("list.parquet: column `body` holds VARCHAR[] values, not text"), "{e}");
}

/// Issue: a `categories:` filter that matched nothing (a site's own category names) left an
/// empty corpus without a word. A listed category no row has, a source all of whose rows were
/// dropped, and an empty corpus are each a warning; one that matches keeps quiet.
#[test]
fn filters_that_drop_everything_are_warnings() {
    let mut t = T::new();
    t.file("x", "export.csv", "id;typ;body\n1;Entlassungsbrief;SECRET a\n2;Radiologiebefund;SECRET b\n");
    let table = |cats: &str| {
        format!(
            "sources: [{{type: table, notes: x, delimiter: ';', columns: {{text: body, id: id, category: typ}}, categories: [{cats}]}}]"
        )
    };
    let (rows, stats, _) = t.run(&table("Discharge summary, Radiology")).unwrap_or_else(|e| panic!("{e}"));
    assert!(rows.is_empty());
    assert_eq!(
        stats.warnings,
        [
            "categories `Discharge summary`, `Radiology` of source `table` matched none of the 2 rows read \
             (categories are compared trimmed, in any case)",
            "source `table` wrote no note: its filters dropped all 2 rows read (category: 2)",
            "the corpus is empty: no note was written, so the stages that read it get none",
        ]
    );
    let (rows, stats, _) = t.run(&table(" entlassungsbrief , Radiology")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rows.len(), 1);
    assert_eq!(
        stats.warnings,
        ["category `Radiology` of source `table` matched none of the 2 rows read (categories are compared \
             trimmed, in any case)"]
    );
    let (_, stats, _) = t.run(&table("Entlassungsbrief, Radiologiebefund")).unwrap_or_else(|e| panic!("{e}"));
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
}

/// `categories` that would drop every row whatever the files hold are refused before anything
/// runs, at the param.
#[test]
fn categories_that_can_match_nothing_are_refused_at_plan_time() {
    let problems = |yaml: &str| -> Vec<(String, String)> {
        let p: NotesParams = serde_yaml::from_str(yaml).unwrap();
        let dir = Path::new("/nonexistent");
        let ctx = ValidateContext::for_test("notes", dir, &[]);
        match <Notes as Stage>::validate(&p, &ctx) {
            Ok(()) => Vec::new(),
            Err(ps) => ps.into_iter().map(|p| (p.at.join("."), p.message)).collect(),
        }
    };
    assert_eq!(
        problems(
            "sources: [{type: table, notes: x, columns: {text: body}, categories: [Discharge summary]}]"
        ),
        [(
            "params.sources.0.categories".to_string(),
            "`categories` keeps rows by their category, but `columns` maps no `category` column: every row \
             would be dropped"
                .to_string()
        )]
    );
    assert_eq!(
        problems("sources: [{type: mimic3, notes: n, categories: []}]"),
        [(
            "params.sources.0.categories".to_string(),
            "`categories` is empty: every row would be dropped".to_string()
        )]
    );
    assert_eq!(
        problems("sources: [{type: mimic4, discharge: d, categories: [Discharge summary, Radiolgy]}]"),
        [(
            "params.sources.0.categories.1".to_string(),
            "`Radiolgy` is not a MIMIC-IV-Note category: it matches no row".to_string()
        )]
    );
    assert_eq!(
        problems("sources: [{type: mimic4, discharge: d, categories: [radiology]}]"),
        [(
            "params.sources.0.categories".to_string(),
            "`categories` keeps none of the files the source names (`discharge`): it would read nothing"
                .to_string()
        )]
    );
    assert!(
        problems("sources: [{type: mimic4, discharge: d, radiology: r, categories: [ radiology ]}]")
            .is_empty()
    );
    assert!(
        problems("sources: [{type: table, notes: x, columns: {text: b, category: c}, categories: [A]}]")
            .is_empty()
    );
}
