use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::deid::{MarkCategory, classify_mark, marks};
use super::*;

fn gen_in(p: &SynthParams, cover: Option<&Path>) -> (tempfile::TempDir, Written) {
    let dir = tempfile::tempdir().unwrap();
    let w = generate(p, dir.path(), cover, &Quiet).unwrap();
    (dir, w)
}

fn params(format: Format, notes: u64, seed: u64) -> SynthParams {
    SynthParams { format, notes, seed, bytes: None }
}

/// Every file below `dir`, sorted, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn with_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap().install(f)
}

/// An RFC 4180 reader: records of fields, with whether each field was quoted.
fn parse_csv(data: &[u8]) -> Vec<Vec<(String, bool)>> {
    let text = std::str::from_utf8(data).expect("CSV is UTF-8");
    let b = text.as_bytes();
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), Vec::<u8>::new());
    let (mut i, mut quoted) = (0, false);
    while i < b.len() {
        match b[i] {
            b'"' if field.is_empty() && !quoted => {
                quoted = true;
                i += 1;
                loop {
                    assert!(i < b.len(), "unterminated quoted field");
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            field.push(b'"');
                            i += 2;
                        } else {
                            i += 1;
                            break;
                        }
                    } else {
                        field.push(b[i]);
                        i += 1;
                    }
                }
                assert!(
                    matches!(b.get(i), None | Some(b',') | Some(b'\n')),
                    "junk after a quoted field at {i}"
                );
            }
            b',' => {
                record.push((String::from_utf8(std::mem::take(&mut field)).unwrap(), quoted));
                quoted = false;
                i += 1;
            }
            b'\n' => {
                record.push((String::from_utf8(std::mem::take(&mut field)).unwrap(), quoted));
                records.push(std::mem::take(&mut record));
                quoted = false;
                i += 1;
            }
            c => {
                assert!(!quoted);
                assert_ne!(c, b'\r');
                field.push(c);
                i += 1;
            }
        }
    }
    assert!(field.is_empty() && record.is_empty(), "the file ends with a newline");
    records
}

fn read_csv(path: &Path) -> Vec<Vec<(String, bool)>> {
    parse_csv(&std::fs::read(path).unwrap())
}

#[test]
fn params_parse_with_defaults_and_reject_unknown_fields() {
    let p: SynthParams = serde_yaml::from_str("notes: 5").unwrap();
    assert_eq!((p.format, p.notes, p.seed, p.bytes), (Format::Mimic3, 5, 0, None));
    let p: SynthParams = serde_yaml::from_str("{format: i2b2, notes: 5, seed: 3, bytes: 100}").unwrap();
    assert_eq!((p.format, p.seed, p.bytes), (Format::I2b2, 3, Some(100)));
    assert!(serde_yaml::from_str::<SynthParams>("{notes: 5, sed: 1}").is_err());
    assert!(serde_yaml::from_str::<SynthParams>("{format: mimic5, notes: 5}").is_err());
    assert!(serde_yaml::from_str::<SynthParams>("{format: mimic3}").is_err());
    let outs: Vec<String> = Synth::outputs(&params(Format::Mimic4, 1, 0))
        .into_iter()
        .map(|o| format!("{}={}", o.name, o.path))
        .collect();
    assert_eq!(outs, ["discharge=discharge.csv", "radiology=radiology.csv"]);
}

