//! MIMIC-III de-identification marks: the labels `synth` writes inside `[** … **]`, and the table that
//! sorts any mark into a category.
//!
//! MIMIC-III replaced each piece of PHI with a mark such as `[**Known lastname 1234**]`,
//! `[**2151-7-16**]` or `[****]`. Downstream stages that put surrogates back into the text (as CAMEL
//! did before pretraining) need a label → category table; [`classify_mark`] is that table, and the
//! tests check that a sample of `synth` output exercises every row of it.

/// A category of MIMIC-III de-identification mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MarkCategory {
    /// `First Name (Titles)`, `Last Name (NamePattern1)`, `Name (NI)`, `Doctor Last Name`, ...
    Name,
    /// `Initials (NamePattern4)`, `Initial (NamePattern1)`.
    Initials,
    /// `Known lastname`, `Known firstname`.
    KnownName,
    /// `Hospital1`, `Hospital3`, `Hospital Unit Name`, `Hospital Ward Name`.
    Hospital,
    Company,
    /// `University/College`.
    College,
    /// `Location`, `Location (un)`.
    Location,
    StreetAddress,
    ApartmentAddress,
    Wardname,
    PoBox,
    NumericIdentifier,
    MedicalRecordNumber,
    ClipNumber,
    MdNumber,
    JobNumber,
    UnitNumber,
    /// `Telephone/Fax (1)` ... `(5)`.
    Telephone,
    SerialNumber,
    SocialSecurityNumber,
    PagerNumber,
    ProviderNumber,
    AgeOver90,
    DateRange,
    State,
    Country,
    Email,
    CcContactInfo,
    AttendingInfo,
    DictatorInfo,
    Url,
    /// `Year (4 digits)`, `Year (2 digits)`.
    Year,
    /// `Month (only)`, `Month/Day`, `Month/Year`, `Month/Day/Year`.
    Month,
    /// `Day Month`, `Day Month Year`, `Holiday`.
    DayHoliday,
    /// A three-part date: `2151-7-16`.
    Date,
    /// Two numbers joined by `-` or `/`: `5-27`, `7/2111` (often a de-identifier's false positive).
    NumericSpan,
    /// `January` ... `December`.
    MonthName,
    /// Digits only: `2345`.
    Number,
    /// `[****]`.
    Empty,
    /// A label none of the rows above knows.
    Other,
}

impl MarkCategory {
    pub const ALL: [MarkCategory; 40] = {
        use MarkCategory::*;
        [
            Name,
            Initials,
            KnownName,
            Hospital,
            Company,
            College,
            Location,
            StreetAddress,
            ApartmentAddress,
            Wardname,
            PoBox,
            NumericIdentifier,
            MedicalRecordNumber,
            ClipNumber,
            MdNumber,
            JobNumber,
            UnitNumber,
            Telephone,
            SerialNumber,
            SocialSecurityNumber,
            PagerNumber,
            ProviderNumber,
            AgeOver90,
            DateRange,
            State,
            Country,
            Email,
            CcContactInfo,
            AttendingInfo,
            DictatorInfo,
            Url,
            Year,
            Month,
            DayHoliday,
            Date,
            NumericSpan,
            MonthName,
            Number,
            Empty,
            Other,
        ]
    };
}

