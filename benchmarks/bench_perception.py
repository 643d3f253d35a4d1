"""Perception benchmark: 3D priors from one simulated RGB-D frame against ground truth.

    scripts/run python benchmarks/bench_perception.py [--scenes 100] [--seed0 1000]
                                                      [--backend geometric] [--out FILE]
                                                      [--mix primitives|meshes|mixed]

Each random tabletop (``random_scene(seed)``, seeds seed0 .. seed0 + scenes - 1: 2-8 boxes,
cylinders and spheres, some stacked, some touching, random camera 0.6-0.85 m away) is rendered
once at 640x480 and perceived twice through the core API (``backend.perceive(frame)``): with the
simulator's perfect depth, and with the RealSense D435-like noise model
(``sim.depth_noise.apply_d435_noise``, seeded per scene). A prediction matches a ground-truth
object when their 3D IoU is >= 0.25 (one-to-one, Hungarian on IoU); see
``perception.metrics`` (gravity-aligned boxes, symmetric objects, objects that fell over).

Reported per noise setting: recall and precision (also for stacked objects -- those placed
``on_top_of`` another -- and touching ones -- footprint gap < 3 mm to another object -- and for objects
with at least 100 visible pixels), centroid error (median, p90), extent error (median; mean over
the axes of |pred - true| / true, x/y matched up to a swap), yaw error (median, p90; boxes only,
modulo 90 degrees for square-ish footprints and 180 otherwise, also for non-square boxes alone),
shape and colour-name accuracy of matched objects, and the per-frame latency of the
``perceive`` call (median, p90). Prints a Markdown table and writes JSON to ``--out`` (with
``--records``, also every ground-truth object's score).

``--mix`` picks the generator's object mix (``random_scene(seed, mix=...)``): ``primitives``
(the default, the scenes above), ``meshes`` (textured everyday objects: bowls, cups, mugs,
plates, bottles, cans, printed food boxes, pybullet_data objects) or ``mixed``. When the truth
has containers (bowls, cups, mugs, the tray), container accuracy is reported too: the share of
matched true containers whose prediction says ``container``, the share of matched
non-containers whose prediction does not, and the median |inner depth error| of matched
containers predicted as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from spatialpin_ros.perception import make_backend
from spatialpin_ros.perception.metrics import score_scene
from spatialpin_ros.sim.depth_noise import D435NoiseParams, apply_d435_noise
from spatialpin_ros.sim.scene_spec import footprint, polygons_overlap, random_scene
from spatialpin_ros.sim.world import SimWorld

TOUCH_GAP = 0.003
TARGETS = {"recall": (">=", 0.95), "precision": (">=", 0.95),
           "centroid_median_cm": ("<=", 1.0), "centroid_p90_cm": ("<=", 2.5),
           "extent_median_pct": ("<=", 10.0), "yaw_median_deg_nonsquare": ("<=", 5.0),
           "latency_median_ms": ("<=", 50.0)}


def _pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _touching(spec) -> set[str]:
    """Names of objects standing on the table whose footprint is within TOUCH_GAP of another's
    (stacked pairs excluded: they touch by design and are counted as stacked)."""
    polys = {o.name: footprint(*o.footprint_shape, o.position[0], o.position[1], o.yaw_deg)
             for o in spec.objects if o.shape and not o.on}
    names = list(polys)
    out = set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if polygons_overlap(polys[a], polys[b], margin=TOUCH_GAP):
                out.update((a, b))
    return out


def summarise(records: list[dict], latencies: list[float], num_pred: int) -> dict:
    matched = [r for r in records if r["matched"]]

    def recall(sel):
        sel = list(sel)
        return (sum(r["matched"] for r in sel) / len(sel)) if sel else float("nan"), len(sel)

    rec, n_gt = recall(records)
    rec_st, n_st = recall(r for r in records if r["stacked"])
    rec_to, n_to = recall(r for r in records if r["touching"])
    rec_vis, n_vis = recall(r for r in records if r["visible_px"] >= 100)
    ce = [100 * r["centroid_error_m"] for r in matched]
    ee = [100 * r["extent_error"] for r in matched]
    ye = [r["yaw_error_deg"] for r in matched if r["yaw_error_deg"] is not None]
    ye_ns = [r["yaw_error_deg"] for r in matched
             if r["yaw_error_deg"] is not None and not r["square"]]
    shape_ok = [r["pred_shape"] == r["gt_shape"] for r in matched]
    color_ok = [r["color_ok"] for r in matched if r["color_ok"] is not None]
    lat = [1000 * t for t in latencies]
    cont = [r for r in matched if r.get("gt_container")]
    solid = [r for r in matched if r.get("gt_container") is False]
    depth_err = [100 * abs(r["pred_inner_depth"] - r["gt_inner_depth"]) for r in cont
                 if r["pred_container"]]
    extra = {}
    if any(r.get("gt_container") for r in records):
        extra = {
            "num_containers": sum(bool(r.get("gt_container")) for r in records),
            "container_recall": (sum(r["pred_container"] for r in cont) / len(cont)
                                 if cont else float("nan")),
            "num_containers_matched": len(cont),
            "noncontainer_accuracy": (sum(not r["pred_container"] for r in solid) / len(solid)
                                      if solid else float("nan")),
            "inner_depth_median_cm": _pct(depth_err, 50),
        }
    return {
        "num_gt": n_gt, "num_pred": num_pred, "num_matched": len(matched),
        "recall": rec, "precision": len(matched) / num_pred if num_pred else float("nan"),
        "recall_stacked": rec_st, "num_stacked": n_st,
        "recall_touching": rec_to, "num_touching": n_to,
        "recall_visible100": rec_vis, "num_visible100": n_vis,
        "centroid_median_cm": _pct(ce, 50), "centroid_p90_cm": _pct(ce, 90),
        "extent_median_pct": _pct(ee, 50), "extent_p90_pct": _pct(ee, 90),
        "yaw_median_deg": _pct(ye, 50), "yaw_p90_deg": _pct(ye, 90),
        "yaw_median_deg_nonsquare": _pct(ye_ns, 50), "num_yaw_nonsquare": len(ye_ns),
        "iou_median": _pct([r["iou"] for r in matched], 50),
        "shape_accuracy": float(np.mean(shape_ok)) if shape_ok else float("nan"),
        "color_accuracy": float(np.mean(color_ok)) if color_ok else float("nan"),
        "latency_median_ms": _pct(lat, 50), "latency_p90_ms": _pct(lat, 90),
        "latency_max_ms": max(lat) if lat else float("nan"),
        **extra,
    }


def run(scenes: int, seed0: int, backend_name: str, verbose: bool = False,
        mix: str = "primitives") -> dict:
    settings = {"perfect": None, "d435": D435NoiseParams()}
    records = {k: [] for k in settings}
    latencies = {k: [] for k in settings}
    num_pred = {k: 0 for k in settings}
    failures = {k: [] for k in settings}
    backend = make_backend(backend_name)
    render_s = 0.0
    for seed in range(seed0, seed0 + scenes):
        spec = random_scene(seed, mix=mix)
        t = time.perf_counter()
        with SimWorld(spec) as world:
            frame, seg = world.render(with_segmentation=True)
            gt = world.ground_truth(seg)
        render_s += time.perf_counter() - t
        stacked = {o.name for o in spec.objects if o.on}
        touching = _touching(spec)
        for name, params in settings.items():
            f = frame
            if params is not None:
                rng = np.random.default_rng(seed)
                f = dataclasses.replace(frame, depth=apply_d435_noise(frame.depth, frame.rgb,
                                                                      rng, params))
            backend.reset()
            t = time.perf_counter()
            pred = backend.perceive(f, scene_id=spec.name)
            latencies[name].append(time.perf_counter() - t)
            sc = score_scene(pred, gt)
            num_pred[name] += sc.num_pred
            by_id = {p.id: p for p in pred.objects}
            for g, s in zip(gt.objects, sc.objects):
                r = s.as_dict()
                r.update(seed=seed, stacked=g.id in stacked, touching=g.id in touching,
                         visible_px=g.num_points)
                if mix != "primitives":  # container truth (the primitive records stay as before)
                    p = by_id.get(s.pred_id) if s.matched else None
                    r.update(gt_container=bool(g.container), gt_inner_depth=g.inner_depth,
                             pred_container=bool(getattr(p, "container", False)),
                             pred_inner_depth=float(getattr(p, "inner_depth", 0.0) or 0.0))
                records[name].append(r)
                if not s.matched:
                    failures[name].append(f"{seed}:{g.id}(px={g.num_points})")
            if sc.false_positives:
                failures[name].append(f"{seed}:{sc.false_positives} false positive(s)")
            if verbose:
                print(f"seed {seed} {name}: gt {sc.num_gt} pred {sc.num_pred} "
                      f"matched {sc.num_matched} {1000 * latencies[name][-1]:.1f} ms",
                      file=sys.stderr)
    out = {
        "scenes": scenes, "seed0": seed0, "backend": backend_name, "mix": mix,
        "resolution": "640x480", "iou_threshold": 0.25, "touch_gap_m": TOUCH_GAP,
        "noise_params": dataclasses.asdict(D435NoiseParams()),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "render_s": round(render_s, 1),
        "results": {k: summarise(records[k], latencies[k], num_pred[k]) for k in settings},
        "failures": failures,
        "records": {k: [{kk: (round(vv, 5) if isinstance(vv, float) else vv)
                         for kk, vv in r.items()} for r in records[k]] for k in settings},
        "targets": {k: f"{op} {v}" for k, (op, v) in TARGETS.items()},
    }
    return out


def markdown(out: dict) -> str:
    res = out["results"]
    cols = list(res)
    rows = [
        ("object recall (IoU >= 0.25)", "recall", "{:.3f}"),
        ("precision", "precision", "{:.3f}"),
        ("recall, stacked objects (n)", "recall_stacked", "{:.3f}", "num_stacked"),
        ("recall, touching objects (n)", "recall_touching", "{:.3f}", "num_touching"),
        ("recall, objects with >= 100 visible px (n)", "recall_visible100", "{:.3f}",
         "num_visible100"),
        ("centroid error median (cm)", "centroid_median_cm", "{:.2f}"),
        ("centroid error p90 (cm)", "centroid_p90_cm", "{:.2f}"),
        ("extent error median (%)", "extent_median_pct", "{:.1f}"),
        ("extent error p90 (%)", "extent_p90_pct", "{:.1f}"),
        ("yaw error median, non-square boxes (deg) (n)", "yaw_median_deg_nonsquare", "{:.2f}",
         "num_yaw_nonsquare"),
        ("yaw error median, all boxes (deg)", "yaw_median_deg", "{:.2f}"),
        ("yaw error p90, all boxes (deg)", "yaw_p90_deg", "{:.2f}"),
        ("median IoU of matches", "iou_median", "{:.3f}"),
        ("shape accuracy (matched)", "shape_accuracy", "{:.3f}"),
        ("colour-name accuracy (matched)", "color_accuracy", "{:.3f}"),
        ("container recall, matched true containers (n)", "container_recall", "{:.3f}",
         "num_containers_matched"),
        ("non-container accuracy (matched)", "noncontainer_accuracy", "{:.3f}"),
        ("inner depth error median, containers (cm)", "inner_depth_median_cm", "{:.2f}"),
        ("latency median (ms)", "latency_median_ms", "{:.1f}"),
        ("latency p90 (ms)", "latency_p90_ms", "{:.1f}"),
    ]
    head = "| metric | target | " + " | ".join(
        "perfect depth" if c == "perfect" else "D435 noise" for c in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 2)]
    for row in rows:
        label, key, fmt = row[:3]
        if key not in res[cols[0]]:  # container rows: only when the truth has containers
            continue
        tgt = TARGETS.get(key)
        cells = []
        for c in cols:
            v = res[c][key]
            cell = fmt.format(v) if isinstance(v, float) and not math.isnan(v) else str(v)
            if len(row) > 3:
                cell += f" ({res[c][row[3]]})"
            cells.append(cell)
        lines.append(f"| {label} | {f'{tgt[0]} {tgt[1]}' if tgt else ''} | "
                     + " | ".join(cells) + " |")
    n = res[cols[0]]
    lines.append("")
    last = out["seed0"] + out["scenes"] - 1
    lines.append(f"{out['scenes']} scenes (seeds {out['seed0']}..{last}),"
                 f" {n['num_gt']} ground-truth objects, 640x480, backend {out['backend']!r}, "
                 + (f"mix {out['mix']!r}, " if out.get("mix", "primitives") != "primitives" else "")
                 + f"{out['machine']['cpu_count']} CPU cores.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed0", type=int, default=1000)
    ap.add_argument("--backend", default="geometric")
    ap.add_argument("--mix", default="primitives", choices=["primitives", "meshes", "mixed"],
                    help="object mix of the random scenes (default primitives: boxes, "
                         "cylinders, spheres; meshes: textured everyday objects; mixed: both)")
    ap.add_argument("--out", default=None,
                    help="JSON output (default benchmarks/results/perception.json, or "
                         "perception_<mix>.json for another --mix)")
    ap.add_argument("--verbose", action="store_true", help="one line per scene on stderr")
    ap.add_argument("--records", action="store_true",
                    help="also write every ground-truth object's score to the JSON")
    args = ap.parse_args()
    if args.scenes < 1:
        ap.error("--scenes must be >= 1")
    t0 = time.perf_counter()
    out = run(args.scenes, args.seed0, args.backend, verbose=args.verbose, mix=args.mix)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    if not args.records:
        del out["records"]
    print(markdown(out))
    print(f"\nwall time {out['wall_s']} s (rendering {out['render_s']} s)")
    path = Path(args.out or ("benchmarks/results/perception.json" if args.mix == "primitives"
                             else f"benchmarks/results/perception_{args.mix}.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
