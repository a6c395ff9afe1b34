#!/usr/bin/env python3
"""Makes the demo's evaluation set: a small, entirely synthetic stand-in for CAMEL's MTSamples set.

Writes, beside this script:
- eval_instructions.json: a JSON list of {instruction, input, type}, the shape of
  mtsamples_instructions.json (plus the task type, which the `answer` stage carries over);
- eval_references.json: the same rows as columns in pandas' to_json() shape, the shape of
  mtsamples_results.json (`type`, `instruction`, `input`, then answer columns): `reference`
  (templated gold answers) and `lead` (a naive baseline: the note's first sentence).

The notes are short MTSamples-style transcriptions assembled from fixed word lists with a seeded
random generator; nothing comes from real records. Python standard library only. Regenerate with:

    python3 examples/demo/make_eval_set.py
"""

import json
import os
import random

SEED = 7
ROWS = 12

AGES = [34, 45, 52, 61, 67, 72, 79]
SEXES = ["male", "female"]
COMPLAINTS = ["chest pain", "shortness of breath", "abdominal pain", "headache", "low back pain", "cough"]
FINDINGS = ["mild tachycardia", "clear lungs", "epigastric tenderness", "no focal deficits", "paraspinal spasm",
            "scattered wheezes"]
DIAGNOSES = ["gastroesophageal reflux disease", "community-acquired pneumonia", "migraine without aura",
             "lumbar strain", "stable angina", "acute bronchitis"]
DRUGS = [("omeprazole", "20 mg daily"), ("azithromycin", "500 mg daily"), ("sumatriptan", "50 mg as needed"),
         ("ibuprofen", "400 mg three times daily"), ("aspirin", "81 mg daily"), ("albuterol", "2 puffs every 6 hours")]
ABBREVIATIONS = [("BP", "blood pressure"), ("HR", "heart rate"), ("SOB", "shortness of breath"), ("PRN", "as needed")]

TASKS = [
    ("Named Entity Recognition", "List the medications mentioned in the note.",
     lambda n: f"{n['drug']}"),
    ("Text Summarization", "Summarize the note in one sentence.",
     lambda n: f"A {n['age']}-year-old {n['sex']} with {n['complaint']} was diagnosed with {n['dx']} and started on "
               f"{n['drug']}."),
    ("Question Answering", "What is the patient's diagnosis?",
     lambda n: f"The diagnosis is {n['dx']}."),
    ("Temporal Information Extraction", "When did the symptoms start?",
     lambda n: f"The {n['complaint']} started {n['days']} days before the visit."),
    ("Relation Extraction", "Which medication was prescribed for which condition?",
     lambda n: f"{n['drug']} was prescribed for {n['dx']}."),
    ("Abbreviation Expansion", "Expand the abbreviations in the note.",
     lambda n: f"{n['abbr'][0]} means {n['abbr'][1]}."),
    ("Keyword Extraction", "Extract the key clinical terms from the note.",
     lambda n: f"{n['complaint']}, {n['finding']}, {n['dx']}, {n['drug']}"),
    ("Paraphrasing", "Rewrite the assessment in plain language.",
     lambda n: f"The doctor thinks the {n['complaint']} is caused by {n['dx']}."),
    ("Yes/No Question", "Was a medication prescribed? Answer yes or no.",
     lambda n: "Yes."),
    ("Text Classification", "Is this note a clinic visit or a discharge summary?",
     lambda n: "A clinic visit."),
    ("Natural Language Generation", "Write discharge instructions for the patient.",
     lambda n: f"Take {n['drug']} {n['dose']} and return if the {n['complaint']} gets worse."),
    ("Clinical Concept Normalization", "Map the diagnosis to a standard clinical concept name.",
     lambda n: f"{n['dx'].capitalize()}."),
]


def note(rng):
    drug, dose = rng.choice(DRUGS)
    n = {
        "age": rng.choice(AGES), "sex": rng.choice(SEXES), "complaint": rng.choice(COMPLAINTS),
        "finding": rng.choice(FINDINGS), "dx": rng.choice(DIAGNOSES), "drug": drug, "dose": dose,
        "days": rng.randint(1, 14), "abbr": rng.choice(ABBREVIATIONS),
        "bp": f"{rng.randint(110, 150)}/{rng.randint(65, 95)}", "hr": rng.randint(60, 110),
    }
    n["text"] = (
        f"SUBJECTIVE: This {n['age']}-year-old {n['sex']} presents with {n['complaint']} for {n['days']} days. "
        f"OBJECTIVE: {n['abbr'][0]} noted. BP {n['bp']}, HR {n['hr']}. Exam shows {n['finding']}. "
        f"ASSESSMENT: {n['dx'].capitalize()}. PLAN: Start {n['drug']} {n['dose']}. Follow up in two weeks."
    )
    return n


def main():
    rng = random.Random(SEED)
    rows = []
    for i in range(ROWS):
        task, instruction, answer = TASKS[i % len(TASKS)]
        n = note(rng)
        rows.append({"type": task, "instruction": instruction, "input": n["text"], "reference": answer(n),
                     "lead": n["text"].split(". ")[0] + "."})
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "eval_instructions.json"), "w") as f:
        json.dump([{k: r[k] for k in ("instruction", "input", "type")} for r in rows], f, indent=1)
        f.write("\n")
    cols = {c: {str(i): r[c] for i, r in enumerate(rows)} for c in ("type", "instruction", "input", "reference", "lead")}
    with open(os.path.join(here, "eval_references.json"), "w") as f:
        json.dump(cols, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
