//! The note types: discharge summaries, radiology reports, ECG and echo reports, nursing, physician,
//! respiratory and other notes. Each writes into a [`Doc`] whose [`Style`] decides how PHI looks and
//! which header a discharge summary or radiology report carries (MIMIC-III, MIMIC-IV or i2b2).

use super::doc::{Date, Doc, Style};

/// Sections are separated by an empty line in MIMIC-III and by a line holding one space in MIMIC-IV.
fn sep(d: &mut Doc) {
    d.s(if d.style == Style::Mimic4 { " \n" } else { "\n" });
}

/// Draws indices of a list without repeats until every one was drawn, then starts over (an
/// incremental Fisher-Yates shuffle), so that notes do not repeat a sentence twice in a row.
struct Order {
    idx: [u8; 64],
    n: usize,
    pos: usize,
}

impl Order {
    fn new(n: usize) -> Order {
        debug_assert!(n > 0 && n <= 64);
        let mut idx = [0u8; 64];
        for (i, x) in idx.iter_mut().enumerate().take(n) {
            *x = i as u8;
        }
        Order { idx, n, pos: 0 }
    }

    fn next(&mut self, d: &mut Doc) -> usize {
        if self.pos == self.n {
            self.pos = 0;
        }
        let j = self.pos + d.rng.below((self.n - self.pos) as u64) as usize;
        self.idx.swap(self.pos, j);
        self.pos += 1;
        self.idx[self.pos - 1] as usize
    }
}

/// `k` sentences from `pool`, distinct while the pool lasts, separated by spaces.
fn sentences(d: &mut Doc, pool: &[&str], k: u64) {
    let mut order = Order::new(pool.len());
    for i in 0..k {
        if i > 0 {
            d.s(" ");
        }
        let j = order.next(d);
        d.t(pool[j]);
    }
}

/// Lines from `pool`, distinct while the pool lasts, until the note reaches `target` bytes (at
/// least one).
fn lines_until(d: &mut Doc, pool: &[&str], target: usize) {
    let mut order = Order::new(pool.len());
    let mut first = true;
    while first || d.len() < target {
        first = false;
        let j = order.next(d);
        d.t(pool[j]);
        d.nl();
    }
}

/// A discharge summary's size goal in bytes: about 30% short ones (compact sections, roughly
/// 800–1,600 LLaMA tokens, since marks and numbers make this text ~2.5 bytes per token), 40% medium
/// and 30% long, up to ~2,000 words.
pub fn discharge_target(d: &mut Doc) -> usize {
    (match d.rng.below(20) {
        0..=5 => d.range(2_400, 4_000),
        6..=13 => d.range(4_000, 8_500),
        _ => d.range(8_500, 12_500),
    }) as usize
}

/// Below this goal a discharge summary keeps each section short.
const COMPACT: usize = 4_500;

const SERVICES: &[&str] = &[
    "MEDICINE",
    "MEDICINE",
    "MEDICINE",
    "SURGERY",
    "CARDIOTHORACIC",
    "NEUROLOGY",
    "ORTHOPAEDICS",
    "NEUROSURGERY",
    "OBSTETRICS/GYNECOLOGY",
    "UROLOGY",
    "VASCULAR",
];

const ALLERGIES: &[&str] = &[
    "Patient recorded as having No Known Allergies to Drugs",
    "No Known Allergies / Adverse Drug Reactions",
    "Penicillins",
    "Sulfa (Sulfonamide Antibiotics)",
    "Codeine / Morphine",
    "Iodine; Iodine Containing",
    "Lisinopril / Aspirin",
    "Percocet / Vancomycin",
];

const HPI: &[&str] = &[
    "{age} year old {man} with a history of {pmh} and {pmh} who presents with {n:2-7} days of {sx} and {sx}.",
    "{He} was in {his} usual state of health until {n:2-5} days prior to admission, when {he} developed {sx}.",
    "{He} reports {sx}, describing it as {quote}.",
    "{He} denies {sx}, {sx} or recent travel.",
    "In the ED, initial vitals were T {temp} HR {hr} BP {bp} RR {rr} O2 sat {spo2}% RA.",
    "Labs were notable for WBC {d:3-22}, Cr {d:1-4} (baseline {d:1-2}) and lactate {d:1-6}.",
    "{He} was given {abx}, {drug} and {n:1-4}L of IV fluids, and was admitted to {ward} for further management.",
    "Of note, {he} was recently hospitalized at {hosp} {daterange} for {dx}.",
    "{He} was last seen by {his} PCP, {dr}, in {month}, when {his} {drug} dose was increased.",
    "{His} symptoms started around {holiday} and have progressively worsened since.",
    "{He} was diagnosed with {dx} in {year} and was treated with {drug} at that time.",
    "Per {his} daughter, {he} has been more confused over the last {span} weeks.",
    "{He} had a similar episode in {monthname} {number}, which resolved with {drug}.",
    "CXR in the ED showed {finding_cxr}",
    "EKG showed sinus tachycardia at {hr} with no acute ST changes.",
    "Family states that {he} {quote_says}",
];

const SOCIAL: &[&str] = &[
    "Lives in {loc} with {his} wife. Retired machinist. Quit tobacco {n:5-30} years ago ({n:20-60} pack-years). Occasional EtOH, denies illicit drug use.",
    "Emigrated from {country} in {year}; Portuguese speaking, interpreter used. Lives with daughter at {street} {apt}.",
    "Lives alone in {loc}, {state}. Graduated from {college}. Former smoker, quit in {year}.",
    "Resides at {hosp} nursing home. Son is health care proxy (phone {phone}).",
    "Works for {company} as an accountant. Married, two children. Drinks 2–3 beers per weekend.",
    "Homeless; mailing address {pobox}. Active heroin use, last use {n:1-3} days prior to admission.",
    "Lives with husband, independent in ADLs, walks with a cane. Never smoker, no EtOH.",
    "Former teacher at {college}. Lives in an apartment in {loc} with her partner.",
];

const FAMILY: &[&str] = &[
    "Mother with breast cancer, father died of MI at {n:50-75}.",
    "Non-contributory.",
    "Brother with type 2 diabetes; sister with colon cancer diagnosed at age {n:40-70}.",
    "Father with CAD, mother with HTN and stroke. No family history of sudden cardiac death.",
    "Unknown, patient was adopted.",
];

