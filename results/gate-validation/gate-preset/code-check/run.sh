# The validated revision (2ccb293, whose quick preset had the gate preset's settings) and this
# checkout, four sweeps each in turns, of eca, se, cbam and gct at 64 and 256 channels.
# Run from the repository root: bash results/gate-validation/gate-preset/code-check/run.sh OUT
set -e
OUT=$(realpath -m "$1")
OPTS="--variants eca,se,cbam,gct --channels 64,256 --quiet"
git worktree add --detach "$OUT/old-tree" 2ccb293 -q
trap 'git worktree remove --force "$OUT/old-tree"' EXIT
for i in 1 2 3 4; do
  (cd "$OUT/old-tree" && python -m bench run --preset quick $OPTS --out "$OUT/old/run-$i" >/dev/null)
  python -m bench run --preset gate $OPTS --out "$OUT/new/run-$i" >/dev/null
  echo "pair $i done"
done
python results/gate-validation/gate-preset/code-check/compare.py "$OUT"
