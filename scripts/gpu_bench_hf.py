"""transformers' side of scripts/gpu-bench: training steps of LlamaForCausalLM as HF Trainer runs
them with `bf16=True` (fp32 master weights, bf16 autocast), sdpa attention, torch's fused AdamW,
clip_grad_norm_ 1.0, with or without gradient checkpointing; fp32 on the CPU. Random ids, labels =
ids. Writes one JSON object (step time, tokens/s, peak CUDA memory, loss) to --json.

usage: gpu_bench_hf.py --config 1b|7b|tiny [--layers N] --batch B --seq T --steps N
                       --device cuda|cpu --checkpointing on|off --json FILE
Needs only torch and transformers (the device machine's python3 has both).
"""

import argparse
import contextlib
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# The same shapes as the dist_gpu bench's --config.
CONFIGS = {
    "1b": dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
               num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=2048),
    "7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=12,
               num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq", type=int, required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--checkpointing", choices=["on", "off"], required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    kw = dict(CONFIGS[a.config])
    if a.layers:
        kw["num_hidden_layers"] = a.layers
    cfg = LlamaConfig(**kw, tie_word_embeddings=False, rms_norm_eps=1e-5, use_cache=False)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.manual_seed(1)
    # Built on the device: initialising billions of parameters on the CPU would take minutes.
    with dev:
        model = LlamaForCausalLM._from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    model.train()
    if a.checkpointing == "on":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), device=dev)

    # HF Trainer's bf16=True: fp32 weights, the forward under bf16 autocast (on CUDA; fp32 on the CPU).
    autocast = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    def step():
        with autocast():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    loss = step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    s = (time.perf_counter() - t) / max(a.steps, 1)
    out = {
        "implementation": "transformers",
        "run": f"transformers, checkpointing {a.checkpointing}",
        "checkpointing": a.checkpointing == "on",
        "step_s": s,
        "tokens_per_s": a.batch * a.seq / s,
        "peak_bytes": torch.cuda.max_memory_allocated(dev) if cuda else None,
        "loss": loss.item(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
    }
    with open(a.json, "w") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
