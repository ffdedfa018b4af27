"""The named sweeps: data that `build_spec` lays the YAML file and the command line on top of."""

from __future__ import annotations

from typing import Any

# the cases of the quick and gate presets: every variant, 3 channel counts x 3 resolutions
QUICK_GRID: dict[str, Any] = {
    "variants": ["all", "eca_mha(attention_impl=naive)"],
    "channels": [64, 128, 256],
    "resolutions": [14, 28, 56],
    "devices": ["cpu"],
}

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "CPU sweep of every variant: 3 resolutions x 3 channel counts, "
        "infer and train, 3 to 5 rounds each, within an 80 s budget",
        **QUICK_GRID,
        # batch 1: calls half as long as at batch 2 leave the budget room to narrow the
        # intervals of the slow cases (56x56 training, naive attention)
        "batch_sizes": [1],
        "timing": {
            "warmup_s": 0.003,
            "min_time_s": 0.03,
            "max_time_s": 1.0,
            "target_ci": 0.03,
            "min_samples": 5,
            # three passes for every case, what `bench compare` gates well; up to five for
            # the cases whose intervals stay wide, as long as the budget lasts
            "min_rounds": 3,
            "rounds": 5,
            "sweep_budget_s": 80.0,
        },
    },
    "gate": {
        "description": "what bench ab and bench.gate.validate sweep: the quick preset's "
        "cases at batch 2, one intra-op thread, 10 rounds each, no budget (about 5 min on 2 "
        "CPU cores)",
        **QUICK_GRID,
        "batch_sizes": [2],
        # one thread: an op split over every core waits for the slowest, so any stall on any
        # core lands in its time; on 2 shared cores that spread processes 2.3% apart, one 0.8%
        "threads": 1,
        # every case ten rounds of 0.06 s and a 1% target: the settings of the gate's
        # validations (results/gate-validation), kept apart from the quick preset's first
        # impression. Ten, not five: each round is a fresh build whose own state moves the
        # case by several percent on a shared 2-core machine; more of them narrow a run's mean
        "timing": {
            "warmup_s": 0.01,
            "min_time_s": 0.05,
            "max_time_s": 0.6,
            "target_ci": 0.01,
            "min_samples": 5,
            "rounds": 10,
        },
    },
    "gate-simulated": {
        "description": "what bench ab --instrument simulated sweeps: every variant but eca_mha "
        "at 64 and 128 channels, 14x14 and 28x28, batch 2, infer and train, each counted under "
        "valgrind (bench ab runs both sides at once)",
        **QUICK_GRID,
        # under valgrind eca_mha's attention costs 40 s a call at 28x28 and minutes at 56x56, as
        # do the 56x56 and 256-channel cases: the gate preset would take over 20 min a side
        "variants": [
            "cbam",
            "coord",
            "eca",
            "eca_fused",
            "gc",
            "gct",
            "se",
            "se_fused",
            "sge",
            "shuffle",
            "simam",
            "triplet",
        ],
        "channels": [64, 128],
        "resolutions": [14, 28],
        "batch_sizes": [2],
        "threads": 1,
        "timing": {"instrument": "simulated", "warmup_s": 0.0},
    },
    "default": {
        "description": "CPU sweep: 4 resolutions x 4 channel counts, infer and train",
        "batch_sizes": [8],
        "channels": [64, 128, 256, 512],
        "resolutions": [7, 14, 28, 56],
        "devices": ["cpu"],
        "timing": {"min_time_s": 0.1, "max_time_s": 1.0},
    },
    "paper": {
        "description": "GPU-sized full grid: 5 resolutions x 6 channel counts, 3 dtypes, "
        "both memory formats, every device present",
        "batch_sizes": [32],
        "channels": [64, 128, 256, 512, 1024, 2048],
        "resolutions": [7, 14, 28, 56, 112],
        "dtypes": ["float32", "float16", "bfloat16"],
        "devices": ["auto"],
        "memory_formats": ["contiguous", "channels_last"],
        "timing": {"min_time_s": 0.2, "max_time_s": 2.0},
    },
    "network": {
        "description": "ResNet-50 with each variant at 224x224 (the ECA-Net paper's table)",
        "variants": [],
        "devices": ["auto"],
        "network": {"depth": 50, "resolution": 224, "batch_sizes": [8]},
        # one round: an input of 8x3x224x224 does not sit in cache, so fresh copies add
        # nothing; the cap leaves a training step of about a second 6 samples (a 95% CI)
        "timing": {"min_time_s": 0.5, "max_time_s": 8.0, "min_samples": 6, "rounds": 1},
    },
    "fused": {
        "description": "fused ECA and SE against eager and a copy, per shape and layout "
        "(bench fused)",
        "variants": ["eca", "eca_fused", "se", "se_fused"],
        # at or under 32 MiB on CPUs: above that every fresh output is mapped anew and page
        # faults hide what a kernel does
        "shapes": [
            "8x256x56x56",
            "64x512x14x14",
            "32x256x28x28",
            "16x128x56x56",
            "4x64x56x56",
            "4x256x14x14",
        ],
        "memory_formats": ["contiguous", "channels_last"],
        "modes": ["infer"],
        "devices": ["cpu"],
        "references": False,  # each sample's paired copy is the floor these are read against
        "timing": {"warmup_s": 0.05, "min_time_s": 0.2, "max_time_s": 0.8, "rounds": 3},
    },
    "network-fused": {
        "description": "ResNet-50 plain, with eca, se and their fused versions, batch 1, 4 "
        "and 8, timed in turns (bench network)",
        "variants": [],
        "devices": ["cpu"],
        "network": {
            "depth": 50,
            "resolution": 224,
            "batch_sizes": [1, 4, 8],
            "variants": ["eca", "eca_fused", "se", "se_fused"],
        },
        # each network about 0.2 s a round, 8 rounds; a slow training step takes a call a round
        "timing": {
            "warmup_s": 0.0,
            "min_time_s": 1.6,
            "max_time_s": 12.0,
            "min_samples": 3,
            "rounds": 8,
        },
    },
}