const GENERAL: &[&str] = &[
    "NAD, A&Ox3, pleasant and cooperative",
    "elderly {man} lying in bed, mildly uncomfortable",
    "intubated, sedated, not following commands",
    "thin, ill-appearing {man} in moderate respiratory distress",
];
const HEENT: &[&str] = &[
    "NCAT, PERRL, EOMI, sclera anicteric, MMM, oropharynx clear",
    "dry mucous membranes, scleral icterus, poor dentition",
];
const NECK: &[&str] = &["Supple, JVP not elevated, no LAD", "JVP to the angle of the jaw, no thyromegaly"];
const CV: &[&str] = &[
    "RRR, normal S1 + S2, no murmurs, rubs, gallops",
    "irregularly irregular, II/VI systolic murmur at the apex",
    "tachycardic, regular, III/VI crescendo-decrescendo murmur at the RUSB",
];
const LUNGS: &[&str] = &[
    "Clear to auscultation bilaterally, no wheezes, rales, rhonchi",
    "Crackles at bilateral bases, R>L",
    "Diffuse expiratory wheezes, prolonged expiratory phase",
    "Decreased breath sounds at the left base with dullness to percussion",
];
const ABDOMEN: &[&str] = &[
    "Soft, non-tender, non-distended, bowel sounds present, no organomegaly",
    "Distended, +fluid wave, mild diffuse tenderness, no rebound or guarding",
    "Obese, soft, tender in the RUQ, positive Murphy's sign",
];
const EXT: &[&str] = &[
    "Warm, well perfused, 2+ pulses, no clubbing, cyanosis or edema",
    "2+ pitting edema to the knees bilaterally",
    "Left lower extremity erythematous, warm, tender to the mid-calf",
];
const NEURO: &[&str] = &[
    "CN II–XII intact, strength 5/5 throughout, sensation grossly intact",
    "Oriented x1, asterixis present, moving all extremities",
    "Right facial droop, right arm 3/5, left side 5/5",
];
const SKIN: &[&str] =
    &["No rashes or lesions", "café-au-lait spot on the back, no rashes", "Stage II sacral decubitus ulcer"];

/// Problem paragraphs of a hospital course: (title, sentences).
const PROBLEMS: &[(&str, &[&str])] = &[
    (
        "Pneumonia",
        &[
            "{He} was started on {abx} and {abx} for presumed community acquired pneumonia.",
            "Sputum culture grew {organism}, sensitive to {abx}.",
            "Chest x-ray on {date} showed {finding_cxr}",
            "{He} remained afebrile after hospital day {n:2-4} and {his} oxygen requirement improved from {n:3-6}L NC to room air.",
            "{He} was transitioned to oral antibiotics to complete a {n:7-14} day course.",
            "WBC trended down from {d:12-22} to {d:6-10}.",
        ],
    ),
    (
        "Acute on chronic systolic heart failure",
        &[
            "{He} presented volume overloaded with an estimated {n:5-15} lbs above {his} dry weight.",
            "{He} was diuresed with IV furosemide {n:40-120} mg BID with good urine output, net negative {d:1-4}L per day.",
            "Echo on {date} showed an EF of {n:20-40}%, unchanged from {pdate}.",
            "{His} discharge weight was {wt} kg.",
            "Metoprolol was held on admission in the setting of decompensation and restarted prior to discharge.",
            "{He} was counseled on a 2 g sodium diet and 1.5 L fluid restriction.",
        ],
    ),
    (
        "Acute kidney injury",
        &[
            "Cr on admission was {d:2-5}, up from a baseline of {d:1-2}.",
            "This was felt to be prerenal in the setting of poor PO intake and diuretic use.",
            "Urine lytes showed FeNa {d:0-2}%.",
            "Lisinopril and furosemide were held and {he} was given gentle IV fluids.",
            "Cr improved to {d:1-2} at the time of discharge.",
            "Renal ultrasound on {date} showed no hydronephrosis.",
        ],
    ),
    (
        "Atrial fibrillation",
        &[
            "{He} was in atrial fibrillation with rates to the {n:120-170}s on arrival.",
            "{He} was rate controlled with IV diltiazem and then metoprolol {n:25-100} mg PO q6h.",
            "CHADS2 score was {n:1-5}; after discussion with {his} cardiologist, {dr}, warfarin was continued with a goal INR of 2–3.",
            "INR on discharge was {d:1-3}.",
            "TSH was within normal limits.",
        ],
    ),
    (
        "Upper GI bleed",
        &[
            "Hct dropped from {n:30-38} to {n:20-27} with melena.",
            "{He} was transfused {n:1-4} units of pRBCs and started on an IV PPI drip.",
            "EGD on {date} by the GI service showed a {n:1-3} cm clean-based duodenal ulcer.",
            "H. pylori serology was positive and {he} was started on triple therapy.",
            "Hct remained stable over the following {n:2-4} days.",
        ],
    ),
    (
        "Diabetes mellitus, type 2",
        &[
            "Blood sugars were poorly controlled, ranging from {n:60-110} to {n:250-480}.",
            "{His} home metformin was held and {he} was covered with glargine {n:8-40} units qHS and a humalog sliding scale.",
            "HbA1c was {d:6-12}%.",
            "{He} was seen by the {last} diabetes team, who recommended an increased basal dose.",
        ],
    ),
    (
        "Altered mental status",
        &[
            "{He} was noted to be confused and agitated on the night of admission, thought to be delirium.",
            "Head CT on {date} showed no acute intracranial process.",
            "Ammonia was {n:40-180}; {he} was given lactulose titrated to {n:3-4} BMs per day and rifaximin.",
            "{His} mental status returned to baseline by hospital day {n:3-6}.",
            "Haloperidol 0.5 mg was given once for agitation.",
        ],
    ),
    (
        "Urinary tract infection",
        &[
            "UA was positive with >{n:50-182} WBC and nitrites.",
            "Urine culture grew {organism}, pan-sensitive.",
            "{He} was treated with {abx} for a total of {n:3-14} days.",
            "The Foley catheter placed at the OSH was removed on {date}.",
        ],
    ),
    (
        "Hypertension",
        &[
            "Blood pressure was elevated to {bp} on arrival and improved with {drug}.",
            "{His} home amlodipine was continued and lisinopril was uptitrated to {n:10-40} mg daily.",
            "BP at discharge was {bp}.",
        ],
    ),
    (
        "Pain control",
        &[
            "{His} pain was managed with acetaminophen and oxycodone {n:5-10} mg q4h PRN.",
            "A fentanyl patch 25 µg/hr was started on {date} for chronic pain.",
            "Bowel regimen with senna and docusate was given while on narcotics.",
        ],
    ),
    (
        "Goals of care",
        &[
            "A family meeting was held on {date} with {his} son and {drfull} of palliative care.",
            "The patient stated {quote} and the decision was made to change code status to DNR/DNI.",
            "{He} was evaluated by hospice, and {company} will provide services at home.",
            "Health care proxy is {his} daughter, reachable at {phone}.",
        ],
    ),
    (
        "COPD exacerbation",
        &[
            "{He} was treated with prednisone 40 mg daily, azithromycin and standing nebulizers.",
            "ABG on arrival was 7.{n:21-35}/{n:55-88}/{n:52-90}.",
            "{He} required BiPAP overnight on {date} but was weaned to {n:2-3}L NC, {his} home requirement.",
            "{He} will complete a {n:5-14} day steroid taper.",
        ],
    ),
    (
        "Deep vein thrombosis",
        &[
            "LENIs on {date} showed an occlusive thrombus in the left popliteal vein.",
            "{He} was started on enoxaparin {n:60-120} mg SC q12h with a bridge to warfarin.",
            "{He} will need anticoagulation for at least {n:3-6} months, to be managed by the {hosp} anticoagulation clinic ({phone}).",
        ],
    ),
    (
        "Sepsis",
        &[
            "{He} met SIRS criteria on arrival with a lactate of {d:2-8} and was admitted to the MICU.",
            "{He} received {n:3-6}L of crystalloid and was briefly on norepinephrine, weaned off on {date}.",
            "Blood cultures grew {organism} in {n:1-4} of 4 bottles.",
            "A right IJ central line was placed on {adate} and removed prior to transfer to the floor.",
            "Source was felt to be urinary; CT abdomen showed no abscess.",
            "{He} was narrowed to {abx} per sensitivities.",
        ],
    ),
    (
        "Hyponatremia",
        &[
            "Na on admission was {n:115-129}, felt to be hypovolemic in the setting of poor PO intake.",
            "Urine osm was {n:100-600} and urine Na {n:10-80}.",
            "{He} was given normal saline with correction of no more than 8 mEq/L in 24 hours.",
            "Na at discharge was {n:131-138}.",
            "{His} HCTZ was discontinued.",
        ],
    ),
    (
        "Alcohol withdrawal",
        &[
            "{He} reports drinking {n:6-24} beers daily, last drink the morning of admission.",
            "{He} was placed on a CIWA scale with diazepam and required {n:20-200} mg over the first 48 hours.",
            "{He} was given thiamine, folate and a multivitamin.",
            "Social work met with {him} and provided resources for outpatient treatment.",
        ],
    ),
    (
        "Chest pain",
        &[
            "Troponin peaked at {d:0-3} on {date} with CK-MB {n:5-40}.",
            "{He} was started on a heparin drip, aspirin 325 mg and atorvastatin 80 mg.",
            "Cardiac catheterization on {date} showed {n:70-99}% stenosis of the mid LAD, treated with a drug-eluting stent.",
            "{He} will need clopidogrel for at least 12 months without interruption.",
            "Echo showed an EF of {n:35-60}% with mild inferior hypokinesis.",
        ],
    ),
    (
        "Cirrhosis",
        &[
            "{He} has cirrhosis secondary to alcohol and hepatitis C, MELD {n:10-32} on admission.",
            "Diagnostic paracentesis on {date} removed {d:1-6} L; SBP was ruled out with {n:20-240} PMNs.",
            "{He} was continued on nadolol for variceal prophylaxis.",
            "{He} is listed for transplant at {hosp} and will follow up with hepatology.",
        ],
    ),
    (
        "Fall",
        &[
            "{He} fell at home on the night prior to admission while walking to the bathroom.",
            "CT head and C-spine were negative for acute injury.",
            "Orthostatic vital signs were positive; {his} antihypertensives were reduced.",
            "{He} was evaluated by PT, who recommended a rolling walker and home PT.",
        ],
    ),
    (
        "Transitional issues",
        &[
            "Please check a chem-7 on {fdate} and fax results to {dr} at {phone}.",
            "{He} will follow up with cardiology in {span} weeks.",
            "Pending labs at discharge: blood cultures from {date}.",
            "Code status: Full code, confirmed with the patient.",
            "Contact: {his} wife, {phone}.",
        ],
    ),
];

