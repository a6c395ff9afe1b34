"""transformers/torch reference for camel's LLaMA (issue 6), run from the project venv by the
Rust tests in stages/torch-worker/tests/. Every expected number comes from here.

  make DIR [--tied] [--dtype float32|bfloat16|float16] [--shard-bytes N] [--seed S] [--vocab V]
      a tiny random LlamaForCausalLM with grouped-query attention, saved with save_pretrained
  logits DIR IDS_JSON OUT            logits (fp32) and the causal-LM loss of ids (labels: ids,
                                     with positions where the JSON's "ignore" is 1 set to -100)
  train DIR TOKENS_DIR OUT PARAMS_JSON  HF-Trainer-equivalent steps of AdamW + cosine warmup
                                     (the loss normalised as the params' loss_normalization)
  trainer DIR TOKENS_DIR OUT PARAMS_JSON  the same run through transformers' Trainer (per-step
                                     loss, grad_norm and epoch as it logs them, the examples its
                                     data loader read, and the final weights)
  generate DIR IDS_JSON MAX_NEW OUT   greedy generate (left-padded batch; eos: the JSON's "eos_id",
                                     else the checkpoint's generation config)
  bench DIR THREADS BATCH SEQ STEPS GEN_TOKENS   training and greedy-generation tokens/s
  alpaca_resize DIR NEW NUM_NEW OUT  Alpaca's smart_tokenizer_and_embedding_resize: resize_token_embeddings(NEW),
                                     the last NUM_NEW rows set to the mean of the others (embedding, head)
  sft TOKENIZER_JSON RECORDS_JSON MAX_LENGTH OUT
      Stanford Alpaca's preprocessing (train.py: PROMPT_DICT, eos appended as text, prompt
      tokens masked, truncation) with a transformers fast tokenizer and [PAD] added
"""

import json
import math
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, get_cosine_schedule_with_warmup


def opt(args, name, default=None, flag=False):
    if name in args:
        i = args.index(name)
        if flag:
            args.pop(i)
            return True
        v = args[i + 1]
        del args[i : i + 2]
        return v
    return False if flag else default


def make(args):
    tied = opt(args, "--tied", flag=True)
    bench = opt(args, "--bench", flag=True)
    dtype = opt(args, "--dtype", "float32")
    shard = opt(args, "--shard-bytes")
    seed = int(opt(args, "--seed", "0"))
    vocab = int(opt(args, "--vocab", "96"))
    rope = opt(args, "--rope", "default")
    (out,) = args
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=10000.0,
        rope_scaling={
            "default": None,
            "linear": {"rope_type": "linear", "factor": 4.0},
            "llama3": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 16},
        }[rope],
        rms_norm_eps=1e-5,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=2,
    )
    if bench:
        # The benchmark's tiny-but-real config (issue 6): 4 layers, hidden 256, LLaMA's vocabulary.
        cfg = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512,
                          bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    # Random norm weights too, so that a wrong RMSNorm cannot hide behind ones.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)
    model = model.to(getattr(torch, dtype))
    kw = {"max_shard_size": int(shard)} if shard else {}
    model.save_pretrained(out, **kw)


def load(d):
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
    m.eval()
    return m


def logits(args):
    d, ids_json, out = args
    spec = json.load(open(ids_json))
    ids = torch.tensor(spec["ids"], dtype=torch.long)
    labels = ids.clone()
    if "ignore" in spec:
        labels[torch.tensor(spec["ignore"], dtype=torch.bool)] = -100
    m = load(d)
    with torch.no_grad():
        o = m(input_ids=ids, labels=labels)
    save_file({"logits": o.logits.float().contiguous(), "loss": o.loss.float().reshape(1)}, out)


def read_tokens(d):
    meta = json.load(open(f"{d}/meta.json"))
    dt = {"u16": np.uint16, "u32": np.uint32}[meta["dtype"]]
    a = np.fromfile(f"{d}/tokens.bin", dtype=dt).astype(np.int64)
    return meta, torch.from_numpy(a.reshape(meta["blocks"], meta["block_size"]))


