//! Distributed training on the CPU with Gloo, 2 worker processes spawned as torchrun would
//! (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT): DDP and FSDP end at the weights of a
//! single-process run with the same global batch, with masked labels too (the loss is normalised
//! over the global batch's label tokens); FSDP's per-rank state halves at world 2; a rank
//! that dies mid-step makes its peer fail with a clear error, and the rerun resumes from the last
//! sharded checkpoint to the weights of an uninterrupted run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use camel_torch_worker::checkpoint;
use camel_torch_worker::job::{BackendChoice, DistParams, Job, LossNormalization, Strategy, TrainParams};
use camel_torch_worker::train;
use serde_json::{Value, json};
use tch::Tensor;

const WORKER: &str = env!("CARGO_BIN_EXE_camel-torch-worker");

fn tokens(dir: &Path) {
    let v = common::ids(16 * 16, 97, 5);
    common::write_tokens(dir, &v, 16, None);
}

/// `[ANON]`, an added token masked in the labels, every 11th token of the file: the blocks hold 1
/// or 2 of them, so micro-batches and ranks hold different numbers of label tokens.
const ANON: i64 = 96;

fn masked_tokens(dir: &Path) {
    let mut v = common::ids(16 * 16, 96, 5);
    for i in (3..v.len()).step_by(11) {
        v[i] = ANON;
    }
    common::write_tokens(dir, &v, 16, Some(ANON));
}

/// A global batch of 4 examples per optimizer step, split as `per_device` × `grad_accum` ×
/// `world`, `[ANON]` masked: 16 blocks, 1 epoch, 4 steps.
fn split(per_device: usize, grad_accum: usize, world: usize, dist: Option<Strategy>) -> TrainParams {
    TrainParams { epochs: 1.0, grad_accum, mask_ids: true, ..params(per_device, world, dist) }
}

/// The step losses' largest relative difference.
fn loss_gap(a: &Job, b: &Job) -> f64 {
    losses(a).iter().zip(losses(b)).map(|(x, y)| ((x - y) / y).abs()).fold(0.0, f64::max)
}

#[test]
fn with_masked_labels_every_split_of_a_global_batch_trains_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    masked_tokens(&t.join("tokens"));
    let in_process = |name: &str, p: TrainParams| {
        let j = job(t, name, p);
        assert_eq!(train::run_pretrain(&j, &mut |_| {}).unwrap().steps, 4);
        j
    };
    // One process, batch 4: the reference.
    let whole = in_process("batch4", split(4, 1, 1, None));
    let accum = in_process("batch2-accum2", split(2, 2, 1, None));
    check_against(&accum, &whole, "1 process, batch 2 × accumulation 2");
    let ddp = job(t, "ddp", split(2, 1, 2, Some(Strategy::Ddp)));
    run_ok(&ddp, 2);
    check_against(&ddp, &whole, "DDP, 2 ranks × batch 2");
    let fsdp = job(t, "fsdp", split(2, 1, 2, Some(Strategy::Fsdp)));
    run_ok(&fsdp, 2);
    check_against(&fsdp, &whole, "FSDP, 2 ranks × batch 2");

    // CAMEL's normalisation weighs a token by its micro-batch's count, so on this data the same
    // split trains differently (which the checks above would have caught); unsplit, it is the
    // global mean.
    let camel = |p: TrainParams| TrainParams { loss_normalization: LossNormalization::Camel, ..p };
    let camel_whole = in_process("camel-batch4", camel(split(4, 1, 1, None)));
    let camel_accum = in_process("camel-batch2-accum2", camel(split(2, 2, 1, None)));
    let (a, b) = (losses(&camel_whole)[0], losses(&whole)[0]);
    assert!((a - b).abs() <= 1e-6 * b, "one micro-batch: its mean is the global mean ({a} vs {b})");
    let gap = loss_gap(&camel_accum, &camel_whole);
    println!("CAMEL's normalisation, batch 2 × accumulation 2 vs batch 4: step losses up to {gap:.2e} apart");
    assert!(
        gap > 1e-5,
        "CAMEL's normalisation did not depend on the split ({gap:e}): the data tests nothing"
    );
}

