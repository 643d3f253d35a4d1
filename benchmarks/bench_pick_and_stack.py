"""Pick and stack with the embedded default: geometric perception, geometric proposer, OMPL
planning, executed by the simulated arm (``--robot``: a shipped robot description such as panda
or xarm6, or a YAML file). Scored with the paper's three levels.

    scripts/run python benchmarks/bench_pick_and_stack.py [--scenes 100] [--seed0 5000]
        [--robot xarm6]

For random scenes (seeds from --seed0 on): render 640x480 RGB-D, perceive it, ask the geometric
proposer for tasks, plan the stack proposals in order (plan only, ``planning.plan_task``: a
task blocked by its neighbours may first move some of them out of the way; defaults as the
manipulation node's parameters: up to 3 neighbours tried, up to 2 moved) and execute the first
that plans, as the manipulation node does. The first --scenes scenes in which the proposer
offers a stack task are scored; scenes with none are counted and skipped. The pipeline never reads the simulator's truth. The truth
scores only:
- picked: the object was lifted 3 cm or more during the lift stage;
- picked but failed: picked, but not stacked (slipped or collided);
- stacked: the object ends on the target, within 2 cm of its centre horizontally and 1 cm
  vertically.
Also reported: per-motion planning time, path length against a long-run RRT* reference, and
limit violations (joint, velocity, acceleration) on every executed trajectory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pybullet as pb

from spatialpin_ros.perception import make_backend
from spatialpin_ros.planning import RobotModel, limit_violations, plan_task
from spatialpin_ros.planning.recovery import describe_grasp
from spatialpin_ros.reasoning.tasks import GeometricProposer
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld


def truth_object(world, scene, oid):
    """The simulator body of a perceived object, for scoring only: the nearest true object of
    the same colour, else (perception named the colour wrongly) the nearest true object."""
    o = scene.get(oid)
    for same_colour in (True, False):
        best, bd = None, 1e9
        for so in world.objects:
            if same_colour and so.spec.color_name != o.color_name:
                continue
            pose, _ = world.object_box(so)
            d = float(np.linalg.norm(pose.position - o.center))
            if d < bd:
                best, bd = so, d
        if best is not None:
            return best
    return None


def execute(world, traj, obj_body, lift_stage):
    """Run the trajectory, tracking the object's height; returns max z during the lift."""
    z0 = pb.getBasePositionAndOrientation(obj_body, physicsClientId=world.client)[0][2]
    world.start_trajectory(traj)
    zmax = z0
    t0 = world.sim_time
    while world.sim_time - t0 < traj.duration + 0.6:
        world.step(4)
        t = world.sim_time - t0
        if lift_stage[0] <= t <= lift_stage[1] + 0.3:
            z = pb.getBasePositionAndOrientation(obj_body, physicsClientId=world.client)[0][2]
            zmax = max(zmax, z)
    return zmax - z0


