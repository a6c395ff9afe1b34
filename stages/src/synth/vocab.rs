//! Word lists the notes draw from. Entries are templates (see `Doc::t`): `{slot}`s are allowed.
//! Surrogate names and places (used only in the i2b2 style) are invented; a few carry non-ASCII
//! letters on purpose.

pub const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "O'Brien",
    "McCarthy",
    "Müller",
    "Peña",
    "Dubé",
    "Lefèvre",
    "Núñez",
    "Kowalski",
    "Okafor",
    "Haddad",
    "Sato",
    "Ivanova",
    "Fitzgerald",
    "Brennan",
    "Costa",
    "Schultz",
];

pub const LAST_NAMES_ASCII: &[&str] =
    &["smith", "jones", "garcia", "miller", "davis", "wilson", "clark", "lewis", "walker", "hill", "king"];

pub const FEMALE_NAMES: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Lisa",
    "Margaret",
    "Dorothy",
    "Helen",
    "Renée",
    "Zoë",
    "Inés",
    "Chloé",
    "Ana",
    "Grace",
    "Maureen",
    "Joan",
    "Aisha",
    "Mei",
];

pub const MALE_NAMES: &[&str] = &[
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Joseph",
    "Thomas",
    "Charles",
    "Christopher",
    "Daniel",
    "Matthew",
    "Anthony",
    "Donald",
    "Mark",
    "Paul",
    "José",
    "André",
    "François",
    "Kenji",
    "Omar",
    "Patrick",
    "Francis",
    "Luis",
];

pub const HOSPITALS: &[&str] = &[
    "Mercy General Hospital",
    "St. Luke's Medical Center",
    "Riverside Community Hospital",
    "Harborview Medical Center",
    "Lakeside Memorial",
    "North Shore Rehab Center",
    "Hôtel-Dieu Clinic",
    "Valley Regional",
];

pub const WARDS: &[&str] =
    &["Ellison 11", "Farr 2", "the CCU", "Blake 8", "Wang 4", "the MICU", "Bigelow 13"];

pub const COMPANIES: &[&str] =
    &["Caritas VNA", "Brightstar Home Health", "Acme Medical Supply", "Lincare", "Coram Infusion"];

pub const COLLEGES: &[&str] = &["Northfield College", "Eastbrook University", "Bay State Community College"];

pub const CITIES: &[&str] = &[
    "Springfield",
    "Riverton",
    "Fairview",
    "Greenville",
    "Salem",
    "Franklin",
    "Clinton",
    "Georgetown",
    "Marlborough",
    "Québec City",
];

pub const STREETS: &[&str] =
    &["Maple Street", "Oak Avenue", "Washington St.", "Pleasant Road", "Elm Court", "Highland Ave"];

pub const STATES: &[&str] = &["Florida", "Ohio", "New Hampshire", "Maine", "Texas", "Rhode Island", "NY"];

pub const COUNTRIES: &[&str] = &["Portugal", "Haiti", "Ireland", "Vietnam", "Brazil", "Greece", "Cape Verde"];

pub const HOLIDAYS: &[&str] = &["Christmas", "Thanksgiving", "New Year's Day", "Labor Day", "Easter"];

pub const COMPLAINTS: &[&str] = &[
    "Shortness of breath",
    "Chest pain",
    "Abdominal pain",
    "Fever",
    "Altered mental status",
    "Syncope",
    "Hematemesis",
    "Melena",
    "s/p fall",
    "Weakness",
    "Cough",
    "Nausea/vomiting",
    "Headache",
    "Leg swelling",
    "Palpitations",
    "Dyspnea on exertion",
    "Right hip pain after fall",
    "Fevers, chills",
];

pub const SYMPTOMS: &[&str] = &[
    "shortness of breath",
    "chest pain",
    "nausea",
    "vomiting",
    "diarrhea",
    "fevers",
    "chills",
    "cough productive of yellow sputum",
    "lightheadedness",
    "dysuria",
    "abdominal pain",
    "confusion",
    "lower extremity edema",
    "palpitations",
    "headache",
    "generalized weakness",
    "melena",
    "bright red blood per rectum",
    "orthopnea",
    "decreased PO intake",
];

pub const DIAGNOSES: &[&str] = &[
    "community acquired pneumonia",
    "acute on chronic systolic congestive heart failure",
    "non-ST elevation myocardial infarction",
    "upper gastrointestinal bleed",
    "urosepsis",
    "diabetic ketoacidosis",
    "COPD exacerbation",
    "acute kidney injury",
    "hepatic encephalopathy",
    "cellulitis of the left lower extremity",
    "small bowel obstruction",
    "pulmonary embolism",
    "ischemic stroke in the left MCA territory",
    "subdural hematoma",
    "atrial fibrillation with rapid ventricular response",
    "alcohol withdrawal",
    "acute pancreatitis",
    "Clostridium difficile colitis",
    "right hip fracture",
    "aspiration pneumonia",
    "hyponatremia",
    "septic shock",
];

