"""Diversity of task proposals (Self-BLEU, as the SpatialPIN paper reports; lower is more
diverse) from the geometric proposer on perceived random scenes.

    scripts/run python benchmarks/bench_proposals.py [--scenes 30] [--seed0 5000] [--count 106]

For each scene (seeds from --seed0 on): render 640x480 RGB-D, perceive it with the geometric
backend, and take every proposal (stack and pick_and_place). Reported: Self-BLEU over the first
--count descriptions pooled across scenes (the paper scored 106 tasks; SpatialPIN with GPT-4V:
0.269), the mean Self-BLEU within a scene, and how many proposals are stacks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

from spatialpin_ros.perception import make_backend
from spatialpin_ros.reasoning.tasks import GeometricProposer, self_bleu
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--seed0", type=int, default=5000)
    ap.add_argument("--count", type=int, default=106)
    ap.add_argument("--out", default="benchmarks/results/proposals.json")
    args = ap.parse_args()
    backend = make_backend("geometric")
    proposer = GeometricProposer()
    per_scene, pooled, n_stack = [], [], 0
    for seed in range(args.seed0, args.seed0 + args.scenes):
        with SimWorld(random_scene(seed)) as w:
            backend.reset()
            tasks = proposer.propose(backend.perceive(w.render()), 0)
        texts = [t.description for t in tasks]
        n_stack += sum(t.action == "stack" for t in tasks)
        pooled += texts
        if len(texts) >= 2:
            per_scene.append(self_bleu(texts))
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "scenes": args.scenes,
           "seeds": [args.seed0, args.seed0 + args.scenes - 1], "tasks": len(pooled),
           "stack_tasks": n_stack, "self_bleu_first": self_bleu(pooled[:args.count]),
           "first_count": min(args.count, len(pooled)),
           "self_bleu_within_scene_mean": statistics.mean(per_scene) if per_scene else None}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