/// An epoch's shorter last step (HF Trainer's: no accumulation crosses an epoch) splits over
/// micro-batches and ranks as any step does: 16 blocks in global micro-batches of 4 are 4 per
/// epoch, and accumulation 3 makes steps of 3 and 1 micro-batches, 4 steps over 2 epochs; with
/// `[ANON]` masked, batch 4 × 3 ≡ batch 2 × 6 (steps of 6 and 2) ≡ DDP and FSDP 2 × 2 × 3.
#[test]
fn an_epochs_shorter_last_step_trains_alike_for_every_split() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    masked_tokens(&t.join("tokens"));
    let uneven = |per_device: usize, grad_accum: usize, world: usize, dist: Option<Strategy>| TrainParams {
        epochs: 2.0,
        ..split(per_device, grad_accum, world, dist)
    };
    let whole = job(t, "batch4-accum3", uneven(4, 3, 1, None));
    assert_eq!(train::run_pretrain(&whole, &mut |_| {}).unwrap().steps, 4);
    let epochs: Vec<f64> = std::fs::read_to_string(whole.out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["epoch"].as_f64().unwrap())
        .collect();
    assert_eq!(epochs, [0.75, 1.0, 1.75, 2.0]);
    let accum = job(t, "batch2-accum6", uneven(2, 6, 1, None));
    assert_eq!(train::run_pretrain(&accum, &mut |_| {}).unwrap().steps, 4);
    check_against(&accum, &whole, "uneven epochs, 1 process, batch 2 × accumulation 6");
    for strategy in [Strategy::Ddp, Strategy::Fsdp] {
        let j = job(t, &format!("{strategy:?}"), uneven(2, 3, 2, Some(strategy)));
        run_ok(&j, 2);
        check_against(
            &j,
            &whole,
            &format!("uneven epochs, {strategy:?}, 2 ranks × batch 2 × accumulation 3"),
        );
    }
}

/// 16 blocks, 4 per global micro-batch, 2 micro-batches per step, 2 epochs: 4 optimizer steps.
/// Labels are not masked, so every rank's micro-batch has as many tokens as the other's and the
/// mean of the ranks' token-mean losses is the global token-mean loss.
fn params(per_device: usize, world: usize, dist: Option<Strategy>) -> TrainParams {
    TrainParams {
        config: Some(json!({"vocab_size": 97, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "tie_word_embeddings": false})),
        seed: 3,
        epochs: 2.0,
        batch_size: per_device,
        grad_accum: 2,
        lr: 1e-2,
        weight_decay: 0.1,
        warmup_ratio: 0.25,
        max_grad_norm: 0.5,
        shuffle: true,
        mask_ids: false,
        device: "cpu".into(),
        threads: 1,
        checkpoint_every: 2,
        distributed: dist.map(|strategy| DistParams {
            strategy,
            backend: BackendChoice::Gloo,
            nproc_per_node: world,
            timeout_s: 30,
            ..DistParams::default()
        }),
        ..TrainParams::default()
    }
}