/// Discharge medications: (name, strength, form, sig).
const MEDS: &[(&str, &str, &str, &str)] = &[
    ("Aspirin", "81 mg", "Tablet, Chewable", "PO DAILY (Daily)"),
    ("Metoprolol Tartrate", "25 mg", "Tablet", "PO BID (2 times a day)"),
    ("Atorvastatin", "40 mg", "Tablet", "PO DAILY (Daily)"),
    ("Furosemide", "20 mg", "Tablet", "PO once a day"),
    ("Lisinopril", "10 mg", "Tablet", "PO DAILY (Daily)"),
    ("Warfarin", "5 mg", "Tablet", "PO Once Daily at 4 PM"),
    ("Insulin Glargine", "100 unit/mL", "Solution", "Subcutaneous at bedtime"),
    ("Pantoprazole", "40 mg", "Tablet, Delayed Release (E.C.)", "PO Q24H (every 24 hours)"),
    ("Levothyroxine", "75 mcg", "Tablet", "PO DAILY (Daily)"),
    ("Fentanyl", "25 µg/hr", "Patch 72 hr", "Transdermal Q72H (every 72 hours)"),
    ("Docusate Sodium", "100 mg", "Capsule", "PO BID (2 times a day)"),
    ("Senna", "8.6 mg", "Tablet", "PO BID (2 times a day) as needed for constipation"),
    ("Acetaminophen", "325 mg", "Tablet", "PO Q6H (every 6 hours) as needed for pain"),
    ("Oxycodone", "5 mg", "Tablet", "PO Q4H (every 4 hours) as needed for pain"),
    ("Amiodarone", "200 mg", "Tablet", "PO DAILY (Daily)"),
    ("Levofloxacin", "750 mg", "Tablet", "PO Q48H (every 48 hours) for 5 days"),
    ("Prednisone", "10 mg", "Tablet", "PO DAILY (Daily): taper as directed"),
    (
        "Albuterol Sulfate",
        "90 mcg/Actuation",
        "HFA Aerosol Inhaler",
        "Inhalation Q6H (every 6 hours) as needed for shortness of breath or wheezing",
    ),
    ("Tiotropium Bromide", "18 mcg", "Capsule, w/Inhalation Device", "Inhalation DAILY (Daily)"),
    ("Heparin (Porcine)", "5,000 unit/mL", "Solution", "Injection TID (3 times a day)"),
    ("Lactulose", "10 gram/15 mL", "Syrup", "PO TID (3 times a day): titrate to 3-4 BMs daily"),
    ("Rifaximin", "550 mg", "Tablet", "PO BID (2 times a day)"),
    ("Spironolactone", "25 mg", "Tablet", "PO DAILY (Daily)"),
    ("Clopidogrel", "75 mg", "Tablet", "PO DAILY (Daily)"),
];

const COUNTS: &[&str] = &["One (1)", "One (1)", "One (1)", "Two (2)", "Half (0.5)", "Three (3)"];

fn med_list_numbered(d: &mut Doc, k: u64) {
    for i in 1..=k {
        let (name, strength, form, sig) = *d.rng.pick(MEDS);
        d.n(i);
        d.s(". ");
        d.s(name);
        d.s(" ");
        d.s(strength);
        d.s(" ");
        d.s(form);
        d.s(" Sig: ");
        d.pick(COUNTS);
        d.s(" ");
        d.s(form.split(',').next().unwrap_or(form));
        d.s(" ");
        d.s(sig);
        d.s(".\n");
        if d.chance(1, 3) {
            d.t("Disp:*{n:10-90} Tablet(s)* Refills:*{n:0-3}*\n");
        }
    }
}

