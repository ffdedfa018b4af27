# The gate preset's heavier cases (eca, se, cbam and gc at 128 and 256 channels) swept five
# times with two intra-op threads (torch's default on this 2-core machine) and five times with
# one (the preset's), in turns. Run from the repository root:
#   bash results/gate-validation/gate-preset-one-thread/threads-check/run.sh OUT
set -e
OUT=$(realpath -m "$1")
OPTS="--preset gate --variants eca,se,cbam,gc --channels 128,256 --quiet"
for i in 1 2 3 4 5; do
  python -m bench run $OPTS --threads 2 --out "$OUT/two-threads/run-$i" >/dev/null
  python -m bench run $OPTS --threads 1 --out "$OUT/one-thread/run-$i" >/dev/null
  echo "pair $i done"
done
python results/gate-validation/gate-preset-one-thread/threads-check/compare.py "$OUT"