/// Label prefixes (lower case) and their category, most specific first. A prefix matches when the
/// label starts with it and the next character is not a letter (`Hospital1`, `Name8 (MD)`).
const PREFIXES: &[(&str, MarkCategory)] = {
    use MarkCategory::*;
    &[
        ("known lastname", KnownName),
        ("known firstname", KnownName),
        ("doctor first name", Name),
        ("doctor last name", Name),
        ("female first name", Name),
        ("male first name", Name),
        ("first name", Name),
        ("last name", Name),
        ("initials", Initials),
        ("initial", Initials),
        ("hospital", Hospital),
        ("company", Company),
        ("university/college", College),
        ("location", Location),
        ("street address", StreetAddress),
        ("apartment address", ApartmentAddress),
        ("wardname", Wardname),
        ("po box", PoBox),
        ("numeric identifier", NumericIdentifier),
        ("medical record number", MedicalRecordNumber),
        ("clip number", ClipNumber),
        ("md number", MdNumber),
        ("job number", JobNumber),
        ("unit number", UnitNumber),
        ("telephone/fax", Telephone),
        ("serial number", SerialNumber),
        ("social security number", SocialSecurityNumber),
        ("pager number", PagerNumber),
        ("provider number", ProviderNumber),
        ("age over 90", AgeOver90),
        ("date range", DateRange),
        ("state", State),
        ("country", Country),
        ("e-mail address", Email),
        ("cc contact info", CcContactInfo),
        ("attending info", AttendingInfo),
        ("dictator info", DictatorInfo),
        ("url", Url),
        ("year", Year),
        ("month", Month),
        ("day", DayHoliday),
        ("holiday", DayHoliday),
        ("name", Name),
    ]
};

pub const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The category of a mark, given what is between `[**` and `**]`.
pub fn classify_mark(inner: &str) -> MarkCategory {
    let s = inner.trim();
    if s.is_empty() {
        return MarkCategory::Empty;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return MarkCategory::Number;
    }
    let parts: Vec<&str> = s.split(['-', '/']).collect();
    if parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        if parts.len() == 3 && s.bytes().filter(|&b| b == b'-').count() == 2 {
            return MarkCategory::Date;
        }
        if parts.len() == 2 {
            return MarkCategory::NumericSpan;
        }
    }
    if MONTHS.iter().any(|m| m.eq_ignore_ascii_case(s)) {
        return MarkCategory::MonthName;
    }
    let lower = s.to_ascii_lowercase();
    for (prefix, cat) in PREFIXES {
        match lower.strip_prefix(prefix) {
            Some(rest) if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) => return *cat,
            _ => {}
        }
    }
    MarkCategory::Other
}

/// Every mark in `text`, as the text between `[**` and `**]`.
pub fn marks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find("[**")?;
        let after = &rest[start + 3..];
        let end = after.find("**]")?;
        rest = &after[end + 3..];
        Some(&after[..end])
    })
}

