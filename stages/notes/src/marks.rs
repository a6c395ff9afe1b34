//! De-identification marks: MIMIC-III's `[** … **]` to CAMEL's tags, and MIMIC-IV's `___` to
//! `[ANON]`.
//!
//! CAMEL's `convert_deid_tag.py` is the reference; the rules, in the order they are tried on the
//! text between `[**` and `**]` (a mark never spans a line, as in CAMEL's regex):
//!
//! 1. **Label table.** The first entry of the table (the YAML `marks.table` entries first, in the
//!    order written, then [`BUILTIN`] in its order) whose key occurs in the mark, compared without
//!    regard to case, gives the tag (`[**Known lastname 12**]` → `[Name]`).
//! 2. **Three-part date:** the mark has exactly two `-` (`[**2151-7-16**]`): kept as written,
//!    without the brackets.
//! 3. **Plain number** (after trimming): `[Reg#]`.
//! 4. **Numeric span:** digits once `-` and `/` are removed (`5-27`, `7/2111`): kept as written.
//! 5. **Month name** (a whole word, any case: `[**May**]`): kept as written.
//! 6. **Empty** (blank) mark: removed.
//! 7. Anything else is *unknown*: the policy `error | keep | tag:<X>` decides (`keep` leaves the
//!    whole mark `[**…**]` untouched).
//!
//! Differences from CAMEL's script, on purpose (issue 3's table): label matching ignores case
//! entirely (CAMEL failed on `[**PO BOX**]`), and `wardname` is tried before `name` so that
//! `[**Wardname**]` becomes `[LOC]` (CAMEL's dict order made it `[Name]`). With
//! `spacing: camel`, the pieces around each mark are joined with single spaces as CAMEL's
//! `" ".join(...)` did; `plain` (the default) replaces each mark in place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// CAMEL's table: label key (matched anywhere in the mark, any case) → tag. Order matters: the
/// first key found wins. CAMEL's `DEID_TO_TAG` order, with `wardname` moved before `name`, the
/// duplicate `Date range` folded, and keys shortened to the label (`clip number`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("first name", "[Name]"),
    ("last name", "[Name]"),
    ("clip number", "[Reg#]"),
    ("hospital", "[Company]"),
    ("numeric identifier", "[Reg#]"),
    ("location", "[LOC]"),
    ("initials", "[Name]"),
    ("known lastname", "[Name]"),
    ("known firstname", "[Name]"),
    ("age over 90", "[Age]"),
    ("medical record number", "[Reg#]"),
    ("telephone/fax", "[#]"),
    ("wardname", "[LOC]"),
    ("name", "[Name]"),
    ("street address", "[LOC]"),
    ("date range", "[DR]"),
    ("serial number", "[#]"),
    ("social security number", "[#]"),
    ("state", "[State]"),
    ("e-mail address", "[CI]"),
    ("company", "[Company]"),
    ("pager number", "[#]"),
    ("country", "[Country]"),
    ("md number", "[Reg#]"),
    ("college", "[Company]"),
    ("apartment address", "[LOC]"),
    ("url", "[URL]"),
    ("cc contact info", "[CI]"),
    ("attending info", "[CI]"),
    ("job number", "[Reg#]"),
    ("year", "[YR]"),
    ("month", "[MO]"),
    ("day", "[DAY]"),
    ("holiday", "[DAY]"),
    ("unit number", "[Reg#]"),
    ("po box", "[LOC]"),
    ("dictator info", "[CI]"),
    ("provider number", "[#]"),
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// What to do with a mark none of the rules knows.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum UnknownPolicy {
    /// Fail the stage, naming the file, row and character offset (never the mark's text).
    #[default]
    Error,
    /// Leave the mark as it is, brackets included.
    Keep,
    /// Replace it with this tag.
    Tag(String),
}

impl TryFrom<String> for UnknownPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "error" => Ok(UnknownPolicy::Error),
            "keep" => Ok(UnknownPolicy::Keep),
            _ => match s.strip_prefix("tag:") {
                Some(t) => Ok(UnknownPolicy::Tag(t.to_string())),
                None => Err(format!("`{s}` is not a policy for unknown marks: use error, keep or tag:<TAG>")),
            },
        }
    }
}

impl From<UnknownPolicy> for String {
    fn from(p: UnknownPolicy) -> String {
        match p {
            UnknownPolicy::Error => "error".into(),
            UnknownPolicy::Keep => "keep".into(),
            UnknownPolicy::Tag(t) => format!("tag:{t}"),
        }
    }
}