fn job(t: &Path, name: &str, p: TrainParams) -> Job {
    common::pretrain_job(&t.join("tokens"), None, &t.join(name), p)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `world` workers on `job` as torchrun would; `fault`: CAMEL_WORKER_FAULT for all.
fn spawn(job: &Job, world: usize, fault: Option<&str>) -> Vec<std::process::Child> {
    let path = job.out_dir.parent().unwrap().join("job.json");
    std::fs::write(&path, serde_json::to_string(job).unwrap()).unwrap();
    let port = free_port().to_string();
    (0..world)
        .map(|rank| {
            let mut c = Command::new(WORKER);
            c.arg("train")
                .arg(&path)
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("LOCAL_WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env_remove("CAMEL_WORKER_FAULT")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            if let Some(f) = fault {
                c.env("CAMEL_WORKER_FAULT", f);
            }
            c.spawn().unwrap()
        })
        .collect()
}

fn wait_all(children: Vec<std::process::Child>) -> Vec<Output> {
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn run_ok(job: &Job, world: usize) -> Vec<Output> {
    let outs = wait_all(spawn(job, world, None));
    for (rank, o) in outs.iter().enumerate() {
        assert!(
            o.status.success(),
            "rank {rank} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    outs
}

/// The summary JSON each rank prints last on stderr.
fn summary(o: &Output) -> Value {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err.lines().rev().find(|l| l.contains("{\"steps\"")).expect("a summary line");
    serde_json::from_str(&line[line.find('{').unwrap()..]).unwrap()
}

fn weights(job: &Job) -> std::collections::BTreeMap<String, Tensor> {
    checkpoint::read_safetensors(&job.out_dir.join("model/model.safetensors")).unwrap()
}

/// Every weight within rtol 1e-5 (atol 1e-7 for weights near zero), as the torch comparison.
fn assert_close(got: &Job, want: &Job, what: &str) {
    let (g, w) = (weights(got), weights(want));
    assert_eq!(g.keys().collect::<Vec<_>>(), w.keys().collect::<Vec<_>>());
    let mut worst = 0f64;
    for (name, w) in &w {
        let g = &g[name];
        let excess = ((g - w).abs() - w.abs() * 1e-5 - 1e-7).max().double_value(&[]);
        assert!(
            excess <= 0.0,
            "{what}: `{name}` differs from the single-process run by {excess:e} beyond tolerance"
        );
        worst = worst.max(common::max_abs_diff(g, w) / w.abs().max().double_value(&[]));
    }
    println!("{what}: worst max|Δw|/max|w| vs one process {worst:.2e}");
}

fn losses(job: &Job) -> Vec<f64> {
    std::fs::read_to_string(job.out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["loss"].as_f64().unwrap())
        .collect()
}

/// The single-process run with the global batch (2 × 2 per device) in this process.
fn reference(t: &Path) -> Job {
    let j = job(t, "single", params(4, 1, None));
    let s = train::run_pretrain(&j, &mut |_| {}).unwrap();
    assert_eq!(s.steps, 4);
    j
}

fn check_against(got: &Job, want: &Job, what: &str) {
    assert_close(got, want, what);
    let (a, b) = (losses(got), losses(want));
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-5 * y.abs(), "{what}: loss {x} vs one process {y}");
    }
}

#[test]
fn ddp_two_ranks_equal_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    tokens(&t.join("tokens"));
    let want = reference(t);
    let ddp = job(t, "ddp", params(2, 2, Some(Strategy::Ddp)));
    let outs = run_ok(&ddp, 2);
    check_against(&ddp, &want, "DDP world 2");
    // Only rank 0 reports progress; rank 1 logs with its rank.
    let (out0, out1) = (String::from_utf8_lossy(&outs[0].stdout), String::from_utf8_lossy(&outs[1].stdout));
    assert!(out0.contains("camel-progress: 4/4"), "{out0}");
    assert!(!out1.contains("camel-progress"), "{out1}");
    assert!(String::from_utf8_lossy(&outs[1].stderr).contains("[rank 1] "));
}

#[test]
fn fsdp_equals_one_process_halves_state_and_resumes_after_a_rank_dies() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    tokens(&t.join("tokens"));
    let want = reference(t);

    // World 1 (a process group of one) and world 2, uninterrupted.
    let one = job(t, "fsdp1", params(4, 1, Some(Strategy::Fsdp)));
    let s1 = summary(&run_ok(&one, 1)[0]);
    check_against(&one, &want, "FSDP world 1");
    let two = job(t, "fsdp2", params(2, 2, Some(Strategy::Fsdp)));
    let outs = run_ok(&two, 2);
    check_against(&two, &want, "FSDP world 2");

    // Parameters + gradients + AdamW moments per rank: half of world 1's, up to the padding of
    // each of the 3 units to an even length (16 bytes per padded element).
    let b1 = s1["state_bytes"].as_u64().unwrap();
    for o in &outs {
        let b2 = summary(o)["state_bytes"].as_u64().unwrap();
        println!("FSDP state bytes per rank: world 1 {b1}, world 2 {b2}");
        assert!(b2 * 2 >= b1 && b2 * 2 <= b1 + 3 * 16 * 2, "world 2 holds {b2} bytes, world 1 {b1}");
    }

    // Rank 1 dies in step 3 (after the checkpoint of step 2): rank 0 fails with its rank and a
    // collective's error, well within the timeout, instead of hanging.
    let killed = job(t, "fsdp-killed", params(2, 2, Some(Strategy::Fsdp)));
    let t0 = Instant::now();
    let outs = wait_all(spawn(&killed, 2, Some("1:3")));
    let waited = t0.elapsed();
    assert!(!outs[1].status.success());
    assert!(!outs[0].status.success(), "rank 0 finished although rank 1 died");
    let err0 = String::from_utf8_lossy(&outs[0].stderr);
    println!("rank 0 after rank 1 died ({:.1} s): {}", waited.as_secs_f64(), err0.lines().last().unwrap());
    assert!(err0.contains("camel-torch-worker: error: [rank 0] "), "{err0}");
    assert!(waited < Duration::from_secs(60), "rank 0 took {waited:?} to notice");
    assert!(killed.scratch_dir.join("checkpoints/step-2/rank-1-of-2.safetensors").is_file());
    assert!(!killed.out_dir.join("model").exists());

    // The rerun resumes at step 2 and ends where the uninterrupted run did.
    let outs = run_ok(&killed, 2);
    assert!(String::from_utf8_lossy(&outs[0].stderr).contains("resuming from the checkpoint at step 2"));
    let (a, b) = (weights(&killed), weights(&two));
    for (name, w) in &b {
        assert!(a[name].equal(w), "`{name}` differs after the resume");
    }
    assert_eq!(losses(&killed), losses(&two));
}

