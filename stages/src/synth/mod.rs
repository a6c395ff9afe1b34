//! `kind: synth` — synthetic clinical notes in the exact file shapes of the real corpora.
//!
//! No MIMIC data lives in this project: `synth` writes what the corpus stages and their tests read,
//! deterministically, byte for byte, from its params.
//!
//! | `format` | outputs | shape |
//! |---|---|---|
//! | `mimic3` (default) | `notes` = `NOTEEVENTS.csv` | MIMIC-III v1.4: quoted header, 11 columns, `[** … **]` marks ([`mimic3`]) |
//! | `mimic4` | `discharge` = `discharge.csv`, `radiology` = `radiology.csv` | MIMIC-IV-Note: `note_id,subject_id,…,text`, `___` marks ([`mimic4`]) |
//! | `i2b2` | `notes` = `notes/` (`NNN-RR.txt` + `NNN-RR.xml`), `squad` = `i2b2.json` | n2c2-2014 XML with PHI tags, SQuAD-shaped JSON ([`i2b2`]) |
//!
//! Params:
//!
//! - `notes` (required, ≥ 1): how many notes to write; with `bytes`, the most to write.
//! - `seed` (default 0): the same seed and params give the same bytes, whatever the thread count.
//! - `bytes` (optional, ≥ 1): stop after the first note that brings the total **note text** (UTF-8,
//!   before CSV quoting or JSON escaping) to at least this many bytes. The files are a little
//!   larger (mimic3: ~3% for the other columns and quoting; i2b2 writes each text three times).
//!   Which notes are written never depends on `bytes` beyond where the run stops: a `bytes` run is
//!   a prefix of the same run without it.
//!
//! Input `cover_ids` (optional, mimic3 only): a file of ROW_IDs, one positive integer per line
//! (blank lines skipped, duplicates merged), like CAMEL's 404-id MIMIC-III filter list. The written
//! ROW_IDs are then every listed id plus the smallest positive integers not listed, `notes` in all,
//! and rows are in ascending ROW_ID order. (Real `NOTEEVENTS.csv` is only roughly in ROW_ID order;
//! readers must not rely on order.) Without it ROW_IDs are `1..=notes`. With `bytes`, the count is
//! found first by generating the texts once without writing them, since the ids depend on it.
//!
//! Notes: discharge summaries (Admission Date … Followup, a few lines to ~2,000 words, so that
//! 1,024–1,536-token windows are well populated), radiology reports, ECG, echo, nursing, physician,
//! respiratory and smaller note types; non-ASCII (`°`, `µg`, `é`, `–`), commas, double quotes and
//! lines starting with digits occur throughout. Each note is drawn from its own xoshiro256**
//! generator (module [`rng`], no `rand`), seeded from `seed` and the note's index; notes are
//! generated in chunks on the rayon pool and written in order.

pub mod deid;
mod doc;
mod driver;
pub mod i2b2;
pub mod mimic3;
pub mod mimic4;
mod notes;
pub mod rng;
mod vocab;

use std::path::{Path, PathBuf};

use camel_engine::{InputSpec, OutputSpec, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};

pub use driver::{Observer, Quiet, Written};

pub struct Synth;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Mimic3,
    Mimic4,
    I2b2,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynthParams {
    /// Which corpus's shape to write.
    #[serde(default)]
    pub format: Format,
    /// How many notes (the most, when `bytes` is set).
    #[schemars(range(min = 1))]
    pub notes: u64,
    /// Seeds every random choice: the same seed writes the same bytes.
    #[serde(default)]
    pub seed: u64,
    /// Stop once the note text reaches this many bytes.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub bytes: Option<u64>,
}

impl SynthParams {
    pub fn new(format: Format, notes: u64) -> Self {
        SynthParams { format, notes, seed: 0, bytes: None }
    }
}

pub const COVER_IDS: &str = "cover_ids";

impl Stage for Synth {
    type Params = SynthParams;
    const KIND: &'static str = "synth";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "write synthetic clinical notes shaped like MIMIC-III, MIMIC-IV-Note or i2b2";

    fn inputs(p: &SynthParams) -> InputSpec {
        let optional = if p.format == Format::Mimic3 { vec![COVER_IDS.into()] } else { vec![] };
        InputSpec::Named { required: vec![], optional }
    }

