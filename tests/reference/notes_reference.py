#!/usr/bin/env python3
"""CAMEL's note preprocessing in pandas: the reference the `notes` stage is checked against.

The `mimic3` and `mimic4` commands are CAMEL's pretraining_preprocess/mimiciii_preproc.py and
mimiciv_preproc.py (github.com/starmpcc/CAMEL), with the argument names fixed (the originals read
args that argparse never defines). `--out x.csv` writes what CAMEL wrote (`to_csv`, every column);
`--out x.parquet` writes the texts (and ids) for an exact comparison.

    notes_reference.py mimic3 --notes NOTEEVENTS.csv --filter mimiciii_filter_index.txt --out ref.parquet
    notes_reference.py mimic4 --discharge discharge.csv --radiology radiology.csv --out ref.parquet
    notes_reference.py compare --camel corpus.parquet --reference ref.parquet

`compare` prints one JSON object (counts and the first differing row, never text) and exits 0
when the texts are identical and in the same order, 1 otherwise.
"""

import argparse
import json
import sys

import pandas as pd


def mimic3(args):
    notes = pd.read_csv(args.notes)
    with open(args.filter, "r") as f:
        erase_index = f.readlines()
    erase_index = [int(i) for i in erase_index]

    preprocessed_notes = notes[~notes["ROW_ID"].isin(erase_index)]

    # add category in front of each clinical notes
    preprocessed_notes["TEXT"] = preprocessed_notes.apply(
        lambda row: row["CATEGORY"] + "\n" + row["TEXT"], axis=1
    )
    if args.out.endswith(".parquet"):
        out = pd.DataFrame(
            {"id": preprocessed_notes["ROW_ID"].astype(str), "text": preprocessed_notes["TEXT"]}
        )
        out.to_parquet(args.out, index=False)
    else:
        preprocessed_notes.to_csv(args.out, index=False)
    print(json.dumps({"rows_read": len(notes), "rows_written": len(preprocessed_notes)}))


def mimic4(args):
    discharge_notes = pd.read_csv(args.discharge, usecols=["text"])
    radiology_notes = pd.read_csv(args.radiology, usecols=["text"])

    discharge_notes["text"] = discharge_notes["text"].map(lambda x: "Discharge summary\n" + x)
    radiology_notes["text"] = radiology_notes["text"].map(lambda x: "Radiology\n" + x)

    preprocessed_notes = pd.concat([discharge_notes, radiology_notes])
    if args.out.endswith(".parquet"):
        preprocessed_notes.to_parquet(args.out, index=False)
    else:
        preprocessed_notes.to_csv(args.out, index=False)
    print(json.dumps({"rows_read": len(preprocessed_notes), "rows_written": len(preprocessed_notes)}))


def compare(args):
    camel = pd.read_parquet(args.camel, columns=["text"])["text"].tolist()
    ref = pd.read_parquet(args.reference, columns=["text"])["text"].tolist()
    first = None
    for i, (a, b) in enumerate(zip(camel, ref)):
        if a != b:
            first = i
            break
    if first is None and len(camel) != len(ref):
        first = min(len(camel), len(ref))
    result = {
        "n_camel": len(camel),
        "n_reference": len(ref),
        "identical": first is None,
        "first_difference": first,
    }
    if first is not None and first < min(len(camel), len(ref)):
        # Where the two texts part (an offset, not text).
        a, b = camel[first], ref[first]
        result["offset"] = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        result["lengths"] = [len(a), len(b)]
    print(json.dumps(result))
    return 0 if first is None else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("mimic3")
    a.add_argument("--notes", required=True)
    a.add_argument("--filter", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("mimic4")
    b.add_argument("--discharge", required=True)
    b.add_argument("--radiology", required=True)
    b.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--camel", required=True)
    c.add_argument("--reference", required=True)
    args = p.parse_args()
    if args.cmd == "mimic3":
        mimic3(args)
    elif args.cmd == "mimic4":
        mimic4(args)
    else:
        sys.exit(compare(args))


if __name__ == "__main__":
    main()
