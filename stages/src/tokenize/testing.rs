//! Test and benchmark support: corpora of synthetic notes, written with [`camel_corpus::write`].
//! Not part of the stage; public only so that `benches/` and `tests/` can use it.

use std::path::Path;

use camel_corpus::Note;

use crate::synth::{Format, Quiet, SynthParams, generate};

/// The `text` column of notes written by `synth` (`format: mimic3` and `mimic4` alternate by
/// chunk, so that `[** … **]` and `___` marks both occur), about `bytes` bytes of note text, in a
/// deterministic order. `work` is an existing directory for synth's CSV files.
pub fn synthetic_notes(bytes: u64, seed: u64, work: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut round = 0u64;
    while total < bytes {
        let chunk = (bytes - total).min(8_000_000);
        for format in [Format::Mimic4, Format::Mimic3] {
            let dir = work.join(format!("synth-{round}-{format:?}"));
            std::fs::create_dir_all(&dir).expect("create a synth directory");
            let p = SynthParams {
                format,
                notes: u64::MAX / 2,
                seed: seed.wrapping_mul(1000).wrapping_add(round),
                bytes: Some(chunk.div_ceil(2)),
            };
            generate(&p, &dir, None, &Quiet).expect("synth");
            let files: &[&str] = match format {
                Format::Mimic4 => &["discharge.csv", "radiology.csv"],
                _ => &["NOTEEVENTS.csv"],
            };
            for f in files {
                let data = std::fs::read_to_string(dir.join(f)).expect("synth CSV");
                for text in csv_last_column(&data) {
                    total += text.len() as u64;
                    out.push(text);
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        round += 1;
    }
    out
}

/// Hand-made notes that exercise the edges of the tokenizer and the `[ANON]` replacement.
pub fn edge_notes() -> Vec<String> {
    [
        "",
        "___",
        "____",
        "Name: ___ Unit No: ___\nAdmission Date: ___ Discharge Date: ___",
        "a___b ___x x___ __ _ ______",
        "  leading and  double  spaces, trailing  ",
        "\n\nnewlines\r\nand\ttabs\n",
        "ünïcödé °C µg/kg – “quotes” 日本語 🙂",
        "<s> literal special tokens </s> <unk> [ANON] in the text",
        "1. Aspirin 81 mg PO DAILY\n2. Metoprolol 25 mg PO BID",
    ]
    .into_iter()
    .map(str::to_string)
    .collect()
}

/// Writes `texts` as a corpus.parquet at `path`.
pub fn write_corpus(path: &Path, texts: &[String]) {
    let notes: Vec<Note> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| Note {
            source: Some("synth".into()),
            id: Some(i.to_string()),
            category: None,
            text: t.clone(),
        })
        .collect();
    camel_corpus::write(path, &notes).expect("write the corpus");
}

/// The last field of every record after the header (RFC 4180; synth quotes the text field).
fn csv_last_column(data: &str) -> Vec<String> {
    let b = data.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut field, mut header) = (0, Vec::<u8>::new(), true);
    while i < b.len() {
        match b[i] {
            b'"' if field.is_empty() => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'"' {
                        if b.get(i + 1) == Some(&b'"') {
                            field.push(b'"');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    field.push(b[i]);
                    i += 1;
                }
            }
            b',' => {
                field.clear();
                i += 1;
            }
            b'\n' => {
                if !header {
                    out.push(String::from_utf8(std::mem::take(&mut field)).expect("UTF-8"));
                }
                field.clear();
                header = false;
                i += 1;
            }
            c => {
                field.push(c);
                i += 1;
            }
        }
    }
    out
}