impl Serialize for UnknownPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&String::from(self.clone()))
    }
}

/// Written as a string: `error`, `keep` or `tag:<TAG>`.
impl schemars::JsonSchema for UnknownPolicy {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "UnknownPolicy".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^(error|keep|tag:.*)$"})
    }
}

impl<'de> Deserialize<'de> for UnknownPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        UnknownPolicy::try_from(s).map_err(serde::de::Error::custom)
    }
}

/// How the text around converted marks is joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Spacing {
    /// Each mark is replaced in place.
    #[default]
    Plain,
    /// CAMEL's `" ".join(non-empty pieces)`: a space on each side of every replacement.
    Camel,
}

/// Which rule decided a mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A tag from the table (its index in [`MarkTable::tags`]).
    Tag(u16),
    KeptDate,
    KeptNumericSpan,
    KeptMonth,
    Removed,
    Unknown,
}

/// The compiled table: keys (lower case) in match order, and the distinct tags.
#[derive(Clone, Debug)]
pub struct MarkTable {
    keys: Vec<(String, u16)>,
    tags: Vec<String>,
    reg: u16,
    unknown: UnknownPolicy,
    unknown_tag: Option<u16>,
    spacing: Spacing,
}

/// Counts per outcome, for the stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkCounts {
    pub tags: Vec<u64>,
    pub kept_date: u64,
    pub kept_numeric_span: u64,
    pub kept_month: u64,
    pub removed_empty: u64,
    pub unknown: u64,
}

impl MarkCounts {
    pub fn add(&mut self, o: &MarkCounts) {
        if self.tags.len() < o.tags.len() {
            self.tags.resize(o.tags.len(), 0);
        }
        for (a, b) in self.tags.iter_mut().zip(&o.tags) {
            *a += b;
        }
        self.kept_date += o.kept_date;
        self.kept_numeric_span += o.kept_numeric_span;
        self.kept_month += o.kept_month;
        self.removed_empty += o.removed_empty;
        self.unknown += o.unknown;
    }

    pub fn total(&self) -> u64 {
        self.tags.iter().sum::<u64>()
            + self.kept_date
            + self.kept_numeric_span
            + self.kept_month
            + self.removed_empty
            + self.unknown
    }

    /// Marks converted per tag (tags with no mark left out), for stats.json.
    pub fn per_tag(&self, table: &MarkTable) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (i, n) in self.tags.iter().enumerate() {
            if *n > 0 {
                *m.entry(table.tags[i].clone()).or_insert(0) += n;
            }
        }
        m
    }
}

/// An unknown mark under the `error` policy: where it is (a byte offset into the note's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownMark {
    pub offset: usize,
}

impl MarkTable {
    /// `extra` entries are tried before the built-in ones (unless `builtin` is false).
    pub fn new(extra: &[(String, String)], builtin: bool, unknown: UnknownPolicy, spacing: Spacing) -> Self {
        let mut t = MarkTable {
            keys: Vec::new(),
            tags: Vec::new(),
            reg: 0,
            unknown: unknown.clone(),
            unknown_tag: None,
            spacing,
        };
        let builtin_entries = BUILTIN.iter().filter(|_| builtin).map(|(k, v)| (k.to_string(), v.to_string()));
        for (k, v) in extra.iter().cloned().chain(builtin_entries) {
            let key = k.to_lowercase();
            if key.is_empty() || t.keys.iter().any(|(e, _)| *e == key) {
                continue;
            }
            let tag = t.intern(&v);
            t.keys.push((key, tag));
        }
        t.reg = t.intern("[Reg#]");
        if let UnknownPolicy::Tag(x) = &unknown {
            t.unknown_tag = Some(t.intern(x));
        }
        t
    }

    fn intern(&mut self, tag: &str) -> u16 {
        match self.tags.iter().position(|t| t == tag) {
            Some(i) => i as u16,
            None => {
                self.tags.push(tag.to_string());
                (self.tags.len() - 1) as u16
            }
        }
    }

    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    pub fn counts(&self) -> MarkCounts {
        MarkCounts { tags: vec![0; self.tags.len()], ..Default::default() }
    }

