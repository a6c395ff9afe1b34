"""MIMIC-IV-Note discharge.csv -> corpus.parquet (source, id, category, text), as the notes stage
writes it. Used by examples/tokenize.yaml until the notes stage is merged."""

import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

src, dst = sys.argv[1], sys.argv[2]
t = pacsv.read_csv(src, read_options=pacsv.ReadOptions(block_size=1 << 26),
                   convert_options=pacsv.ConvertOptions(column_types={"note_id": pa.string(), "text": pa.string()}),
                   parse_options=pacsv.ParseOptions(newlines_in_values=True))
n = t.num_rows
pq.write_table(pa.table({
    "source": pa.array(["mimic4"] * n, pa.string()),
    "id": t.column("note_id"),
    "category": pa.array(["Discharge summary"] * n, pa.string()),
    "text": t.column("text"),
}), dst)
print(f"camel-progress: {n}/{n} notes")