/// FSDP's prefetch (all-gathers started ahead, reduce-scatters left in flight) changes when the
/// collectives run, never what they compute: 0 (every collective waited for at once), 1 and 3
/// layers ahead end at the same weights, bit for bit, with the same losses. The gathered
/// parameters and gradient buffers a rank holds at once stay within the units computing plus
/// `prefetch` gathered ahead and `prefetch` gradient buffers in flight, well under the whole
/// model's with 6 layers.
#[test]
fn fsdp_prefetch_overlaps_without_changing_results_and_bounds_the_gathered_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    tokens(&t.join("tokens"));
    let (hidden, inter, vocab, layers) = (32i64, 64i64, 97i64, 6i64);
    let run = |prefetch: usize| {
        let mut p = params(2, 2, Some(Strategy::Fsdp));
        p.config = Some(json!({"vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
            "num_hidden_layers": layers, "num_attention_heads": 4, "num_key_value_heads": 2,
            "tie_word_embeddings": false}));
        p.distributed.as_mut().unwrap().prefetch = prefetch;
        let j = job(t, &format!("prefetch{prefetch}"), p);
        let outs = run_ok(&j, 2);
        let held: Vec<u64> = outs.iter().map(|o| summary(o)["held_peak_bytes"].as_u64().unwrap()).collect();
        (j, held)
    };
    let (off, held_off) = run(0);
    // fp32 on the CPU; each unit padded to a multiple of the world size (2).
    let pad = |n: i64| ((n + 1) / 2 * 2) as u64;
    let layer = pad(2 * hidden + 2 * hidden * hidden + 2 * hidden * 16 + 3 * hidden * inter);
    let root = pad(2 * vocab * hidden + hidden);
    let bound = |prefetch: u64| {
        // Gathered (4 bytes each): the root, the layer computing and `prefetch` ahead (the
        // backward's first layer may be gathered while the forward's last is still installed);
        // in flight: `prefetch` layer gradients or, at a step's end, the root's, each the flat
        // fp32 gradient plus its shard.
        let in_flight = prefetch.max(1) * (layer + layer / 2).max(root + root / 2);
        4 * (root + (1 + prefetch) * layer) + 4 * in_flight
    };
    let whole = 4 * (root + layers as u64 * layer);
    for prefetch in [1usize, 3] {
        let (on, held_on) = run(prefetch);
        let (a, b) = (weights(&on), weights(&off));
        for (name, w) in &b {
            assert!(a[name].equal(w), "prefetch {prefetch}: `{name}` differs from prefetch 0");
        }
        assert_eq!(losses(&on), losses(&off), "prefetch {prefetch}");
        println!(
            "held at once per rank: prefetch 0 {held_off:?} bytes, prefetch {prefetch} {held_on:?} \
             (bound {}, the whole model gathered {whole})",
            bound(prefetch as u64)
        );
        for &h in &held_on {
            assert!(h <= bound(prefetch as u64), "prefetch {prefetch}: {h} bytes held at once");
            assert!(h > held_off[0], "prefetch {prefetch} held no more than prefetch 0: nothing ran ahead");
        }
    }
    for &h in &held_off {
        assert!(h <= bound(0), "prefetch 0: {h} bytes held at once");
    }
    assert!(bound(1) < whole, "the bound tests nothing: {} vs {whole}", bound(1));
}

