"""Reference for `kind: tokenize`: CAMEL's tokenization and packing with the Python `tokenizers`
package, written independently of camel's Rust code (only the permutation is shared, as a spec:
Fisher-Yates over SplitMix64, see `permutation` below and stages/src/tokenize/pack.rs).

    python tokenize_reference.py CORPUS TOKENIZER OUT_TOKENS [--block-size 2048] [--layout camel|clean]
        [--shuffle --seed N] [--check-parquet blocks.parquet] [--check-tokenizer tokenizer.json]

Writes the packed blocks to OUT_TOKENS (flat little-endian, u16 when the vocabulary fits) and prints
one JSON line: blocks, tokens_total, tokens_dropped, notes, vocab_size, dtype, bos/eos/anon ids,
anon_replaced, seconds (encode + pack), and the results of the optional checks of camel's outputs.
"""

import argparse
import json
import sys
import time

import numpy as np
import pyarrow.parquet as pq
from tokenizers import Tokenizer

MASK = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return state, z ^ (z >> 31)


def permutation(n, seed):
    """Fisher-Yates from the end: j = (x * (i + 1)) >> 64 for the next SplitMix64 output x."""
    perm = list(range(n))
    state = seed
    for i in range(n - 1, 0, -1):
        state, x = splitmix64(state)
        j = (x * (i + 1)) >> 64
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--block-size", type=int, default=2048)
    ap.add_argument("--layout", choices=["camel", "clean"], default="camel")
    ap.add_argument("--shuffle", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2048, help="notes per encode_batch call")
    ap.add_argument("--check-parquet")
    ap.add_argument("--check-tokenizer")
    a = ap.parse_args()

    tok = Tokenizer.from_file(a.tokenizer)
    tok.add_special_tokens(["[ANON]"])
    bos, eos, anon = tok.token_to_id("<s>"), tok.token_to_id("</s>"), tok.token_to_id("[ANON]")
    vocab_size = max(tok.get_vocab_size(with_added_tokens=True), max(tok.get_vocab(True).values()) + 1)
    dtype = np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")

    texts = pq.read_table(a.corpus, columns=["text"]).column("text").to_pylist()
    t0 = time.perf_counter()
    order = permutation(len(texts), a.seed) if a.shuffle else range(len(texts))
    anon_replaced = 0
    parts = [np.array([bos], dtype)] if a.layout == "camel" else []
    sep = np.array([eos, bos] if a.layout == "camel" else [eos], dtype)
    order = list(order)
    for k in range(0, len(order), a.batch):
        batch = [texts[i] for i in order[k : k + a.batch]]
        anon_replaced += sum(t.count("___") for t in batch)
        for enc in tok.encode_batch([t.replace("___", "[ANON]") for t in batch]):
            parts.append(np.asarray(enc.ids, dtype))
            parts.append(sep)
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype)
    total = len(stream)
    blocks = total // a.block_size
    stream[: blocks * a.block_size].tofile(a.out)
    seconds = time.perf_counter() - t0

    out = {
        "blocks": blocks,
        "tokens_total": total,
        "tokens_dropped": total - blocks * a.block_size,
        "notes": len(texts),
        "vocab_size": vocab_size,
        "dtype": "u16" if dtype.itemsize == 2 else "u32",
        "bos_id": bos,
        "eos_id": eos,
        "anon_id": anon,
        "anon_replaced": anon_replaced,
        "seconds": seconds,
    }
    if a.check_parquet:
        table = pq.read_table(a.check_parquet)
        rows = table.column("input_ids").to_pylist()
        flat = np.array([x for r in rows for x in r], dtype)
        out["parquet_rows"] = len(rows)
        out["parquet_type"] = str(table.schema.field("input_ids").type)
        out["parquet_equal"] = bool(
            all(len(r) == a.block_size for r in rows) and np.array_equal(flat, stream[: blocks * a.block_size])
        )
    if a.check_tokenizer:
        camel_tok = Tokenizer.from_file(a.check_tokenizer)
        probe = [t.replace("___", "[ANON]") for t in texts[:200]]
        out["tokenizer_anon_id"] = camel_tok.token_to_id("[ANON]")
        out["tokenizer_same_ids"] = [e.ids for e in camel_tok.encode_batch(probe)] == [
            e.ids for e in tok.encode_batch(probe)
        ]
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
