//! `format: mimic4`: `discharge.csv` and `radiology.csv` as MIMIC-IV-Note ships them.
//!
//! Unquoted header `note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text`; only
//! `text` is quoted (it always holds newlines). PHI is `___`. Notes come in groups of
//! [`PER_PATIENT`] consecutive notes sharing a `subject_id`; `note_id` is
//! `{subject_id}-{DS|RR}-{note_seq}`, unique, with `note_seq` counting up per patient and type.

use super::doc::{Date, Doc, Style};
use super::driver::{Chunk, NoteFormat, StreamSpec, push_quoted};
use super::mimic3::push_datetime;
use super::notes;
use super::rng::Rng;

pub const HEADER: &str = "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n";

pub const PER_PATIENT: u64 = 6;
const STREAM: u64 = 0x6d69_6d69_6334;
const STREAM_PATIENT: u64 = 0x7061_7469_656e;

pub struct Mimic4 {
    pub seed: u64,
}

struct Patient {
    subject: u64,
    first_admission: Date,
    ds_seq: u64,
    rr_seq: u64,
}

impl Mimic4 {
    fn note_rng(&self, i: u64) -> Rng {
        Rng::for_item(self.seed, STREAM, i)
    }

    /// Discharge summary (true) or radiology report: the first draw of the note's generator.
    fn is_discharge(rng: &mut Rng) -> bool {
        rng.chance(1, 2)
    }

    fn patient(&self, p: u64) -> Patient {
        let mut r = Rng::for_item(self.seed, STREAM_PATIENT, p);
        Patient {
            // Unique per patient: p * 97 + (0..97).
            subject: 10_000_000 + p * 97 + r.below(97),
            first_admission: Date::random(&mut r, 2110, 2200),
            ds_seq: r.range(10, 25),
            rr_seq: r.range(5, 30),
        }
    }

    /// Writes note `i`'s text; returns (is DS, patient, note_seq, admission index within patient).
    fn draw(&self, i: u64, d: &mut Doc) -> (bool, Patient, u64) {
        let mut rng = self.note_rng(i);
        let ds = Self::is_discharge(&mut rng);
        let p = i / PER_PATIENT;
        let patient = self.patient(p);
        let earlier =
            (p * PER_PATIENT..i).filter(|&k| Self::is_discharge(&mut self.note_rng(k)) == ds).count() as u64;
        let seq = if ds { patient.ds_seq } else { patient.rr_seq } + earlier;
        d.reset(rng);
        // Dates follow the patient: each note of the group a few weeks after the previous one.
        let adm = patient.first_admission.add(((i - p * PER_PATIENT) * 45) as i64 + d.range(0, 20) as i64);
        let los = (d.dis.days() - d.adm.days()).max(1);
        d.adm = adm;
        d.dis = adm.add(los);
        if ds {
            let target = notes::discharge_target(d);
            notes::discharge(d, target);
        } else {
            let study = d.rng.below(notes::STUDIES.len() as u64) as usize;
            notes::radiology(d, study);
        }
        (ds, patient, seq)
    }
}

impl NoteFormat for Mimic4 {
    fn style(&self) -> Style {
        Style::Mimic4
    }

    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec { path: "discharge.csv".into(), head: HEADER.into(), tail: Vec::new() },
            StreamSpec { path: "radiology.csv".into(), head: HEADER.into(), tail: Vec::new() },
        ]
    }

    fn text(&self, i: u64, d: &mut Doc) {
        self.draw(i, d);
    }

    fn note(&self, i: u64, d: &mut Doc, c: &mut Chunk) {
        let (ds, patient, seq) = self.draw(i, d);
        let r = &mut d.rng;
        let hadm = if ds || r.chance(7, 10) { Some(r.range(20_000_000, 29_999_999)) } else { None };
        let (charttime, storetime) = if ds {
            let store = d.dis.add(r.range(0, 3) as i64);
            ((d.dis, 0), Some((store, r.below(24 * 60) * 60)))
        } else {
            let stay = (d.dis.days() - d.adm.days()) as u64;
            let day = d.adm.add(r.below(stay + 1) as i64);
            let t = r.below(24 * 60 - 120) * 60;
            let store = if r.chance(17, 20) { Some((day, t + r.range(10, 119) * 60)) } else { None };
            ((day, t), store)
        };
        let out = &mut c.bufs[if ds { 0 } else { 1 }];
        super::doc::push_u64_bytes(out, patient.subject);
        out.extend_from_slice(if ds { b"-DS-" } else { b"-RR-" });
        super::doc::push_u64_bytes(out, seq);
        out.push(b',');
        super::doc::push_u64_bytes(out, patient.subject);
        out.push(b',');
        if let Some(h) = hadm {
            super::doc::push_u64_bytes(out, h);
        }
        out.extend_from_slice(if ds { b",DS," } else { b",RR," });
        super::doc::push_u64_bytes(out, seq);
        out.push(b',');
        push_datetime(out, charttime.0, charttime.1);
        out.push(b',');
        if let Some((day, s)) = storetime {
            push_datetime(out, day, s);
        }
        out.push(b',');
        push_quoted(out, &d.text);
        out.push(b'\n');
        c.finish_note(d.text.len() as u64);
    }
}
