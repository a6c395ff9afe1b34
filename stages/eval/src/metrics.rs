//! `kind: metrics` — offline scores of each system's answers against a reference system's, for
//! sites without an API: ROUGE-L, BLEU and token F1, per row, per task type and overall.
//!
//! Each metric is a port of the implementation people cite, checked against it (tests/it/eval.rs
//! runs the venv's packages on real MTSamples rows):
//! - **ROUGE-L**: `rouge_score.rouge_scorer.RougeScorer(['rougeL'])` 0.1.2, F-measure — lower
//!   case, every run of characters other than `[a-z0-9]` a separator, LCS over the tokens. Only
//!   `use_stemmer: false` (its default): the Porter stemmer is not ported.
//! - **BLEU**: sacrebleu 2.x with its defaults — the `13a` tokenizer, `exp` smoothing; corpus BLEU
//!   (`corpus_bleu`) per system and per task type, sentence BLEU (`sentence_bleu`, effective
//!   order) per row. On sacrebleu's 0–100 scale.
//! - **Token F1**: SQuAD's — lower case, punctuation (`string.punctuation`) and the articles
//!   a/an/the removed (`\b` as Python's `re` has it: [`crate::py_word`]), tokens split on white
//!   space, F1 of the bags of tokens; two empty answers score 1, one empty answer 0 (SQuAD v2's
//!   convention).
//!
//! Outputs: `metrics.json` (per system: `overall` and `by_type`, each with `rouge_l`, `bleu`,
//! `sentence_bleu` (the mean), `token_f1`, `rows`; `empty_answers`, the answers that are empty or
//! white space; `reference_empty_answers`) and `rows.jsonl` (one line per row and system). A
//! system (the reference included) whose answers are empty in at least half of the rows is
//! warned about: it is nearly always a wrong `input` or `column`, scored as empty answers.

use std::collections::{BTreeMap, HashMap};

