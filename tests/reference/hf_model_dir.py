"""transformers on a model dir camel wrote (issue 16): what AutoTokenizer and pipeline make of it,
run from the project venv by tests/it/train.rs.

  check DIR [--generate PROMPT]   prints one JSON line: the special tokens and their ids, the ids of
                                  [ANON] and [PAD], a text with [ANON] encoded, a padded batch (when
                                  there is a pad token), and text-generation's output for PROMPT
"""

import json
import sys

from transformers import AutoTokenizer, pipeline


def check(args):
    d, *rest = args
    tok = AutoTokenizer.from_pretrained(d)
    vocab = tok.get_vocab()
    out = {
        "class": type(tok).__name__,
        "bos": tok.bos_token,
        "eos": tok.eos_token,
        "unk": tok.unk_token,
        "pad": tok.pad_token,
        "bos_id": tok.bos_token_id,
        "eos_id": tok.eos_token_id,
        "pad_id": tok.pad_token_id,
        "model_max_length": tok.model_max_length,
        "ids": {t: vocab[t] for t in ["[ANON]", "[PAD]"] if t in vocab},
        "anon_encoded": tok("Seen by Dr. [ANON] today.").input_ids,
    }
    if tok.pad_token is not None:
        b = tok(["Pain.", "Chest pain since this morning, worse on exertion."], padding=True)
        out["padded"] = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}
    if rest and rest[0] == "--generate":
        gen = pipeline("text-generation", model=d, device="cpu")
        r = gen(rest[1], max_new_tokens=5, do_sample=False)
        out["generated"] = r[0]["generated_text"]
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, *rest = sys.argv[1:]
    {"check": check}[cmd](rest)