    /// Which rule decides the mark whose inner text is `t`.
    pub fn classify(&self, t: &str) -> Outcome {
        // Lower-casing allocates only for marks with upper-case letters (nearly all of them are
        // short labels, so this is cheap).
        let lower = t.to_lowercase();
        for (key, tag) in &self.keys {
            if lower.contains(key.as_str()) {
                return Outcome::Tag(*tag);
            }
        }
        if t.bytes().filter(|&b| b == b'-').count() == 2 {
            return Outcome::KeptDate;
        }
        let trimmed = t.trim();
        if !trimmed.is_empty() && trimmed.chars().all(char::is_numeric) {
            return Outcome::Tag(self.reg);
        }
        let mut digits = t.chars().filter(|&c| c != '-' && c != '/').peekable();
        if digits.peek().is_some() && digits.all(char::is_numeric) {
            return Outcome::KeptNumericSpan;
        }
        if lower.split(|c: char| !c.is_alphabetic()).any(|w| MONTHS.contains(&w)) {
            return Outcome::KeptMonth;
        }
        if trimmed.is_empty() {
            return Outcome::Removed;
        }
        Outcome::Unknown
    }

    /// Appends `text` with its marks converted to `out`, counting outcomes in `counts`. Returns
    /// whether any mark was found. Under the `error` policy an unknown mark stops the conversion.
    pub fn convert(
        &self,
        text: &str,
        out: &mut String,
        counts: &mut MarkCounts,
    ) -> Result<bool, UnknownMark> {
        let mut found = false;
        let mut last = 0;
        let mut pos = 0;
        // CAMEL joins the non-empty pieces (text between marks, and replacements) with a space.
        let mut pieces_written = false;
        let bytes = text.as_bytes();
        let finder = memchr::memmem::Finder::new(b"[**");
        let closer = memchr::memmem::Finder::new(b"**]");
        while let Some(rel) = finder.find(&bytes[pos..]) {
            let start = pos + rel;
            let inner_start = start + 3;
            let line_end =
                memchr::memchr(b'\n', &bytes[inner_start..]).map_or(bytes.len(), |i| inner_start + i);
            let Some(crel) = closer.find(&bytes[inner_start..line_end]) else {
                pos = start + 1;
                continue;
            };
            let inner_end = inner_start + crel;
            let end = inner_end + 3;
            let inner = &text[inner_start..inner_end];
            found = true;
            let replacement: &str = match self.classify(inner) {
                Outcome::Tag(i) => {
                    counts.tags[i as usize] += 1;
                    &self.tags[i as usize]
                }
                Outcome::KeptDate => {
                    counts.kept_date += 1;
                    inner
                }
                Outcome::KeptNumericSpan => {
                    counts.kept_numeric_span += 1;
                    inner
                }
                Outcome::KeptMonth => {
                    counts.kept_month += 1;
                    inner
                }
                Outcome::Removed => {
                    counts.removed_empty += 1;
                    ""
                }
                Outcome::Unknown => {
                    counts.unknown += 1;
                    match (&self.unknown, self.unknown_tag) {
                        (UnknownPolicy::Error, _) => return Err(UnknownMark { offset: start }),
                        (UnknownPolicy::Tag(_), Some(i)) => {
                            counts.tags[i as usize] += 1;
                            &self.tags[i as usize]
                        }
                        _ => &text[start..end],
                    }
                }
            };
            match self.spacing {
                Spacing::Plain => {
                    out.push_str(&text[last..start]);
                    out.push_str(replacement);
                }
                Spacing::Camel => {
                    for piece in [&text[last..start], replacement] {
                        if !piece.is_empty() {
                            if pieces_written {
                                out.push(' ');
                            }
                            out.push_str(piece);
                            pieces_written = true;
                        }
                    }
                }
            }
            last = end;
            pos = end;
        }
        let tail = &text[last..];
        match self.spacing {
            Spacing::Camel if found => {
                if !tail.is_empty() {
                    if pieces_written {
                        out.push(' ');
                    }
                    out.push_str(tail);
                }
            }
            _ => out.push_str(tail),
        }
        Ok(found)
    }
}

