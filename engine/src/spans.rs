//! Where each node of a YAML document is, so that errors found after parsing (an unknown kind,
//! a mistyped param, a missing input file) can point at the offending line and column.
//!
//! serde_yaml gives locations only for its own syntax errors; this walks yaml-rust2's marked
//! events once and records, for every path (`stages.count.params.threads`), where its key and
//! its value start.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A byte range in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct NodeSpans {
    pub key: Option<Span>,
    pub value: Span,
}

/// Spans of every node, by path. Sequence items are addressed by their index as a string.
#[derive(Debug, Default)]
pub struct SpanIndex {
    nodes: HashMap<Vec<String>, NodeSpans>,
    duplicates: Vec<Duplicate>,
}

/// A key given twice in one mapping.
#[derive(Clone, Debug)]
pub struct Duplicate {
    pub path: Vec<String>,
    pub first: Span,
    pub second: Span,
}

impl SpanIndex {
    /// Indexes `src`; a document that does not parse yields an empty index (serde_yaml reports
    /// the syntax error with its own location).
    pub fn build(src: &str) -> SpanIndex {
        let mut rx =
            Receiver { src, char_to_byte: char_offsets(src), stack: Vec::new(), index: SpanIndex::default() };
        let mut parser = Parser::new_from_str(src);
        if parser.load(&mut rx, false).is_err() {
            return SpanIndex::default();
        }
        rx.index
    }

    /// Keys that appear twice in the same mapping, in document order.
    pub fn duplicates(&self) -> &[Duplicate] {
        &self.duplicates
    }

    /// The span of the node at `path`, or of its nearest indexed ancestor. Prefers the value;
    /// `key` asks for the key instead (used for "unknown field" errors).
    pub fn find(&self, path: &[String], key: bool) -> Option<Span> {
        let mut p = path.to_vec();
        loop {
            if let Some(n) = self.nodes.get(&p) {
                return Some(if key { n.key.unwrap_or(n.value) } else { n.value });
            }
            p.pop()?;
        }
    }
}

enum Frame {
    Map { path: Vec<String>, key: Option<(String, Span)> },
    Seq { path: Vec<String>, next: usize },
}

struct Receiver<'a> {
    src: &'a str,
    char_to_byte: Vec<usize>,
    stack: Vec<Frame>,
    index: SpanIndex,
}

fn char_offsets(src: &str) -> Vec<usize> {
    let mut v: Vec<usize> = src.char_indices().map(|(b, _)| b).collect();
    v.push(src.len());
    v
}

impl Receiver<'_> {
    fn byte(&self, mark: &Marker) -> usize {
        self.char_to_byte.get(mark.index()).copied().unwrap_or(self.src.len())
    }

    /// A span from `offset` covering `text` as written, cut at the end of its line.
    fn span_at(&self, offset: usize, text_len: usize) -> Span {
        let rest = &self.src[offset..];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let quoted = rest.starts_with('"') || rest.starts_with('\'');
        let want = if quoted { text_len + 2 } else { text_len };
        Span { offset, len: want.clamp(1, line_end.max(1)) }
    }

    /// Called for a node that starts at `mark`; returns the path of the node when it is a value.
    fn node(&mut self, mark: &Marker, scalar: Option<&str>) -> Option<Vec<String>> {
        let offset = self.byte(mark);
        let span = self.span_at(offset, scalar.map_or(1, str::len));
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key. Complex keys are recorded under a placeholder.
                    *key = Some((scalar.unwrap_or("?").to_string(), span));
                    None
                }
                Some((k, kspan)) => {
                    let mut p = path.clone();
                    p.push(k);
                    let spans = NodeSpans { key: Some(kspan), value: span };
                    if let Some(first) = self.index.nodes.insert(p.clone(), spans) {
                        if !p.iter().any(|s| s == "?") {
                            self.index.duplicates.push(Duplicate {
                                path: p.clone(),
                                first: first.key.unwrap_or(first.value),
                                second: kspan,
                            });
                        }
                        // Keep pointing at the first occurrence for other errors.
                        self.index.nodes.insert(p.clone(), first);
                    }
                    Some(p)
                }
            },
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(next.to_string());
                *next += 1;
                self.index.nodes.insert(p.clone(), NodeSpans { key: None, value: span });
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Receiver<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref s, ..) => {
                self.node(&mark, Some(s));
            }
            Event::Alias(_) => {
                self.node(&mark, None);
            }
            Event::MappingStart(..) => {
                // A mapping used as a key gets a placeholder path: its contents are of no interest.
                let path = self.node(&mark, None).unwrap_or_else(|| vec!["?".into()]);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node(&mark, None).unwrap_or_else(|| vec!["?".into()]);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(String::from).collect()
    }

    #[test]
    fn finds_keys_and_values() {
        let src = "name: x\nstages:\n  a:\n    kind: command\n    params:\n      n: \"5\"\n      l: [1, 2]\n";
        let idx = SpanIndex::build(src);
        let s = idx.find(&p("stages.a.kind"), false).unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "command");
        let s = idx.find(&p("stages.a.params.n"), false).unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "\"5\"");
        let s = idx.find(&p("stages.a.params.n"), true).unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "n");
        let s = idx.find(&p("stages.a.params.l.1"), false).unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "2");
        // Unknown leaf: the nearest ancestor (the params mapping, on the line of its first key).
        let s = idx.find(&p("stages.a.params.zzz"), false).unwrap();
        let line_of = |o: usize| src[..o].matches('\n').count();
        assert_eq!(line_of(s.offset), line_of(src.find("n: \"5\"").unwrap()));
    }

    #[test]
    fn non_ascii_offsets_are_bytes() {
        let src = "name: é\nstages:\n  ü: {kind: x}\n";
        let idx = SpanIndex::build(src);
        let s = idx.find(&p("stages.ü.kind"), false).unwrap();
        assert_eq!(&src[s.offset..s.offset + s.len], "x");
    }
}