fn med_list_short(d: &mut Doc, k: u64) {
    for i in 0..k {
        let (name, strength, _, sig) = *d.rng.pick(MEDS);
        if d.style == Style::Mimic4 || i % 2 == 0 {
            d.s(name);
            d.s(" ");
            d.s(strength);
            d.s(" ");
            d.s(sig.split(' ').take(2).collect::<Vec<_>>().join(" ").as_str());
            d.nl();
        } else {
            d.n(i + 1);
            d.s(". ");
            d.s(name);
            d.s(" ");
            d.s(strength);
            d.s(" daily\n");
        }
    }
}

fn exam(d: &mut Doc, compact: bool) {
    if d.chance(1, 2) {
        d.line("VS: BP {bp}, HR {hr}, RR {rr}, SpO2 {spo2}% RA, T {temp}");
    } else {
        d.line("Vitals: T {tempc} BP {bp} HR {hr} RR {rr} O2 sat {spo2}% on {n:2-4}L NC");
    }
    for (label, pool) in [
        ("General: ", GENERAL),
        ("HEENT: ", HEENT),
        ("Neck: ", NECK),
        ("CV: ", CV),
        ("Lungs: ", LUNGS),
        ("Abdomen: ", ABDOMEN),
        ("Ext: ", EXT),
        ("Neuro: ", NEURO),
        ("Skin: ", SKIN),
    ] {
        if compact && !matches!(label, "General: " | "CV: " | "Lungs: " | "Abdomen: ") {
            continue;
        }
        d.s(label);
        d.pick(pool);
        d.nl();
    }
}

fn header(d: &mut Doc) {
    let dob = Date { y: d.adm.y - d.age as i32, m: d.range(1, 12) as u32, d: d.range(1, 28) as u32 };
    match d.style {
        Style::Mimic3 => {
            d.line("Admission Date:  {adate}              Discharge Date:   {ddate}");
            d.nl();
            d.s("Date of Birth:  ");
            d.date(dob);
            d.line("             Sex:   {sex}");
            d.nl();
        }
        Style::Mimic4 => {
            d.s(" \nName:  ___                     Unit No:   ___\n \n");
            d.s("Admission Date:  ___              Discharge Date:   ___\n \n");
            d.line("Date of Birth:  ___             Sex:   {sex}");
            d.s(" \n");
        }
        Style::I2b2 => {
            d.line("Record date: {adate}");
            d.nl();
            d.line("{hosp}");
            d.line("DISCHARGE SUMMARY");
            d.nl();
            d.line("NAME: {ptlast}, {ptfirst}    MRN: {mrn}");
            d.line("Admission Date: {adate}    Discharge Date: {ddate}");
            d.nl();
        }
    }
    d.s("Service: ");
    d.pick(SERVICES);
    d.nl();
    sep(d);
}

/// A discharge summary of about `target` bytes.
pub fn discharge(d: &mut Doc, target: usize) {
    let compact = target < COMPACT;
    // (low, high) counts of HPI sentences, PMH lines, lab lines, admission and discharge meds.
    let [hpi, pmh, labs, adm_meds, dis_meds] = if compact {
        [(2, 3), (1, 3), (1, 2), (1, 3), (1, 4)]
    } else {
        [(3, 8), (2, 8), (2, 7), (2, 9), (2, 14)]
    };
    header(d);
    d.s("Allergies:\n");
    d.pick(ALLERGIES);
    d.nl();
    sep(d);
    match d.style {
        Style::Mimic3 => d.line("Attending:{first}"),
        Style::Mimic4 => d.line("Attending: ___."),
        Style::I2b2 => d.line("Attending: {drfull}."),
    }
    sep(d);
    d.s("Chief Complaint:\n");
    d.line("{cc_}");
    sep(d);
    d.s("Major Surgical or Invasive Procedure:\n");
    d.line("{proc}");
    sep(d);
    sep(d);
    d.s("History of Present Illness:\n");
    let k = d.range(hpi.0, hpi.1);
    sentences(d, HPI, k);
    d.nl();
    sep(d);
    d.s("Past Medical History:\n");
    for _ in 0..d.range(pmh.0, pmh.1) {
        d.s(if d.style == Style::Mimic4 { "- " } else { "" });
        d.pick(super::vocab::PMH);
        d.nl();
    }
    sep(d);
    d.s("Social History:\n");
    d.pick(SOCIAL);
    d.nl();
    sep(d);
    d.s("Family History:\n");
    d.pick(FAMILY);
    d.nl();
    sep(d);
    d.s("Physical Exam:\n");
    if d.chance(1, 2) {
        d.s("ADMISSION EXAM:\n");
    }
    exam(d, compact);
    sep(d);
    d.s("Pertinent Results:\n");
    for _ in 0..d.range(labs.0, labs.1) {
        d.line("{lab}");
    }
    d.nl();
    d.line("CXR ({date}): {finding_cxr}");
    sep(d);
    d.s("Brief Hospital Course:\n");
    d.line("{age} year old {man} with {pmh} who presented with {sx} and was found to have {dx}.");
    d.nl();
    let tail = if compact { 900 } else { 1_800 };
    let mut first = true;
    let mut order = Order::new(PROBLEMS.len());
    while first || d.len() + tail < target {
        first = false;
        let (title, pool) = PROBLEMS[order.next(d)];
        d.s("# ");
        d.s(title);
        d.s(": ");
        let k = d.range(3, pool.len() as u64);
        sentences(d, pool, k);
        d.s("\n\n");
    }
    d.s("Medications on Admission:\n");
    let k = d.range(adm_meds.0, adm_meds.1);
    med_list_short(d, k);
    sep(d);
    d.s("Discharge Medications:\n");
    let k = d.range(dis_meds.0, dis_meds.1);
    med_list_numbered(d, k);
    sep(d);
    d.s("Discharge Disposition:\n");
    match d.rng.below(3) {
        0 => d.s("Home\n"),
        1 => d.t("Home With Service\n\nFacility:\n{company}\n"),
        _ => d.t("Extended Care\n\nFacility:\n{hosp} & Rehab Center - {hosp}\n"),
    }
    sep(d);
    d.s("Discharge Diagnosis:\nPrimary:\n");
    d.line("{dx}");
    d.s("\nSecondary:\n");
    for _ in 0..d.range(1, 4) {
        d.line("{pmh}");
    }
    sep(d);
    d.s("Discharge Condition:\nMental Status: Clear and coherent.\nLevel of Consciousness: Alert and interactive.\n");
    d.s("Activity Status: Ambulatory - Independent.\n");
    sep(d);
    d.s("Discharge Instructions:\n");
    d.line("Dear {pt},");
    d.nl();
    d.line("It was a pleasure taking care of you at {hosp}. You were admitted with {dx}.");
    d.line("Please call your doctor or return to the emergency department if you develop {sx}, {sx}, or any other concerning symptoms.");
    if d.chance(1, 2) {
        d.nl();
        d.line("The following changes were made to your medications:\n- START {drug}\n- STOP {drug}\n- CHANGE {drug} to {n:10-80} mg daily");
    }
    if d.chance(1, 3) {
        d.line("Weigh yourself every morning, call MD if weight goes up more than 3 lbs.");
    }
    if d.chance(1, 5) {
        d.line("You can reach the clinic at {phone} or by e-mail at {email}; more information is at {url}.");
    }
    sep(d);
    d.s("Followup Instructions:\n");
    if d.style == Style::Mimic4 {
        d.s("___\n");
        return;
    }
    match d.rng.below(4) {
        0 => d.line("Provider: {first} {last}, MD Phone:{phone} Date/Time:{fdate} 10:00"),
        1 => d.line(
            "Department: CARDIOLOGY\nWhen: {holiday} at 2:30 PM\nWith: {drfull}, MD [{phone}]\nBuilding: {street} ({loc})\nCampus: EAST     Best Parking: {hosp} Garage",
        ),
        2 => d.line("Please follow up with your PCP {dr} in {span} weeks. Call {pager} (pager) with questions."),
        _ => d.line("Provider: {provider} Date/Time:{fdate} 1:40\nProvider: {drfull}, MD Phone:{phone} Date/Time:{fdate} 11:00"),
    }
    if d.style == Style::I2b2 {
        d.nl();
        d.line("{drfull}, M.D.");
        return;
    }
    d.s("\n\n\n");
    if d.chance(1, 2) {
        d.line("                             {first} {last} MD, {mdnum}");
        d.nl();
        d.t("Completed by:{ddate}");
    } else {
        d.line("                             {first} {last}, M.D.  {mdnum}");
        d.nl();
        d.line("Dictated By:{last}");
        d.s("MEDQUIST36\n\n");
        d.line("D:  {ddate}  {clock}:{n:10-59}");
        d.line("T:  {ddate}  {clock}:{n:10-59}");
        d.line("JT:  {job}");
        d.line("Job#:  {job}");
        d.nl();
        if d.chance(1, 2) {
            d.line("cc:{cc}");
        }
    }
    if d.chance(1, 20) {
        d.t(" {empty}");
    }
    if d.chance(1, 25) {
        d.t("\nRef: {other}");
    }
    d.nl();
}