#[test]
fn bad_params_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let e = generate(&params(Format::Mimic3, 0, 0), dir.path(), None, &Quiet).unwrap_err();
    assert!(e.to_string().contains("`notes` must be at least 1"), "{e}");
    let p = SynthParams { bytes: Some(0), ..params(Format::Mimic3, 3, 0) };
    assert!(generate(&p, dir.path(), None, &Quiet).unwrap_err().to_string().contains("`bytes`"));

    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "12\n\n34\n5x\n").unwrap();
    let e = generate(&params(Format::Mimic3, 10, 0), dir.path(), Some(&ids), &Quiet).unwrap_err().to_string();
    assert!(e.contains("ids.txt, line 4: `5x` is not a positive integer"), "{e}");
    std::fs::write(&ids, "0\n").unwrap();
    assert!(read_cover_ids(&ids).unwrap_err().to_string().contains("line 1: `0`"));
    std::fs::write(&ids, "1\n2\n3\n").unwrap();
    let e = generate(&params(Format::Mimic3, 2, 0), dir.path(), Some(&ids), &Quiet).unwrap_err().to_string();
    assert!(e.contains("lists 3 ids but `notes` is 2"), "{e}");
    let e = generate(&params(Format::Mimic4, 2, 0), dir.path(), Some(&ids), &Quiet).unwrap_err().to_string();
    assert!(e.contains("only to `format: mimic3`"), "{e}");
    let e = generate(&params(Format::Mimic3, 2, 0), dir.path(), Some(&dir.path().join("nope")), &Quiet)
        .unwrap_err();
    assert!(e.to_string().contains("read the cover_ids file"), "{e}");
}

#[test]
fn output_is_identical_across_runs_and_thread_counts() {
    for format in [Format::Mimic3, Format::Mimic4, Format::I2b2] {
        // More notes than one wave of chunks on two threads, so waves and chunks really interleave.
        let p = params(format, 1_500, 42);
        let one = with_threads(1, || gen_in(&p, None));
        let two = with_threads(2, || gen_in(&p, None));
        let again = with_threads(2, || gen_in(&p, None));
        assert_eq!(one.1, two.1);
        let (a, b, c) = (files(one.0.path()), files(two.0.path()), files(again.0.path()));
        assert!(a == b, "{format:?}: 1 vs 2 threads differ");
        assert!(b == c, "{format:?}: two runs differ");
        let other = gen_in(&params(format, 1_500, 43), None);
        assert!(files(other.0.path()) != a, "{format:?}: the seed changes nothing");
    }
}

#[test]
fn mimic3_csv_round_trips_with_eleven_fields() {
    let (dir, w) = gen_in(&params(Format::Mimic3, 2_000, 1), None);
    assert_eq!(w.notes, 2_000);
    let data = std::fs::read(dir.path().join("NOTEEVENTS.csv")).unwrap();
    assert!(data.starts_with(mimic3::HEADER.as_bytes()));
    let recs = parse_csv(&data);
    assert_eq!(recs.len(), 2_001);
    let header: Vec<&str> = recs[0].iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        header,
        [
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
            "TEXT"
        ]
    );
    assert!(recs[0].iter().all(|f| f.1), "the header is quoted");
    let mut categories = BTreeSet::new();
    let (mut empty_hadm, mut empty_charttime, mut errors, mut text_bytes) = (0, 0, 0, 0u64);
    for (k, r) in recs[1..].iter().enumerate() {
        assert_eq!(r.len(), 11, "record {k}");
        assert_eq!(r[0].0, (k + 1).to_string(), "ROW_IDs are 1..=n without cover_ids");
        for (col, (v, q)) in r.iter().enumerate() {
            let must_quote = matches!(col, 6 | 7 | 10);
            assert_eq!(*q, must_quote, "record {k} column {col} quoting: {v:?}");
            if !must_quote && !v.is_empty() {
                assert!(v.bytes().all(|b| b.is_ascii_digit() || b"-: ".contains(&b)), "{v:?}");
            }
        }
        assert_eq!(r[3].0.len(), 10, "CHARTDATE {:?}", r[3].0);
        assert!(r[4].0.is_empty() || r[4].0.len() == 19, "CHARTTIME {:?}", r[4].0);
        assert!(r[9].0.is_empty() || r[9].0 == "1");
        empty_hadm += r[2].0.is_empty() as u32;
        empty_charttime += r[4].0.is_empty() as u32;
        errors += (r[9].0 == "1") as u32;
        categories.insert(r[6].0.clone());
        let text = &r[10].0;
        assert!(text.contains('\n'), "TEXT is multi-line");
        text_bytes += text.len() as u64;
    }
    assert_eq!(text_bytes, w.text_bytes);
    assert!(
        empty_hadm > 20 && empty_charttime > 100 && errors > 2,
        "{empty_hadm} {empty_charttime} {errors}"
    );
    for c in [
        "Discharge summary",
        "Radiology",
        "Nursing/other",
        "Nursing",
        "Physician ",
        "ECG",
        "Echo",
        "Respiratory ",
    ] {
        assert!(categories.contains(c), "category {c:?} missing: {categories:?}");
    }
}

