//! Generates notes in parallel and writes them in order.
//!
//! Notes are cut into chunks of [`CHUNK`] consecutive indices; a wave of chunks is generated on the
//! rayon pool while the previous wave is written. Every note draws from its own generator (seeded by
//! the run's seed and its index), so the bytes do not depend on the chunk size, the wave size or the
//! number of threads. The stop rule (`notes` reached, or `bytes` of note text reached) is applied
//! note by note while writing, in order.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use camel_engine::StageError;
use rayon::prelude::*;

use super::doc::{Doc, Style};

pub const CHUNK: u64 = 128;
const MAX_STREAMS: usize = 2;

/// A file written in note order: header, one record per note, footer.
pub struct StreamSpec {
    pub path: String,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// The generated output of consecutive notes.
#[derive(Default)]
pub struct Chunk {
    pub bufs: [Vec<u8>; MAX_STREAMS],
    /// Whole files per note (i2b2), as (path below the output directory, bytes).
    pub files: Vec<(String, Vec<u8>)>,
    notes: Vec<NoteEnd>,
}

struct NoteEnd {
    ends: [usize; MAX_STREAMS],
    files_end: usize,
    text_bytes: u64,
}

impl Chunk {
    /// Marks the end of a note's records (call after appending them).
    pub fn finish_note(&mut self, text_bytes: u64) {
        let ends = [self.bufs[0].len(), self.bufs[1].len()];
        self.notes.push(NoteEnd { ends, files_end: self.files.len(), text_bytes });
    }
}

/// One output format.
pub trait NoteFormat: Sync {
    fn style(&self) -> Style;
    fn streams(&self) -> Vec<StreamSpec>;
    /// A directory (below the output directory) that per-note files go to.
    fn files_dir(&self) -> Option<&'static str> {
        None
    }
    /// Writes the text of note `i` into `d` (and nothing else).
    fn text(&self, i: u64, d: &mut Doc);
    /// Generates note `i` and appends its records to `c`, ending with [`Chunk::finish_note`].
    fn note(&self, i: u64, d: &mut Doc, c: &mut Chunk);
}