const ADDENDUM: &[&str] = &[
    "Pt was seen by physical therapy prior to discharge, who recommended discharge to rehab.",
    "Blood cultures from {date} returned positive for {organism}; {his} antibiotic was changed to {abx}.",
    "Discharge medication list corrected: {drug} should be held until follow up with {dr}.",
    "Pt's discharge was delayed by {n:1-3} days awaiting a bed at {hosp}.",
    "{His} INR on the day of discharge was {d:1-4}; warfarin dose adjusted accordingly.",
];

/// A short addendum to a discharge summary.
pub fn addendum(d: &mut Doc) {
    if d.style == Style::Mimic3 {
        d.line("Name:  {ptlast},{ptfirst}                Unit No:   {numid}");
        d.nl();
        d.line("Admission Date:  {adate}              Discharge Date:   {ddate}");
        d.nl();
    }
    d.s("Addendum:\n");
    let k = d.range(1, 4);
    sentences(d, ADDENDUM, k);
    d.nl();
    d.nl();
    if d.style == Style::Mimic3 {
        d.line("                             {first} {last} MD {mdnum}");
        d.nl();
        d.line("Completed by:{ddate}");
    }
}

/// (DESCRIPTION, exam, reason, findings, impressions).
type Study =
    (&'static str, &'static str, &'static [&'static str], &'static [&'static str], &'static [&'static str]);

pub const STUDIES: &[Study] = &[
    (
        "CHEST (PORTABLE AP)",
        "CHEST (PORTABLE AP)",
        &[
            "eval for infiltrate",
            "s/p line placement, eval for ptx",
            "assess for interval change",
            "fever, r/o pneumonia",
        ],
        &[
            "The endotracheal tube terminates {n:2-6} cm above the carina.",
            "A right internal jugular central venous catheter terminates in the mid SVC.",
            "There is {finding_cxr}",
            "Heart size is mildly enlarged but stable.",
            "No pneumothorax is seen.",
            "Small bilateral pleural effusions are unchanged.",
            "The nasogastric tube courses below the diaphragm, the tip not seen on this film.",
        ],
        &[
            "Interval worsening of the right lower lobe opacity, concerning for pneumonia.",
            "No pneumothorax.",
            "Mild pulmonary edema, slightly improved since {pdate}.",
            "Lines and tubes in appropriate position.",
        ],
    ),
    (
        "CHEST (PA & LAT)",
        "CHEST (PA AND LAT)",
        &["cough, fever", "shortness of breath", "pre-op evaluation"],
        &[
            "The lungs are clear without consolidation, effusion or edema.",
            "The cardiomediastinal silhouette is within normal limits.",
            "There is a {n:3-12} mm nodule in the right upper lobe.",
            "Degenerative changes are noted in the thoracic spine.",
            "Sternotomy wires are intact.",
        ],
        &[
            "No acute cardiopulmonary process.",
            "Right upper lobe nodule; recommend CT for further evaluation.",
        ],
    ),
    (
        "CT HEAD W/O CONTRAST",
        "CT HEAD W/O CONTRAST",
        &["s/p fall, on coumadin, eval for bleed", "altered mental status", "new right-sided weakness"],
        &[
            "There is no evidence of acute intracranial hemorrhage, mass effect, or shift of normally midline structures.",
            "There is a {n:4-15} mm left frontal subdural hematoma without midline shift.",
            "Periventricular white matter hypodensities are consistent with chronic small vessel ischemic disease.",
            "The ventricles and sulci are prominent, consistent with age-related atrophy.",
            "The visualized paranasal sinuses and mastoid air cells are clear.",
        ],
        &["No acute intracranial process.", "Small left frontal subdural hematoma, unchanged from {pdate}."],
    ),
    (
        "CT ABDOMEN W/CONTRAST",
        "CT ABDOMEN AND PELVIS WITH CONTRAST",
        &["abdominal pain, eval for abscess", "RLQ pain, r/o appendicitis", "elevated LFTs"],
        &[
            "The liver is nodular in contour with moderate ascites.",
            "There is dilated small bowel measuring up to {n:3-5} cm with a transition point in the right lower quadrant.",
            "The appendix is normal.",
            "The gallbladder is distended with pericholecystic fluid.",
            "There is no free air.",
            "The kidneys enhance symmetrically without hydronephrosis.",
        ],
        &[
            "Small bowel obstruction with a transition point in the RLQ.",
            "Cirrhotic liver with moderate ascites.",
        ],
    ),
    (
        "CTA CHEST W&W/O C&RECONS, NON-CORONARY",
        "CTA CHEST",
        &["eval for PE", "tachycardia, hypoxia"],
        &[
            "There are filling defects in the right lower lobe segmental pulmonary arteries.",
            "The RV/LV ratio is {d:0-1}.",
            "There is no pulmonary embolism to the subsegmental level.",
            "Emphysematous changes are seen at the lung apices.",
        ],
        &[
            "Right lower lobe segmental pulmonary emboli without right heart strain.",
            "No pulmonary embolism.",
        ],
    ),
    (
        "RENAL U.S.",
        "RENAL U.S.",
        &["acute renal failure", "eval for hydronephrosis"],
        &[
            "The right kidney measures {d:9-12} cm and the left kidney measures {d:9-12} cm.",
            "There is no hydronephrosis, stones, or masses bilaterally.",
            "The bladder is decompressed with a Foley catheter.",
        ],
        &["No hydronephrosis."],
    ),
    (
        "BILAT LOWER EXT VEINS",
        "BILATERAL LOWER EXTREMITY VENOUS DUPLEX",
        &["leg swelling, eval for DVT"],
        &[
            "Grayscale and Doppler sonograms of the bilateral common femoral, femoral and popliteal veins were performed.",
            "There is an occlusive thrombus within the left popliteal vein.",
            "There is normal compressibility, flow and augmentation in the right lower extremity veins.",
        ],
        &["Occlusive left popliteal deep vein thrombosis.", "No evidence of DVT in either leg."],
    ),
    (
        "MR HEAD W & W/O CONTRAST",
        "MRI BRAIN WITH AND WITHOUT CONTRAST",
        &["new onset seizure", "eval for stroke"],
        &[
            "There is restricted diffusion in the left MCA territory consistent with acute infarction.",
            "There is no abnormal enhancement.",
            "Flow voids in the major intracranial vessels are preserved.",
        ],
        &["Acute left MCA territory infarct.", "No acute intracranial abnormality."],
    ),
];