#[test]
fn every_deid_mark_category_appears_in_two_thousand_notes() {
    let (dir, _) = gen_in(&params(Format::Mimic3, 2_000, 0), None);
    let recs = read_csv(&dir.path().join("NOTEEVENTS.csv"));
    let mut seen = std::collections::BTreeMap::new();
    for r in &recs[1..] {
        for m in marks(&r[10].0) {
            *seen.entry(classify_mark(m)).or_insert(0) += 1;
        }
    }
    let seen: BTreeSet<MarkCategory> = seen.into_keys().collect();
    let missing: Vec<MarkCategory> =
        MarkCategory::ALL.iter().copied().filter(|c| !seen.contains(c)).collect();
    assert!(missing.is_empty(), "categories never written: {missing:?}");
}

#[test]
fn text_has_the_content_later_stages_need() {
    let (dir, _) = gen_in(&params(Format::Mimic3, 2_000, 5), None);
    let recs = read_csv(&dir.path().join("NOTEEVENTS.csv"));
    let all: String = recs[1..].iter().map(|r| r[10].0.as_str()).collect::<Vec<_>>().join("\n");
    for needle in ["°", "µg", "é", "–", "\"", ",", "BP ", "HR ", "SpO2 "] {
        assert!(all.contains(needle), "no {needle:?} in the sample");
    }
    assert!(all.lines().any(|l| l.starts_with(|c: char| c.is_ascii_digit())), "no line starts with a digit");
    let summaries: Vec<&str> = recs[1..]
        .iter()
        .filter(|r| r[6].0 == "Discharge summary" && r[7].0 == "Report")
        .map(|r| r[10].0.as_str())
        .collect();
    assert!(summaries.len() > 300);
    for s in &summaries {
        for section in [
            "Admission Date:",
            "Discharge Date:",
            "Service:",
            "Chief Complaint:",
            "History of Present Illness:",
            "Past Medical History:",
            "Medications on Admission:",
            "Discharge Medications:",
            "Physical Exam:",
            "Brief Hospital Course:",
            "Discharge Diagnosis:",
            "Discharge Instructions:",
            "Followup Instructions:",
        ] {
            assert!(s.contains(section), "a discharge summary lacks {section:?}");
        }
        assert!(s.contains("1. ") && s.contains(" mg "), "numbered discharge medications with doses");
    }
    // Word counts: up to ~2,000 words, with a good share in the range that fills 1,024-1,536-token
    // windows (this text runs ~2.6 LLaMA tokens per word: marks and numbers split finely, so
    // roughly 400-600 words).
    let words: Vec<usize> = summaries.iter().map(|s| s.split_whitespace().count()).collect();
    let (min, max) = (*words.iter().min().unwrap(), *words.iter().max().unwrap());
    let window = words.iter().filter(|&&w| (400..=600).contains(&w)).count();
    assert!(min < 600 && (1_500..=2_300).contains(&max), "words {min}..{max}");
    assert!(window * 12 > words.len(), "only {window} of {} summaries in 400-600 words", words.len());
    let short = recs[1..].iter().filter(|r| r[10].0.lines().count() <= 6).count();
    assert!(short > 50, "only {short} notes of a few lines");
    let radiology = recs[1..].iter().find(|r| r[6].0 == "Radiology").unwrap();
    for section in ["EXAMINATION:", "INDICATION:", "COMPARISON:", "FINDINGS:", "IMPRESSION:"] {
        assert!(radiology[10].0.contains(section));
    }
    assert!(
        recs[1..].iter().any(|r| r[6].0 == "Radiology" && r[7].0.contains(',')),
        "a DESCRIPTION with a comma"
    );
}

