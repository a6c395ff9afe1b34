//! The offline `extractive` provider: a **baseline**, not an LLM.
//!
//! It writes deterministic instruction/answer pairs from a note's own structure, so that the demo
//! runs with no network and no key, and so that a site with no LLM can still fine-tune on
//! something. General tasks come from the note's sections: a known heading such as
//! `Discharge Medications:` gives "List the discharge medications." with that section's text as
//! the answer. De-identification tasks list the dates and telephone numbers found by their shape.
//! The answers are copied from the note, never inferred; outputs say `baseline: true`.

use crate::Pair;

/// Headings the baseline knows: (heading, category, instruction).
const SECTIONS: &[(&str, &str, &str)] = &[
    ("chief complaint", "Question Answering", "What was the patient's chief complaint?"),
    (
        "major surgical or invasive procedure",
        "Named Entity Recognition",
        "List the major surgical or invasive procedures the patient had.",
    ),
    ("history of present illness", "Question Answering", "What is the history of the present illness?"),
    ("past medical history", "Named Entity Recognition", "List the patient's past medical history."),
    ("social history", "Question Answering", "What is the patient's social history?"),
    ("family history", "Question Answering", "What is the patient's family history?"),
    ("allergies", "Named Entity Recognition", "What allergies does the patient have?"),
    ("physical exam", "Question Answering", "What did the physical examination show?"),
    ("pertinent results", "Question Answering", "Report the pertinent results."),
    ("brief hospital course", "Question Answering", "Describe the patient's hospital course."),
    (
        "medications on admission",
        "Named Entity Recognition",
        "List the medications the patient took on admission.",
    ),
    ("discharge medications", "Named Entity Recognition", "List the discharge medications."),
    ("discharge disposition", "Text Classification", "What was the patient's discharge disposition?"),
    ("discharge diagnosis", "Named Entity Recognition", "List the discharge diagnoses."),
    ("discharge condition", "Text Classification", "What was the patient's condition at discharge?"),
    ("discharge instructions", "Question Answering", "What instructions was the patient given at discharge?"),
    ("followup instructions", "Temporal Information Extraction", "What follow-up was arranged, and when?"),
    ("impression", "Text Summarization", "What is the impression of this report?"),
    ("findings", "Question Answering", "What are the findings of this report?"),
];

/// A section's body above this many characters is cut at a line boundary: a baseline answer
/// should stay a reasonable training target.
const MAX_ANSWER_CHARS: usize = 4000;

fn known(heading: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    let h = heading.trim().trim_end_matches(':').trim().to_ascii_lowercase();
    SECTIONS.iter().find(|(k, _, _)| *k == h)
}

/// If `line` starts a known section, the section and the text after the heading on that line.
fn heading(line: &str) -> Option<(&'static (&'static str, &'static str, &'static str), &str)> {
    let t = line.trim();
    let (head, rest) = t.split_once(':')?;
    if head.len() > 40 {
        return None;
    }
    known(head).map(|s| (s, rest.trim()))
}

/// One pair per known section with a non-empty body, in note order, at most `k`, only in
/// `categories`; a heading seen twice keeps its first body.
pub fn general(text: &str, categories: &[String], k: usize) -> Vec<Pair> {
    let mut pairs: Vec<Pair> = Vec::new();
    let mut cur: Option<(&(&str, &str, &str), String)> = None;
    let finish = |cur: &mut Option<(&(&str, &str, &str), String)>, pairs: &mut Vec<Pair>| {
        if let Some((s, body)) = cur.take() {
            let body = cut(body.trim());
            let allowed = categories.iter().any(|c| c == s.1);
            let seen = pairs.iter().any(|p| p.instruction == s.2);
            if !body.is_empty() && allowed && !seen {
                pairs.push(Pair { category: s.1.to_string(), instruction: s.2.to_string(), output: body });
            }
        }
    };
    for line in text.lines() {
        if let Some((s, rest)) = heading(line) {
            finish(&mut cur, &mut pairs);
            cur = Some((s, rest.to_string()));
        } else if let Some((_, body)) = cur.as_mut() {
            body.push('\n');
            body.push_str(line);
        }
    }
    finish(&mut cur, &mut pairs);
    pairs.truncate(k);
    pairs
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_ANSWER_CHARS {
        return s.to_string();
    }
    let mut end = MAX_ANSWER_CHARS;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = &s[..end];
    head.rfind('\n').map_or(head, |i| &head[..i]).trim_end().to_string()
}

