"""Stand-in for the `notes` stage (issue 3) until it lands: MIMIC-III NOTEEVENTS.csv -> corpus.parquet.

Writes the corpus format of camel-corpus (columns source, id, category, text; one row per note,
in file order) with pyarrow from the project's venv. Usage: to_corpus.py NOTEEVENTS.csv OUT.parquet
"""

import csv
import sys

import pyarrow as pa
import pyarrow.parquet as pq

csv.field_size_limit(1 << 30)
rows = {"source": [], "id": [], "category": [], "text": []}
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for r in csv.DictReader(f):
        rows["source"].append("mimic3")
        rows["id"].append(r["ROW_ID"])
        rows["category"].append(r["CATEGORY"].strip())
        rows["text"].append(r["TEXT"])
schema = pa.schema(
    [("source", pa.string(), False), ("id", pa.string()), ("category", pa.string()), ("text", pa.string(), False)]
)
pq.write_table(pa.table(rows, schema=schema), sys.argv[2])
