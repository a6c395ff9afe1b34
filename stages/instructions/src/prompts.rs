//! Default prompts and the `{placeholder}` templates they are written in.
//!
//! The wording is camel's own; CAMEL's semantics are kept (questions first, then answers to those
//! questions; `Category: ` prefixes; `Instruction N:` labels for de-identification). Every prompt
//! is a param, so a site can write its own; changing only an answer prompt reuses every
//! question-phase response from the request log.

pub const SYSTEM: &str =
    "You are an experienced clinician who writes precise, faithful teaching material from clinical notes.";

pub const GENERAL_QUESTION: &str = "Here is a clinical note:

{note}

Write {k} different instructions that a clinician could give an AI assistant about this note, one for each of these task categories, in this order:
{categories}

Each instruction must be answerable from the note alone. Reply with a numbered list, one instruction per item, each starting with its category name and a colon, like this:
1. Question Answering: What ...
Do not answer the instructions.";

pub const GENERAL_ANSWER: &str = "Here is a clinical note:

{note}

Answer each of the instructions below using only the note. Reply with a numbered list in the same order, one answer per item, each starting with the instruction's category name and a colon, like this:
1. Question Answering: The patient ...

Instructions:
{instructions}";

pub const DEID_QUESTION: &str = "Here is a clinical note:

{note}

Write {k} different instructions asking an AI assistant to de-identify this note: to find, remove or replace the protected health information in it (names, dates, ages over 89, locations, contact details, record numbers and other identifiers). Reply exactly in this form:
Instruction 1: ...
Instruction 2: ...";

pub const DEID_ANSWER: &str =
    "Carry out this de-identification instruction on the note below; reply with the result only.

Instruction: {instruction}

Note:
{note}";

/// Fills `{name}` placeholders in one pass, so text substituted for one placeholder (a note, a
/// model's reply) is never searched for another. Unknown `{…}` are left as written.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + vars.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let hit = tail.find('}').and_then(|j| {
            let name = &tail[1..j];
            vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (j, *v))
        });
        match hit {
            Some((j, v)) => {
                out.push_str(v);
                rest = &tail[j + 1..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholders a template must contain, as an error message naming the param.
pub fn require(param: &str, template: &str, names: &[&str]) -> Result<(), String> {
    let missing: Vec<String> = names
        .iter()
        .filter(|n| !template.contains(&format!("{{{n}}}")))
        .map(|n| format!("{{{n}}}"))
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("`{param}` must contain {}", missing.join(" and "))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_one_pass() {
        let r = render("A {note} B {k} {unknown} {", &[("note", "has {k} inside"), ("k", "3")]);
        assert_eq!(r, "A has {k} inside B 3 {unknown} {");
    }

    #[test]
    fn defaults_have_their_placeholders() {
        require("q", GENERAL_QUESTION, &["note", "k", "categories"]).unwrap();
        require("a", GENERAL_ANSWER, &["note", "instructions"]).unwrap();
        require("q", DEID_QUESTION, &["note", "k"]).unwrap();
        require("a", DEID_ANSWER, &["note", "instruction"]).unwrap();
        assert!(require("q", "x", &["note"]).unwrap_err().contains("{note}"));
    }
}
