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
import sys
import time
from pathlib import Path

import numpy as np

from spatialpin_ros.core.types import Scene
from spatialpin_ros.core.stacking import MAX_GRASP_WIDTH, Infeasible, check_support
from spatialpin_ros.planning.pick_place import object_on_top, plan_pick_and_place
from spatialpin_ros.planning.planner import MotionPlanner
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.timing import limit_violations
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld

ROOT = Path(__file__).resolve().parent


def candidate_pairs(scene: Scene) -> list[tuple[str, str]]:
    """(object, target) pairs in the rule's order: smallest graspable box first, each with the
    largest boxes first."""
    boxes = [o for o in scene.objects if o.shape == "box"]
    picks = [o for o in boxes
             if min(o.size[:2]) <= MAX_GRASP_WIDTH and object_on_top(o, scene) is None]
    picks.sort(key=lambda o: float(np.prod(o.size)))
    targets = [o for o in boxes if object_on_top(o, scene) is None]
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


def hard_problems(robot: RobotModel, n: int, seed: int):
    """``n`` synthetic motions that need sampling: two top-down configurations 24-56 cm apart
    across the workspace with a 15-32 cm tall wall between them, among the ground-truth
    objects of random scenes (seeds ``seed``, ``seed + 1``, ...)."""
    from spatialpin_ros.core.types import ObjectPrior, Pose
    from spatialpin_ros.planning import PlanningScene, top_down_pose
    rng = np.random.default_rng(seed)
    out, k = [], 0
    while len(out) < n and k < 50 * n:
        k += 1
        with SimWorld(random_scene(seed + k), settle_time=0.2) as world:
            gt = world.ground_truth()
        ya, yb = rng.uniform(0.12, 0.28), -rng.uniform(0.12, 0.28)
        xa, xb = rng.uniform(0.35, 0.65, 2)
        h, w = rng.uniform(0.15, 0.32), rng.uniform(0.05, 0.2)
        wall = ObjectPrior("wall", "wall", Pose.from_yaw(
            [(xa + xb) / 2 + rng.uniform(-0.05, 0.05), (ya + yb) / 2, h / 2],
            rng.uniform(-0.5, 0.5)), [w, 0.05, h], shape="box")
        scene = gt.replace(objects=[wall] + [o for o in gt.objects if abs(o.center[1]) > 0.1])
        qa = robot.ik(top_down_pose([xa, ya, rng.uniform(0.12, 0.25)], rng.uniform(-1.5, 1.5)),
                      robot.home)
        qb = robot.ik(top_down_pose([xb, yb, rng.uniform(0.12, 0.25)], rng.uniform(-1.5, 1.5)),
                      robot.home)
        if qa is None or qb is None:
            continue
        ps = PlanningScene(robot, scene)
        ok = ps.is_valid(qa) and ps.is_valid(qb) and not ps.motion_valid(qa, qb)
        ps.close()
        if ok:
            out.append((scene, qa, qb))
    return out


def run_hard(robot, planner, problems, algorithm: str, ref_time: float) -> list[dict]:
    from spatialpin_ros.planning import PlanningScene
    rows = []
    for scene, qa, qb in problems:
        ps = PlanningScene(robot, scene)
        res = planner.plan(qa, qb, ps, time_limit=1.0, algorithm=algorithm)
        row = {"success": res.success, "time_s": res.planning_time, "algorithm": res.algorithm,
               "length": res.length, "reason": res.reason}
        if res.success:
            row["violations"] = limit_violations(res.trajectory, robot.nominal_limits)
            row["samples_valid"] = all(ps.is_valid(q, planner.verify_tolerance)
                                       for q in res.trajectory.positions)
        if ref_time > 0:
            ref = planner.reference(qa, qb, ps, time_limit=ref_time)
            row["reference_length"] = ref.length if ref.success else float("nan")
            row["reference_algorithm"] = ref.algorithm if ref.success else ""
        ps.close()
        rows.append(row)
    return rows


def pct(values, q):
    return float(np.percentile(values, q)) if len(values) else float("nan")


