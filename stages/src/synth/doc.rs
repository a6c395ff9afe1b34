//! One note being written: its text, the PHI spans in it (for i2b2), and a small template language
//! whose `{slot}`s draw from the note's generator and render PHI in the corpus's style.

use super::deid::{MONTHS, labels};
use super::rng::Rng;
use super::vocab as v;

/// How PHI appears in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `[**Known lastname 1234**]`, `[**2151-7-16**]`, ...
    Mimic3,
    /// `___`.
    Mimic4,
    /// A surrogate value (`Renée Dubois`, `05/03/2067`) recorded as a tagged span.
    I2b2,
}

/// A calendar date (proleptic Gregorian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    pub y: i32,
    pub m: u32,
    pub d: u32,
}

impl Date {
    /// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
    pub fn days(self) -> i64 {
        let y = self.y as i64 - if self.m <= 2 { 1 } else { 0 };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = self.m as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + self.d as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146097 + doe - 719468
    }

    pub fn from_days(z: i64) -> Date {
        let z = z + 719468;
        let era = if z >= 0 { z } else { z - 146096 } / 146097;
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = (yoe + era * 400 + if m <= 2 { 1 } else { 0 }) as i32;
        Date { y, m, d }
    }

    pub fn add(self, days: i64) -> Date {
        Date::from_days(self.days() + days)
    }

    /// Uniform in years `y0..=y1`.
    pub fn random(rng: &mut Rng, y0: i32, y1: i32) -> Date {
        let a = Date { y: y0, m: 1, d: 1 }.days();
        let b = Date { y: y1, m: 12, d: 31 }.days();
        Date::from_days(a + rng.below((b - a + 1) as u64) as i64)
    }
}

/// A kind of PHI, rendered according to the note's [`Style`].
#[derive(Clone, Copy, Debug)]
pub enum Phi {
    PatientLast,
    PatientFirst,
    /// A clinician's or relative's first or last name.
    FirstName,
    LastName,
    Initials,
    Hospital,
    HospitalUnit,
    Company,
    College,
    Location,
    Street,
    Apartment,
    Ward,
    PoBox,
    NumericId,
    Mrn,
    Clip,
    MdNumber,
    JobNumber,
    UnitNumber,
    Phone,
    Pager,
    Serial,
    Ssn,
    Provider,
    /// An age: MIMIC-III masks only ages over 89.
    Age(u32),
    DateRange,
    State,
    Country,
    Email,
    CcContact,
    AttendingInfo,
    DictatorInfo,
    Url,
    Year,
    Month,
    DayHoliday,
    Date(Date),
    /// A de-identifier false positive on a range or fraction (`[**1-3**] weeks`).
    Span,
    MonthName,
    Number,
    Empty,
    Other,
}

/// A PHI span in the text, in bytes (converted to characters when the i2b2 XML is written).
#[derive(Clone, Debug)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub elem: &'static str,
    pub ty: &'static str,
}

pub struct Doc {
    pub text: String,
    pub spans: Vec<Span>,
    pub style: Style,
    pub rng: Rng,
    pub female: bool,
    pub age: u32,
    /// Admission and discharge dates; other dates in the note are drawn around them.
    pub adm: Date,
    pub dis: Date,
    pt_last_id: u32,
    pt_first_id: u32,
    pt_last: &'static str,
    pt_first: &'static str,
}

impl Doc {
    pub fn new(style: Style) -> Doc {
        Doc {
            text: String::with_capacity(16 * 1024),
            spans: Vec::new(),
            style,
            rng: Rng::from_seed(0),
            female: false,
            age: 60,
            adm: Date { y: 2150, m: 1, d: 1 },
            dis: Date { y: 2150, m: 1, d: 1 },
            pt_last_id: 1,
            pt_first_id: 1,
            pt_last: "",
            pt_first: "",
        }
    }