use camel_engine::{InputSpec, OutputSpec, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::{self, SystemSpec};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsParams {
    /// The answer sets; each is scored against `reference`.
    pub systems: Vec<SystemSpec>,
    /// The name of the system whose answers are the references.
    pub reference: String,
    /// Only the first rows.
    #[serde(default)]
    pub limit: Option<usize>,
    /// rouge-score's `use_stemmer`; only `false` is implemented.
    #[serde(default)]
    pub use_stemmer: bool,
}

pub struct Metrics;

impl Stage for Metrics {
    type Params = MetricsParams;
    const KIND: &'static str = "metrics";
    /// 2: token F1 removes an article where SQuAD's `\b(a|an|the)\b` does, with Python's `\w`
    /// (crate::py_word): not before a combining mark or a circled letter. metrics.json counts
    /// each system's empty answers (`empty_answers`, `reference_empty_answers`).
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "ROUGE-L, BLEU and token F1 of answer sets against a reference set, per row and task type";

    fn inputs(p: &MetricsParams) -> InputSpec {
        InputSpec::Named { required: data::input_names(&p.systems), optional: vec![] }
    }

    fn outputs(_: &MetricsParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("metrics", "metrics.json"), OutputSpec::new("rows", "rows.jsonl")]
    }

    /// `SYSTEM.rouge_l`, `SYSTEM.bleu`, `SYSTEM.token_f1`: each system's overall scores.
    fn metrics(_: &MetricsParams, out_dir: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        let Some(v) = crate::read_json_value(&out_dir.join("metrics.json")) else { return out };
        for (system, s) in v["systems"].as_object().into_iter().flatten() {
            for m in ["rouge_l", "bleu", "token_f1"] {
                if let Some(x) = s["overall"][m].as_f64() {
                    out.insert(format!("{system}.{m}"), x);
                }
            }
        }
        out
    }

    fn run(p: &MetricsParams, ctx: &StageContext) -> Result<(), StageError> {
        data::check_systems(&p.systems, 2, Some(&p.reference))?;
        if p.use_stemmer {
            return Err(StageError::msg(
                "`use_stemmer: true` is not implemented (rouge-score's Porter stemmer is not ported): leave it out",
            ));
        }
        let al = data::load(&p.systems, ctx.inputs(), p.limit)?;
        let blank = data::warn_blank(ctx, &al, &p.systems);
        let refs = al.system(&p.reference).expect("checked").to_vec();
        ctx.progress().set_total(Some((al.rows * (al.systems.len() - 1)) as u64), "rows");
        let ref_tokens: Vec<Vec<String>> = refs.iter().map(|r| bleu_tokens(r)).collect();
        let ref_rouge: Vec<Vec<String>> = refs.iter().map(|r| rouge_tokens(r)).collect();
        let mut lines = String::new();
        let mut systems = serde_json::Map::new();
        for ((name, answers), &empty) in al.systems.iter().zip(&blank) {
            if *name == p.reference {
                continue;
            }
            ctx.check_cancelled()?;
            let mut overall = Acc::default();
            let mut by_type: BTreeMap<&str, Acc> = BTreeMap::new();
            for (i, a) in answers.iter().enumerate() {
                let hyp = bleu_tokens(a);
                let stats = BleuStats::of(&hyp, &ref_tokens[i]);
                let row = RowScores {
                    rouge_l: rouge_l_tokens(&ref_rouge[i], &rouge_tokens(a)),
                    sentence_bleu: stats.score(true),
                    token_f1: token_f1(a, &refs[i]),
                };
                overall.add(&row, &stats);
                by_type.entry(&al.types[i]).or_default().add(&row, &stats);
                let line = json!({
                    "index": i, "type": al.types[i], "system": name,
                    "rouge_l": row.rouge_l, "bleu": row.sentence_bleu, "token_f1": row.token_f1,
                });
                lines.push_str(&line.to_string());
                lines.push('\n');
                ctx.progress().inc(1);
            }
            let by_type: serde_json::Map<String, serde_json::Value> =
                by_type.into_iter().map(|(t, a)| (t.to_string(), a.summary())).collect();
            systems.insert(
                name.clone(),
                json!({"overall": overall.summary(), "by_type": by_type, "empty_answers": empty}),
            );
        }
        let reference_empty =
            al.systems.iter().zip(&blank).find(|((n, _), _)| *n == p.reference).map(|(_, b)| *b);
        let out = json!({
            "reference": p.reference,
            "rows": al.rows,
            "reference_empty_answers": reference_empty,
            "scales": {"rouge_l": "F-measure, 0-1", "bleu": "sacrebleu, 0-100", "token_f1": "0-1"},
            "implementation": "rouge-score 0.1.2 RougeScorer(['rougeL'], use_stemmer=False); sacrebleu 2.x BLEU (13a, exp smoothing); SQuAD token F1",
            "systems": systems,
        });
        crate::write_json(&ctx.out_dir().join("metrics.json"), &out)?;
        crate::write_text(&ctx.out_dir().join("rows.jsonl"), &lines)?;
        ctx.log(&format!("{} rows, {} systems against `{}`", al.rows, al.systems.len() - 1, p.reference));
        Ok(())
    }
}

struct RowScores {
    rouge_l: f64,
    sentence_bleu: f64,
    token_f1: f64,
}

#[derive(Default)]
struct Acc {
    rows: usize,
    rouge_l: f64,
    sentence_bleu: f64,
    token_f1: f64,
    bleu: BleuStats,
}

impl Acc {
    fn add(&mut self, r: &RowScores, s: &BleuStats) {
        self.rows += 1;
        self.rouge_l += r.rouge_l;
        self.sentence_bleu += r.sentence_bleu;
        self.token_f1 += r.token_f1;
        self.bleu.add(s);
    }