def summarize(rows: list[dict], skipped: list[dict], hard: list[dict], args: dict) -> dict:
    """The benchmark's figures from its per-scene rows and hard-motion rows."""
    infeasible = [r for r in rows if r.get("infeasible")]
    feasible = [r for r in rows if not r.get("infeasible")]
    planned = [r for r in rows if r["planned"]]
    picked = [r for r in rows if r["picked"]]
    stacked = [r for r in rows if r["stacked"]]
    pf = [r for r in picked if not r["stacked"]]
    motions = [m for r in rows for m in r["motions"]]
    planned_t = [m["time_s"] for m in motions if m["kind"] == "planned"]
    all_t = [m["time_s"] for m in motions]
    by_name: dict[str, list[float]] = {}
    for m in motions:
        by_name.setdefault(m["name"], []).append(m["time_s"])
    sampled = [m for m in motions if m["sampled"]]

    def ratios(ms):
        return [m["length"] / m["reference_length"] for m in ms
                if math.isfinite(m["reference_length"]) and m["reference_length"] > 0]

    r_sampled = ratios(sampled)
    r_planned = ratios([m for m in motions if m["kind"] == "planned"])
    viol = {"joint": 0, "velocity": 0, "acceleration": 0}
    for r in planned:
        for k in viol:
            viol[k] += r["violations"][k]
    h_ok = [h for h in hard if h["success"]]
    h_ratio = [h["length"] / h["reference_length"] for h in h_ok
               if math.isfinite(h.get("reference_length", float("nan")))]
    h_viol = {k: sum(h["violations"][k] for h in h_ok) for k in viol}
    codes: dict[str, int] = {}
    for r in feasible:
        if not r["planned"]:
            codes[r["code"]] = codes.get(r["code"], 0) + 1

    def pc(k, n):
        return 100.0 * k / n if n else float("nan")

    return {
        **args,
        "scenes_without_rule_pair": len(skipped),
        "scenes_with_rule_pair": len(rows),
        "scenes_all_pairs_infeasible": len(infeasible),
        "infeasible_codes": sorted({r["code"] for r in infeasible}),
        "feasible_tasks": len(feasible),
        "planned": len(planned), "planning_failures_by_code": codes,
        "picked": len(picked), "picked_but_failed": len(pf), "stacked": len(stacked),
        "stacked_pct_of_feasible": pc(len(stacked), len(feasible)),
        "stacked_pct_of_scenes_with_rule_pair": pc(len(stacked), len(rows)),
        "picked_pct_of_feasible": pc(len(picked), len(feasible)),
        "picked_but_failed_pct_of_feasible": pc(len(pf), len(feasible)),
        "planned_motion_time_ms": {"median": 1000 * pct(planned_t, 50),
                                   "p90": 1000 * pct(planned_t, 90),
                                   "max": 1000 * max(planned_t, default=float("nan")),
                                   "count": len(planned_t)},
        "all_motion_time_ms": {"median": 1000 * pct(all_t, 50), "p90": 1000 * pct(all_t, 90),
                               "count": len(all_t)},
        "motion_time_ms_by_name": {k: {"median": 1000 * pct(v, 50), "p90": 1000 * pct(v, 90)}
                                   for k, v in by_name.items()},
        "task_planning_time_s": {"median": pct([r["planning_time_s"] for r in planned], 50),
                                 "p90": pct([r["planning_time_s"] for r in planned], 90)},
        "sampled_motions": len(sampled),
        "path_length_ratio_sampled": {"median": pct(r_sampled, 50), "p90": pct(r_sampled, 90),
                                      "count": len(r_sampled)},
        "path_length_ratio_all_planned": {"median": pct(r_planned, 50),
                                          "p90": pct(r_planned, 90), "count": len(r_planned)},
        "violations_executed": viol,
        "horizontal_error_mm_stacked": {
            "median": 1000 * pct([r["horizontal_error_m"] for r in stacked], 50),
            "max": 1000 * max((r["horizontal_error_m"] for r in stacked), default=float("nan"))},
        "trajectory_duration_s": {"median": pct([r["duration_s"] for r in planned], 50)},
        "hard_motions": {
            "problems": len(hard), "solved": len(h_ok),
            "time_ms": {"median": 1000 * pct([h["time_s"] for h in hard], 50),
                        "p90": 1000 * pct([h["time_s"] for h in hard], 90)},
            "rrtstar_fell_back": sum(h["algorithm"].startswith("rrtstar>") for h in hard),
            "path_length_ratio": {"median": pct(h_ratio, 50), "p90": pct(h_ratio, 90),
                                  "count": len(h_ratio)},
            "references_by_aorrtc": sum(h.get("reference_algorithm") == "aorrtc" for h in hard),
            "all_samples_valid": all(h.get("samples_valid", True) for h in h_ok),
            "violations": h_viol},
    }