/// MIMIC-IV's `___` → `[ANON]`, as CAMEL's `re.sub(r"___", "[ANON]", x)`: non-overlapping, left
/// to right. Returns the number of replacements.
pub fn anon(text: &str, out: &mut String) -> u64 {
    let mut n = 0;
    let mut last = 0;
    for (i, _) in text.match_indices("___") {
        out.push_str(&text[last..i]);
        out.push_str("[ANON]");
        last = i + 3;
        n += 1;
    }
    out.push_str(&text[last..]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MarkTable {
        MarkTable::new(&[], true, UnknownPolicy::Error, Spacing::Plain)
    }

    fn conv(t: &MarkTable, s: &str) -> Result<String, UnknownMark> {
        let mut out = String::new();
        let mut c = t.counts();
        t.convert(s, &mut out, &mut c)?;
        Ok(out)
    }

    fn tag(t: &MarkTable, inner: &str) -> String {
        conv(t, &format!("[**{inner}**]")).unwrap()
    }

    #[test]
    fn every_label_of_the_table() {
        let t = table();
        // (label as MIMIC-III writes it, tag) for every row of issue 3's table.
        let cases = [
            ("First Name8 (NamePattern2) 1234", "[Name]"),
            ("Last Name (NamePattern1) 77", "[Name]"),
            ("Initials (NamePattern4) 5", "[Name]"),
            ("Initial (NamePattern1) 5", "[Name]"),
            ("Known lastname 1234", "[Name]"),
            ("Known firstname 99", "[Name]"),
            ("Known patient lastname ", "[Name]"),
            ("Name (NI) 4", "[Name]"),
            ("Name8 (MD) 45", "[Name]"),
            ("Doctor Last Name 5", "[Name]"),
            ("Doctor First Name 12", "[Name]"),
            ("Female First Name (un) 3", "[Name]"),
            ("Hospital1 18", "[Company]"),
            ("Hospital Ward Name 121", "[Company]"),
            ("Hospital Unit Name 10", "[Company]"),
            ("Company 2", "[Company]"),
            ("University/College ", "[Company]"),
            ("Location (un) 1", "[LOC]"),
            ("Street Address(2) 33", "[LOC]"),
            ("Apartment Address(1) 4", "[LOC]"),
            ("Wardname 12", "[LOC]"),
            ("PO Box 12", "[LOC]"),
            ("PO BOX 12", "[LOC]"),
            ("Numeric Identifier 5", "[Reg#]"),
            ("Medical Record Number 7", "[Reg#]"),
            ("Clip Number (Radiology) 2", "[Reg#]"),
            ("MD Number(1) 3", "[Reg#]"),
            ("Job Number 8", "[Reg#]"),
            ("Unit Number 9", "[Reg#]"),
            ("Telephone/Fax (1) 62", "[#]"),
            ("Serial Number 3", "[#]"),
            ("Social Security Number 1", "[#]"),
            ("Pager number 3", "[#]"),
            ("Provider Number 12", "[#]"),
            ("Age over 90 1", "[Age]"),
            ("Date range (1) 5", "[DR]"),
            ("Date Range ", "[DR]"),
            ("State 3", "[State]"),
            ("Country 7", "[Country]"),
            ("E-mail address 1", "[CI]"),
            ("CC Contact Info 3", "[CI]"),
            ("Attending Info 4", "[CI]"),
            ("Dictator Info 2", "[CI]"),
            ("URL 4", "[URL]"),
            ("Year (4 digits) 123", "[YR]"),
            ("Year (2 digits) 1", "[YR]"),
            ("Month (only) 51", "[MO]"),
            ("Month/Day 2", "[MO]"),
            // CAMEL's order: `Year` is tried before `Month` and `Day`.
            ("Month/Day/Year 33", "[YR]"),
            ("Month/Year 1", "[YR]"),
            ("Day Month Year 2", "[YR]"),
            ("Day Month 5", "[MO]"),
            ("Holiday 2", "[DAY]"),
            // Case never matters for labels.
            ("KNOWN LASTNAME 1", "[Name]"),
            ("hospital1 2", "[Company]"),
        ];
        for (inner, want) in cases {
            assert_eq!(tag(&t, inner), want, "{inner:?}");
        }
    }

    #[test]
    fn keep_rules_and_numbers() {
        let t = table();
        // A three-part date and numeric spans are kept as written, without the brackets.
        assert_eq!(tag(&t, "2151-7-16"), "2151-7-16");
        assert_eq!(tag(&t, " 2151-7-16 "), " 2151-7-16 ");
        assert_eq!(tag(&t, "5-27"), "5-27");
        assert_eq!(tag(&t, "7/2111"), "7/2111");
        assert_eq!(tag(&t, "7/27/2111"), "7/27/2111");
        // Month names (any case, whole word).
        assert_eq!(tag(&t, "January"), "January");
        assert_eq!(tag(&t, "may 2150"), "may 2150");
        // A plain number.
        assert_eq!(tag(&t, "2345"), "[Reg#]");
        assert_eq!(tag(&t, " 12 "), "[Reg#]");
        // Empty marks disappear.
        assert_eq!(conv(&t, "a [****] b").unwrap(), "a  b");
        assert_eq!(conv(&t, "a [**  **] b").unwrap(), "a  b");
        // Not marks: across a line, or never closed.
        assert_eq!(conv(&t, "a [**Known lastname\n**] b").unwrap(), "a [**Known lastname\n**] b");
        assert_eq!(conv(&t, "[**x").unwrap(), "[**x");
        assert_eq!(conv(&t, "[***]").unwrap(), "[***]");
        // Lazy: the first closing `**]` on the line ends the mark.
        assert_eq!(conv(&t, "[**Hospital1 2**] and [**2-3**]**]").unwrap(), "[Company] and 2-3**]");
        // Text around is untouched, non-ASCII included.
        assert_eq!(
            conv(&t, "Dr. [**Last Name (STitle) 4**], né à [**Location (un) 1**].").unwrap(),
            "Dr. [Name], né à [LOC]."
        );
    }

    #[test]
    fn unknown_policy() {
        let t = table();
        assert_eq!(conv(&t, "ok [**Protected Entity 3**]"), Err(UnknownMark { offset: 3 }));
        let keep = MarkTable::new(&[], true, UnknownPolicy::Keep, Spacing::Plain);
        assert_eq!(conv(&keep, "ok [**Protected Entity 3**]").unwrap(), "ok [**Protected Entity 3**]");
        let tagp = MarkTable::new(&[], true, UnknownPolicy::Tag("[X]".into()), Spacing::Plain);
        let mut out = String::new();
        let mut c = tagp.counts();
        tagp.convert("[**Protected Entity 3**] [**Misc 1**] [**Name 1**]", &mut out, &mut c).unwrap();
        assert_eq!(out, "[X] [X] [Name]");
        assert_eq!(c.unknown, 2);
        assert_eq!(c.per_tag(&tagp), BTreeMap::from([("[X]".to_string(), 2), ("[Name]".to_string(), 1)]));
        assert_eq!(UnknownPolicy::try_from("tag:[PHI]".to_string()), Ok(UnknownPolicy::Tag("[PHI]".into())));
        assert!(UnknownPolicy::try_from("drop".to_string()).is_err());
    }

    #[test]
    fn counts_per_outcome() {
        let t = table();
        let mut out = String::new();
        let mut c = t.counts();
        let s = "[**Known lastname 1**] [**Known firstname 2**] [**2151-7-16**] [**3-4**] [**March**] [****] [**12**]";
        t.convert(s, &mut out, &mut c).unwrap();
        assert_eq!(out, "[Name] [Name] 2151-7-16 3-4 March  [Reg#]");
        assert_eq!(c.per_tag(&t), BTreeMap::from([("[Name]".to_string(), 2), ("[Reg#]".to_string(), 1)]));
        assert_eq!(
            (c.kept_date, c.kept_numeric_span, c.kept_month, c.removed_empty, c.unknown),
            (1, 1, 1, 1, 0)
        );
        assert_eq!(c.total(), 7);
    }

    #[test]
    fn the_table_is_overridable() {
        let extra =
            vec![("Ward".to_string(), "[WARD]".to_string()), ("protected entity".into(), "[PE]".into())];
        let t = MarkTable::new(&extra, true, UnknownPolicy::Error, Spacing::Plain);
        assert_eq!(tag(&t, "Hospital Ward Name 1"), "[WARD]", "YAML entries come first");
        assert_eq!(tag(&t, "Protected Entity 3"), "[PE]");
        assert_eq!(tag(&t, "Known lastname 3"), "[Name]");
        let only = MarkTable::new(&extra, false, UnknownPolicy::Keep, Spacing::Plain);
        assert_eq!(tag(&only, "Known lastname 3"), "[**Known lastname 3**]");
        assert_eq!(tag(&only, "33"), "[Reg#]", "the number rule does not depend on the table");
    }

    #[test]
    fn camel_spacing_joins_pieces_with_spaces() {
        let t = MarkTable::new(&[], true, UnknownPolicy::Error, Spacing::Camel);
        // CAMEL: " ".join(filter(lambda x: x != "", ["Dr. ", "[Name]", " said ", "", "."]))
        assert_eq!(conv(&t, "Dr. [**Last Name 1**] said [****].").unwrap(), "Dr.  [Name]  said  .");
        assert_eq!(conv(&t, "[**Name 1**][**Name 2**]").unwrap(), "[Name] [Name]");
        assert_eq!(conv(&t, "no marks here").unwrap(), "no marks here");
    }

    #[test]
    fn anon_is_a_non_overlapping_replace() {
        let mut out = String::new();
        assert_eq!(anon("Name: ___ Unit No: ____ x ______", &mut out), 4);
        assert_eq!(out, "Name: [ANON] Unit No: [ANON]_ x [ANON][ANON]");
    }
}
