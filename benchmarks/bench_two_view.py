#!/usr/bin/env python3
"""Two-view questions as people ask them (issue 11): pairs of simulated views in which one object
was moved and turned, or the camera moved, each perceived (D435 noise on) by the geometric
backend; the questions of benchmarks/data/two_view_phrasings.yaml asked of the later view with
the earlier one as reference, through SpatialQA.ask.

The simulator's truth scores only: the displacement and yaw change it applied, and the two camera
poses. Objects are named by colour and shape as in bench_phrasings (one object of each colour in
the scene, so the phrase is unambiguous); questions are asked only about an object that perception
found in both views (the one perceived object of that colour, of its shape, within 5 cm
of the truth). Position words are not used: the object moved.

A number is right within 0.75-1.33x of the truth (the paper's middle band) in the unit asked;
rotations of yaw-symmetric or square objects are not asked.

    scripts/run python benchmarks/bench_two_view.py --scenes 30
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pybullet as pb
import yaml
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_phrasings import Filler  # noqa: E402
from bench_spatial_qa import MIN_VISIBLE_PX  # noqa: E402

from spatialpin_ros.perception import make_backend  # noqa: E402
from spatialpin_ros.reasoning.engine import SpatialQA  # noqa: E402
from spatialpin_ros.reasoning.query import parse_question  # noqa: E402
from spatialpin_ros.reasoning.units import convert  # noqa: E402
from spatialpin_ros.reasoning.viewer import ViewerFrame  # noqa: E402
from spatialpin_ros.sim.depth_noise import apply_d435_noise  # noqa: E402
from spatialpin_ros.sim.scene_spec import CameraSpec, random_scene  # noqa: E402
from spatialpin_ros.sim.world import SimWorld  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
BAND = (0.75, 1.33)


def perceive(world, backend, seed):
    frame = world.render()
    frame.depth = apply_d435_noise(frame.depth, frame.rgb, np.random.default_rng(seed))
    backend.reset()
    return backend.perceive(frame)


def found(pred, t) -> bool:
    """Perception found ``t``: one perceived object of its colour, of its shape, within 5 cm."""
    same = [o for o in pred.objects if o.color_name == t.color_name]
    return len(same) == 1 and same[0].shape == t.shape and \
        np.linalg.norm(same[0].center - t.center) < 0.05


def move_object(world, obj, rng, others) -> tuple[float, float]:
    """Teleport ``obj`` 5-12 cm across the table (clear of ``others``' centres) and turn it
    25-60 degrees about the vertical; returns (displacement m, yaw change deg)."""
    pos, quat = pb.getBasePositionAndOrientation(obj.body, physicsClientId=world.client)
    for _ in range(30):
        ang, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.05, 0.12)
        new = np.array(pos) + [dist * math.cos(ang), dist * math.sin(ang), 0.0]
        if all(np.linalg.norm(new[:2] - o.center[:2]) > 0.09 for o in others) and \
                0.35 < new[0] < 0.85 and abs(new[1]) < 0.3:
            break
    else:
        return float("nan"), float("nan")
    turn = float(rng.uniform(25, 60) * rng.choice([-1, 1]))
    q = (Rotation.from_euler("z", turn, degrees=True) * Rotation.from_quat(quat)).as_quat()
    pb.resetBasePositionAndOrientation(obj.body, new.tolist(), q.tolist(),
                                       physicsClientId=world.client)
    return float(np.linalg.norm(new - np.array(pos))), abs(turn)


def camera_move(world, rng) -> None:
    spec = world.camera_spec
    eye = np.array(spec.eye) + [rng.uniform(-0.1, 0.1), rng.uniform(-0.25, 0.25),
                                rng.uniform(-0.08, 0.08)]
    world.set_camera(CameraSpec(spec.width, spec.height, spec.fov_deg, tuple(eye), spec.target,
                                spec.up, spec.near, spec.far))


def ask_all(qa, fams, names, filler, fill_obj, pred2, pred1, truth_val, unit_q, rows, seed, tag):
    for name in names:
        fam = fams[name]
        for tpl in fam["templates"]:
            in_unit, _, sym = filler.unit(fam.get("unit"), tpl)
            if "{in_unit}" not in tpl:       # the words name the unit, or none is asked
                in_unit, sym = "", "deg" if "degrees" in tpl else ""
            text = tpl.format(a=fill_obj() if "{a}" in tpl else "", in_unit=in_unit)
            q_ok = True
            try:
                q = parse_question(text)
                q_ok = q.kind == "two_view" and q.name == name and q.asked_unit == sym
            except Exception:  # noqa: BLE001 - counted as not understood
                q_ok = False
            ans = qa.ask(text, pred2, ref_scene=pred1)
            unit = sym or ("m" if unit_q == "length" else "deg")
            want = convert(truth_val, "m" if unit_q == "length" else "deg", unit)
            val = ans.value if ans.success else None
            right = bool(ans.success and ans.unit == unit and val is not None and
                         math.isfinite(val) and BAND[0] * want <= val <= BAND[1] * want)
            rows.append({"seed": seed, "family": name, "setting": tag, "q": text,
                         "understood": q_ok, "correct": right, "truth": want,
                         "pred": val, "unit": unit, "msg": ans.message[:160]})


def run(args) -> dict:
    fams = yaml.safe_load((DATA / "two_view_phrasings.yaml").read_text())["families"]
    corpus = yaml.safe_load((DATA / "phrasings.yaml").read_text())
    rng = np.random.default_rng(args.seed0)
    filler = Filler(corpus, rng)
    backend, qa, rows = make_backend("geometric"), SpatialQA(), []
    moved = {"scenes": 0, "object_moved": 0, "found_in_both_views": 0}
    for seed in range(args.seed0, args.seed0 + args.scenes):
        spec = random_scene(seed)
        moved["scenes"] += 1
        with SimWorld(spec) as w:
            frame, seg = w.render(with_segmentation=True)
            truth = w.ground_truth(seg)
            pred1 = perceive(w, backend, seed)
            colours = [o.color_name for o in truth.objects]
            cands = [(o, s) for o, s in zip(truth.objects, w.objects)
                     if o.num_points >= max(MIN_VISIBLE_PX, 400) and colours.count(o.color_name)
                     == 1 and not s.spec.on and found(pred1, o)
                     and not any(x.spec.on == s.spec.name for x in w.objects)]
            if cands:
                t, sim_obj = cands[int(rng.integers(len(cands)))]
                others = [o for o in truth.objects if o.id != t.id]
                dist, turn = move_object(w, sim_obj, rng, others)
                moved["object_moved"] += math.isfinite(dist)
                if math.isfinite(dist):
                    pred2 = perceive(w, backend, seed + 100000)
                    t2 = w.ground_truth(w.render(with_segmentation=True)[1]).get(t.id)
                    if found(pred2, t2):
                        moved["found_in_both_views"] += 1
                        v = ViewerFrame.from_camera(truth.camera_pose)
                        phrase = lambda: filler.object_phrase(t, [t], v)  # colour and noun  # noqa: E731
                        ask_all(qa, fams, ["object_displacement"], filler, phrase, pred2, pred1,
                                dist, "length", rows, seed, "object moved")
                        rotatable = t.shape == "box" and abs(t.size[0] - t.size[1]) > 0.012
                        if rotatable:
                            ask_all(qa, fams, ["object_rotation"], filler, phrase, pred2, pred1,
                                    turn, "angle", rows, seed, "object moved")
            pose1 = w.camera_pose
            camera_move(w, rng)
            pred3 = perceive(w, backend, seed + 200000)
            rel = pose1.inverse() @ w.camera_pose
            ask_all(qa, fams, ["camera_translation"], filler, None, pred3, pred1,
                    float(np.linalg.norm(rel.position)), "length", rows, seed, "camera moved")
            ask_all(qa, fams, ["camera_rotation"], filler, None, pred3, pred1,
                    float(np.degrees(rel.rotation.magnitude())), "angle", rows, seed,
                    "camera moved")
    return {"rows": rows, "coverage": moved}


def summarise(rows) -> dict:
    out = {"asked": len(rows), "understood": float(np.mean([r["understood"] for r in rows])),
           "correct": float(np.mean([r["correct"] for r in rows])), "per_family": {}}
    for fam in sorted({r["family"] for r in rows}):
        rr = [r for r in rows if r["family"] == fam]
        out["per_family"][fam] = {"n": len(rr),
                                  "understood": float(np.mean([r["understood"] for r in rr])),
                                  "correct": float(np.mean([r["correct"] for r in rr]))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenes", type=int, default=30)
    ap.add_argument("--seed0", type=int, default=3000)
    ap.add_argument("--out", default="benchmarks/results/two_view.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    res = run(args)
    summ = summarise(res["rows"])
    out = {"machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
           "args": vars(args), "summary": summ, "coverage": res["coverage"], "wall_s": round(time.perf_counter() - t0, 1),
           "misses": [r for r in res["rows"] if not r["correct"]][:40]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps({**summ, "coverage": res["coverage"]}, indent=1))


if __name__ == "__main__":
    main()