#[test]
fn cover_ids_are_all_used_and_ids_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let ids_path = dir.path().join("ids.txt");
    // Unsorted, a duplicate, a blank line, CRLF, no trailing newline; small and large ids.
    std::fs::write(&ids_path, "1213023\n48\r\n48\n\n700\n5\n999999").unwrap();
    let cover = [5u64, 48, 700, 999_999, 1_213_023];
    for notes in [5, 6, 300] {
        let (out, w) = gen_in(&params(Format::Mimic3, notes, 9), Some(&ids_path));
        assert_eq!(w.notes, notes);
        let recs = read_csv(&out.path().join("NOTEEVENTS.csv"));
        let ids: Vec<u64> = recs[1..].iter().map(|r| r[0].0.parse().unwrap()).collect();
        assert_eq!(ids.len() as u64, notes);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending and unique");
        assert!(cover.iter().all(|c| ids.contains(c)), "{notes}: {ids:?}");
        let fill: Vec<u64> = ids.iter().copied().filter(|i| !cover.contains(i)).collect();
        let expect: Vec<u64> = (1..).filter(|i| !cover.contains(i)).take(fill.len()).collect();
        assert_eq!(fill, expect, "the other ids are the smallest free ones");
    }
    // The texts do not depend on the ids.
    let (a, _) = gen_in(&params(Format::Mimic3, 300, 9), Some(&ids_path));
    let (b, _) = gen_in(&params(Format::Mimic3, 300, 9), None);
    let texts = |d: &Path| -> Vec<String> {
        read_csv(&d.join("NOTEEVENTS.csv")).into_iter().skip(1).map(|r| r[10].0.clone()).collect()
    };
    assert_eq!(texts(a.path()), texts(b.path()));
}

#[test]
fn cover_ids_from_the_shared_filter_list() {
    let list = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/mimiciii_filter_index.txt"));
    if !list.exists() {
        eprintln!("SKIP cover_ids_from_the_shared_filter_list: {} not found", list.display());
        return;
    }
    let want = read_cover_ids(list).unwrap();
    assert_eq!(want.len(), 404);
    let (out, _) = gen_in(&params(Format::Mimic3, 1_000, 0), Some(list));
    let recs = read_csv(&out.path().join("NOTEEVENTS.csv"));
    let ids: HashSet<u64> = recs[1..].iter().map(|r| r[0].0.parse().unwrap()).collect();
    assert_eq!(ids.len(), 1_000);
    assert!(want.iter().all(|i| ids.contains(i)));
}

#[test]
fn bytes_stops_after_the_note_that_reaches_it_and_is_a_prefix() {
    let full = gen_in(&params(Format::Mimic3, 2_000, 3), None);
    let p = SynthParams { bytes: Some(1_000_000), ..params(Format::Mimic3, 2_000, 3) };
    let (dir, w) = gen_in(&p, None);
    assert!(w.notes < 2_000 && w.text_bytes >= 1_000_000, "{w:?}");
    let recs = read_csv(&dir.path().join("NOTEEVENTS.csv"));
    assert_eq!(recs.len() as u64, w.notes + 1);
    let last = recs.last().unwrap()[10].0.len() as u64;
    assert!(w.text_bytes - last < 1_000_000);
    let a = std::fs::read(dir.path().join("NOTEEVENTS.csv")).unwrap();
    let b = std::fs::read(full.0.path().join("NOTEEVENTS.csv")).unwrap();
    assert!(b.starts_with(&a));
    // `notes` still caps it.
    let p = SynthParams { bytes: Some(u64::MAX), ..params(Format::Mimic3, 50, 3) };
    assert_eq!(gen_in(&p, None).1.notes, 50);

    // With cover_ids, the count is found first and the same notes are written.
    let ids_path = dir.path().join("ids.txt");
    std::fs::write(&ids_path, "77777\n3\n").unwrap();
    let p = SynthParams { bytes: Some(1_000_000), ..params(Format::Mimic3, 2_000, 3) };
    let (c, wc) = gen_in(&p, Some(&ids_path));
    assert_eq!(wc, w);
    let recs = read_csv(&c.path().join("NOTEEVENTS.csv"));
    assert_eq!(recs.last().unwrap()[0].0, "77777");
    let p = SynthParams { bytes: Some(1), ..params(Format::Mimic3, 2_000, 3) };
    let e = generate(&p, c.path(), Some(&ids_path), &Quiet).unwrap_err().to_string();
    assert!(e.contains("lists 2 ids but `bytes: 1` gives 1 notes"), "{e}");
}