/// De-identification baseline pairs: dates and telephone numbers found by their shape, up to `k`
/// instructions (each only when the note has at least one match).
pub fn deid(text: &str, k: usize) -> Vec<Pair> {
    let mut dates = Vec::new();
    let mut phones = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == '*') {
        let tok = raw.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | '"' | '\''));
        let bare = tok.trim_matches(|c: char| c == '(' || c == ')');
        if bare.is_empty() {
            continue;
        }
        let shape =
            |t: &str| -> String { t.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect() };
        let is_date = matches!(
            shape(bare).as_str(),
            "9/9/99"
                | "9/99/99"
                | "99/9/99"
                | "99/99/99"
                | "9/9/9999"
                | "9/99/9999"
                | "99/9/9999"
                | "99/99/9999"
                | "9999-9-9"
                | "9999-99-9"
                | "9999-9-99"
                | "9999-99-99"
        );
        let tok = if is_date { bare } else { tok };
        let is_phone = matches!(shape(tok).as_str(), "999-999-9999" | "(999)999-9999" | "999.999.9999");
        if is_date && !dates.contains(&tok) {
            dates.push(tok);
        } else if is_phone && !phones.contains(&tok) {
            phones.push(tok);
        }
    }
    let mut pairs = Vec::new();
    if !dates.is_empty() {
        pairs.push(Pair {
            category: "De-identification".into(),
            instruction: "List every date in this note, each on its own line, as protected health information to remove."
                .into(),
            output: dates.join("\n"),
        });
    }
    if !phones.is_empty() {
        pairs.push(Pair {
            category: "De-identification".into(),
            instruction: "List every telephone number in this note, each on its own line.".into(),
            output: phones.join("\n"),
        });
    }
    pairs.truncate(k);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats() -> Vec<String> {
        crate::CATEGORIES.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sections_become_pairs() {
        let note = "Admission Date:  [**2101-10-20**]\n\nChief Complaint:\nchest pain\n\nAllergies:\nPenicillins\n\nDischarge Medications:\n1. Aspirin 81 mg daily\n2. Lisinopril 10 mg\n\nDischarge Diagnosis:\nPrimary:\nNSTEMI\n\nFollowup Instructions:\n";
        let p = general(note, &cats(), 12);
        let got: Vec<(&str, &str)> = p.iter().map(|p| (p.instruction.as_str(), p.output.as_str())).collect();
        assert_eq!(
            got,
            [
                ("What was the patient's chief complaint?", "chest pain"),
                ("What allergies does the patient have?", "Penicillins"),
                ("List the discharge medications.", "1. Aspirin 81 mg daily\n2. Lisinopril 10 mg"),
                ("List the discharge diagnoses.", "Primary:\nNSTEMI"),
            ]
        );
        assert_eq!(general(note, &cats(), 2).len(), 2);
        let only_qa = vec!["Question Answering".to_string()];
        assert_eq!(general(note, &only_qa, 12).len(), 1);
        // Same-line headings, as in physician notes.
        let p = general("Chief Complaint: dyspnea\nHPI: more", &cats(), 12);
        assert_eq!(p[0].output, "dyspnea\nHPI: more");
    }

    #[test]
    fn dates_and_phones() {
        let p = deid("Seen [**2101-10-20**] and on 3/4/2102. Call (617)555-1234 or 617-555-0000, 1.5 mg.", 2);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].output, "2101-10-20\n3/4/2102");
        assert_eq!(p[1].output, "(617)555-1234\n617-555-0000");
        assert!(deid("nothing here", 2).is_empty());
        assert_eq!(deid("on 3/4/2102", 2).len(), 1);
    }
}