pub const PMH: &[&str] = &[
    "Coronary artery disease s/p CABG in {year}",
    "Hypertension",
    "Hyperlipidemia",
    "Type 2 diabetes mellitus, insulin dependent (last HbA1c {d:6-11}%)",
    "Congestive heart failure (EF {n:20-45}%)",
    "Atrial fibrillation on coumadin",
    "COPD on home O2 {n:1-4}L",
    "Chronic kidney disease, stage III (baseline Cr {d:1-2})",
    "Hypothyroidism",
    "GERD",
    "Depression",
    "Osteoarthritis",
    "Cirrhosis secondary to hepatitis C, complicated by ascites",
    "End-stage renal disease on hemodialysis (M/W/F)",
    "Prostate cancer s/p XRT in {year}",
    "Breast cancer s/p lumpectomy and radiation",
    "Obstructive sleep apnea on CPAP",
    "Peripheral vascular disease",
    "History of DVT/PE, on warfarin",
    "Anemia of chronic disease",
    "Gout",
    "Asthma",
    "Seizure disorder",
    "Dementia",
    "Parkinson's disease",
    "Ménière's disease",
    "CVA with residual left-sided weakness",
    "Benign prostatic hypertrophy",
    "Osteoporosis",
    "Alcohol abuse",
    "s/p cholecystectomy",
    "s/p appendectomy",
];

pub const PROCEDURES: &[&str] = &[
    "None",
    "Cardiac catheterization with placement of drug-eluting stent to LAD",
    "Intubation and mechanical ventilation",
    "Right internal jugular central venous line placement",
    "Diagnostic and therapeutic paracentesis",
    "Thoracentesis",
    "EGD with clipping of bleeding duodenal ulcer",
    "Colonoscopy",
    "PICC line placement",
    "Hemodialysis catheter placement",
    "Coronary artery bypass graft x3 (LIMA-LAD, SVG-OM, SVG-PDA)",
    "Open reduction internal fixation of left hip",
    "Lumbar puncture",
    "Bronchoscopy with BAL",
    "ERCP with sphincterotomy and stent placement",
    "Laparoscopic cholecystectomy",
    "Tracheostomy and PEG placement",
];

pub const DRUGS: &[&str] = &[
    "furosemide",
    "metoprolol",
    "a heparin drip",
    "lisinopril",
    "an insulin sliding scale",
    "lactulose",
    "rifaximin",
    "pantoprazole",
    "diltiazem",
    "amiodarone",
    "prednisone",
    "methylprednisolone",
    "nitroglycerin",
    "morphine",
    "haloperidol",
    "lorazepam",
    "norepinephrine",
    "potassium chloride",
    "magnesium sulfate",
    "albumin",
    "warfarin",
    "atorvastatin",
    "clopidogrel",
    "spironolactone",
];

pub const ABX: &[&str] = &[
    "vancomycin",
    "ceftriaxone",
    "piperacillin-tazobactam",
    "levofloxacin",
    "azithromycin",
    "cefepime",
    "meropenem",
    "metronidazole",
    "ciprofloxacin",
    "oral vancomycin",
    "cefazolin",
];

pub const ORGANISMS: &[&str] = &[
    "Streptococcus pneumoniae",
    "E. coli",
    "Klebsiella pneumoniae",
    "MRSA",
    "Pseudomonas aeruginosa",
    "Enterococcus faecalis",
    "coagulase negative staph",
    "Proteus mirabilis",
];

/// Things patients say, with their double quotes.
pub const QUOTES: &[&str] = &[
    "\"I just can't catch my breath\"",
    "\"like an elephant sitting on my chest\"",
    "\"I feel much better today\"",
    "\"the worst headache of my life\"",
    "\"I don't want any more tubes\"",
    "\"dizzy, like the room is spinning\"",
    "\"I want to go home\"",
];

pub const CXR_FINDINGS: &[&str] = &[
    "a right lower lobe consolidation concerning for pneumonia.",
    "mild pulmonary vascular congestion and small bilateral pleural effusions.",
    "no acute cardiopulmonary process.",
    "a left retrocardiac opacity, atelectasis versus aspiration.",
    "moderate cardiomegaly with interstitial edema.",
];

pub const SAYS: &[&str] = &[
    "said {quote} before calling the ambulance.",
    "had been telling everyone {quote} for a week.",
    "refused to come in at first, saying {quote}.",
];

/// Lab panels: the label after the time, then (name, low, high, in tenths?) per value.
pub type Panel = (&'static str, &'static [(&'static str, u64, u64, bool)]);

pub const LAB_PANELS: &[Panel] = &[
    (
        "BLOOD",
        &[
            ("WBC", 31, 221, true),
            ("RBC", 28, 52, true),
            ("Hgb", 71, 155, true),
            ("Hct", 221, 461, true),
            ("MCV", 78, 102, false),
            ("Plt Ct", 45, 480, false),
        ],
    ),
    (
        "BLOOD",
        &[
            ("Glucose", 62, 388, false),
            ("UreaN", 6, 92, false),
            ("Creat", 5, 62, true),
            ("Na", 121, 148, false),
            ("K", 31, 58, true),
            ("Cl", 88, 112, false),
            ("HCO3", 14, 32, false),
            ("AnGap", 8, 24, false),
        ],
    ),
    (
        "BLOOD",
        &[
            ("ALT", 8, 412, false),
            ("AST", 10, 520, false),
            ("AlkPhos", 40, 380, false),
            ("TotBili", 2, 98, true),
        ],
    ),
    ("BLOOD", &[("CK-MB", 1, 48, false), ("cTropnT", 1, 250, false)]),
    ("BLOOD", &[("PT", 112, 381, true), ("PTT", 221, 1002, true), ("INR(PT)", 9, 48, true)]),
    (
        "URINE",
        &[
            ("Blood", 0, 3, false),
            ("Nitrite", 0, 1, false),
            ("Protein", 0, 100, false),
            ("WBC", 0, 182, false),
        ],
    ),
    ("BLOOD", &[("pO2", 52, 412, false), ("pCO2", 28, 88, false), ("Lactate", 5, 82, true)]),
];