#[test]
fn mimic4_files_have_the_note_shape() {
    let (dir, w) = gen_in(&params(Format::Mimic4, 600, 2), None);
    let mut ids = HashSet::new();
    let mut n = 0;
    for (file, ty) in [("discharge.csv", "DS"), ("radiology.csv", "RR")] {
        let data = std::fs::read(dir.path().join(file)).unwrap();
        assert!(data.starts_with(mimic4::HEADER.as_bytes()));
        let recs = parse_csv(&data);
        assert!(recs[0].iter().all(|f| !f.1), "the header is not quoted");
        assert!(recs.len() > 200, "{file}: {}", recs.len());
        for r in &recs[1..] {
            n += 1;
            assert_eq!(r.len(), 8);
            let (subject, rest) = r[0].0.split_once('-').unwrap();
            assert_eq!(subject, r[1].0);
            assert_eq!(rest, format!("{ty}-{}", r[4].0));
            assert_eq!(r[3].0, ty);
            assert!(subject.len() == 8 && subject.starts_with('1'), "{subject}");
            assert!(ids.insert(r[0].0.clone()), "duplicate note_id {}", r[0].0);
            assert_eq!(r[5].0.len(), 19);
            if ty == "DS" {
                assert!(r[5].0.ends_with(" 00:00:00") && !r[2].0.is_empty());
            }
            assert!(r.iter().enumerate().all(|(k, f)| f.1 == (k == 7)), "only text is quoted");
            assert!(r[7].0.contains('\n') && r[7].0.contains("___"));
            if ty == "RR" {
                assert!(r[7].0.contains("IMPRESSION:"));
            } else {
                assert!(r[7].0.contains("Discharge Date:") && r[7].0.contains(" \n"));
            }
        }
    }
    assert_eq!(n, w.notes);
}

/// The text between `start` and `end` markers.
fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let a = s.find(start).unwrap() + start.len();
    let b = s[a..].find(end).unwrap() + a;
    &s[a..b]
}

fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    between(tag, &format!(" {name}=\""), "\"")
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[test]
fn i2b2_xml_offsets_point_at_the_tagged_text_and_json_matches() {
    let (dir, w) = gen_in(&params(Format::I2b2, 120, 4), None);
    assert_eq!(w.notes, 120);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("i2b2.json")).unwrap()).unwrap();
    let data = json["data"].as_array().unwrap();
    assert_eq!(data.len(), 120);
    let mut types = BTreeSet::new();
    let mut non_ascii_tag = false;
    for (i, entry) in data.iter().enumerate() {
        let name = i2b2::record_name(i as u64);
        assert_eq!(entry["title"], name.as_str());
        let paragraphs = entry["paragraphs"].as_array().unwrap();
        assert_eq!(paragraphs.len(), 1);
        assert_eq!(paragraphs[0]["qas"], serde_json::json!([]));
        let context = paragraphs[0]["context"].as_str().unwrap();
        let txt = std::fs::read_to_string(dir.path().join(format!("notes/{name}.txt"))).unwrap();
        assert_eq!(txt, context);
        let xml = std::fs::read_to_string(dir.path().join(format!("notes/{name}.xml"))).unwrap();
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<deIdi2b2>\n<TEXT><![CDATA["));
        assert!(xml.ends_with("]]></TEXT>\n<TAGS>\n") || xml.contains("</TAGS>\n</deIdi2b2>\n"));
        let cdata = between(&xml, "<![CDATA[", "]]></TEXT>");
        assert_eq!(cdata, txt);
        let chars: Vec<char> = cdata.chars().collect();
        let tags = between(&xml, "<TAGS>\n", "</TAGS>");
        let mut count = 0;
        for (k, tag) in tags.lines().enumerate() {
            count += 1;
            assert!(tag.starts_with('<') && tag.ends_with(" comment=\"\" />"), "{tag}");
            assert_eq!(attr(tag, "id"), format!("P{k}"));
            let start: usize = attr(tag, "start").parse().unwrap();
            let end: usize = attr(tag, "end").parse().unwrap();
            let expect: String = chars[start..end].iter().collect();
            assert_eq!(unescape(attr(tag, "text")), expect, "{name} {tag}");
            non_ascii_tag |= !expect.is_ascii();
            types.insert(format!("{}/{}", &tag[1..tag.find(' ').unwrap()], attr(tag, "TYPE")));
        }
        assert!(count > 3, "{name}: only {count} tags");
        assert!(!context.contains("[**") && !context.contains("___"));
    }
    assert!(non_ascii_tag, "offsets are only tested on ASCII");
    for t in [
        "NAME/PATIENT",
        "NAME/DOCTOR",
        "DATE/DATE",
        "AGE/AGE",
        "LOCATION/HOSPITAL",
        "ID/MEDICALRECORD",
        "CONTACT/PHONE",
    ] {
        assert!(types.contains(t), "no {t} tag: {types:?}");
    }
}

#[test]
fn the_public_function_reports_progress() {
    struct Count(std::sync::Mutex<(Option<u64>, u64)>);
    impl Observer for Count {
        fn total(&self, n: Option<u64>) {
            self.0.lock().unwrap().0 = n;
        }
        fn progress(&self, n: u64) {
            self.0.lock().unwrap().1 = n;
        }
    }
    let c = Count(Default::default());
    let dir = tempfile::tempdir().unwrap();
    generate(&params(Format::Mimic3, 300, 0), dir.path(), None, &c).unwrap();
    assert_eq!(*c.0.lock().unwrap(), (Some(300), 300));

    struct Cancelled;
    impl Observer for Cancelled {
        fn cancelled(&self) -> bool {
            true
        }
    }
    let e = generate(&params(Format::Mimic3, 300, 0), dir.path(), None, &Cancelled).unwrap_err();
    assert!(matches!(e, StageError::Cancelled));
}

fn fnv1a(files: &[(String, Vec<u8>)]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for (name, data) in files {
        for b in name.bytes().chain([0]).chain(data.iter().copied()).chain([0]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A small corpus of each format, pinned. Downstream cache keys hold these bytes' hashes, so a
/// change must come with a bump of `Synth::VERSION` (and new pins).
#[test]
fn output_is_pinned_bump_the_version_when_it_changes() {
    assert_eq!(Synth::VERSION, 1, "update the pins below with the version");
    for (format, pin) in [
        (Format::Mimic3, 0x2a71fb0fc08c07d5u64),
        (Format::Mimic4, 0x983cde0a1ff1b4c9),
        (Format::I2b2, 0x91c259dca94f347a),
    ] {
        let (dir, _) = gen_in(&params(format, 60, 0), None);
        let h = fnv1a(&files(dir.path()));
        assert_eq!(
            h, pin,
            "{format:?}: synth output changed (now {h:#018x}); if on purpose, bump Synth::VERSION and update the pin"
        );
    }
}