def train(args):
    d, tokens, out, params_json = args
    p = json.load(open(params_json))
    torch.manual_seed(0)
    meta, blocks = read_tokens(tokens)
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
    m.train()
    old = m.config.vocab_size
    if meta["vocab_size"] > old:
        # Alpaca's smart_tokenizer_and_embedding_resize: new rows = mean of the old ones.
        m.resize_token_embeddings(meta["vocab_size"], mean_resizing=False)
        n = meta["vocab_size"] - old
        with torch.no_grad():
            for w in {id(x): x for x in [m.get_input_embeddings().weight, m.get_output_embeddings().weight]}.values():
                w[-n:] = w[:-n].mean(dim=0, keepdim=True)
    B, A = p["batch_size"], p["grad_accum"]
    n_batches = math.ceil(len(blocks) / B)
    # transformers 5's Trainer: an epoch's batches cut into steps of A, the last one taking the
    # batches left (no accumulation crosses an epoch), ceil(epochs × steps per epoch) steps.
    per_epoch = math.ceil(n_batches / A)
    T = math.ceil(p["epochs"] * per_epoch)
    W = math.ceil(T * p["warmup_ratio"])
    # HF Trainer's parameter groups: no weight decay for norm weights (and biases).
    decay = [q for n, q in m.named_parameters() if "norm" not in n and "bias" not in n]
    no_decay = [q for n, q in m.named_parameters() if not ("norm" not in n and "bias" not in n)]
    optim = torch.optim.AdamW(
        [{"params": decay, "weight_decay": p["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=p["lr"],
        betas=(p["adam_beta1"], p["adam_beta2"]),
        eps=p["adam_eps"],
        fused=p["optim"] == "adamw_torch_fused",
    )
    sched = get_cosine_schedule_with_warmup(optim, W, T)
    ignore = set(meta["ignore_ids"]) if p["mask_ids"] else set()
    # camel's default (`global_tokens`, left out of the params at its default) divides the step's
    # summed token losses by its label tokens, as transformers' num_items_in_batch; `camel` takes
    # each micro-batch's token mean over the accumulation steps, as transformers < 4.46 did.
    global_tokens = p.get("loss_normalization", "global_tokens") == "global_tokens"
    log = []
    steps = min(T, p.get("max_steps") or T)
    for s in range(steps):
        lr = optim.param_groups[0]["lr"]
        micro = []
        # Sequential batches (shuffle: false); step s is step s % per_epoch of its epoch.
        first = (s % per_epoch) * A
        for mb in range(first, min(first + A, n_batches)):
            ids = blocks[mb * B : (mb + 1) * B]
            labels = ids.clone()
            for i in ignore:
                labels[ids == i] = -100
            micro.append((ids, labels))
        n = sum(int(labels[:, 1:].ne(-100).sum()) for _, labels in micro)
        tot = 0.0
        for ids, labels in micro:
            if global_tokens:
                loss = m(input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(n)).loss
                loss.backward()
                tot += loss.item()
            else:
                # Over the step's micro-batches (Trainer's current_gradient_accumulation_steps).
                loss = m(input_ids=ids, labels=labels).loss
                (loss / len(micro)).backward()
                tot += loss.item() / len(micro)
        gn = torch.nn.utils.clip_grad_norm_(m.parameters(), p["max_grad_norm"]).item()
        optim.step()
        sched.step()
        optim.zero_grad()
        epoch = s // per_epoch + (first + len(micro)) / n_batches
        log.append({"step": s + 1, "loss": tot, "lr": lr, "grad_norm": gn, "epoch": epoch})
    state = {k: v.detach().float().contiguous() for k, v in m.state_dict().items()}
    if m.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, out)
    json.dump({"log": log, "total_steps": T, "warmup_steps": W}, open(out + ".json", "w"))


def trainer(args):
    """The `train` run through transformers' Trainer itself (sequential batches, the dataset's
    labels masked by a collator, logging every step), for the default loss normalisation:
    Trainer divides by the label tokens of the global batch (num_items_in_batch)."""
    from transformers import Trainer, TrainingArguments

    d, tokens, out, params_json = args
    p = json.load(open(params_json))
    meta, blocks = read_tokens(tokens)
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
    assert meta["vocab_size"] == m.config.vocab_size, "make the base with the token file's vocabulary"
    ignore = set(meta["ignore_ids"]) if p["mask_ids"] else set()

    seen = []  # the examples the data loader read, in order

    class Blocks(torch.utils.data.Dataset):
        def __len__(self):
            return len(blocks)

        def __getitem__(self, i):
            seen.append(int(i))
            return {"input_ids": blocks[i]}

    def collate(rows):
        ids = torch.stack([r["input_ids"] for r in rows])
        labels = ids.clone()
        for i in ignore:
            labels[ids == i] = -100
        return {"input_ids": ids, "labels": labels}

    B, A = p["batch_size"], p["grad_accum"]
    # Trainer's own step count (asserted below), for the warmup steps.
    T = math.ceil(p["epochs"] * math.ceil(math.ceil(len(blocks) / B) / A))
    targs = TrainingArguments(
        output_dir=out + ".trainer",
        per_device_train_batch_size=B,
        gradient_accumulation_steps=A,
        num_train_epochs=p["epochs"],
        learning_rate=p["lr"],
        weight_decay=p["weight_decay"],
        adam_beta1=p["adam_beta1"],
        adam_beta2=p["adam_beta2"],
        adam_epsilon=p["adam_eps"],
        max_grad_norm=p["max_grad_norm"],
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(T * p["warmup_ratio"]),
        optim=p["optim"],
        seed=p["seed"],
        train_sampling_strategy="random" if p["shuffle"] else "sequential",
        average_tokens_across_devices=True,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    t = Trainer(model=m, args=targs, train_dataset=Blocks(), data_collator=collate)
    t.train()
    assert t.state.max_steps == T, (t.state.max_steps, T)
    log = [{"step": h["step"], "loss": h["loss"], "grad_norm": float(h["grad_norm"]), "epoch": h["epoch"]}
           for h in t.state.log_history if "loss" in h]
    state = {k: v.detach().float().contiguous() for k, v in m.state_dict().items()}
    if m.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, out)
    json.dump({"log": log, "total_steps": t.state.max_steps, "examples_seen": seen,
               "accepts_loss_kwargs": bool(t.model_accepts_loss_kwargs)}, open(out + ".json", "w"))


def generate(args):
    d, ids_json, max_new, out = args
    spec = json.load(open(ids_json))
    m = load(d)
    pad = spec.get("pad_id", 0)
    rows = spec["prompts"]
    L = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (L - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (L - len(r)) + [1] * len(r) for r in rows])
    # Without "eos_id" in the spec, the eos ids are the checkpoint's (its generation_config.json).
    kw = {"eos_token_id": spec["eos_id"]} if "eos_id" in spec else {}
    # Sampling: the spec's settings as generate's arguments (top_k unset: generate's own default),
    # seeded as camel seeds it, right before decoding.
    for key in ("temperature", "top_k", "top_p"):
        if key in spec:
            kw[key] = spec[key]
    if spec.get("do_sample"):
        torch.manual_seed(int(spec["seed"]))
    with torch.no_grad():
        g = m.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=int(max_new),
            do_sample=bool(spec.get("do_sample", False)),
            num_beams=int(spec.get("num_beams", 1)),
            pad_token_id=pad,
            **kw,
        )
    json.dump({"tokens": g[:, L:].tolist()}, open(out, "w"))