    fn summary(&self) -> serde_json::Value {
        let n = self.rows.max(1) as f64;
        json!({
            "rows": self.rows,
            "rouge_l": self.rouge_l / n,
            "bleu": self.bleu.score(false),
            "sentence_bleu": self.sentence_bleu / n,
            "token_f1": self.token_f1 / n,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// ROUGE-L

/// rouge-score's default tokenizer (no stemmer): lower case, non-`[a-z0-9]` runs as separators.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `RougeScorer(['rougeL']).score(target, prediction)['rougeL'].fmeasure`.
pub fn rouge_l(target: &str, prediction: &str) -> f64 {
    rouge_l_tokens(&rouge_tokens(target), &rouge_tokens(prediction))
}

fn rouge_l_tokens(target: &[String], prediction: &[String]) -> f64 {
    if target.is_empty() || prediction.is_empty() {
        return 0.0;
    }
    // One row of the LCS table at a time.
    let mut prev = vec![0u32; prediction.len() + 1];
    let mut cur = vec![0u32; prediction.len() + 1];
    for t in target {
        for (j, p) in prediction.iter().enumerate() {
            cur[j + 1] = if t == p { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    let lcs = f64::from(prev[prediction.len()]);
    let precision = lcs / prediction.len() as f64;
    let recall = lcs / target.len() as f64;
    if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 }
}

// ---------------------------------------------------------------------------------------------
// BLEU

/// Python's `str.isspace` (which `str.split()` splits on): Unicode white space plus the
/// information separators U+001C–U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// sacrebleu's `13a` tokenizer applied as BLEU does (`line.rstrip()` first), split into tokens.
pub fn bleu_tokens(line: &str) -> Vec<String> {
    tokenize_13a(line.trim_end_matches(py_space))
        .split(py_space)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// `Tokenizer13a()(line)`.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    let chars: Vec<char> = format!(" {line} ").chars().collect();
    // 1. `([\{-\~\[-\` -\&\(-\+\:-\@\/])` → ` \1 `: ASCII punctuation except ' , - .
    let mut s1 = Vec::with_capacity(chars.len() * 2);
    for &c in &chars {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            s1.extend([' ', c, ' ']);
        } else {
            s1.push(c);
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let period_comma = |c: char| c == '.' || c == ',';
    // 2. `([^0-9])([\.,])` → `\1 \2 `
    let s2 = sub_pairs(&s1, |a, b| !digit(a) && period_comma(b), |a, b, out| out.extend([a, ' ', b, ' ']));
    // 3. `([\.,])([^0-9])` → ` \1 \2`
    let s3 = sub_pairs(&s2, |a, b| period_comma(a) && !digit(b), |a, b, out| out.extend([' ', a, ' ', b]));
    // 4. `([0-9])(-)` → `\1 \2 `
    let s4 = sub_pairs(&s3, |a, b| digit(a) && b == '-', |a, b, out| out.extend([a, ' ', b, ' ']));
    let s: String = s4.into_iter().collect();
    s.split(py_space).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `re.sub` for a two-character pattern: leftmost matches, never overlapping.
fn sub_pairs(
    s: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 2);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            replace(s[i], s[i + 1], &mut out);
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

const ORDER: usize = 4;

/// sacrebleu's sufficient statistics: lengths, matched and total n-grams per order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BleuStats {
    pub sys_len: u64,
    pub ref_len: u64,
    pub correct: [u64; ORDER],
    pub total: [u64; ORDER],
}

impl BleuStats {
    /// One segment against one reference (both already tokenized).
    pub fn of(hyp: &[String], reference: &[String]) -> BleuStats {
        let mut s =
            BleuStats { sys_len: hyp.len() as u64, ref_len: reference.len() as u64, ..Default::default() };
        for n in 1..=ORDER {
            if hyp.len() < n {
                break;
            }
            let mut refs: HashMap<&[String], u64> = HashMap::new();
            if reference.len() >= n {
                for w in reference.windows(n) {
                    *refs.entry(w).or_default() += 1;
                }
            }
            let mut hyps: HashMap<&[String], u64> = HashMap::new();
            for w in hyp.windows(n) {
                *hyps.entry(w).or_default() += 1;
            }
            for (g, c) in hyps {
                s.total[n - 1] += c;
                if let Some(r) = refs.get(g) {
                    s.correct[n - 1] += c.min(*r);
                }
            }
        }
        s
    }

    pub fn add(&mut self, o: &BleuStats) {
        self.sys_len += o.sys_len;
        self.ref_len += o.ref_len;
        for n in 0..ORDER {
            self.correct[n] += o.correct[n];
            self.total[n] += o.total[n];
        }
    }

    /// `BLEU.compute_bleu` with `smooth_method='exp'`; `effective_order` as `sentence_bleu` uses it.
    pub fn score(&self, effective_order: bool) -> f64 {
        let bp = if self.sys_len < self.ref_len {
            if self.sys_len > 0 { (1.0 - self.ref_len as f64 / self.sys_len as f64).exp() } else { 0.0 }
        } else {
            1.0
        };
        if self.correct.iter().all(|&c| c == 0) {
            return 0.0;
        }
        let mut precisions = [0.0f64; ORDER];
        let mut smooth = 1.0f64;
        let mut eff = ORDER;
        for n in 1..=ORDER {
            if self.total[n - 1] == 0 {
                break;
            }
            if effective_order {
                eff = n;
            }
            if self.correct[n - 1] == 0 {
                smooth *= 2.0;
                precisions[n - 1] = 100.0 / (smooth * self.total[n - 1] as f64);
            } else {
                precisions[n - 1] = 100.0 * self.correct[n - 1] as f64 / self.total[n - 1] as f64;
            }
        }
        let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
        let sum = precisions[..eff].iter().fold(0.0, |acc, &p| acc + log(p));
        bp * (sum / eff as f64).exp()
    }
}

/// `sacrebleu.sentence_bleu(hypothesis, [reference]).score`.
pub fn sentence_bleu(hypothesis: &str, reference: &str) -> f64 {
    BleuStats::of(&bleu_tokens(hypothesis), &bleu_tokens(reference)).score(true)
}

/// `sacrebleu.corpus_bleu(hypotheses, [references]).score`.
pub fn corpus_bleu(hypotheses: &[String], references: &[String]) -> f64 {
    let mut s = BleuStats::default();
    for (h, r) in hypotheses.iter().zip(references) {
        s.add(&BleuStats::of(&bleu_tokens(h), &bleu_tokens(r)));
    }
    s.score(false)
}

// ---------------------------------------------------------------------------------------------
// Token F1

/// SQuAD's `normalize_answer`, as tokens.
pub fn squad_tokens(s: &str) -> Vec<String> {
    let lower = s.to_lowercase();
    let no_punc: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    // `\b(a|an|the)\b`: a maximal run of word characters (Python's `\w`, not Rust's
    // `is_alphanumeric`: see crate::py_word) that is an article.
    let word = crate::py_word::is_word;
    let mut out = String::with_capacity(no_punc.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if matches!(run.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in no_punc.chars() {
        if word(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out.split(py_space).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// SQuAD's token F1 of `prediction` against `truth`.
pub fn token_f1(prediction: &str, truth: &str) -> f64 {
    let (p, t) = (squad_tokens(prediction), squad_tokens(truth));
    if p.is_empty() || t.is_empty() {
        return if p.is_empty() && t.is_empty() { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &t {
        *counts.entry(w).or_default() += 1;
    }
    let mut same = 0u64;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str())
            && *c > 0
        {
            *c -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / t.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `camel diff`'s numbers: each system's overall scores from `metrics.json`.
    #[test]
    fn the_overall_scores_are_the_metrics() {
        let d = tempfile::tempdir().unwrap();
        let m = json!({"systems": {"camel": {"overall": {"rows": 2, "rouge_l": 0.25, "bleu": 12.5, "token_f1": 0.5}, "by_type": {}}}});
        std::fs::write(d.path().join("metrics.json"), m.to_string()).unwrap();
        let got = <Metrics as Stage>::metrics(
            &MetricsParams { systems: vec![], reference: "ref".into(), limit: None, use_stemmer: false },
            d.path(),
        );
        let got: Vec<(&str, f64)> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("camel.bleu", 12.5), ("camel.rouge_l", 0.25), ("camel.token_f1", 0.5)]);
    }

    #[test]
    fn rouge_l_by_hand() {
        // rouge-score's README example: LCS "the fox" … target 6 tokens, prediction 6.
        let f =
            rouge_l("The quick brown fox jumps over the lazy dog", "The quick brown dog jumps on the log.");
        // LCS = the quick brown jumps the = 5; p = 5/8, r = 5/9.
        let (p, r) = (5.0 / 8.0, 5.0 / 9.0);
        assert_eq!(f, 2.0 * p * r / (p + r));
        assert_eq!(rouge_l("", "x"), 0.0);
        assert_eq!(rouge_tokens("Pt's BP: 120/80, HR-72 é"), ["pt", "s", "bp", "120", "80", "hr", "72"]);
    }

    #[test]
    fn tokenizer_13a_cases() {
        assert_eq!(
            tokenize_13a("Hello, world. It's 3.5-4 mg/dL (q.d.)!"),
            "Hello , world . It's 3.5 - 4 mg / dL ( q . d . ) !"
        );
        assert_eq!(tokenize_13a("a &amp; b&lt;c"), "a & b < c");
        assert_eq!(tokenize_13a("1,000 and 2.5."), "1,000 and 2.5 .");
    }

    #[test]
    fn bleu_edge_cases() {
        // sacrebleu gives the same rounding: exp(mean(log(100))).
        assert_eq!(sentence_bleu("the cat sat on the mat", "the cat sat on the mat"), 100.00000000000004);
        assert_eq!(sentence_bleu("", "the cat"), 0.0);
        assert_eq!(sentence_bleu("dog", "the cat"), 0.0);
        // sacrebleu.sentence_bleu('the cat', ['the cat sat']).score
        assert_eq!(sentence_bleu("the cat", "the cat sat"), 60.653065971263366);
    }

    #[test]
    fn token_f1_is_squads() {
        assert_eq!(token_f1("The Cat sat.", "a cat sat"), 1.0);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
        let f = token_f1("cat sat down", "cat sat");
        assert!((f - 0.8).abs() < 1e-12);
    }

    /// `\b` is Python's: a combining vowel sign (U+093E), a combining Latin letter (U+0363) or a
    /// circled letter (U+24B6) is not `\w` there, so the article before it is removed; letters
    /// and numbers of any script (é, ٣ U+0663, Ⅰ U+2160) are `\w`. Expected tokens from the
    /// venv's Python (`normalize_answer(s).split()`).
    #[test]
    fn articles_end_where_pythons_word_characters_end() {
        let cases: [(&str, &[&str]); 5] = [
            ("the\u{93e} cat sat", &["\u{93e}", "cat", "sat"]),
            ("a\u{363} dog ran", &["\u{363}", "dog", "ran"]),
            ("an\u{24b6} fox", &["\u{24d0}", "fox"]),
            (
                "the_cat a1 an\u{e9} \u{e9}the the\u{663} \u{663}a",
                &["thecat", "a1", "an\u{e9}", "\u{e9}the", "the\u{663}", "\u{663}a"],
            ),
            ("The\u{2160} x", &["the\u{2170}", "x"]),
        ];
        for (text, want) in cases {
            assert_eq!(squad_tokens(text), want, "{text:?}");
        }
        // The finding's rows: SQuAD scores them 1.
        assert_eq!(token_f1("the\u{93e} cat sat", "\u{93e} cat sat"), 1.0);
        assert_eq!(token_f1("an\u{24b6} fox", "\u{24b6} fox"), 1.0);
        assert!(!crate::py_word::is_word('\u{93e}') && crate::py_word::is_word('\u{939}'));
        assert!(!crate::py_word::is_word('\u{10ffff}') && crate::py_word::is_word('\u{3134a}'));
    }
}
