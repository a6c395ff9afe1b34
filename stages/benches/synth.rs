//! `cargo bench --workspace --bench synth`: generates ~1 GB of `format: mimic3` notes into a
//! temporary directory with `synth::generate` and prints seconds and MB/s (MB = 10^6 bytes of
//! NOTEEVENTS.csv). The goal is under a minute for 1 GB on 2 cores.
//!
//! `SYNTH_BENCH_BYTES` overrides the size (note-text bytes), `SYNTH_BENCH_FORMAT` the format
//! (mimic3, mimic4, i2b2) and `RAYON_NUM_THREADS` the thread count.

use std::time::Instant;

use camel_stages::synth::{Format, Quiet, SynthParams, generate};

fn main() {
    let bytes: u64 =
        std::env::var("SYNTH_BENCH_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000_000);
    let format = match std::env::var("SYNTH_BENCH_FORMAT").as_deref() {
        Ok("mimic4") => Format::Mimic4,
        Ok("i2b2") => Format::I2b2,
        _ => Format::Mimic3,
    };
    let p = SynthParams { format, notes: u64::MAX / 2, seed: 0, bytes: Some(bytes) };
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let w = generate(&p, dir.path(), None, &Quiet).expect("synth");
    let secs = t.elapsed().as_secs_f64();
    let mut on_disk = 0u64;
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                on_disk += e.metadata().unwrap().len();
            }
        }
    }
    println!(
        "synth {format:?}: {} notes, {:.1} MB of text, {:.1} MB written in {secs:.2} s on {} threads: {:.1} MB/s",
        w.notes,
        w.text_bytes as f64 / 1e6,
        on_disk as f64 / 1e6,
        rayon::current_num_threads(),
        on_disk as f64 / 1e6 / secs,
    );
}