    /// Starts a new note: clears the text and draws the patient.
    pub fn reset(&mut self, rng: Rng) {
        self.text.clear();
        self.spans.clear();
        self.rng = rng;
        let r = &mut self.rng;
        self.female = r.chance(1, 2);
        self.age = if r.chance(1, 14) { r.range(90, 99) as u32 } else { r.range(19, 89) as u32 };
        let (y0, y1) = if self.style == Style::I2b2 { (2060, 2100) } else { (2100, 2200) };
        self.adm = Date::random(r, y0, y1);
        let los = if r.chance(1, 10) { r.range(10, 45) } else { r.range(1, 9) };
        self.dis = self.adm.add(los as i64);
        self.pt_last_id = r.range(100, 99999) as u32;
        self.pt_first_id = r.range(100, 9999) as u32;
        self.pt_last = *r.pick(v::LAST_NAMES);
        self.pt_first = if self.female { *r.pick(v::FEMALE_NAMES) } else { *r.pick(v::MALE_NAMES) };
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.text.len()
    }

    #[inline]
    pub fn s(&mut self, x: &str) {
        self.text.push_str(x);
    }

    #[inline]
    pub fn nl(&mut self) {
        self.text.push('\n');
    }

    /// A line of text followed by a newline, as a template.
    pub fn line(&mut self, tpl: &str) {
        self.t(tpl);
        self.text.push('\n');
    }

    pub fn n(&mut self, x: u64) {
        push_u64(&mut self.text, x);
    }

    /// `x` with at least two digits (`07`).
    pub fn n2(&mut self, x: u64) {
        if x < 10 {
            self.text.push('0');
        }
        push_u64(&mut self.text, x);
    }

    /// A number in `lo..=hi`.
    pub fn num(&mut self, lo: u64, hi: u64) {
        let x = self.rng.range(lo, hi);
        self.n(x);
    }

    /// A number with one decimal in `lo..=hi` (`lo`, `hi` in tenths).
    pub fn dec(&mut self, lo: u64, hi: u64) {
        let x = self.rng.range(lo, hi);
        self.n(x / 10);
        self.text.push('.');
        self.n(x % 10);
    }

