//! Reading the numbered and labelled lists models write.
//!
//! Models do not follow a format exactly, so the parser accepts what they produce in practice:
//! `1. x`, `1) x`, `1: x`, `(1) x`, `**1.** x`, `- 1. x`, and the labels `Instruction1:`,
//! `Instruction 1:`, `Instruction1 :`, `Instruction 1 :` (any case, optionally in `**`), with an
//! item's text continuing on the following lines until the next item. Text before the first item
//! (a preamble such as "Sure! Here are …") is ignored.

/// The items of a numbered or labelled list, in order, trimmed; empty items are dropped.
pub fn items(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match item_start(line) {
            Some(rest) => {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
                cur = Some(rest.trim().to_string());
            }
            None => {
                if let Some(c) = cur.as_mut() {
                    let l = line.trim();
                    if !l.is_empty() {
                        if !c.is_empty() {
                            c.push('\n');
                        }
                        c.push_str(l);
                    }
                }
            }
        }
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// If `line` starts a list item, the text after its number or label.
fn item_start(line: &str) -> Option<&str> {
    let mut s = line.trim_start();
    // Bullets and markdown emphasis around the number.
    s = s.strip_prefix("- ").or_else(|| s.strip_prefix("* ")).unwrap_or(s).trim_start();
    let bold = s.starts_with("**");
    s = s.trim_start_matches('*').trim_start_matches('#').trim_start();
    // `Instruction 1 :` and friends.
    let lower = s.to_ascii_lowercase();
    if let Some(after) = lower.strip_prefix("instruction") {
        let skip = s.len() - after.len();
        let rest = s[skip..].trim_start();
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            let rest = rest[digits..].trim_start().trim_start_matches('*').trim_start();
            if let Some(r) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('.')) {
                return Some(strip_bold_end(r, bold));
            }
        }
        return None;
    }
    let s = s.strip_prefix('(').unwrap_or(s);
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 || digits > 3 {
        return None;
    }
    let rest = &s[digits..];
    let rest = rest.strip_prefix(['.', ')', ':'])?;
    let rest = rest.trim_start_matches(['*', ')']);
    // "1.5 mg" is not an item; an item's number is followed by a space (or nothing).
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
        return None;
    }
    Some(strip_bold_end(rest, bold))
}

fn strip_bold_end(s: &str, bold: bool) -> &str {
    if bold { s.trim_start().trim_start_matches("**") } else { s }
}

/// Splits `Category: text` where Category is one of `categories` (compared ignoring case,
/// surrounding `*` and a trailing "task"); returns the canonical category and the text.
pub fn split_category<'c>(item: &str, categories: &'c [String]) -> Option<(&'c str, String)> {
    let (head, rest) = item.split_once(':')?;
    let head = head.trim().trim_matches('*').trim();
    let head = head.strip_suffix(" task").unwrap_or(head);
    let cat = categories.iter().find(|c| c.eq_ignore_ascii_case(head))?;
    Some((cat.as_str(), rest.trim().trim_start_matches("**").trim().to_string()))
}

/// CAMEL's check on both sides of a pair: the text starts with a capital letter.
pub fn starts_capitalized(s: &str) -> bool {
    s.chars().next().is_some_and(char::is_uppercase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_variants() {
        let t = "Sure! Here they are:\n\n1. First: a\n2) Second: b\n   continues\n(3) Third\n**4.** Fourth\n- 5. Fifth\n10: Tenth";
        assert_eq!(items(t), ["First: a", "Second: b\ncontinues", "Third", "Fourth", "Fifth", "Tenth"]);
        // Numbers that are not item numbers stay in the text.
        assert_eq!(items("1. Give 1.5 mg\n2.5 mg later\n2. Next"), ["Give 1.5 mg\n2.5 mg later", "Next"]);
        assert!(items("no list here").is_empty());
    }

    #[test]
    fn instruction_labels() {
        for t in [
            "Instruction1: A\nInstruction2: B",
            "Instruction 1: A\nInstruction 2: B",
            "Instruction1 : A\nInstruction2 : B",
            "Instruction 1 : A\nInstruction 2 : B",
            "**Instruction 1:** A\n**Instruction 2:** B",
            "INSTRUCTION 1: A\n\ninstruction 2. B",
            "1. A\n2. B",
        ] {
            assert_eq!(items(t), ["A", "B"], "{t:?}");
        }
        assert!(items("Instructions: none").is_empty());
    }

    #[test]
    fn categories() {
        let cats: Vec<String> = ["Question Answering", "Named Entity Recognition"].map(String::from).to_vec();
        assert_eq!(
            split_category("question answering: What is it?", &cats),
            Some(("Question Answering", "What is it?".to_string()))
        );
        assert_eq!(
            split_category("**Named Entity Recognition**: List the drugs: all", &cats),
            Some(("Named Entity Recognition", "List the drugs: all".to_string()))
        );
        assert_eq!(split_category("Paraphrasing: x", &cats), None);
        assert_eq!(split_category("no colon", &cats), None);
        assert!(starts_capitalized("What") && !starts_capitalized("what") && !starts_capitalized(""));
    }
}
