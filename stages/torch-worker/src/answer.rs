//! `camel-torch-worker answer JOB.json`: the `answer` stage's model side. Each instruction is put
//! into the fine-tuning prompt template ([`crate::sft::prompt`], the same function fine-tuning
//! uses), encoded with the checkpoint's tokenizer and decoded with [`crate::generate::generate`].
//!
//! Rows are answered in fixed batches (`batch_size` consecutive rows), and each finished batch is
//! appended to `rows.jsonl` in the scratch dir and fsync'd. A rerun after a kill keeps the batches
//! whose every row is there and redoes the rest, so its output is the same, byte for byte, as a run
//! that was never interrupted: a batch's padding, and so its arithmetic, depend only on which rows
//! it holds. Sampling is seeded per batch (`seed + batch index`) for the same reason.
//!
//! Nothing here prints instruction, note or answer text: stdout carries progress lines only.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
pub use camel_torch_job::{AnswerJob, Row};
use serde::Deserialize;

use crate::generate::generate;
use crate::job::TrainParams;
use crate::sft::{Record, prompt};

#[derive(Deserialize)]
struct Instruction {
    instruction: String,
    #[serde(default)]
    input: String,
}

/// The rows already in `path`, keeping only the batches that are complete (a kill can cut a
/// batch's lines, or the last line, short).
pub fn finished_rows(path: &Path, n: usize, batch_size: usize) -> BTreeMap<usize, Row> {
    let mut rows = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else { return rows };
    for line in text.lines() {
        if let Ok(r) = serde_json::from_str::<Row>(line)
            && r.index < n
        {
            rows.insert(r.index, r);
        }
    }
    let complete = |b: usize| (b * batch_size..((b + 1) * batch_size).min(n)).all(|i| rows.contains_key(&i));
    let done: Vec<usize> = (0..n.div_ceil(batch_size)).filter(|&b| complete(b)).collect();
    rows.retain(|i, _| done.contains(&(i / batch_size)));
    rows
}

/// Runs the job; `progress(done, total, new_tokens, elapsed_s)` after each batch.
pub fn run(job: &AnswerJob, progress: &mut dyn FnMut(usize, usize, u64, f64)) -> Result<()> {
    ensure!(job.batch_size > 0, "batch_size must be at least 1");
    if job.threads > 0 {
        tch::set_num_threads(job.threads as i32);
    }
    let text = std::fs::read_to_string(&job.instructions)
        .with_context(|| format!("failed to read {}", job.instructions.display()))?;
    let mut items: Vec<Instruction> = serde_json::from_str(&text).with_context(|| {
        format!("{} is not a JSON list of {{instruction, input}} records", job.instructions.display())
    })?;
    if let Some(l) = job.limit {
        items.truncate(l);
    }
    let n = items.len();
    std::fs::create_dir_all(&job.scratch_dir)?;
    let rows_path = job.scratch_dir.join("rows.jsonl");
    let done = finished_rows(&rows_path, n, job.batch_size);
    // Rewrite the file with the complete batches only, so that a cut line never sits before new ones.
    {
        let mut f = std::fs::File::create(&rows_path)?;
        for r in done.values() {
            writeln!(f, "{}", serde_json::to_string(r)?)?;
        }
        f.sync_all()?;
    }
    if done.len() == n {
        progress(n, n, 0, 0.0);
        return Ok(());
    }
    if !done.is_empty() {
        eprintln!("resuming: {} of {n} rows already answered", done.len());
    }

    let (decoding, notes) = crate::generate::decoding_for(&job.model, &job.generation)?;
    let (model, tok) = crate::generate::load_for_generation(&job.model, &job.device, &job.dtype)?;
    for n in notes {
        eprintln!("note: {n}");
    }
    let templates = TrainParams {
        prompt_input: job.prompt_input.clone(),
        prompt_no_input: job.prompt_no_input.clone(),
        ..TrainParams::default()
    };

    let mut out = std::fs::OpenOptions::new().append(true).open(&rows_path)?;
    let started = Instant::now();
    let mut new_tokens = 0u64;
    let mut finished = done.len();
    progress(finished, n, 0, 0.0);
    for (b, chunk) in items.chunks(job.batch_size).enumerate() {
        let first = b * job.batch_size;
        if done.contains_key(&first) {
            continue;
        }
        let mut prompts = Vec::with_capacity(chunk.len());
        for (k, it) in chunk.iter().enumerate() {
            let rec = Record {
                instruction: it.instruction.clone(),
                input: it.input.clone(),
                output: String::new(),
            };
            let enc = tok
                .encode(prompt(&templates, &rec), true)
                .map_err(|e| anyhow::anyhow!("row {}: tokenization failed: {e}", first + k))?;
            prompts.push(enc.get_ids().iter().map(|&i| i as i64).collect::<Vec<_>>());
        }
        crate::generate::check_ids(&prompts, model.cfg.vocab_size, Some(tok.get_vocab_size(true)))
            .with_context(|| format!("rows {first}–{}", first + chunk.len() - 1))?;
        let mut p = decoding.clone();
        p.seed = decoding.seed.wrapping_add(b as u64);
        let outs = generate(&model, &prompts, &p)?;
        let mut lines = String::new();
        for (k, ids) in outs.iter().enumerate() {
            let u: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
            let output = tok.decode(&u, true).map_err(|e| anyhow::anyhow!("decoding failed: {e}"))?;
            new_tokens += ids.len() as u64;
            let row = Row { index: first + k, output, tokens: ids.len() };
            lines.push_str(&serde_json::to_string(&row)?);
            lines.push('\n');
        }
        out.write_all(lines.as_bytes())?;
        out.sync_data()?;
        finished += chunk.len();
        progress(finished, n, new_tokens, started.elapsed().as_secs_f64());
        // SIGUSR1 (Slurm: time limit near, preemption): the rows so far are on disk, and a
        // rerun goes on after them.
        if crate::interrupt::requested() && finished < n {
            return Err(crate::interrupt::Interrupted {
                step: finished as u64,
                saved: "the answers to the first",
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_batches_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rows.jsonl");
        let row =
            |i: usize| serde_json::to_string(&Row { index: i, output: format!("o{i}"), tokens: 1 }).unwrap();
        // Batches of 2 over 5 rows: [0,1] complete, [2,3] half, [4] complete, and a cut line.
        let text = format!("{}\n{}\n{}\n{}\n{{\"index\": 3, \"out", row(0), row(1), row(2), row(4));
        std::fs::write(&p, text).unwrap();
        let got: Vec<usize> = finished_rows(&p, 5, 2).into_keys().collect();
        assert_eq!(got, [0, 1, 4]);
        assert!(finished_rows(&dir.path().join("absent"), 5, 2).is_empty());
    }
}
