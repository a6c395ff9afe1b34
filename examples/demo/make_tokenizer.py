#!/usr/bin/env python3
"""Makes examples/demo/tokenizer.json: a small LLaMA-shaped tokenizer for the demo.

Same structure as LLaMA's tokenizer.json (BPE with byte fallback, "▁" for spaces, <unk>/<s>/</s> as
ids 0-2, the 256 byte tokens <0x00>..<0xFF> as ids 3-258, bos prepended by the post-processor), but
with a vocabulary of 1,024 pieces learnt from camel's synthetic notes, so that the demo's tiny model
stays tiny. It contains no real clinical text. Regenerate with:

    camel run pipelines/demo.yaml --until mimic4
    .venv/bin/python examples/demo/make_tokenizer.py pipelines/.camel/out/mimic3/NOTEEVENTS.csv \
        pipelines/.camel/out/mimic4/discharge.csv examples/demo/tokenizer.json
"""

import csv
import json
import sys

from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers

VOCAB = 1024
SPECIAL = ["<unk>", "<s>", "</s>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def texts(paths):
    csv.field_size_limit(1 << 30)
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                yield row.get("TEXT") or row.get("text") or ""


def main():
    *inputs, out = sys.argv[1:]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB - len(BYTES), special_tokens=SPECIAL, show_progress=False, limit_alphabet=200
    )
    tok.train_from_iterator(texts(inputs), trainer=trainer)
    spec = json.loads(tok.to_str())

    # LLaMA's id layout: specials, then the byte tokens, then the learnt pieces.
    learnt = sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])
    vocab = {t: i for i, t in enumerate(SPECIAL + BYTES)}
    for piece, _ in learnt:
        if piece not in vocab:
            vocab[piece] = len(vocab)
    spec["model"]["vocab"] = vocab
    spec["model"]["byte_fallback"] = True
    spec["added_tokens"] = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in enumerate(SPECIAL)
    ]
    spec["pre_tokenizer"] = None
    spec["post_processor"] = json.loads(
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]).__getstate__()
    )
    spec["decoder"] = json.loads(
        decoders.Sequence(
            [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        ).__getstate__()
    )
    with open(out, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
        f.write("\n")
    check = Tokenizer.from_file(out)
    ids = check.encode("Patient ___ is a 67 yo née Müller.").ids
    assert ids[0] == 1 and check.get_vocab_size() == len(vocab), (ids, check.get_vocab_size())
    print(f"{out}: {check.get_vocab_size()} pieces")


if __name__ == "__main__":
    main()