/// A radiology report of study `study` (an index into [`STUDIES`]).
pub fn radiology(d: &mut Doc, study: usize) {
    let (desc, exam, reasons, findings, impressions) = STUDIES[study];
    let reason = *d.rng.pick(reasons);
    match d.style {
        Style::Mimic3 => {
            d.t("{date} {n:1-12}:{n:10-59} ");
            let am = d.chance(1, 2);
            d.s(if am { "AM\n" } else { "PM\n" });
            d.s(" ");
            d.s(desc);
            d.line("                                             Clip # {clip}");
            d.s(" Reason: ");
            d.s(reason);
            d.nl();
            d.s(" Admitting Diagnosis: ");
            d.pick(super::vocab::COMPLAINTS);
            d.nl();
            d.s(" ______________________________________________________________________________\n");
            d.line(" {hosp} MEDICAL CONDITION:");
            d.line("  {age} year old {man} with {dx}");
            d.s(" REASON FOR THIS EXAMINATION:\n  ");
            d.s(reason);
            d.nl();
            d.s(" ______________________________________________________________________________\n");
            d.s("                                 FINAL REPORT\n");
        }
        Style::Mimic4 | Style::I2b2 => {}
    }
    d.s(if d.style == Style::Mimic3 { " EXAMINATION:  " } else { "EXAMINATION:  " });
    d.s(exam);
    d.s("\n\n");
    if d.style == Style::Mimic3 {
        d.s(" ");
    }
    d.t("INDICATION:  {age} year old {man} with {dx}, ");
    d.s(reason);
    d.s(".\n\n");
    if d.style == Style::Mimic4 {
        d.s("TECHNIQUE:  ");
        d.s(if exam.starts_with("CT") {
            "Axial images were obtained without and with IV contrast.\n\n"
        } else {
            "Single frontal view.\n\n"
        });
    }
    d.s(if d.style == Style::Mimic3 { " COMPARISON:  " } else { "COMPARISON:  " });
    if d.chance(1, 4) {
        d.s("None.\n\n");
    } else {
        d.t("{pdate}.\n\n");
    }
    d.s(if d.style == Style::Mimic3 { " FINDINGS:  " } else { "FINDINGS: \n\n" });
    let k = d.range(2, findings.len() as u64);
    sentences(d, findings, k);
    d.s("\n\n");
    d.s(if d.style == Style::Mimic3 { " IMPRESSION:  " } else { "IMPRESSION: \n\n" });
    let k = d.range(1, impressions.len() as u64);
    for i in 1..=k {
        if k > 1 {
            d.n(i);
            d.s(". ");
        }
        d.pick(impressions);
        d.nl();
    }
    if d.chance(1, 3) {
        d.line("\nThese findings were discussed with {dr} by phone at {clock} on {date}.");
    }
    if d.style == Style::Mimic3 {
        d.nl();
        match d.rng.below(3) {
            0 => d.line(" DR. {first} {init} {last}"),
            1 => d.line(" DR. {first} {last}\n DR. {first} {last}          Approved: {attinfo}"),
            _ => d.line(" DR. {first} {last} {dictinfo}"),
        }
    }
}

const ECG_LINES: &[&str] = &[
    "Sinus rhythm. Left axis deviation. Left anterior fascicular block.",
    "Sinus tachycardia. Non-specific ST-T wave changes.",
    "Atrial fibrillation with rapid ventricular response. Low QRS voltages in the limb leads.",
    "Sinus bradycardia. First degree A-V delay. Otherwise, normal ECG.",
    "Atrial paced rhythm. Right bundle-branch block.",
    "Possible prior inferior myocardial infarction. Q waves in leads III and aVF.",
    "Poor R wave progression, possibly due to lead placement.",
    "Prolonged QTc interval. Clinical correlation is suggested.",
    "Ventricular paced rhythm; device serial number {serial} per chart.",
];

pub fn ecg(d: &mut Doc) {
    let k = d.range(1, 3);
    for _ in 0..k {
        d.pick(ECG_LINES);
        d.nl();
    }
    match d.rng.below(3) {
        0 => d.line("Since the previous tracing of {pdate} no significant change."),
        1 => d.line("Compared to the previous tracing of {pdate} the rate is faster."),
        _ => d.line("No previous tracing available for comparison."),
    }
    if d.chance(1, 3) {
        d.line("Read by: {first} {last}");
        d.line("  Intervals Axes\nRate PR QRS QT/QTc P QRS T\n{hr} {n:120-220} {n:80-140} {n:340-460}/{n:400-500} {n:0-80} {n:0-90} {n:0-90}");
    }
}

