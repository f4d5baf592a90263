"""The GPU memory every stage's models take before a single activation: a floor, computed, not measured.

For each real size and stage, the models vd puts on the GPU are built on the meta device from the real
configs and counted as vd holds them (vd.models.memory.weight_counts and weight_bytes; benchmarks/README.md).
Resident per stage: SFT, DPO, SimPO: the policy (DPO's reference is the policy with its adapter disabled);
reward: the reward model; PPO: the policy, the frozen reward model and the value model; generate: the policy
with a checkpoint's adapter. Activations, logits, the KV cache and the CUDA context come on top (only
bench_gpu.py measures peaks); a stage whose floor exceeds a card cannot fit it at any batch size.

    python benchmarks/weights_floor.py
"""

from __future__ import annotations

import json

from common import machine_info, merge_results, model_config, real_sizes

from vd.models.memory import CARDS as ALL_CARDS
from vd.models.memory import GIB, RESIDENT, weight_bytes, weight_counts

# the cards our users have (Colab: T4, L4, A100), nvidia-smi's total memory in GiB
CARDS = {name: ALL_CARDS[name].memory_gib for name in ("T4", "L4", "A100-40GB")}
# what vd puts on the GPU in each stage (vd.models.memory.RESIDENT, which the preflight uses), named by role
ROLES = {"reward": ("reward model",), "ppo": ("policy", "reward model", "value model"),
         "generate": ("policy + adapter",)}
STAGES = {stage: [(role, *model) for role, model in zip(ROLES.get(stage, ("policy",)), RESIDENT[stage])]
          for stage in ("sft", "dpo", "simpo", "reward", "ppo", "generate")}


def floor_table(rank: int = 16) -> dict:
    table = {}
    for size in real_sizes():
        counts = {head: weight_counts(model_config(size), head) for head in ("causal", "score")}
        table[size] = {}
        for stage, resident in STAGES.items():
            parts = [weight_bytes(counts[head], rank, prepared, trained) for _, head, prepared, trained in resident]
            gib = sum(p["bytes"] for p in parts) / GIB
            table[size][stage] = {"weights_gib": round(gib, 2),
                                  "fp32_upcast_gib": round(sum(p["upcast_bytes"] for p in parts) / GIB, 2),
                                  "models": [r[0] for r in resident],
                                  "room_left_gib": {card: round(cap - gib, 1) for card, cap in CARDS.items()}}
        table[size]["_params"] = counts["causal"]["total"]
    return table


def markdown(table: dict) -> str:
    cards = list(CARDS)
    lines = ["| size | stage | models on the GPU | weights floor (GiB) | of which fp32 upcast | "
             + " | ".join(f"room left on {c} ({CARDS[c]:.1f} GiB)" for c in cards) + " |",
             "|---|---|---|---|---|" + "---|" * len(cards)]
    for size, stages in table.items():
        for stage, row in stages.items():
            if stage.startswith("_"):
                continue
            room = " | ".join(f"{row['room_left_gib'][c]:+.1f}"
                              + (" **(cannot fit)**" if row["room_left_gib"][c] < 0 else "") for c in cards)
            lines.append(f"| {size} | {stage} | {', '.join(row['models'])} | {row['weights_gib']:.2f} | "
                         f"{row['fp32_upcast_gib']:.2f} | {room} |")
    return "\n".join(lines)


def main() -> None:
    from vd.core.config import load_config

    ranks = {load_config(size).lora.r for size in real_sizes()}
    if len(ranks) != 1:
        raise SystemExit(f"the params files use several LoRA ranks {sorted(ranks)}: this table assumes one")
    table = floor_table(rank=ranks.pop())
    print(markdown(table))
    info = machine_info()
    merge_results("gpu_weights_floor", {"table": table, "cards_gib": CARDS, "computed": True,
                                        "date": info["date"], "commit": info["commit"]})
    print(json.dumps({s: {k: v["weights_gib"] for k, v in t.items() if not k.startswith("_")}
                      for s, t in table.items()}))


if __name__ == "__main__":
    main()
