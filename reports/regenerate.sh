#!/usr/bin/env bash
# Regenerates the CPU reports in this folder from these commands, offline, on digits, smoke preset.
# Seeds, and the runs directory the records go to (kept out of the repository):
SEEDS=0,1,2
RUNS=${RUNS:-$HOME/.cache/modbench/reports-runs}
#
# 1. default/      bench run's own grid (simcnn:width=0.25 and vit_s:depth=2,width=0.25) with every built-in method
# 2. alpha-sweep/  nemo's alpha on both models
# 3. thresholds/   mwt's module threshold on both models (one trained model per seed serves every threshold)
# 4. html/         bench report's HTML page of a small grid (standard, mwt, nemo at width 0.125, seeds 0,1) and its
#                  screenshot in headless Chromium (apt-get install chromium chromium-driver; pip install selenium)
set -euo pipefail
cd "$(dirname "$0")"
MODELS="simcnn:width=0.25,vit_s:depth=2,width=0.25"  # the default grid's models

report() {  # report NAME RUNS-SUBFOLDER [compare A,B]
  mkdir -p "$1"
  bench report --runs "$RUNS/$2" --format md --out "$1/table.md" --plots "$1"
  bench report --runs "$RUNS/$2" --format csv --out "$1/table.csv"
  if [ $# -ge 3 ]; then bench report --runs "$RUNS/$2" --compare "$3" --format md --out "$1/compare.md"; fi
}

bench run --methods standard,mwt,nemo,cnnsplitter --seeds "$SEEDS" --out "$RUNS/default" --quiet
report default default mwt,nemo

bench run --methods nemo --models "$MODELS" --seeds "$SEEDS" --tasks 0,1 --tasks 2,3,4 \
  --set nemo.alpha=0.1,0.5,1.3 --out "$RUNS/alpha" --quiet
report alpha-sweep alpha

bench run --methods mwt --models "$MODELS" --seeds "$SEEDS" --tasks 0,1 --tasks 2,3,4 \
  --thresholds 0.5,0.7,0.9 --out "$RUNS/thresholds" --quiet
report thresholds thresholds

bench run --methods standard,mwt,nemo --models "simcnn:width=0.125,vit_s:depth=2,width=0.125" --seeds 0,1 \
  --out "$RUNS/html" --workers 1 --quiet
mkdir -p html
bench report --runs "$RUNS/html" --format html --out html/results.html
python ../tests/browser.py html/results.html html/page.png 1400 1000
