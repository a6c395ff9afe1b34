#!/usr/bin/env bash
# Writes N synthetic MIMIC-III-shaped notes (ROW_ID,CATEGORY,TEXT; TEXT quoted, multi-line, with
# [** ... **] de-identification marks) to $1. Deterministic for a given N and SEED. A stand-in
# until the notes issue brings `camel synth`.
set -euo pipefail
out=$1 n=${N:-40} seed=${SEED:-1}
awk -v n="$n" -v seed="$seed" 'BEGIN {
  srand(seed);
  split("Discharge summary,Radiology,Nursing,Physician", cats, ",");
  split("aspirin,metoprolol,lisinopril,heparin,furosemide", meds, ",");
  print "ROW_ID,CATEGORY,TEXT";
  for (i = 1; i <= n; i++) {
    c = cats[int(rand() * 4) + 1];
    m = meds[int(rand() * 5) + 1];
    printf "%d,%s,\"Admission Date:  [**2101-%d-%d**]\nName: [**Known lastname %d**], \"\"Pt\"\" reports pain.\nDischarge Medications:\n%s %d mg daily\"\n", i, c, int(rand()*12)+1, int(rand()*28)+1, i, m, int(rand()*90)+10;
  }
}' > "$out"
