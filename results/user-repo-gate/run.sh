#!/usr/bin/env bash
# bench ab on a user's repository: a block (my_gate) against se and eca, the gate preset's
# settings, two runs per side, --base auto. Commit 2 changes only the README (identical code);
# commit 3 (branch `slower`) adds extra work in the block's forward, an in-place pass over a
# quarter of its channels. Writes identical/ and slower/ (compare.md, runs) beside this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python}"
repo="$(mktemp -d)/my-blocks"
mkdir -p "$repo" && cd "$repo"
git init -q -b main && git config user.email u@example.com && git config user.name User
block() {
cat > my_blocks.py <<PY
import torch
from torch import nn

import attention_variants as av


@av.register("my_gate", paper="a user's channel gate")
class MyGate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))
$1
        return y
PY
}
block "" && echo "my blocks" > README.md && git add -A && git commit -qm "my_gate"
echo "my blocks, documented" > README.md && git commit -qam "docs"
git checkout -q -b slower
block "        y[:, : y.shape[1] // 4].mul_(1.0001)" && git commit -qam "extra work"
sweep=(--plugin my_blocks.py --variants my_gate,se,eca)
git checkout -q main
"$python" -m bench ab --base HEAD~1 --new HEAD "${sweep[@]}" --out "$here/identical" \
    > "$here/identical.log" 2>&1 || echo "identical: exit $?" >> "$here/identical.log"
git checkout -q slower
"$python" -m bench ab --base auto --new HEAD "${sweep[@]}" --out "$here/slower" \
    > "$here/slower.log" 2>&1 || echo "slower: exit $?" >> "$here/slower.log"
