"""Pick-and-stack planning benchmark in the simulator (ROS-free).

    scripts/run python benchmarks/bench_planning.py [--scenes 100] [--seed0 4000]
        [--algorithm rrtstar|rrtconnect] [--ref-time 5] [--out benchmarks/results/planning.json]

For each random tabletop (``random_scene(seed)``, seeds seed0, seed0+1, ...) a stacking task is
chosen by a simple rule: the smallest graspable box (fits the gripper, nothing on it) onto the
largest box with a free flat top that can carry it (``grasps.check_support``); when the planner
finds that pair infeasible (grasp blocked by a neighbour, unreachable), the next pair in the
same order is tried. Scenes without any such pair are skipped and counted.

The plan is made from the world's ground-truth boxes AS A STAND-IN for perception (the
integrated benchmark uses perceived priors), then executed in SimWorld, and scored:

* picked: the object rose more than 3 cm by the end of the lift stage;
* picked-but-failed: picked but not stacked (slipped, dropped or knocked over);
* stacked: at the end the object rests on the target, its centre within 2 cm horizontally of the
  target's centre and its bottom within 1 cm of the target's top.

Also reported: planning time per motion (median, p90) for the planned (joint-space) motions and
for all motions, the whole-task planning time, path length against a long RRT* run of
``--ref-time`` seconds (only for motions that needed sampling; a free straight joint-space
segment is already the shortest path, ratio 1), and limit violations (position, velocity,
acceleration against the simulator's limits: URDF velocities, 15 rad/s^2 arm, 2 m/s^2 fingers)
counted on every executed trajectory's samples.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from spatialpin_ros.core.types import Scene
from spatialpin_ros.planning.grasps import MAX_GRASP_WIDTH, Infeasible, check_support
from spatialpin_ros.planning.pick_place import _clear_above, plan_pick_and_place
from spatialpin_ros.planning.planner import MotionPlanner
from spatialpin_ros.planning.robot import PandaModel
from spatialpin_ros.planning.timing import limit_violations
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld

ROOT = Path(__file__).resolve().parent


def candidate_pairs(scene: Scene) -> list[tuple[str, str]]:
    """(object, target) pairs in the rule's order: smallest graspable box first, each with the
    largest boxes first."""
    boxes = [o for o in scene.objects if o.shape == "box"]
    picks = [o for o in boxes if min(o.size[:2]) <= MAX_GRASP_WIDTH and _clear_above(o, scene) is None]
    picks.sort(key=lambda o: float(np.prod(o.size)))
    targets = [o for o in boxes if _clear_above(o, scene) is None]
    targets.sort(key=lambda o: -float(o.size[0] * o.size[1]))
    pairs = []
    for p in picks:
        for t in targets:
            if t.id == p.id:
                continue
            try:
                check_support(p, t)
            except Infeasible:
                continue
            pairs.append((p.id, t.id))
    return pairs


def execute(world: SimWorld, plan, obj_name: str, target_name: str) -> dict:
    """Run the plan's trajectory and score it."""
    sim = {o.spec.name: o for o in world.objects}
    obj, tgt = sim[obj_name], sim[target_name]
    z0 = world.object_box(obj)[0].position[2]
    _, lift_end = plan.stage("lift")
    traj = plan.trajectory
    world.start_trajectory(traj)
    t0 = world.sim_time
    lifted = None
    while world.sim_time - t0 <= traj.duration + 1e-9:
        world.step(1)
        if lifted is None and world.sim_time - t0 >= lift_end:
            lifted = float(world.object_box(obj)[0].position[2] - z0)
    world.step(int(round(1.0 / world.time_step)))  # settle
    pose, ext = world.object_box(obj)
    tpose, text = world.object_box(tgt)
    horiz = float(np.linalg.norm(pose.position[:2] - tpose.position[:2]))
    obj_bottom = float(pose.transform_points(np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                                                       for sz in (-1, 1)]) * ext / 2)[:, 2].min())
    tgt_top = float(tpose.transform_points(np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1)
                                                     for sz in (-1, 1)]) * text / 2)[:, 2].max())
    picked = lifted is not None and lifted > 0.03
    stacked = horiz <= 0.02 and abs(obj_bottom - tgt_top) <= 0.01
    return {"lifted_m": lifted, "picked": bool(picked), "stacked": bool(stacked),
            "horizontal_error_m": horiz, "bottom_gap_m": obj_bottom - tgt_top}


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed0", type=int, default=4000)
    ap.add_argument("--algorithm", default="rrtstar", choices=["rrtstar", "rrtconnect"])
    ap.add_argument("--ref-time", type=float, default=5.0,
                    help="seconds of the long RRT* reference run (0: none)")
    ap.add_argument("--motion-time-limit", type=float, default=1.0)
    ap.add_argument("--max-pairs", type=int, default=4,
                    help="pairs tried per scene when the planner finds one infeasible")
    ap.add_argument("--out", default=str(ROOT / "results" / "planning.json"))
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    robot = PandaModel()
    planner = MotionPlanner(robot, seed=1)
    rows, skipped = [], []
    for seed in range(args.seed0, args.seed0 + args.scenes):
        spec = random_scene(seed)
        with SimWorld(spec) as world:
            gt = world.ground_truth()
            pairs = candidate_pairs(gt)
            if not pairs:
                skipped.append({"seed": seed, "why": "no graspable box with a box target"})
                continue
            tried = []
            plan = None
            for obj, tgt in pairs[:args.max_pairs]:
                plan = plan_pick_and_place(robot, gt, obj, tgt, algorithm=args.algorithm,
                                           planner=planner,
                                           motion_time_limit=args.motion_time_limit,
                                           reference_time=args.ref_time)
                tried.append({"object": obj, "target": tgt, "code": plan.code,
                              "reason": plan.reason, "planning_time_s": plan.planning_time})
                if plan.success or plan.code not in ("blocked", "unreachable"):
                    break
            row = {"seed": seed, "n_objects": len(gt.objects), "object": obj, "target": tgt,
                   "tried": tried, "planned": bool(plan.success), "code": plan.code,
                   "reason": plan.reason, "planning_time_s": plan.planning_time,
                   "motions": [{"name": m.name, "kind": m.kind, "time_s": m.planning_time,
                                "sampled": m.sampled, "length": m.length,
                                "reference_length": m.reference_length,
                                "reference_time_s": m.reference_time}
                               for m in plan.motions]}
            if not plan.success and plan.code in ("blocked", "unreachable") and \
                    len(tried) == min(len(pairs), args.max_pairs):
                row["infeasible"] = True
            if plan.success:
                traj = plan.trajectory
                row["violations"] = limit_violations(traj, world.joint_limits)
                row["duration_s"] = traj.duration
                row.update(execute(world, plan, obj, tgt))
            else:
                row.update({"picked": False, "stacked": False})
            rows.append(row)
            if args.verbose:
                print(f"seed {seed}: {obj} -> {tgt}: planned={plan.success} "
                      f"picked={row['picked']} stacked={row['stacked']} "
                      f"{plan.reason[:120]} ({plan.planning_time:.2f} s)", flush=True)
    wall = time.perf_counter() - t_start

    attempted = [r for r in rows]
    infeasible = [r for r in rows if r.get("infeasible")]
    planned = [r for r in rows if r["planned"]]
    picked = [r for r in rows if r["picked"]]
    stacked = [r for r in rows if r["stacked"]]
    pf = [r for r in picked if not r["stacked"]]
    planned_motion_t = [m["time_s"] for r in rows for m in r["motions"] if m["kind"] == "planned"]
    all_motion_t = [m["time_s"] for r in rows for m in r["motions"]]
    sampled = [m for r in rows for m in r["motions"] if m["sampled"]]
    ratios_sampled = [m["length"] / m["reference_length"] for m in sampled
                      if m["reference_length"] and math.isfinite(m["reference_length"])
                      and m["reference_length"] > 0]
    ratios_all = [m["length"] / m["reference_length"] for r in rows for m in r["motions"]
                  if m["kind"] == "planned" and math.isfinite(m["reference_length"])
                  and m["reference_length"] > 0]
    viol = {"joint": 0, "velocity": 0, "acceleration": 0}
    for r in planned:
        for k in viol:
            viol[k] += r["violations"][k]
    task_t = [r["planning_time_s"] for r in planned]
    n = len(attempted)
    codes: dict[str, int] = {}
    for r in rows:
        if not r["planned"]:
            codes[r["code"]] = codes.get(r["code"], 0) + 1

    def rate(k):
        return 100.0 * k / n if n else float("nan")

    summary = {
        "scenes": args.scenes, "seed0": args.seed0, "algorithm": args.algorithm,
        "skipped_no_pair": len(skipped), "attempted": n,
        "planned": len(planned), "planning_failures_by_code": codes,
        "picked": len(picked), "picked_but_failed": len(pf), "stacked": len(stacked),
        "stacked_pct": rate(len(stacked)), "picked_pct": rate(len(picked)),
        "picked_but_failed_pct": rate(len(pf)),
        "planned_motion_time_ms": {"median": 1000 * pct(planned_motion_t, 50),
                                   "p90": 1000 * pct(planned_motion_t, 90),
                                   "max": 1000 * max(planned_motion_t, default=float("nan")),
                                   "count": len(planned_motion_t)},
        "all_motion_time_ms": {"median": 1000 * pct(all_motion_t, 50),
                               "p90": 1000 * pct(all_motion_t, 90), "count": len(all_motion_t)},
        "task_planning_time_s": {"median": pct(task_t, 50), "p90": pct(task_t, 90)},
        "sampled_motions": len(sampled),
        "path_length_ratio_sampled": {"median": pct(ratios_sampled, 50),
                                      "p90": pct(ratios_sampled, 90),
                                      "count": len(ratios_sampled)},
        "path_length_ratio_all_planned": {"median": pct(ratios_all, 50),
                                          "p90": pct(ratios_all, 90), "count": len(ratios_all)},
        "reference_time_s": args.ref_time,
        "violations": viol,
        "wall_time_s": wall,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "scenes": rows, "skipped": skipped},
                              indent=1, default=float))
    s = summary
    pm, am = s["planned_motion_time_ms"], s["all_motion_time_ms"]
    print(f"\n## Pick-and-stack planning ({args.algorithm}, seeds {args.seed0}.."
          f"{args.seed0 + args.scenes - 1}, ground-truth boxes as a stand-in for perception)\n")
    print("| metric | value |\n| --- | --- |")
    print(f"| scenes | {args.scenes} ({len(skipped)} skipped: no feasible pair; "
          f"{len(infeasible)} with every tried pair refused as infeasible) |")
    print(f"| tasks attempted | {n} |")
    print(f"| planned | {len(planned)} ({rate(len(planned)):.1f} %) {codes or ''} |")
    print(f"| picked | {len(picked)} ({rate(len(picked)):.1f} %) |")
    print(f"| picked but failed | {len(pf)} ({rate(len(pf)):.1f} %) |")
    print(f"| **stacked** | **{len(stacked)} ({rate(len(stacked)):.1f} %)** |")
    print(f"| planning time per planned motion, median / p90 / max | {pm['median']:.1f} / "
          f"{pm['p90']:.1f} / {pm['max']:.1f} ms (n={pm['count']}) |")
    print(f"| planning time per motion incl. straight moves, median / p90 | {am['median']:.1f} / "
          f"{am['p90']:.1f} ms (n={am['count']}) |")
    print(f"| whole-task planning time, median / p90 | {s['task_planning_time_s']['median']:.2f} / "
          f"{s['task_planning_time_s']['p90']:.2f} s |")
    print(f"| motions that needed sampling | {len(sampled)} of {pm['count']} |")
    rs, ra = s["path_length_ratio_sampled"], s["path_length_ratio_all_planned"]
    print(f"| path length / {args.ref_time:g} s RRT* reference, sampled motions, median / p90 | "
          f"{rs['median']:.3f} / {rs['p90']:.3f} (n={rs['count']}) |")
    print(f"| same over all planned motions, median / p90 | {ra['median']:.3f} / "
          f"{ra['p90']:.3f} (n={ra['count']}) |")
    print(f"| limit violations (joint / velocity / acceleration samples) | {viol['joint']} / "
          f"{viol['velocity']} / {viol['acceleration']} |")
    print(f"| wall time | {wall:.0f} s |")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