def print_table(s: dict) -> None:
    pm, am, hs = s["planned_motion_time_ms"], s["all_motion_time_ms"], s["hard_motions"]
    rs, ra, hr = (s["path_length_ratio_sampled"], s["path_length_ratio_all_planned"],
                  hs["path_length_ratio"])
    v = s["violations_executed"]
    ref = f"{s['ref_time']:g} s RRT*"
    print(f"\n## Pick-and-stack planning ({s['algorithm']}, seeds {s['seed0']}.."
          f"{s['seed0'] + s['scenes'] - 1}, ground-truth boxes as a stand-in for perception)\n")
    print("| metric | value |\n| --- | --- |")
    print(f"| scenes | {s['scenes']} |")
    print(f"| no pair by the rule (fewer than two free-topped boxes, or none can carry another) "
          f"| {s['scenes_without_rule_pair']} |")
    print(f"| every rule pair refused by the planner's grasp/placement checks "
          f"({', '.join(s['infeasible_codes']) or '-'}) | {s['scenes_all_pairs_infeasible']} |")
    print(f"| feasible tasks planned and executed | {s['feasible_tasks']} |")
    print(f"| planned | {s['planned']} {s['planning_failures_by_code'] or ''} |")
    print(f"| picked | {s['picked']} ({s['picked_pct_of_feasible']:.1f} %) |")
    print(f"| picked but failed | {s['picked_but_failed']} "
          f"({s['picked_but_failed_pct_of_feasible']:.1f} %) |")
    print(f"| **stacked** | **{s['stacked']} of {s['feasible_tasks']} feasible tasks "
          f"({s['stacked_pct_of_feasible']:.1f} %)**; of the {s['scenes_with_rule_pair']} "
          f"scenes with a rule pair: {s['stacked_pct_of_scenes_with_rule_pair']:.1f} % |")
    print(f"| stacked: horizontal error median / max | "
          f"{s['horizontal_error_mm_stacked']['median']:.1f} / "
          f"{s['horizontal_error_mm_stacked']['max']:.1f} mm |")
    print(f"| planning time per planned (joint-space) motion, median / p90 / max | "
          f"{pm['median']:.1f} / {pm['p90']:.1f} / {pm['max']:.1f} ms (n={pm['count']}) |")
    print(f"| planning time per motion incl. straight moves, median / p90 | {am['median']:.1f} / "
          f"{am['p90']:.1f} ms (n={am['count']}) |")
    by = s["motion_time_ms_by_name"]
    print("| median per motion: " + ", ".join(f"{k} {v_['median']:.0f}" for k, v_ in by.items())
          + " | ms |")
    print(f"| whole-task planning time, median / p90 | {s['task_planning_time_s']['median']:.2f} "
          f"/ {s['task_planning_time_s']['p90']:.2f} s |")
    print(f"| planned motions that needed sampling (else the straight joint segment was free) | "
          f"{s['sampled_motions']} of {pm['count']} |")
    print(f"| path length / {ref} reference, sampled task motions, median / p90 | "
          f"{rs['median']:.3f} / {rs['p90']:.3f} (n={rs['count']}) |")
    print(f"| same over all planned task motions (free straight segment: ratio 1) | "
          f"{ra['median']:.3f} / {ra['p90']:.3f} (n={ra['count']}) |")
    print(f"| executed trajectory duration, median | {s['trajectory_duration_s']['median']:.1f} s |")
    print(f"| limit violations on executed trajectories (joint / velocity / acceleration "
          f"samples) | {v['joint']} / {v['velocity']} / {v['acceleration']} |")
    if hs["problems"]:
        hv = hs["violations"]
        print(f"| hard motions (tall wall between the ends): solved within 1 s | {hs['solved']} of "
              f"{hs['problems']} (RRT* found none within its budget, fallback took over: "
              f"{hs['rrtstar_fell_back']}) |")
        print(f"| hard motions: planning time median / p90 | {hs['time_ms']['median']:.0f} / "
              f"{hs['time_ms']['p90']:.0f} ms |")
        print(f"| hard motions: path length / {ref} reference, median / p90 | "
              f"{hr['median']:.3f} / {hr['p90']:.3f} (n={hr['count']}; "
              f"{hs['references_by_aorrtc']} references by AORRTC where RRT* found none) |")
        print(f"| hard motions: limit violations (joint / velocity / acceleration); every sample "
              f"collision-free | {hv['joint']} / {hv['velocity']} / {hv['acceleration']}; "
              f"{hs['all_samples_valid']} |")
    if "wall_time_s" in s:
        print(f"| wall time | {s['wall_time_s']:.0f} s |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed0", type=int, default=4000)
    ap.add_argument("--algorithm", default="rrtstar", choices=["rrtstar", "rrtconnect"])
    ap.add_argument("--ref-time", type=float, default=5.0,
                    help="seconds of the long RRT* reference run (0: none)")
    ap.add_argument("--motion-time-limit", type=float, default=1.0)
    ap.add_argument("--max-pairs", type=int, default=20,
                    help="pairs tried per scene when the planner finds one infeasible")
    ap.add_argument("--hard", type=int, default=20,
                    help="synthetic motions that need sampling (tall wall between the ends)")
    ap.add_argument("--out", default=str(ROOT / "results" / "planning.json"))
    ap.add_argument("--from-json", help="only print the table of an earlier run's JSON")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.from_json:
        print_table(json.loads(Path(args.from_json).read_text())["summary"])
        return 0

    t_start = time.perf_counter()
    robot = RobotModel("panda")
    planner = MotionPlanner(robot, seed=1)
    rows, skipped = [], []
    for seed in range(args.seed0, args.seed0 + args.scenes):
        spec = random_scene(seed)
        with SimWorld(spec) as world:
            gt = world.ground_truth()
            pairs = candidate_pairs(gt)
            if not pairs:
                skipped.append({"seed": seed, "why": "no pair by the rule"})
                continue
            tried = []
            plan = None
            for obj, tgt in pairs[:args.max_pairs]:
                plan = plan_pick_and_place(robot, gt, obj, tgt, algorithm=args.algorithm,
                                           planner=planner,
                                           motion_time_limit=args.motion_time_limit,
                                           reference_time=args.ref_time)
                tried.append({"object": obj, "target": tgt, "code": plan.status.value,
                              "reason": plan.reason, "planning_time_s": plan.planning_time})
                if plan.success or plan.status.value not in ("blocked", "unreachable"):
                    break
            row = {"seed": seed, "n_objects": len(gt.objects), "object": obj, "target": tgt,
                   "tried": tried, "planned": bool(plan.success), "code": plan.status.value,
                   "reason": plan.reason, "planning_time_s": plan.planning_time,
                   "motions": [{"name": m.name, "kind": m.kind, "time_s": m.planning_time,
                                "sampled": m.sampled, "length": m.length,
                                "reference_length": m.reference_length,
                                "reference_time_s": m.reference_time,
                                "reference_algorithm": m.reference_algorithm}
                               for m in plan.motions]}
            if not plan.success and plan.status.value in ("blocked", "unreachable"):
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
    hard = run_hard(robot, planner, hard_problems(robot, args.hard, args.seed0 + 10000),
                    args.algorithm, args.ref_time) if args.hard > 0 else []
    summary = summarize(rows, skipped, hard, {
        "scenes": args.scenes, "seed0": args.seed0, "algorithm": args.algorithm,
        "ref_time": args.ref_time, "motion_time_limit": args.motion_time_limit})
    summary["wall_time_s"] = time.perf_counter() - t_start
    summary["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "platform": platform.platform()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "scenes": rows, "skipped": skipped,
                               "hard_motions": hard}, indent=1, default=float))
    print_table(summary)
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
