//! `format: i2b2`: a directory of n2c2-2014-style notes, and the same notes as SQuAD-shaped JSON.
//!
//! For each note `NNN-RR` (patient `NNN` from 100, record `RR` from 01, five records per patient)
//! the directory holds `NNN-RR.txt` (the text) and `NNN-RR.xml`:
//!
//! ```text
//! <?xml version="1.0" encoding="UTF-8" ?>
//! <deIdi2b2>
//! <TEXT><![CDATA[...the text...]]></TEXT>
//! <TAGS>
//! <DATE id="P0" start="13" end="23" text="2067-05-03" TYPE="DATE" comment="" />
//! </TAGS>
//! </deIdi2b2>
//! ```
//!
//! `start`/`end` count Unicode characters (code points) from the start of the CDATA content, as
//! Python's `text[start:end]` does. `i2b2.json` is `{"data": [{"title": "NNN-RR", "paragraphs":
//! [{"context": text, "qas": []}]}, ...]}`.

use super::doc::{Doc, Style};
use super::driver::{Chunk, NoteFormat, StreamSpec};
use super::notes;
use super::rng::Rng;

pub const PER_PATIENT: u64 = 5;
const STREAM: u64 = 0x6932_6232;

pub struct I2b2 {
    pub seed: u64,
}

/// `100-01`, `100-02`, ...
pub fn record_name(i: u64) -> String {
    format!("{:03}-{:02}", 100 + i / PER_PATIENT, i % PER_PATIENT + 1)
}

impl I2b2 {
    fn draw(&self, i: u64, d: &mut Doc) {
        let mut rng = Rng::for_item(self.seed, STREAM, i);
        let discharge = rng.chance(3, 5);
        d.reset(rng);
        if discharge {
            let target = notes::discharge_target(d).min(9_000);
            notes::discharge(d, target);
        } else {
            let target = d.range(1_500, 7_000) as usize;
            notes::clinic(d, target);
        }
    }
}

fn push_xml_escaped(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&apos;"),
            _ => out.push(b),
        }
    }
}

/// The n2c2-2014 XML of a note.
pub fn xml(d: &Doc) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.text.len() + 200 + 120 * d.spans.len());
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<deIdi2b2>\n<TEXT><![CDATA[");
    debug_assert!(!d.text.contains("]]>"));
    out.extend_from_slice(d.text.as_bytes());
    out.extend_from_slice(b"]]></TEXT>\n<TAGS>\n");
    // Spans are in text order: convert byte offsets to character offsets in one pass.
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut to_chars = |target: usize| {
        chars += d.text[byte..target].chars().count();
        byte = target;
        chars
    };
    for (k, sp) in d.spans.iter().enumerate() {
        let start = to_chars(sp.start);
        let end = to_chars(sp.end);
        out.push(b'<');
        out.extend_from_slice(sp.elem.as_bytes());
        out.extend_from_slice(format!(" id=\"P{k}\" start=\"{start}\" end=\"{end}\" text=\"").as_bytes());
        push_xml_escaped(&mut out, &d.text[sp.start..sp.end]);
        out.extend_from_slice(b"\" TYPE=\"");
        out.extend_from_slice(sp.ty.as_bytes());
        out.extend_from_slice(b"\" comment=\"\" />\n");
    }
    out.extend_from_slice(b"</TAGS>\n</deIdi2b2>\n");
    out
}

impl NoteFormat for I2b2 {
    fn style(&self) -> Style {
        Style::I2b2
    }

    fn streams(&self) -> Vec<StreamSpec> {
        vec![StreamSpec { path: "i2b2.json".into(), head: b"{\"data\": [".to_vec(), tail: b"]}\n".to_vec() }]
    }

    fn files_dir(&self) -> Option<&'static str> {
        Some("notes")
    }

    fn text(&self, i: u64, d: &mut Doc) {
        self.draw(i, d);
    }

    fn note(&self, i: u64, d: &mut Doc, c: &mut Chunk) {
        self.draw(i, d);
        let name = record_name(i);
        let out = &mut c.bufs[0];
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(b"{\"title\": ");
        serde_json::to_writer(&mut *out, &name).expect("writing JSON to memory");
        out.extend_from_slice(b", \"paragraphs\": [{\"context\": ");
        serde_json::to_writer(&mut *out, &d.text).expect("writing JSON to memory");
        out.extend_from_slice(b", \"qas\": []}]}");
        c.files.push((format!("notes/{name}.txt"), d.text.as_bytes().to_vec()));
        c.files.push((format!("notes/{name}.xml"), xml(d)));
        c.finish_note(d.text.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(record_name(0), "100-01");
        assert_eq!(record_name(4), "100-05");
        assert_eq!(record_name(5), "101-01");
    }
}