pub fn echo(d: &mut Doc) {
    d.s("PATIENT/TEST INFORMATION:\n");
    d.line("Indication: {dx}. Left ventricular function.");
    d.line("Height: (in) {n:58-76}");
    d.line("Weight (lb): {n:100-280}");
    d.line("BSA (m2): {d:1-2} m2");
    d.line("BP (mm Hg): {bp}");
    d.line("HR (bpm): {hr}");
    d.line("Status: Inpatient");
    d.line("Date/Time: {date} at {clock}");
    d.s("Test: TTE (Complete)\nDoppler: Full Doppler and color Doppler\nContrast: None\n");
    d.line("Tape #: {numid}");
    d.s("Technical Quality: Adequate\n\n\nINTERPRETATION:\n\nFindings:\n\n");
    d.s("LEFT ATRIUM: Mild LA enlargement.\n\n");
    d.line("LEFT VENTRICLE: Normal LV wall thickness. Mildly depressed LVEF. LVEF {n:20-70}%.");
    d.s("\nAORTIC VALVE: Mildly thickened aortic valve leaflets. No AS. Trace AR.\n\n");
    d.s("MITRAL VALVE: Mildly thickened mitral valve leaflets. Mild (1+) MR.\n\n");
    d.line("TRICUSPID VALVE: Moderate [2+] TR. Moderate PA systolic hypertension, PASP {n:35-65} mm Hg.");
    d.s("\nConclusions:\n");
    d.line("The left atrium is mildly dilated. Left ventricular systolic function is mildly depressed (LVEF = {n:35-50} %) with inferior hypokinesis.");
    d.line("Compared with the prior study (images reviewed) of {pdate}, the findings are similar.");
    d.nl();
    d.line("Electronically signed by {first} {last}, MD, Interpreting physician {attinfo}");
}

const NURSING_OTHER: &[&str] = &[
    "Neuro: A&Ox3, MAE, follows commands. Pupils equal and reactive. Denies pain.",
    "Neuro: lethargic but arousable to voice, oriented to self only, restless at times, given haldol 0.5mg IV with good effect.",
    "CV: HR {hr} SR/ST, no ectopy noted. BP {bp}. K+ {d:3-5} repleted with 40 meq KCl.",
    "Resp: LS coarse bilat, diminished at bases. O2 sat {spo2}% on {n:2-6}L NC. Nonproductive cough.",
    "GI: abd soft, nontender, +BS. Tolerating clear liquids, no N/V. No BM this shift.",
    "GU: foley draining clear yellow urine {n:30-120}cc/hr. BUN/Cr {n:10-60}/{d:1-4}.",
    "ID: Tmax {temp}, on {abx}. Blood cultures x2 sent.",
    "Skin: intact, coccyx red but blanchable, turned q2h.",
    "Social: {his} daughter called and was updated by RN; family to visit in the AM.",
    "Pt transferred to {ward} at {clock} via wheelchair, report given to receiving RN.",
    "Family meeting with {drfull} planned for tomorrow; wife can be reached at {phone}.",
    "Pt states {quote}.",
    "Report given to {init}, RN.",
];

pub fn nursing_other(d: &mut Doc, target: usize) {
    d.pick(&["NPN 7a-7p\n", "Nursing Progress Note 1900-0700\n", "NURSING ADMIT NOTE\n", "MICU NPN\n"]);
    if d.chance(1, 2) {
        d.line("{temp}  {bp}  {hr}  {rr}  {spo2}%");
    }
    lines_until(d, NURSING_OTHER, target);
    d.pick(&[
        "Plan: continue to monitor, f/u with AM labs.\n",
        "Plan: wean O2 as tolerated, OOB to chair.\n",
    ]);
}

const NURSING_PROBLEMS: &[&str] = &[
    "Pain control (acute pain, chronic pain)",
    "Respiratory failure, acute (not ARDS/[**Doctor Last Name 11**])",
    "Altered mental status (not delirium)",
    "Hypotension (not shock)",
    "Atrial fibrillation (AFib)",
    "Impaired skin integrity",
];

const NURSING_ASSESS: &[&str] = &[
    "Pt with c/o {sx}, rates pain {n:3-9}/10.",
    "HR {hr}, BP {bp}, RR {rr}, SpO2 {spo2}%.",
    "Lungs with crackles at bases, weak cough.",
    "MAP < 60 x {n:2-3} readings.",
    "Pt is oriented x{n:1-3}, intermittently agitated.",
];

const NURSING_ACTION: &[&str] = &[
    "Given {drug} with effect.",
    "Repositioned, skin care done.",
    "{n:250-1000} cc NS bolus given.",
    "MD aware, new orders received.",
    "Chest PT and suctioning for thick tan secretions.",
];

pub fn nursing(d: &mut Doc, target: usize) {
    let mut first = true;
    while first || d.len() < target {
        first = false;
        d.pick(NURSING_PROBLEMS);
        d.s("\n   Assessment:\n   ");
        let k = d.range(1, 3);
        sentences(d, NURSING_ASSESS, k);
        d.s("\n   Action:\n   ");
        let k = d.range(1, 3);
        sentences(d, NURSING_ACTION, k);
        d.s("\n   Response:\n   ");
        d.pick(&["Pain improved.", "Unchanged.", "BP improved to {bp}.", "Pt resting comfortably."]);
        d.s("\n   Plan:\n   ");
        d.pick(&["Continue to monitor.", "Follow up AM labs.", "Wean as tolerated.", "Reassess q4h."]);
        d.s("\n\n");
    }
}

const AP_ITEMS: &[&str] = &[
    "# {dx}: continue {abx}, day {n:2-10} of {n:7-14}; f/u cultures.",
    "# Hypotension: resolved, off pressors since {date}.",
    "# Acute renal failure: Cr {d:1-4}, trend; renally dose meds.",
    "# Anemia: Hct stable at {n:24-32}, transfuse for Hct < 21.",
    "# Respiratory failure: remains on AC {n:400-550}/{n:12-20}/{n:5-10}/40%; SBT in AM.",
    "# Diabetes: RISS, glargine {n:8-30} units.",
    "# Afib: rate controlled on metoprolol, anticoagulation held given bleed.",
    "# Delirium: frequent reorientation, haldol PRN.",
];

pub fn physician(d: &mut Doc, target: usize) {
    d.line("Chief Complaint: {cc_}");
    d.s("   24 Hour Events:\n");
    d.line("   - {drug} started overnight");
    d.line("   - {sx}, CXR obtained at {clock}");
    d.s("   Allergies:\n   ");
    d.pick(ALLERGIES);
    d.s("\n   Last dose of Antibiotics:\n   ");
    d.t("{abx} - {date} {clock}\n");
    d.s("   Vital signs\n   Hemodynamic monitoring\n   Fluid balance\n");
    d.s("                                  24 hours\n                                                               Since 12 AM\n");
    d.line("   Tmax: {tempc}\n   HR: {hr} ({n:50-70} - {n:100-130}) bpm\n   BP: {bp}({n:60-100}) mmHg\n   RR: {rr} insp/min\n   SpO2: {spo2}%");
    d.s("   Physical Examination\n");
    d.s("   General Appearance: ");
    d.pick(GENERAL);
    d.s("\n   Cardiovascular: ");
    d.pick(CV);
    d.s("\n   Respiratory / Chest: ");
    d.pick(LUNGS);
    d.s("\n   Abdominal: ");
    d.pick(ABDOMEN);
    d.s("\n   Labs / Radiology\n");
    for _ in 0..d.range(1, 4) {
        d.line("   {lab}");
    }
    d.s("   Assessment and Plan\n");
    d.line("   {age} yo {man} with {pmh} admitted with {dx}.");
    let mut order = Order::new(AP_ITEMS.len());
    while d.len() < target {
        d.s("   ");
        let j = order.next(d);
        d.t(AP_ITEMS[j]);
        d.nl();
    }
    d.s("   ICU Care\n   Nutrition: NPO\n   Glycemic Control: Regular insulin sliding scale\n");
    d.line("   Lines:\n   Multi Lumen - {date} {clock}");
    d.s("   Prophylaxis:\n   DVT: SQ UF Heparin\n   Stress ulcer: PPI\n");
    d.s("   Code status: Full code\n   Disposition: ICU\n");
    if d.chance(1, 3) {
        d.line("   I saw and examined the patient with Dr. {init} and agree with the plan above.");
    }
}