    pub fn pick(&mut self, items: &[&str]) {
        let x = *self.rng.pick(items);
        self.t(x);
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.rng.chance(num, den)
    }

    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.range(lo, hi)
    }

    /// A date written as the corpus writes it (in a MIMIC-III mark, `___`, or a tagged surrogate).
    pub fn date(&mut self, d: Date) {
        self.phi(Phi::Date(d));
    }

    /// `2151-08-04`: the unmasked form of CSV date columns.
    pub fn iso_date(out: &mut String, d: Date) {
        push_u64(out, d.y as u64);
        out.push('-');
        if d.m < 10 {
            out.push('0');
        }
        push_u64(out, d.m as u64);
        out.push('-');
        if d.d < 10 {
            out.push('0');
        }
        push_u64(out, d.d as u64);
    }

    /// Renders a template: text with `{slot}`s (see [`Doc::slot`]).
    pub fn t(&mut self, tpl: &str) {
        let mut rest = tpl;
        while let Some(open) = rest.find('{') {
            self.text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').expect("template slot is closed");
            self.slot(&after[..close]);
            rest = &after[close + 1..];
        }
        self.text.push_str(rest);
    }

    fn he(&self, f: &'static str, m: &'static str) -> &'static str {
        if self.female { f } else { m }
    }

    fn slot(&mut self, name: &str) {
        match name {
            "He" => self.s(self.he("She", "He")),
            "he" => self.s(self.he("she", "he")),
            "His" => self.s(self.he("Her", "His")),
            "his" => self.s(self.he("her", "his")),
            "him" => self.s(self.he("her", "him")),
            "man" => self.s(self.he("woman", "man")),
            "Mr" => self.s(self.he("Ms.", "Mr.")),
            "sex" => self.s(self.he("F", "M")),
            "age" => self.phi(Phi::Age(self.age)),
            "pt" => {
                self.s(self.he("Ms. ", "Mr. "));
                self.phi(Phi::PatientLast);
            }
            "ptname" => {
                self.phi(Phi::PatientFirst);
                self.s(" ");
                self.phi(Phi::PatientLast);
            }
            "ptlast" => self.phi(Phi::PatientLast),
            "ptfirst" => self.phi(Phi::PatientFirst),
            "dr" => {
                self.s("Dr. ");
                self.phi(Phi::LastName);
            }
            "drfull" => {
                self.phi(Phi::FirstName);
                self.s(" ");
                self.phi(Phi::LastName);
            }
            "last" => self.phi(Phi::LastName),
            "first" => self.phi(Phi::FirstName),
            "init" => self.phi(Phi::Initials),
            "hosp" => self.phi(Phi::Hospital),
            "unit" => self.phi(Phi::HospitalUnit),
            "company" => self.phi(Phi::Company),
            "college" => self.phi(Phi::College),
            "loc" => self.phi(Phi::Location),
            "street" => self.phi(Phi::Street),
            "apt" => self.phi(Phi::Apartment),
            "ward" => self.phi(Phi::Ward),
            "pobox" => self.phi(Phi::PoBox),
            "numid" => self.phi(Phi::NumericId),
            "mrn" => self.phi(Phi::Mrn),
            "clip" => self.phi(Phi::Clip),
            "mdnum" => self.phi(Phi::MdNumber),
            "job" => self.phi(Phi::JobNumber),
            "unitno" => self.phi(Phi::UnitNumber),
            "phone" => self.phi(Phi::Phone),
            "pager" => self.phi(Phi::Pager),
            "serial" => self.phi(Phi::Serial),
            "ssn" => self.phi(Phi::Ssn),
            "provider" => self.phi(Phi::Provider),
            "daterange" => self.phi(Phi::DateRange),
            "state" => self.phi(Phi::State),
            "country" => self.phi(Phi::Country),
            "email" => self.phi(Phi::Email),
            "cc" => self.phi(Phi::CcContact),
            "attinfo" => self.phi(Phi::AttendingInfo),
            "dictinfo" => self.phi(Phi::DictatorInfo),
            "url" => self.phi(Phi::Url),
            "year" => self.phi(Phi::Year),
            "month" => self.phi(Phi::Month),
            "holiday" => self.phi(Phi::DayHoliday),
            "span" => self.phi(Phi::Span),
            "monthname" => self.phi(Phi::MonthName),
            "number" => self.phi(Phi::Number),
            "empty" => self.phi(Phi::Empty),
            "other" => self.phi(Phi::Other),
            "adate" => self.date(self.adm),
            "ddate" => self.date(self.dis),
            "date" => {
                let span = (self.dis.days() - self.adm.days()).max(0) as u64;
                let d = self.adm.add(self.rng.below(span + 1) as i64);
                self.date(d)
            }
            "pdate" => {
                let back = self.rng.range(20, 2500) as i64;
                self.date(self.adm.add(-back))
            }
            "fdate" => {
                let fwd = self.rng.range(5, 60) as i64;
                self.date(self.dis.add(fwd))
            }
            "time" => {
                let h = self.rng.range(1, 12);
                self.n2(h);
                self.s(":");
                let m = self.rng.below(60);
                self.n2(m);
                let am = self.rng.chance(1, 2);
                self.s(if am { "AM" } else { "PM" });
            }
            "clock" => {
                let h = self.rng.below(24);
                self.n2(h);
                self.s(":");
                let m = self.rng.below(60);
                self.n2(m);
            }
            "bp" => {
                let sys = self.rng.range(88, 172);
                self.n(sys);
                self.s("/");
                let dia = self.rng.range(46, (sys - 24).min(98));
                self.n(dia);
            }
            "hr" => self.num(52, 128),
            "rr" => self.num(12, 30),
            "spo2" => self.num(88, 100),
            "temp" => self.dec(966, 1018),
            "tempc" => {
                self.dec(358, 389);
                self.s(" °C");
            }
            "wt" => self.dec(450, 1350),
            "drug" => self.pick(v::DRUGS),
            "abx" => self.pick(v::ABX),
            "organism" => self.pick(v::ORGANISMS),
            "sx" => self.pick(v::SYMPTOMS),
            "dx" => self.pick(v::DIAGNOSES),
            "pmh" => self.pick(v::PMH),
            "proc" => self.pick(v::PROCEDURES),
            "quote" => self.pick(v::QUOTES),
            "cc_" => self.pick(v::COMPLAINTS),
            "finding_cxr" => self.pick(v::CXR_FINDINGS),
            "quote_says" => self.pick(v::SAYS),
            "lab" => self.lab_line(),
            _ => {
                if let Some(r) = name.strip_prefix("n:") {
                    let (lo, hi) = parse_range(r);
                    self.num(lo, hi);
                } else if let Some(r) = name.strip_prefix("d:") {
                    let (lo, hi) = parse_range(r);
                    self.dec(lo * 10, hi * 10);
                } else {
                    debug_assert!(false, "unknown template slot `{name}`");
                }
            }
        }
    }

    /// `[**2151-7-16**] 06:15PM BLOOD WBC-8.3 RBC-4.12* Hgb-12.5* ...`
    pub fn lab_line(&mut self) {
        self.t("{date} {time} ");
        let panel = *self.rng.pick(v::LAB_PANELS);
        self.s(panel.0);
        for (name, lo, hi, dec) in panel.1 {
            self.s(" ");
            self.s(name);
            self.s("-");
            if *dec {
                self.dec(*lo, *hi);
            } else {
                self.num(*lo, *hi);
            }
            if self.rng.chance(1, 5) {
                self.s("*");
            }
        }
    }

    fn mark(&mut self, labels: &[&str]) {
        let label = *self.rng.pick(labels);
        self.s("[**");
        self.s(label);
        self.s(" ");
        if self.rng.chance(9, 10) {
            let digits = self.rng.range(1, 5) as u32;
            let id = self.rng.range(1, 10u64.pow(digits) - 1);
            self.n(id);
        }
        self.s("**]");
    }

    fn mark_id(&mut self, label: &str, id: u32) {
        self.s("[**");
        self.s(label);
        self.s(" ");
        self.n(id as u64);
        self.s("**]");
    }

    /// Writes one piece of PHI.
    pub fn phi(&mut self, p: Phi) {
        match self.style {
            Style::Mimic3 => self.phi_mimic3(p),
            Style::Mimic4 => match p {
                Phi::Span => self.small_range(),
                Phi::Number => self.num(10, 9999),
                _ => self.s("___"),
            },
            Style::I2b2 => self.phi_i2b2(p),
        }
    }

    fn phi_mimic3(&mut self, p: Phi) {
        use labels as l;
        match p {
            Phi::PatientLast => self.mark_id(l::KNOWN_LAST[0], self.pt_last_id),
            Phi::PatientFirst => self.mark_id(l::KNOWN_FIRST[0], self.pt_first_id),
            Phi::FirstName => self.mark(l::FIRST),
            Phi::LastName => self.mark(l::LAST),
            Phi::Initials => self.mark(l::INITIALS),
            Phi::Hospital => self.mark(l::HOSPITAL),
            Phi::HospitalUnit => self.mark(l::HOSPITAL_UNIT),
            Phi::Company => self.mark(l::COMPANY),
            Phi::College => self.mark(l::COLLEGE),
            Phi::Location => self.mark(l::LOCATION),
            Phi::Street => self.mark(l::STREET),
            Phi::Apartment => self.mark(l::APARTMENT),
            Phi::Ward => self.mark(l::WARD),
            Phi::PoBox => self.mark(l::PO_BOX),
            Phi::NumericId => self.mark(l::NUMERIC_ID),
            Phi::Mrn => self.mark(l::MRN),
            Phi::Clip => self.mark(l::CLIP),
            Phi::MdNumber => self.mark(l::MD_NUMBER),
            Phi::JobNumber => self.mark(l::JOB),
            Phi::UnitNumber => self.mark(l::UNIT),
            Phi::Phone => self.mark(l::PHONE),
            Phi::Pager => self.mark(l::PAGER),
            Phi::Serial => self.mark(l::SERIAL),
            Phi::Ssn => self.mark(l::SSN),
            Phi::Provider => self.mark(l::PROVIDER),
            Phi::Age(a) if a >= 90 => self.mark(l::AGE_90),
            Phi::Age(a) => self.n(a as u64),
            Phi::DateRange => self.mark(l::DATE_RANGE),
            Phi::State => self.mark(l::STATE),
            Phi::Country => self.mark(l::COUNTRY),
            Phi::Email => self.mark(l::EMAIL),
            Phi::CcContact => self.mark(l::CC),
            Phi::AttendingInfo => self.mark(l::ATTENDING),
            Phi::DictatorInfo => self.mark(l::DICTATOR),
            Phi::Url => self.mark(l::URL),
            Phi::Year => self.mark(l::YEAR),
            Phi::Month => self.mark(l::MONTH),
            Phi::DayHoliday => self.mark(l::DAY),
            Phi::Date(d) => {
                self.s("[**");
                self.n(d.y as u64);
                self.s("-");
                self.n(d.m as u64);
                self.s("-");
                self.n(d.d as u64);
                self.s("**]");
            }
            Phi::Span => {
                self.s("[**");
                self.span_text();
                self.s("**]");
            }
            Phi::MonthName => {
                self.s("[**");
                let m = *self.rng.pick(&MONTHS);
                self.s(m);
                self.s("**]");
            }
            Phi::Number => {
                self.s("[**");
                self.num(10, 9999);
                self.s("**]");
            }
            Phi::Empty => self.s("[****]"),
            Phi::Other => self.mark(l::OTHER),
        }
    }

    /// `1-3`: what the de-identifier mistook for a date.
    fn small_range(&mut self) {
        let a = self.rng.range(1, 4);
        self.n(a);
        self.s("-");
        let b = a + self.rng.range(1, 3);
        self.n(b);
    }

    /// `1-3`, `5-27` or `7/2111`.
    fn span_text(&mut self) {
        match self.rng.below(3) {
            0 => self.small_range(),
            1 => {
                self.num(1, 12);
                self.s("-");
                self.num(1, 31);
            }
            _ => {
                self.num(1, 12);
                self.s("/");
                let y = self.adm.y as u64 - self.rng.below(8);
                self.n(y);
            }
        }
    }

    fn tagged(&mut self, elem: &'static str, ty: &'static str, write: impl FnOnce(&mut Doc)) {
        let start = self.text.len();
        write(self);
        self.spans.push(Span { start, end: self.text.len(), elem, ty });
    }

    fn digits(&mut self, n: u32) {
        self.num(10u64.pow(n - 1), 10u64.pow(n) - 1);
    }

    fn any_name(&mut self, first: bool) {
        let list = if !first {
            v::LAST_NAMES
        } else if self.rng.chance(1, 2) {
            v::FEMALE_NAMES
        } else {
            v::MALE_NAMES
        };
        self.pick(list);
    }

    fn phi_i2b2(&mut self, p: Phi) {
        match p {
            Phi::PatientLast => self.tagged("NAME", "PATIENT", |d| d.s(d.pt_last)),
            Phi::PatientFirst => self.tagged("NAME", "PATIENT", |d| d.s(d.pt_first)),
            Phi::FirstName => self.tagged("NAME", "DOCTOR", |d| d.any_name(true)),
            Phi::LastName | Phi::Empty => self.tagged("NAME", "DOCTOR", |d| d.any_name(false)),
            Phi::CcContact | Phi::AttendingInfo | Phi::DictatorInfo => self.tagged("NAME", "DOCTOR", |d| {
                d.any_name(true);
                d.s(" ");
                d.any_name(false);
            }),
            Phi::Initials => self.tagged("NAME", "DOCTOR", |d| {
                for _ in 0..d.rng.range(2, 3) {
                    let c = (b'A' + d.rng.below(26) as u8) as char;
                    d.text.push(c);
                }
            }),
            Phi::Hospital => self.tagged("LOCATION", "HOSPITAL", |d| d.pick(v::HOSPITALS)),
            Phi::HospitalUnit | Phi::Ward => self.tagged("LOCATION", "DEPARTMENT", |d| d.pick(v::WARDS)),
            Phi::Company => self.tagged("LOCATION", "ORGANIZATION", |d| d.pick(v::COMPANIES)),
            Phi::College => self.tagged("LOCATION", "ORGANIZATION", |d| d.pick(v::COLLEGES)),
            Phi::Location => self.tagged("LOCATION", "CITY", |d| d.pick(v::CITIES)),
            Phi::Street => self.tagged("LOCATION", "STREET", |d| {
                d.num(2, 980);
                d.s(" ");
                d.pick(v::STREETS);
            }),
            Phi::Apartment => self.tagged("LOCATION", "STREET", |d| {
                d.s("Apt ");
                d.num(1, 40);
            }),
            Phi::PoBox => self.tagged("LOCATION", "OTHER", |d| {
                d.s("PO Box ");
                d.num(100, 9999);
            }),
            Phi::Mrn | Phi::UnitNumber => self.tagged("ID", "MEDICALRECORD", |d| d.digits(7)),
            Phi::NumericId | Phi::Clip | Phi::MdNumber | Phi::JobNumber | Phi::Provider | Phi::Other => {
                self.tagged("ID", "IDNUM", |d| d.digits(5))
            }
            Phi::Serial => self.tagged("ID", "DEVICE", |d| {
                d.s("SN");
                d.digits(8);
            }),
            Phi::Ssn => self.tagged("ID", "SSN", |d| {
                d.digits(3);
                d.s("-");
                d.digits(2);
                d.s("-");
                d.digits(4);
            }),
            Phi::Phone | Phi::Pager => self.tagged("CONTACT", "PHONE", |d| {
                d.s("(");
                d.digits(3);
                d.s(") ");
                d.digits(3);
                d.s("-");
                d.digits(4);
            }),
            Phi::Email => self.tagged("CONTACT", "EMAIL", |d| {
                d.pick(v::LAST_NAMES_ASCII);
                d.num(1, 99);
                d.s("@example.org");
            }),
            Phi::Url => self.tagged("CONTACT", "URL", |d| {
                d.s("www.");
                d.pick(v::LAST_NAMES_ASCII);
                d.s("health.org");
            }),
            Phi::Age(a) => self.tagged("AGE", "AGE", |d| d.n(a as u64)),
            Phi::State => self.tagged("LOCATION", "STATE", |d| d.pick(v::STATES)),
            Phi::Country => self.tagged("LOCATION", "COUNTRY", |d| d.pick(v::COUNTRIES)),
            Phi::Date(dt) => self.tagged("DATE", "DATE", |d| {
                if d.rng.chance(1, 2) {
                    d.n2(dt.m as u64);
                    d.s("/");
                    d.n2(dt.d as u64);
                    d.s("/");
                    d.n(dt.y as u64);
                } else {
                    Doc::iso_date(&mut d.text, dt);
                }
            }),
            Phi::DateRange => self.tagged("DATE", "DATE", |d| {
                let m = d.adm.m as u64;
                d.n(m);
                d.s("/");
                d.num(1, 12);
                d.s("-");
                d.n(m);
                d.s("/");
                d.num(13, 28);
            }),
            Phi::Year => self.tagged("DATE", "DATE", |d| {
                let y = d.adm.y as u64 - d.rng.below(20);
                d.n(y)
            }),
            Phi::Month | Phi::MonthName => self.tagged("DATE", "DATE", |d| {
                let m = *d.rng.pick(&MONTHS);
                d.s(m);
            }),
            Phi::DayHoliday => self.tagged("DATE", "DATE", |d| d.pick(v::HOLIDAYS)),
            Phi::Span => self.small_range(),
            Phi::Number => self.num(10, 9999),
        }
    }
}

fn parse_range(r: &str) -> (u64, u64) {
    let (a, b) = r.split_once('-').expect("range slot is `lo-hi`");
    (a.parse().expect("range slot number"), b.parse().expect("range slot number"))
}

/// Appends the decimal digits of `x`.
pub fn push_u64(out: &mut String, mut x: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("digits are ASCII"));
}

/// As [`push_u64`], into bytes.
pub fn push_u64_bytes(out: &mut Vec<u8>, mut x: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for z in [-1000i64, 0, 59, 60, 365, 47_000, 84_000] {
            assert_eq!(Date::from_days(z).days(), z);
        }
        assert_eq!(Date::from_days(0), Date { y: 1970, m: 1, d: 1 });
        assert_eq!(Date { y: 2151, m: 7, d: 16 }.add(19), Date { y: 2151, m: 8, d: 4 });
        assert_eq!(Date { y: 2152, m: 2, d: 28 }.add(1), Date { y: 2152, m: 2, d: 29 });
    }

    #[test]
    fn numbers() {
        let mut s = String::new();
        push_u64(&mut s, 0);
        push_u64(&mut s, 1234567);
        push_u64(&mut s, u64::MAX);
        assert_eq!(s, format!("01234567{}", u64::MAX));
    }
}
