"""Where the geometric backend loses the objects it misses, on simulated tabletops.

    scripts/run python benchmarks/perception_misses.py [--scenes 120] [--seed0 3000]
                                                       [--mix meshes] [--perfect-depth]
                                                       [--json FILE]

The scenes and the scoring are the perception benchmark's (``bench_perception.py``: one frame a
scene, D435-like depth noise unless ``--perfect-depth``, a match at 3D IoU >= 0.25). Each missed
true object is traced to the stage that lost it (``perception.miss_stages``: not visible, in no
piece, merged in the segmentation, merged by the layout rules, dropped by selection, or its own
piece with a box too far off), and each false object is sorted by what it lies on. Prints the
tallies and every miss; ``--json`` writes them. A diagnosis tool for the development seeds
(3000-3119), not a score: the scored seeds stay for the benchmark.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import sys

import numpy as np

from spatialpin_ros.perception import make_backend
from spatialpin_ros.perception.metrics import score_scene
from spatialpin_ros.perception.miss_stages import false_object_kind, lost_at
from spatialpin_ros.sim.depth_noise import D435NoiseParams, apply_d435_noise
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld


def _frame_and_truth(seed: int, mix: str, noise: bool):
    spec = random_scene(seed, mix=mix)
    with SimWorld(spec) as world:
        frame, segt = world.render(with_segmentation=True)
        gt = world.ground_truth(segt)
        masks = [segt == o.body for o in world.objects]
    if noise:
        depth = apply_d435_noise(frame.depth, frame.rgb, np.random.default_rng(seed),
                                 D435NoiseParams())
        frame = dataclasses.replace(frame, depth=depth)
    return spec, frame, gt, masks


def trace_scene(backend, seed: int, mix: str, noise: bool) -> tuple[list[dict], list[dict]]:
    """The misses and the false objects of one scene, as rows."""
    spec, frame, gt, full = _frame_and_truth(seed, mix, noise)
    backend.reset()
    pred = backend.perceive(frame, scene_id=spec.name)
    sc = score_scene(pred, gt)
    last = backend.last
    misses, false = [], []
    if "pieces" in last:
        pieces, final = last["pieces"], last["segmentation"].labels
        s = last["segmentation"].stride
        grid = [m[::s, ::s][: pieces.shape[0], : pieces.shape[1]] for m in full]
        for j, (g, so) in enumerate(zip(gt.objects, sc.objects)):
            if so.matched:
                continue
            miss = lost_at(grid[j], grid[:j] + grid[j + 1:], pieces, final, last["dropped"])
            misses.append({"seed": seed, "object": g.id, "visible_px": g.num_points,
                           "stage": miss.stage.value, "reason": miss.reason})
    elif sc.num_matched < sc.num_gt:     # no frame to trace (no support found, say)
        misses += [{"seed": seed, "object": g.id, "visible_px": g.num_points,
                    "stage": "no scene", "reason": last.get("status", "")}
                   for g, so in zip(gt.objects, sc.objects) if not so.matched]
    matched = {so.pred_id for so in sc.objects if so.matched}
    found = [so.matched for so in sc.objects]
    h, w = frame.rgb.shape[:2]
    for p in pred.objects:
        if p.id not in matched:
            kind = false_object_kind(p.full_mask(h, w), full, found)
            false.append({"seed": seed, "object": p.id, "shape": p.shape, "kind": kind.value})
    return misses, false


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=120)
    ap.add_argument("--seed0", type=int, default=3000)
    ap.add_argument("--mix", default="meshes", choices=("primitives", "meshes", "mixed"))
    ap.add_argument("--perfect-depth", action="store_true")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    backend = make_backend("geometric")
    misses, false = [], []
    for seed in range(args.seed0, args.seed0 + args.scenes):
        m, f = trace_scene(backend, seed, args.mix, not args.perfect_depth)
        misses += m
        false += f
    stages = collections.Counter(r["stage"] + (f" ({r['reason']})" if r["reason"] else "")
                                 for r in misses)
    kinds = collections.Counter(r["kind"] for r in false)
    print(f"{args.mix}, seeds {args.seed0}-{args.seed0 + args.scenes - 1}, "
          f"{'perfect depth' if args.perfect_depth else 'D435 noise'}")
    print(f"\n| missed objects: where lost | n |\n| --- | --- |")
    for k, v in stages.most_common():
        print(f"| {k} | {v} |")
    print(f"\n| false objects: on what | n |\n| --- | --- |")
    for k, v in kinds.most_common():
        print(f"| {k} | {v} |")
    print()
    for r in misses:
        print(f"{r['seed']} {r['object']} ({r['visible_px']} px): {r['stage']}"
              + (f" ({r['reason']})" if r["reason"] else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "stages": stages, "false_kinds": kinds,
                       "misses": misses, "false_objects": false}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