#[test]
fn ddp_rank_dying_fails_its_peer_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    tokens(&t.join("tokens"));
    let j = job(t, "ddp-killed", params(2, 2, Some(Strategy::Ddp)));
    let t0 = Instant::now();
    let outs = wait_all(spawn(&j, 2, Some("1:2")));
    assert!(!outs[0].status.success() && !outs[1].status.success());
    let err0 = String::from_utf8_lossy(&outs[0].stderr);
    assert!(err0.contains("camel-torch-worker: error: [rank 0] "), "{err0}");
    assert!(err0.contains("all-reducing gradients") || err0.contains("summing"), "{err0}");
    assert!(t0.elapsed() < Duration::from_secs(60));
}

#[test]
fn distributed_params_are_checked() {
    let bad: Result<TrainParams, _> =
        serde_json::from_value(json!({"distributed": {"strategy": "zero3", "nproc_per_node": 2}}));
    assert!(bad.is_err());
    let bad: Result<TrainParams, _> = serde_json::from_value(json!({"distributed": {"nprocs": 2}}));
    assert!(bad.is_err());
    let ok: TrainParams =
        serde_json::from_value(json!({"distributed": {"strategy": "fsdp", "nproc_per_node": 8}})).unwrap();
    assert_eq!(
        ok.distributed,
        Some(DistParams {
            strategy: Strategy::Fsdp,
            backend: BackendChoice::Auto,
            nproc_per_node: 8,
            timeout_s: 1800,
            prefetch: 1,
        })
    );
    // Single-process params serialize as before (no `distributed` key).
    assert!(serde_json::to_value(TrainParams::default()).unwrap().get("distributed").is_none());
    let _ = PathBuf::new();
}

/// 17 blocks of 16 ids: with `eval_fraction: 0.25`, 5 are held out and 12 train (3 global
/// micro-batches of 4 per epoch, so the training steps are the same at world 1 and 2).
fn tokens_17(dir: &Path, blocks: &[usize]) -> Vec<Vec<i64>> {
    let all = common::ids(17 * 16, 97, 11);
    let kept: Vec<i64> = blocks.iter().flat_map(|&b| all[b * 16..(b + 1) * 16].to_vec()).collect();
    common::write_tokens(dir, &kept, 16, None);
    kept.chunks(16).map(<[i64]>::to_vec).collect()
}