    fn outputs(p: &SynthParams) -> Vec<OutputSpec> {
        match p.format {
            Format::Mimic3 => vec![OutputSpec::new("notes", "NOTEEVENTS.csv")],
            Format::Mimic4 => {
                vec![
                    OutputSpec::new("discharge", "discharge.csv"),
                    OutputSpec::new("radiology", "radiology.csv"),
                ]
            }
            Format::I2b2 => vec![OutputSpec::new("notes", "notes"), OutputSpec::new("squad", "i2b2.json")],
        }
    }

    fn run(p: &SynthParams, ctx: &StageContext) -> Result<(), StageError> {
        let cover = ctx.inputs().get(COVER_IDS).map(PathBuf::as_path);
        let w = generate(p, ctx.out_dir(), cover, &CtxObserver(ctx))?;
        ctx.log(&format!("synth: wrote {} notes, {} bytes of note text", w.notes, w.text_bytes));
        Ok(())
    }
}

struct CtxObserver<'a>(&'a StageContext);

impl Observer for CtxObserver<'_> {
    fn total(&self, notes: Option<u64>) {
        self.0.progress().set_total(notes, "notes");
    }
    fn progress(&self, notes: u64) {
        self.0.progress().set_position(notes);
    }
    fn message(&self, msg: &str) {
        self.0.progress().message(msg);
    }
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

fn validate(p: &SynthParams, cover_ids: Option<&Path>) -> Result<(), StageError> {
    if p.notes == 0 {
        return Err(StageError::msg("`notes` must be at least 1"));
    }
    if p.bytes == Some(0) {
        return Err(StageError::msg("`bytes` must be at least 1 when set (or leave it out)"));
    }
    if cover_ids.is_some() && p.format != Format::Mimic3 {
        return Err(StageError::msg(format!(
            "input `{COVER_IDS}` applies only to `format: mimic3` (ROW_IDs), not {:?}",
            p.format
        )));
    }
    Ok(())
}

/// The ids of a `cover_ids` file: sorted, distinct, positive.
pub fn read_cover_ids(path: &Path) -> Result<Vec<u64>, StageError> {
    let text = std::fs::read_to_string(path)
        .map_err(StageError::io(format!("read the {COVER_IDS} file {}", path.display())))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        match t.parse::<u64>() {
            Ok(id) if id > 0 => ids.push(id),
            _ => {
                return Err(StageError::msg(format!(
                    "{COVER_IDS} file {}, line {}: `{}` is not a positive integer (expected one ROW_ID per line)",
                    path.display(),
                    n + 1,
                    t.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Writes the corpus `p` describes into `out_dir` (which must exist), on the current rayon pool.
/// `cover_ids` is the path of a ROW_ID list (mimic3 only).
pub fn generate(
    p: &SynthParams,
    out_dir: &Path,
    cover_ids: Option<&Path>,
    obs: &dyn Observer,
) -> Result<Written, StageError> {
    validate(p, cover_ids)?;
    match p.format {
        Format::Mimic3 => {
            let cover = cover_ids.map(read_cover_ids).transpose()?;
            let (mut notes, mut bytes) = (p.notes, p.bytes);
            if let Some(cover) = &cover {
                if let Some(b) = bytes {
                    obs.message("counting notes for `bytes`");
                    let counting = mimic3::Mimic3 { seed: p.seed, ids: mimic3::RowIds::dense() };
                    notes = driver::count_for_bytes(&counting, notes, b, obs)?;
                    bytes = None;
                }
                if cover.len() as u64 > notes {
                    let why = if p.bytes.is_some() && notes < p.notes {
                        format!("`bytes: {}` gives {notes} notes", p.bytes.unwrap_or(0))
                    } else {
                        format!("`notes` is {notes}")
                    };
                    return Err(StageError::msg(format!(
                        "{COVER_IDS} lists {} ids but {why}: raise `notes`/`bytes` to at least that many notes",
                        cover.len()
                    )));
                }
            }
            let ids = match &cover {
                Some(c) => mimic3::RowIds::new(notes, c),
                None => mimic3::RowIds::dense(),
            };
            obs.total(if bytes.is_none() { Some(notes) } else { None });
            driver::run(&mimic3::Mimic3 { seed: p.seed, ids }, notes, bytes, out_dir, obs)
        }
        Format::Mimic4 => {
            obs.total(if p.bytes.is_none() { Some(p.notes) } else { None });
            driver::run(&mimic4::Mimic4 { seed: p.seed }, p.notes, p.bytes, out_dir, obs)
        }
        Format::I2b2 => {
            obs.total(if p.bytes.is_none() { Some(p.notes) } else { None });
            driver::run(&i2b2::I2b2 { seed: p.seed }, p.notes, p.bytes, out_dir, obs)
        }
    }
}

#[cfg(test)]
mod tests;
