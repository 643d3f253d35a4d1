"""Re-ask the questions of a bench_spatial_qa rows file with the current code, on the same
scenes (same seeds, same perception), and compare the scores question by question.

    scripts/run python benchmarks/replay_spatial_qa.py OLD_ROWS.json [--out replay.json]

bench_spatial_qa draws its questions with one random stream per setting, and a change to a
measure its near-tie margins use (e.g. the surface gap) changes every later draw; this replays
an earlier run's exact questions instead, so a parser or answerer change can be compared on the
same questions. Single-view questions only (two-view questions need the moved-object renders).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_spatial_qa import GROUP, perceive, score  # noqa: E402

from spatialpin_ros.perception import make_backend  # noqa: E402
from spatialpin_ros.reasoning.engine import SpatialQA  # noqa: E402
from spatialpin_ros.sim.depth_noise import apply_d435_noise  # noqa: E402
from spatialpin_ros.sim.scene_spec import random_scene  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402


def good(s: dict):
    if "correct" in s:
        return bool(s["correct"])
    r = s.get("ratio")
    return r is not None and 0.75 <= r <= 1.33


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("rows")
    ap.add_argument("--out", default="benchmarks/results/spatial_qa_replay.json")
    args = ap.parse_args()
    rows = [r for r in json.loads(Path(args.rows).read_text())
            if GROUP.get(r["type"], "").startswith(("qualitative", "distances", "angles"))]
    by_scene = defaultdict(list)
    for r in rows:
        by_scene[(r["seed"], r["noise"])].append(r)
    qa, backend = SpatialQA(), make_backend("geometric")
    new_ok, changed = defaultdict(list), []
    for (seed, noise), rs in sorted(by_scene.items()):
        with SimWorld(random_scene(seed)) as w:
            frame, seg = w.render(with_segmentation=True)
            truth = w.ground_truth(seg)
        if noise:
            frame.depth = apply_d435_noise(frame.depth, frame.rgb, np.random.default_rng(seed))
        pred = perceive(backend, frame)
        for r in rs:
            ta, pa = qa.ask(r["q"], truth), qa.ask(r["q"], pred)
            s = score(r["type"], ta, pa, truth, pred)
            if not s:
                continue
            g = ("d435_noise " if noise else "perfect_depth ") + GROUP[r["type"]]
            n = good(s)
            new_ok[g].append(n)
            changed.append({"q": r["q"], "seed": seed, "noise": noise, "type": r["type"],
                            "new": n, "pred": pa.value, "truth": ta.value, "msg": pa.message})
    summary = {g: {"n": len(v), "share": float(np.mean(v))} for g, v in sorted(new_ok.items())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": changed}, indent=1))
    for g, v in summary.items():
        print(f"{g}: n {v['n']}, accuracy or 0.75-1.33x {100 * v['share']:.1f} %")


if __name__ == "__main__":
    main()
