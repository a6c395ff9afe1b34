//! `format: mimic3`: `NOTEEVENTS.csv` as MIMIC-III v1.4 ships it.
//!
//! Quoted header; numbers and dates unquoted; CATEGORY, DESCRIPTION and TEXT always quoted with `"`
//! doubled inside; empty fields empty. Rows are in ROW_ID order (see [`RowIds`]).

use super::doc::{Date, Doc, Style};
use super::driver::{Chunk, NoteFormat, StreamSpec, push_quoted};
use super::notes;
use super::rng::Rng;

pub const HEADER: &str = "\"ROW_ID\",\"SUBJECT_ID\",\"HADM_ID\",\"CHARTDATE\",\"CHARTTIME\",\"STORETIME\",\"CATEGORY\",\"DESCRIPTION\",\"CGID\",\"ISERROR\",\"TEXT\"\n";

/// Which ROW_ID the note at each position gets: `1..=fill_max` densely, then the cover ids above
/// `fill_max`, ascending. `fill_max` is chosen so that the ids are exactly the cover ids plus the
/// smallest positive integers that are not cover ids, `n` in all.
#[derive(Clone, Debug)]
pub struct RowIds {
    fill_max: u64,
    above: Vec<u64>,
}

impl RowIds {
    /// ROW_IDs 1, 2, 3, ...
    pub fn dense() -> RowIds {
        RowIds { fill_max: u64::MAX, above: Vec::new() }
    }

    /// `n` ids including every id of `cover` (sorted, distinct, positive, at most `n` of them).
    pub fn new(n: u64, cover: &[u64]) -> RowIds {
        debug_assert!(cover.len() as u64 <= n && cover.windows(2).all(|w| w[0] < w[1]));
        // The (n - |cover|)-th positive integer that is not a cover id.
        let mut v = n - cover.len() as u64;
        for &c in cover {
            if c <= v {
                v += 1;
            } else {
                break;
            }
        }
        RowIds { fill_max: v, above: cover.iter().copied().filter(|&c| c > v).collect() }
    }

