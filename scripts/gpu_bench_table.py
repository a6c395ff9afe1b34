"""Puts scripts/gpu-bench's JSON files (camel's dist_gpu runs and transformers' runs, per config)
into one markdown table on stdout.

usage: gpu_bench_table.py DIR [--peak-tflops X]

MFU = model FLOPs per token × tokens/s ÷ the device's dense bf16 peak (989 TFLOP/s for H100 and
H200 SXM unless --peak-tflops says otherwise). Model FLOPs per token follow torchtitan's
convention (and PaLM's): 6 × the parameters other than the input embedding (a lookup, no
matmul; the output head counts) for the forward and backward matmuls, plus 12 × layers × hidden ×
sequence for attention's two matmuls (not halved for the causal mask). Recomputation under
activation checkpointing is not counted: MFU counts useful work.
"""

import glob
import json
import os
import sys

PEAKS = [("h200", 989.0), ("h100", 989.0), ("a100", 312.0), ("l40s", 362.0)]


def main():
    d = sys.argv[1]
    peak = None
    if "--peak-tflops" in sys.argv:
        peak = float(sys.argv[sys.argv.index("--peak-tflops") + 1])
    camel = {}
    for f in sorted(glob.glob(os.path.join(d, "camel-*.json"))):
        with open(f) as fh:
            c = json.load(fh)
        camel[os.path.basename(f)[len("camel-"):-len(".json")]] = c
    if not camel:
        sys.exit(f"no camel-*.json in {d}")
    first = next(iter(camel.values()))
    device = first["device"]
    if peak is None:
        peak = next((v for k, v in PEAKS if k in device.lower()), None)
    lines = [
        f"Device: {device}; torch {first['torch']}; SDPA backend: "
        + ", ".join(f"{k}: {c['sdpa_backend']}" for k, c in camel.items()),
        f"MFU against {peak} TFLOP/s dense bf16" if peak else "MFU: peak of this device unknown",
        "",
        "| config | run | recompute | step (s) | tokens/s | MFU | peak mem (GiB) | estimate (GiB) | vs transformers, same recompute |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in camel.items():
        n_matmul = c["parameters"] - c["embedding_parameters"]
        flops_per_token = 6 * n_matmul + 12 * c["layers"] * c["hidden"] * c["seq"]
        hf = {}
        for ck in ("off", "on"):
            p = os.path.join(d, f"hf-{name}-{ck}.json")
            if os.path.exists(p):
                with open(p) as fh:
                    hf[ck == "on"] = json.load(fh)
        label = f"{name} ({c['parameters'] / 1e9:.2f}B, {c['layers']} layers, {c['batch']}×{c['seq']})"
        rows = list(c["runs"]) + [hf[k] for k in sorted(hf)]
        for r in rows:
            if r.get("failed"):
                lines.append(f"| {label} | {r['run']} | | FAILED | | | | | |")
                continue
            mfu = f"{100 * flops_per_token * r['tokens_per_s'] / (peak * 1e12):.1f}%" if peak else "n/a"
            gib = lambda b: f"{b / 2**30:.2f}" if b is not None else "n/a"
            ref = hf.get(r["checkpointing"])
            if r.get("implementation") == "transformers" or ref is None:
                ratio = ""
            else:
                ratio = f"{ref['step_s'] / r['step_s']:.2f}× (transformers {ref['step_s']:.3f} s)"
            lines.append(
                f"| {label} | {r['run']} | {'yes' if r['checkpointing'] else 'no'} | {r['step_s']:.3f} | "
                f"{r['tokens_per_s']:.0f} | {mfu} | {gib(r.get('peak_bytes'))} | {gib(r.get('estimate_bytes'))} | {ratio} |"
            )
        fsdp = next((r for r in c["runs"] if r["run"].startswith("FSDP") and not r.get("failed")), None)
        same = next((r for r in c["runs"] if r["run"] == "no FSDP, activation checkpointing" and not r.get("failed")), None)
        if fsdp and same:
            lines.append(
                f"| {label} | FSDP world 1 vs no FSDP, both recomputing | | | | | | | "
                f"FSDP step {fsdp['step_s'] / same['step_s']:.2f}× the non-FSDP one |"
            )
    lines.append("")
    lines.append("Model FLOPs per token: 6 × non-embedding parameters + 12 × layers × hidden × sequence "
                 "(torchtitan's convention); recomputation not counted.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