def alpaca_resize(args):
    # Stanford Alpaca's smart_tokenizer_and_embedding_resize after num_new special tokens were added.
    d, new, num_new, out = args
    m = load(d)
    m.resize_token_embeddings(int(new))
    n = int(num_new)
    ie = m.get_input_embeddings().weight.data
    oe = m.get_output_embeddings().weight.data
    if n > 0:
        ie[-n:] = ie[:-n].mean(dim=0, keepdim=True)
        oe[-n:] = oe[:-n].mean(dim=0, keepdim=True)
    save_file({"embed": ie.float().contiguous(), "head": oe.float().contiguous()}, out)


def bench(args):
    """Training tokens/s (HF forward + loss + backward + clip + torch AdamW) and greedy
    generation tokens/s (HF generate), as JSON on stdout."""
    import time

    d, threads, batch, seq, steps, gen_tokens = args
    torch.set_num_threads(int(threads))
    batch, seq, steps, gen_tokens = int(batch), int(seq), int(steps), int(gen_tokens)
    m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
    m.train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, m.config.vocab_size, (batch, seq), generator=g)

    def step():
        loss = m(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    step()  # warm-up
    t = time.perf_counter()
    best = float("inf")
    for _ in range(steps):
        s = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - s)
    train_tps = steps * batch * seq / (time.perf_counter() - t)
    m.eval()
    prompt = ids[:1, :32]
    with torch.no_grad():
        m.generate(input_ids=prompt, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
        t = time.perf_counter()
        m.generate(input_ids=prompt, max_new_tokens=gen_tokens, min_new_tokens=gen_tokens, do_sample=False,
                   eos_token_id=None, pad_token_id=0)
        gen_tps = gen_tokens / (time.perf_counter() - t)
    print(json.dumps({"train_tokens_per_s": train_tps, "train_best_tokens_per_s": batch * seq / best,
                      "generate_tokens_per_s": gen_tps}))


PROMPT_DICT = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}


def sft(args):
    from transformers import PreTrainedTokenizerFast

    tok_path, records_path, max_length, out = args
    max_length = int(max_length)
    tok = PreTrainedTokenizerFast(tokenizer_file=tok_path, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.add_special_tokens({"pad_token": "[PAD]"})
    records = json.load(open(records_path))
    rows = []
    for ex in records:
        if ex.get("input", "") != "":
            source = PROMPT_DICT["prompt_input"].format_map(ex)
        else:
            source = PROMPT_DICT["prompt_no_input"].format_map(ex)
        full = source + ex["output"] + tok.eos_token
        ids = tok(full, max_length=max_length, truncation=True).input_ids
        src_len = len(tok(source, max_length=max_length, truncation=True).input_ids)
        labels = list(ids)
        labels[:src_len] = [-100] * min(src_len, len(labels))
        rows.append({"ids": ids, "labels": labels})
    json.dump({"examples": rows, "pad_id": tok.pad_token_id, "vocab": len(tok)}, open(out, "w"))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    {"make": make, "logits": logits, "train": train, "trainer": trainer, "generate": generate, "sft": sft,
     "bench": bench, "alpaca_resize": alpaca_resize}[cmd](rest)