    pub fn get(&self, pos: u64) -> u64 {
        if pos < self.fill_max { pos + 1 } else { self.above[(pos - self.fill_max) as usize] }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Discharge,
    Radiology,
    NursingOther,
    Nursing,
    Physician,
    Ecg,
    Echo,
    Respiratory,
    Other(usize),
}

/// CATEGORY values (with MIMIC-III's trailing spaces), their weight per mille, and the note kind.
const CATEGORIES: &[(&str, u32, Kind)] = &[
    ("Discharge summary", 250, Kind::Discharge),
    ("Radiology", 200, Kind::Radiology),
    ("Nursing/other", 150, Kind::NursingOther),
    ("Nursing", 80, Kind::Nursing),
    ("Physician ", 80, Kind::Physician),
    ("ECG", 60, Kind::Ecg),
    ("Echo", 40, Kind::Echo),
    ("Respiratory ", 40, Kind::Respiratory),
    ("Nutrition", 20, Kind::Other(0)),
    ("General", 20, Kind::Other(1)),
    ("Rehab Services", 15, Kind::Other(2)),
    ("Social Work", 15, Kind::Other(3)),
    ("Case Management ", 10, Kind::Other(4)),
    ("Pharmacy", 10, Kind::Other(5)),
    ("Consult", 10, Kind::Other(6)),
];

const WEIGHTS: [u32; 15] = {
    let mut w = [0u32; 15];
    let mut i = 0;
    while i < 15 {
        w[i] = CATEGORIES[i].1;
        i += 1;
    }
    w
};

pub const STREAM: u64 = 0x6d69_6d69_6333;

/// The non-text columns of one row.
struct Meta {
    category: &'static str,
    description: &'static str,
    subject: u64,
    hadm: Option<u64>,
    chartdate: Date,
    charttime: Option<(Date, u64)>,
    storetime: Option<(Date, u64)>,
    cgid: Option<u64>,
    iserror: bool,
}

pub struct Mimic3 {
    pub seed: u64,
    pub ids: RowIds,
}

impl Mimic3 {
    fn draw(&self, i: u64, d: &mut Doc) -> Meta {
        let mut rng = Rng::for_item(self.seed, STREAM, i);
        let (category, _, kind) = CATEGORIES[rng.weighted(&WEIGHTS)];
        d.reset(rng);
        let r = &mut d.rng;
        let subject = r.range(2, 99_999);
        let hadm = if matches!(kind, Kind::Discharge) || r.chance(17, 20) {
            Some(r.range(100_001, 199_999))
        } else {
            None
        };
        let stay = (d.dis.days() - d.adm.days()) as u64;
        let day = d.adm.add(r.below(stay + 1) as i64);
        let second_of_day = r.range(0, 86_399) / 60 * 60;
        let clinical = matches!(
            kind,
            Kind::NursingOther | Kind::Nursing | Kind::Physician | Kind::Respiratory | Kind::Other(_)
        );
        let mut study = 0;
        let (description, chartdate, charttime, storetime) = match kind {
            Kind::Discharge => {
                let desc = if r.chance(1, 12) { "Addendum" } else { "Report" };
                (desc, d.dis, None, None)
            }
            Kind::Radiology => {
                // Chosen here so that DESCRIPTION and the report's exam agree.
                study = r.below(notes::STUDIES.len() as u64) as usize;
                (notes::STUDIES[study].0, day, Some((day, second_of_day)), None)
            }
            Kind::Ecg | Kind::Echo => {
                let t = if r.chance(1, 2) { Some((day, second_of_day)) } else { None };
                ("Report", day, t, None)
            }
            Kind::NursingOther => ("Report", day, Some((day, second_of_day)), None),
            Kind::Nursing => {
                let desc = *r.pick(&["Nursing Progress Note", "Generic Note", "Nursing Transfer Note"]);
                (desc, day, Some((day, second_of_day)), None)
            }
            Kind::Physician => {
                let desc = *r.pick(&[
                    "Physician Resident Progress Note",
                    "Intensivist Note",
                    "Physician Attending Progress Note",
                    "Physician Resident Admission Note",
                ]);
                (desc, day, Some((day, second_of_day)), None)
            }
            Kind::Respiratory => ("Respiratory Care Shift Note", day, Some((day, second_of_day)), None),
            Kind::Other(k) => (notes::OTHER_NOTES[k].1, day, Some((day, second_of_day)), None),
        };
        let storetime = if clinical {
            let later = (second_of_day + r.range(60, 7_200) / 60 * 60).min(86_399 / 60 * 60);
            Some((day, later))
        } else {
            storetime
        };
        let cgid = if clinical { Some(r.range(14_000, 21_600)) } else { None };
        let iserror = r.chance(1, 100);
        if matches!(kind, Kind::Radiology | Kind::Ecg | Kind::Echo) {
            // Dates in the report match CHARTDATE; earlier ones are comparisons.
            d.adm = day;
            d.dis = day;
        }
        match kind {
            Kind::Discharge if description == "Addendum" => notes::addendum(d),
            Kind::Discharge => {
                let target = notes::discharge_target(d);
                notes::discharge(d, target)
            }
            Kind::Radiology => notes::radiology(d, study),
            Kind::Ecg => notes::ecg(d),
            Kind::Echo => notes::echo(d),
            Kind::NursingOther => {
                let t = d.range(300, 3_500) as usize;
                notes::nursing_other(d, t)
            }
            Kind::Nursing => {
                let t = d.range(400, 4_000) as usize;
                notes::nursing(d, t)
            }
            Kind::Physician => {
                let t = d.range(2_500, 9_000) as usize;
                notes::physician(d, t)
            }
            Kind::Respiratory => notes::respiratory(d),
            Kind::Other(k) => {
                let t = d.range(150, 1_500) as usize;
                notes::other(d, k, t)
            }
        }
        Meta { category, description, subject, hadm, chartdate, charttime, storetime, cgid, iserror }
    }
}

fn push_date(out: &mut Vec<u8>, d: Date) {
    let mut s = String::with_capacity(10);
    Doc::iso_date(&mut s, d);
    out.extend_from_slice(s.as_bytes());
}

/// `2151-07-16 14:32:00`.
pub fn push_datetime(out: &mut Vec<u8>, d: Date, second_of_day: u64) {
    push_date(out, d);
    let (h, m, s) = (second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    for (sep, x) in [(b' ', h), (b':', m), (b':', s)] {
        out.push(sep);
        out.push(b'0' + (x / 10) as u8);
        out.push(b'0' + (x % 10) as u8);
    }
}

fn push_opt(out: &mut Vec<u8>, x: Option<u64>) {
    if let Some(x) = x {
        super::doc::push_u64_bytes(out, x);
    }
}

impl NoteFormat for Mimic3 {
    fn style(&self) -> Style {
        Style::Mimic3
    }

    fn streams(&self) -> Vec<StreamSpec> {
        vec![StreamSpec { path: "NOTEEVENTS.csv".into(), head: HEADER.into(), tail: Vec::new() }]
    }

    fn text(&self, i: u64, d: &mut Doc) {
        self.draw(i, d);
    }

    fn note(&self, i: u64, d: &mut Doc, c: &mut Chunk) {
        let m = self.draw(i, d);
        let out = &mut c.bufs[0];
        push_opt(out, Some(self.ids.get(i)));
        out.push(b',');
        push_opt(out, Some(m.subject));
        out.push(b',');
        push_opt(out, m.hadm);
        out.push(b',');
        push_date(out, m.chartdate);
        out.push(b',');
        if let Some((day, s)) = m.charttime {
            push_datetime(out, day, s);
        }
        out.push(b',');
        if let Some((day, s)) = m.storetime {
            push_datetime(out, day, s);
        }
        out.push(b',');
        push_quoted(out, m.category);
        out.push(b',');
        push_quoted(out, m.description);
        out.push(b',');
        push_opt(out, m.cgid);
        out.push(b',');
        if m.iserror {
            out.push(b'1');
        }
        out.push(b',');
        push_quoted(out, &d.text);
        out.push(b'\n');
        c.finish_note(d.text.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ids_cover_and_fill() {
        let ids = RowIds::new(10, &[3, 50, 70]);
        let v: Vec<u64> = (0..10).map(|i| ids.get(i)).collect();
        assert_eq!(v, [1, 2, 3, 4, 5, 6, 7, 8, 50, 70]);
        let ids = RowIds::new(3, &[5, 6, 7]);
        assert_eq!((0..3).map(|i| ids.get(i)).collect::<Vec<_>>(), [5, 6, 7]);
        let ids = RowIds::new(4, &[1, 2]);
        assert_eq!((0..4).map(|i| ids.get(i)).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let ids = RowIds::dense();
        assert_eq!(ids.get(0), 1);
        assert_eq!(ids.get(99), 100);
    }

    #[test]
    fn datetimes() {
        let mut v = Vec::new();
        push_datetime(&mut v, Date { y: 2151, m: 7, d: 6 }, 14 * 3600 + 32 * 60);
        assert_eq!(v, b"2151-07-06 14:32:00");
    }
}