/// The MIMIC-III labels `synth` writes for each kind of PHI (several spellings each, as in the corpus).
pub(crate) mod labels {
    pub const KNOWN_LAST: &[&str] = &["Known lastname"];
    pub const KNOWN_FIRST: &[&str] = &["Known firstname"];
    pub const FIRST: &[&str] = &[
        "First Name (Titles)",
        "First Name8 (NamePattern2)",
        "First Name4 (NamePattern1)",
        "First Name3 (LF)",
        "First Name (STitle)",
        "First Name11 (Name Pattern1)",
        "Doctor First Name",
        "Female First Name (un)",
        "Male First Name (un)",
        "First Name5 (NamePattern1)",
    ];
    pub const LAST: &[&str] = &[
        "Last Name (NamePattern1)",
        "Last Name (NamePattern4)",
        "Last Name (STitle)",
        "Last Name (un)",
        "Last Name (Titles)",
        "Last Name (LF)",
        "Last Name (Prefixes)",
        "Doctor Last Name",
        "Name (NI)",
        "Name8 (MD)",
        "Name6 (MD)",
        "Name10 (NameIs)",
        "Name (STitle)",
    ];
    pub const INITIALS: &[&str] =
        &["Initials (NamePattern4)", "Initial (NamePattern1)", "Initials (NamePattern5)"];
    pub const HOSPITAL: &[&str] =
        &["Hospital1", "Hospital1", "Hospital", "Hospital3", "Hospital2", "Hospital6"];
    pub const HOSPITAL_UNIT: &[&str] = &["Hospital Unit Name", "Hospital Ward Name"];
    pub const COMPANY: &[&str] = &["Company"];
    pub const COLLEGE: &[&str] = &["University/College"];
    pub const LOCATION: &[&str] = &["Location", "Location (un)", "Location (un)"];
    pub const STREET: &[&str] = &["Street Address(1)", "Street Address(2)"];
    pub const APARTMENT: &[&str] = &["Apartment Address(1)"];
    pub const WARD: &[&str] = &["Wardname"];
    pub const PO_BOX: &[&str] = &["PO BOX", "PO Box"];
    pub const NUMERIC_ID: &[&str] = &["Numeric Identifier"];
    pub const MRN: &[&str] = &["Medical Record Number"];
    pub const CLIP: &[&str] = &["Clip Number (Radiology)"];
    pub const MD_NUMBER: &[&str] = &["MD Number(1)", "MD Number(2)", "MD Number(3)", "MD Number(4)"];
    pub const JOB: &[&str] = &["Job Number"];
    pub const UNIT: &[&str] = &["Unit Number"];
    pub const PHONE: &[&str] =
        &["Telephone/Fax (1)", "Telephone/Fax (2)", "Telephone/Fax (3)", "Telephone/Fax (5)"];
    pub const SERIAL: &[&str] = &["Serial Number"];
    pub const SSN: &[&str] = &["Social Security Number"];
    pub const PAGER: &[&str] = &["Pager number"];
    pub const PROVIDER: &[&str] = &["Provider Number"];
    pub const AGE_90: &[&str] = &["Age over 90"];
    pub const DATE_RANGE: &[&str] = &["Date range (1)", "Date range (2)", "Date Range"];
    pub const STATE: &[&str] = &["State"];
    pub const COUNTRY: &[&str] = &["Country"];
    pub const EMAIL: &[&str] = &["E-mail address"];
    pub const CC: &[&str] = &["CC Contact Info"];
    pub const ATTENDING: &[&str] = &["Attending Info"];
    pub const DICTATOR: &[&str] = &["Dictator Info"];
    pub const URL: &[&str] = &["URL"];
    pub const YEAR: &[&str] = &["Year (4 digits)", "Year (4 digits)", "Year (2 digits)"];
    pub const MONTH: &[&str] = &["Month (only)", "Month (only)", "Month/Day", "Month/Year", "Month/Day/Year"];
    pub const DAY: &[&str] = &["Holiday", "Day Month", "Day Month Year"];
    /// Labels outside the table (real MIMIC-III has a few odd ones).
    pub const OTHER: &[&str] = &["Protected Entity", "Misc Identifier", "Pt Identifier"];
}

#[cfg(test)]
mod tests {
    use super::MarkCategory::*;
    use super::*;

    #[test]
    fn the_table_sorts_real_shapes() {
        let cases = [
            ("Known lastname 1234", KnownName),
            ("Known firstname ", KnownName),
            ("First Name8 (NamePattern2) 123", Name),
            ("Last Name (NamePattern1) 77", Name),
            ("Name8 (MD) 45", Name),
            ("Doctor Last Name 5", Name),
            ("Initials (NamePattern4) 5", Initials),
            ("Hospital1 18", Hospital),
            ("Hospital Ward Name 121", Hospital),
            ("University/College ", College),
            ("PO BOX 12", PoBox),
            ("po box 12", PoBox),
            ("Telephone/Fax (1) 62", Telephone),
            ("Pager number 3", PagerNumber),
            ("Year (4 digits) 123", Year),
            ("Month (only) 123", Month),
            ("Month/Day/Year 33", Month),
            ("Holiday 2", DayHoliday),
            ("Day Month Year 2", DayHoliday),
            ("2151-7-16", Date),
            ("5-27", NumericSpan),
            ("7/2111", NumericSpan),
            ("January", MonthName),
            ("2345", Number),
            ("", Empty),
            (" ", Empty),
            ("Protected Entity 3", Other),
            ("Namex", Other),
        ];
        for (inner, cat) in cases {
            assert_eq!(classify_mark(inner), cat, "{inner:?}");
        }
    }

    #[test]
    fn marks_are_found() {
        let v: Vec<&str> = marks("a [**x 1**] b [****] c [**2151-7-16**]").collect();
        assert_eq!(v, ["x 1", "", "2151-7-16"]);
    }
}