fn metric_lines(job: &Job) -> Vec<Value> {
    let text = std::fs::read_to_string(job.out_dir.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Held-out evaluation (issue 17): the held-out blocks are never trained on (the run ends at the
/// weights of a run on a token file without them), the reported loss is the token mean of the
/// saved model's loss over them, and 2 ranks (DDP and FSDP, where the last held-out batch leaves
/// rank 1 without an example) report the loss of 1 process.
#[test]
fn held_out_loss_is_the_token_mean_over_the_held_out_blocks_at_any_world_size() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (train_idx, eval_idx) = camel_torch_worker::eval::split(17, 0.25, 3).unwrap();
    assert_eq!((train_idx.len(), eval_idx.len()), (12, 5));
    tokens_17(&t.join("tokens"), &(0..17).collect::<Vec<_>>());
    let held_out = tokens_17(&t.join("held-out"), &eval_idx);
    let with_eval = |per_device, world, dist| TrainParams {
        eval_fraction: 0.25,
        eval_every: 2,
        ..params(per_device, world, dist)
    };
    let one = job(t, "eval1", with_eval(4, 1, None));
    let s = train::run_pretrain(&one, &mut |_| {}).unwrap();
    let lines = metric_lines(&one);
    let evals: Vec<&Value> = lines.iter().filter(|l| l.get("eval_loss").is_some()).collect();
    assert_eq!(lines.len() as u64, s.steps);
    let every_second: Vec<u64> = (1..=s.steps).filter(|k| k % 2 == 0 || *k == s.steps).collect();
    assert_eq!(evals.iter().map(|l| l["step"].as_u64().unwrap()).collect::<Vec<_>>(), every_second);
    let last = evals.last().unwrap();
    assert_eq!(last["eval_tokens"], 5 * 15);
    let eval_loss = last["eval_loss"].as_f64().unwrap();
    assert!((last["eval_perplexity"].as_f64().unwrap() - eval_loss.exp()).abs() < 1e-9);
    assert_eq!(s.eval_loss, Some(eval_loss));

    // The saved model's mean token loss over the held-out blocks.
    let model = checkpoint::load(&one.out_dir.join("model"), tch::Device::Cpu, tch::Kind::Float).unwrap();
    let flat: Vec<i64> = held_out.concat();
    let ids = Tensor::from_slice(&flat).view([5, 16]);
    let want = tch::no_grad(|| camel_torch_worker::model::causal_lm_loss(&model.forward(&ids), &ids))
        .double_value(&[]);
    assert!((eval_loss - want).abs() <= 1e-6 * want, "held-out loss {eval_loss} vs the saved model's {want}");

    // Never trained on: the same weights as training on a file of the other 12 blocks alone.
    let mut only = job(t, "train-only", params(4, 1, None));
    tokens_17(&t.join("train-only-tokens"), &train_idx);
    only.tokens = Some(t.join("train-only-tokens"));
    train::run_pretrain(&only, &mut |_| {}).unwrap();
    let (a, b) = (weights(&one), weights(&only));
    for (name, w) in &b {
        assert!(a[name].equal(w), "`{name}` differs: the held-out blocks changed training");
    }

    for (name, strategy) in [("eval-ddp", Strategy::Ddp), ("eval-fsdp", Strategy::Fsdp)] {
        let two = job(t, name, with_eval(2, 2, Some(strategy)));
        run_ok(&two, 2);
        let got: Vec<(u64, f64)> = metric_lines(&two)
            .iter()
            .filter_map(|l| Some((l["step"].as_u64()?, l.get("eval_loss")?.as_f64()?)))
            .collect();
        let want: Vec<(u64, f64)> =
            evals.iter().map(|l| (l["step"].as_u64().unwrap(), l["eval_loss"].as_f64().unwrap())).collect();
        assert_eq!(got.len(), want.len());
        for ((s1, x), (s2, y)) in got.iter().zip(&want) {
            assert_eq!(s1, s2);
            assert!((x - y).abs() <= 1e-5 * y, "{name}: held-out loss {x} at step {s1}, one process {y}");
        }
    }
}