/// Where a run reports to; every method has a silent default.
pub trait Observer {
    /// The number of notes to generate, when known.
    fn total(&self, _notes: Option<u64>) {}
    /// Notes written so far.
    fn progress(&self, _notes: u64) {}
    fn message(&self, _msg: &str) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// An [`Observer`] that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// `"` + `s` with `"` doubled + `"`.
pub fn push_quoted(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(p) = rest.iter().position(|&b| b == b'"') {
        out.extend_from_slice(&rest[..=p]);
        out.push(b'"');
        rest = &rest[p + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

fn waves(start: u64, end: u64) -> Vec<(u64, u64)> {
    let wave = (rayon::current_num_threads() as u64).max(1) * 4;
    let mut v = Vec::new();
    let mut a = start;
    while a < end && (v.len() as u64) < wave {
        let b = (a + CHUNK).min(end);
        v.push((a, b));
        a = b;
    }
    v
}

fn gen_chunk<F: NoteFormat>(f: &F, d: &mut Doc, (a, b): (u64, u64)) -> Chunk {
    let mut c = Chunk::default();
    c.bufs[0].reserve(((b - a) * 6_000) as usize);
    c.notes.reserve((b - a) as usize);
    for i in a..b {
        f.note(i, d, &mut c);
    }
    c
}

/// How many notes (at most `cap`) it takes for their text to reach `bytes`.
pub fn count_for_bytes<F: NoteFormat>(
    f: &F,
    cap: u64,
    bytes: u64,
    obs: &dyn Observer,
) -> Result<u64, StageError> {
    let (mut pos, mut count, mut total) = (0u64, 0u64, 0u64);
    while pos < cap {
        if obs.cancelled() {
            return Err(StageError::Cancelled);
        }
        let ranges = waves(pos, cap);
        pos = ranges.last().map_or(cap, |r| r.1);
        let lens: Vec<Vec<u64>> = ranges
            .par_iter()
            .map_init(
                || Doc::new(f.style()),
                |d, &(a, b)| {
                    (a..b)
                        .map(|i| {
                            f.text(i, d);
                            d.text.len() as u64
                        })
                        .collect()
                },
            )
            .collect();
        for l in lens.into_iter().flatten() {
            count += 1;
            total += l;
            if total >= bytes {
                return Ok(count);
            }
        }
    }
    Ok(cap)
}

/// What a run wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub notes: u64,
    /// UTF-8 bytes of note text (before CSV quoting or JSON escaping).
    pub text_bytes: u64,
}

struct State {
    cap: u64,
    bytes: Option<u64>,
    emitted: u64,
    text: u64,
    done: bool,
}

struct Sink {
    streams: Vec<(String, BufWriter<File>)>,
}

fn write_chunks(sink: &mut Sink, out_dir: &Path, chunks: &[Chunk], st: &mut State) -> Result<(), StageError> {
    for c in chunks {
        if st.done {
            break;
        }
        let mut take = 0usize;
        for n in &c.notes {
            st.emitted += 1;
            st.text += n.text_bytes;
            take += 1;
            if st.emitted >= st.cap || st.bytes.is_some_and(|b| st.text >= b) {
                st.done = true;
                break;
            }
        }
        let Some(last) = take.checked_sub(1).map(|k| &c.notes[k]) else { continue };
        for (k, (path, w)) in sink.streams.iter_mut().enumerate() {
            w.write_all(&c.bufs[k][..last.ends[k]]).map_err(StageError::io(format!("write {path}")))?;
        }
        for (path, data) in &c.files[..last.files_end] {
            std::fs::write(out_dir.join(path), data).map_err(StageError::io(format!("write {path}")))?;
        }
    }
    Ok(())
}

/// Writes up to `cap` notes of format `f` into `out_dir`, stopping early once `bytes` of note text
/// are written (after the note that reaches it).
pub fn run<F: NoteFormat>(
    f: &F,
    cap: u64,
    bytes: Option<u64>,
    out_dir: &Path,
    obs: &dyn Observer,
) -> Result<Written, StageError> {
    let mut sink = Sink { streams: Vec::new() };
    for s in f.streams() {
        let path = out_dir.join(&s.path);
        let file = File::create(&path).map_err(StageError::io(format!("create {}", path.display())))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&s.head).map_err(StageError::io(format!("write {}", s.path)))?;
        sink.streams.push((s.path, w));
    }
    if let Some(dir) = f.files_dir() {
        std::fs::create_dir_all(out_dir.join(dir)).map_err(StageError::io(format!("create {dir}/")))?;
    }
    let mut st = State { cap, bytes, emitted: 0, text: 0, done: false };
    let mut pos = 0u64;
    let mut pending: Vec<Chunk> = Vec::new();
    loop {
        if obs.cancelled() {
            return Err(StageError::Cancelled);
        }
        let ranges = if st.done { Vec::new() } else { waves(pos, cap) };
        pos = ranges.last().map_or(pos, |r| r.1);
        if pending.is_empty() && ranges.is_empty() {
            break;
        }
        let (written, next) = rayon::join(
            || write_chunks(&mut sink, out_dir, &pending, &mut st),
            || {
                ranges
                    .par_iter()
                    .map_init(|| Doc::new(f.style()), |d, &r| gen_chunk(f, d, r))
                    .collect::<Vec<Chunk>>()
            },
        );
        written?;
        obs.progress(st.emitted);
        pending = next;
    }
    for (k, (path, mut w)) in sink.streams.into_iter().enumerate() {
        w.write_all(&f.streams()[k].tail).map_err(StageError::io(format!("write {path}")))?;
        w.flush().map_err(StageError::io(format!("write {path}")))?;
    }
    Ok(Written { notes: st.emitted, text_bytes: st.text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        let mut v = Vec::new();
        push_quoted(&mut v, "a \"b\", c\nd");
        assert_eq!(v, b"\"a \"\"b\"\", c\nd\"");
        v.clear();
        push_quoted(&mut v, "");
        assert_eq!(v, b"\"\"");
    }
}