def run_scene(seed, args, backend, proposer, robot, nominal, motion_ms, ratios, viol):
    """Perceive, propose, plan and execute one random scene; its row, or None when the
    proposer offers no stack task. Adds to ``motion_ms``, ``ratios`` and ``viol``."""
    spec = random_scene(seed)
    with SimWorld(spec, robot=robot.description) as w:
        frame = w.render()
        backend.reset()
        scene = backend.perceive(frame)
        tasks = [t for t in proposer.propose(scene, 0) if t.action == "stack"]
        if not tasks:
            return None
        row = {"seed": seed, "objects": len(spec.objects), "proposals": len(tasks)}
        names, q, _, _ = w.joint_state()
        q0 = np.array([q[names.index(n)] for n in robot.arm_joints])
        plan, task, tried = None, None, []
        for t in tasks:
            p = plan_task(robot, scene, t.object_id, t.target_id, q_start=q0,
                          max_clearing=args.max_clearing, max_moves=args.max_moves,
                          reference_time=args.reference_time)
            tried.append({"task": t.description, "status": p.status.value,
                          "reason": p.reason[:600], "planning_s": round(p.planning_time, 2)})
            if p.cleared:
                tried[-1]["cleared"] = [oid for oid, _ in p.cleared]
            motion_ms += [1000 * m.planning_time for m in p.motions]
            if p.success:
                plan, task = p, t
                break
        row["tried"] = tried
        if plan is None:
            row.update(planned=False, picked=False, stacked=False)
            return row
        for m in plan.motions:
            if m.sampled and math.isfinite(m.reference_length) and m.reference_length > 0:
                ratios.append(m.length / m.reference_length)
        v = limit_violations(plan.trajectory, nominal)
        for k in viol:
            viol[k] += v[k]
        a_body = truth_object(w, scene, task.object_id)
        b_body = truth_object(w, scene, task.target_id)
        dz = execute(w, plan.trajectory, a_body.body, plan.stage("lift"))
        a_pose, a_ext = w.object_box(a_body)
        b_pose, b_ext = w.object_box(b_body)
        dxy = float(np.linalg.norm(a_pose.position[:2] - b_pose.position[:2]))
        gap = float((a_pose.position[2] - a_ext[2] / 2) - (b_pose.position[2] + b_ext[2] / 2))
        row.update(planned=True, task=task.description, cleared=[c for c, _ in plan.cleared],
                   picked=bool(dz >= 0.03), stacked=bool(dxy < 0.02 and abs(gap) < 0.01),
                   lift_m=round(dz, 4), offset_cm=round(100 * dxy, 2),
                   gap_cm=round(100 * gap, 2), planning_s=round(plan.planning_time, 3),
                   grasp=describe_grasp(plan), violations=v)
        return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed0", type=int, default=5000)
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="run exactly these seeds (for diagnosis; --scenes and --seed0 ignored)")
    ap.add_argument("--reference-time", type=float, default=0.0,
                    help="seconds of long-run RRT* per sampled motion, for path-length ratios")
    ap.add_argument("--max-clearing", type=int, default=3,
                    help="neighbours tried to move out of the way of a blocked task (0: never)")
    ap.add_argument("--max-moves", type=int, default=2,
                    help="neighbours moved at most to clear the way for one task")
    ap.add_argument("--robot", default="panda",
                    help="robot description: a name under config/robots/ or a YAML file")
    ap.add_argument("--out", default="benchmarks/results/pick_and_stack.json")
    args = ap.parse_args()
    backend = make_backend("geometric")
    proposer = GeometricProposer()
    robot = RobotModel(args.robot)
    nominal = robot.joint_limits(nominal=True)
    rows, skipped = [], []
    motion_ms, ratios, viol = [], [], {"joint": 0, "velocity": 0, "acceleration": 0}
    t_start = time.time()
    seeds = (iter(args.seeds) if args.seeds else
             iter(range(args.seed0, args.seed0 + 10 * args.scenes)))
    limit = len(args.seeds) if args.seeds else args.scenes
    last = args.seed0
    for seed in seeds:
        if len(rows) >= limit:
            break
        last = seed
        row = run_scene(seed, args, backend, proposer, robot, nominal, motion_ms, ratios, viol)
        if row is None:
            skipped.append(seed)
            continue
        rows.append(row)
        print(f"{seed}: {'stacked' if row['stacked'] else 'FAILED'} "
              f"{row.get('task', '')} {[t['status'] for t in row['tried']]}"
              + (f" offset {row['offset_cm']} cm" if row["planned"] else ""), flush=True)
    seed = last + 1
    n = len(rows)
    picked = sum(r["picked"] for r in rows)
    stacked = sum(r["stacked"] for r in rows)
    failed = sum(r["picked"] and not r["stacked"] for r in rows)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "robot": robot.name,
           "scenes": n,
           "seeds": args.seeds or [args.seed0, seed - 1], "skipped_no_stack_proposal": len(skipped),
           "planned": sum(r["planned"] for r in rows),
           "with_clearing_move": sum(bool(r.get("cleared")) for r in rows),
           "picked_pct": 100 * picked / n, "picked_but_failed_pct": 100 * failed / n,
           "stacked_pct": 100 * stacked / n,
           "motion_planning_ms": {"median": statistics.median(motion_ms),
                                  "p90": float(np.percentile(motion_ms, 90)),
                                  "count": len(motion_ms)},
           "path_length_ratio_vs_reference": ({"median": statistics.median(ratios),
                                               "count": len(ratios)} if ratios else None),
           "limit_violations": viol, "wall_s": round(time.time() - t_start, 1), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"| scenes | picked | picked but failed | stacked | motion planning median / p90 | "
          f"limit violations |\n| --- | --- | --- | --- | --- | --- |\n| {n} (skipped "
          f"{len(skipped)} without a stack proposal) | {res['picked_pct']:.0f} % | "
          f"{res['picked_but_failed_pct']:.0f} % | {res['stacked_pct']:.0f} % | "
          f"{res['motion_planning_ms']['median']:.1f} / {res['motion_planning_ms']['p90']:.1f} ms "
          f"({len(motion_ms)} motions) | {viol} |")
    if ratios:
        print(f"path length / long-run RRT* reference: median {statistics.median(ratios):.3f} "
              f"({len(ratios)} sampled motions)")
    print(f"wall time {res['wall_s']} s")
    robot.close()


if __name__ == "__main__":
    main()