pub fn respiratory(d: &mut Doc) {
    d.s("Demographics\n");
    d.line("   Day of intubation: {date}");
    d.line("   Day of mechanical ventilation: {n:1-14}");
    d.line("   Ideal body weight: {wt} kg");
    d.line("   Ideal tidal volume: {n:300-600} / {n:400-700} / {n:500-800} mL/kg");
    d.s("   Airway\n   Airway Placement Data\n");
    d.line("   Known difficult intubation: No\n   Tube Type\n   ETT:\n               Position: {n:20-26} cm at teeth\n               Route: Oral\n               Type: Standard\n               Size: {n:7-8}.{n:0-5}mm");
    d.s("   Lung sounds\n   RLL Lung Sounds: Diminished\n   LLL Lung Sounds: Crackles\n");
    d.s("   Ventilation Assessment\n   Level of breathing assistance: Continuous invasive ventilation\n");
    d.s("   Visual assessment of breathing pattern: Normal quiet breathing\n   Assessment of breathing comfort: No claim of dyspnea\n");
    d.s("   Plan\n   Next 24-48 hours: Continue with daily RSBI/SBT, Wean PEEP as tolerated\n");
    d.line("   Reason for continuing current ventilatory support: {dx}");
}

/// Short notes of the smaller categories: (category, description, lines).
pub const OTHER_NOTES: &[(&str, &str, &[&str])] = &[
    (
        "Nutrition",
        "Nutrition Assessment",
        &[
            "Subjective: Pt reports poor appetite x{n:1-4} weeks.",
            "Objective: Height: {n:60-75} in, Weight: {wt} kg, Ideal body weight: {n:50-80} kg.",
            "Diet Order: NPO. Tube feeding: Replete w/fiber @ {n:20-70} ml/hr (goal).",
            "Estimated needs: {n:1400-2400} kcal/d, {n:60-140} g protein/d.",
            "Assessment: Pt at risk for malnutrition given prolonged NPO status.",
            "Will follow up per policy; dietitian pager {pager}.",
        ],
    ),
    (
        "General",
        "Generic Note",
        &[
            "Pt seen and examined at bedside with team.",
            "Discussed plan of care with {his} son via phone ({phone}).",
            "Interpreter services used for Portuguese.",
            "Pt transferred from {hosp} with records; outside MRN {mrn}.",
        ],
    ),
    (
        "Rehab Services",
        "Physical Therapy Evaluation",
        &[
            "Medical Dx: {dx}.",
            "PT Dx: impaired functional mobility, impaired balance.",
            "Pt ambulated {n:10-150} feet with rolling walker and min assist x1.",
            "Recommend discharge to rehab; pt lives in a 3-story home in {loc}.",
            "Goals: independent bed mobility in {n:1-3} weeks.",
        ],
    ),
    (
        "Social Work",
        "Social Work Progress Note",
        &[
            "SW met with pt and {his} wife to provide support and discuss discharge planning.",
            "Pt lives at {street} {apt}, {loc}, {state}; mailing address {pobox}.",
            "Pt is a veteran; SSN {ssn} verified for VA benefits application.",
            "Pt emigrated from {country}; family member {first} {last} is primary contact ({phone}).",
            "Pt expressed {quote} about returning home.",
        ],
    ),
    (
        "Case Management ",
        "Case Management Note",
        &[
            "Insurance verified; provider number {provider}, MRN {mrn}.",
            "Referral faxed to {company} ({phone}) for home services.",
            "Pt's PCP {dr} notified of admission by e-mail ({email}).",
            "Anticipated discharge {fdate}; unit number {unitno}.",
        ],
    ),
    (
        "Pharmacy",
        "Pharmacy Note",
        &[
            "Pharmacy consulted for vancomycin dosing: trough {d:8-25} µg/mL.",
            "Recommend vancomycin {n:750-1500} mg IV q{n:12-24}h; next trough before the 4th dose.",
            "Warfarin interaction with {abx} reviewed; INR {d:1-4}.",
        ],
    ),
    (
        "Consult",
        "Consult Note",
        &[
            "Reason for consult: {dx}, requested by {drfull}.",
            "Recommendations: 1. {drug} 2. repeat imaging in {span} weeks 3. follow up in clinic.",
            "Thank you for this consult; please page {pager} with questions.",
            "Seen with attending {attinfo}.",
        ],
    ),
];

pub fn other(d: &mut Doc, which: usize, target: usize) {
    let (_, _, lines) = OTHER_NOTES[which];
    lines_until(d, lines, target);
}

const CLINIC: &[&str] = &[
    "{He} returns for follow-up of {pmh}.",
    "Since {his} last visit in {month}, {he} reports {sx}.",
    "{His} blood pressure at home runs {bp}.",
    "{He} was seen at {hosp} on {pdate} for {dx}.",
    "{He} is tolerating {drug} without side effects.",
    "Labs from {pdate} showed creatinine {d:1-2} and HbA1c {d:6-10}%.",
    "{He} lives with {his} wife in {loc} and works for {company}.",
    "{He} says {quote}.",
];

/// An n2c2-2014-style longitudinal clinic note.
pub fn clinic(d: &mut Doc, target: usize) {
    d.line("Record date: {adate}");
    d.nl();
    d.line("{hosp}");
    d.line("{unit}");
    d.nl();
    d.line("{ptname}, MRN {mrn}, is a {age} year old {man} seen today by {drfull}.");
    d.nl();
    d.s("Reason for visit:\n");
    d.line("{cc_}");
    d.nl();
    d.s("History of present illness:\n");
    let mut first = true;
    while first || d.len() + 800 < target {
        first = false;
        let k = d.range(2, 5);
        sentences(d, CLINIC, k);
        d.s("\n\n");
    }
    d.s("Medications:\n");
    let k = d.range(2, 8);
    med_list_short(d, k);
    d.s("\nPhysical examination:\n");
    d.line("BP {bp}, HR {hr}, RR {rr}, SpO2 {spo2}% RA, T {temp}");
    d.s("Lungs: ");
    d.pick(LUNGS);
    d.s("\nHeart: ");
    d.pick(CV);
    d.s("\n\nAssessment and plan:\n");
    d.line("1. {dx}: continue {drug}, recheck labs on {fdate}.");
    d.line("2. {pmh}: stable.");
    d.line("Return in {n:2-6} months or sooner as needed. Phone {phone}.");
    d.nl();
    d.line("{drfull}, M.D.");
}
