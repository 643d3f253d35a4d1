"""Everyday objects in the hand: tasks of every kind on random tabletops of textured meshes
(bowls, cups, mugs, plates, bottles, cans, printed food boxes, pybullet_data objects), perceived
with the D435 depth-noise model, planned and executed by the simulated arm (the Panda).

    scripts/run python benchmarks/bench_everyday.py [--scenes 100] [--seed0 9000]

For random scenes (``random_scene(seed, mix="meshes")``, seeds from --seed0 on): render, add
D435-like depth noise (seeded per scene), perceive, and ask the geometric proposer for tasks
(stack, put_in, place_on, place_next_to; moves to a free spot are left out). Scene i prefers the
kind i mod 4 where it is proposed; the proposals are plan-checked in that order (at most
--max-tries) and the first that plans is executed by ``sim_tasks.SimTaskRunner``: the hand is
checked after the close and the lift (finger gap and speed), and on a slip the arm goes home,
re-perceives and tries once more. The pipeline never reads the simulator's truth.

Scored on the truth (each task by its own rule, ``core.task_kinds.check_done``, applied to the
true boxes after the task; the pipeline's own verdict on the perceived scene is reported beside
it), per kind and per object family (the moved object's and the target's true kind). Also:
picked (lifted 3 cm or more), slipped (an empty hand seen after closing or lifting), stuck (still
in the gripper at the end: within 8 cm of the TCP), knocked over (another object tilted by more than 30 degrees), limit
violations. Every proposal's target is recorded (kind, shape, container flag) for the check that
no irregular or round object is proposed as a base.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from spatialpin_ros.core.task_kinds import BASE_KINDS, TaskKind, check_done
from spatialpin_ros.core.types import ObjectPrior
from spatialpin_ros.perception import make_backend
from spatialpin_ros.planning import RobotModel
from spatialpin_ros.reasoning.tasks import GeometricProposer
from spatialpin_ros.sim.scene_spec import random_scene
from spatialpin_ros.sim.world import SimWorld
from spatialpin_ros.sim_tasks import SimTaskRunner

KINDS = [TaskKind.STACK, TaskKind.PUT_IN, TaskKind.PLACE_ON, TaskKind.PLACE_NEXT_TO]


def nearest_truth(world, prior: ObjectPrior):
    """The true object nearest a perceived one (scoring only)."""
    best, bd = None, 1e9
    for t in world.truth():
        d = float(np.linalg.norm(t.pose.position[:2] - prior.center[:2]))
        if d < bd:
            best, bd = t, d
    return best


def truth_prior(world, name: str) -> ObjectPrior:
    return next(o for o in world.ground_truth().objects if o.id == name)


def tilt_deg(pose) -> float:
    z = pose.rotation.as_matrix()[:, 2]
    return math.degrees(math.acos(float(np.clip(z[2], -1, 1))))


def in_hand(runner, robot, obj: ObjectPrior, radius: float = 0.08) -> bool:
    """Whether the object (its true prior) is still in the gripper at the end: its centre
    within ``radius`` of the TCP (scoring only). A centre high above the table is not enough:
    an object stacked on a tall box stands that high."""
    q, _ = runner._state()
    return bool(np.linalg.norm(obj.center - robot.fk(q).position) < radius)


def order(tasks, prefer: TaskKind):
    return ([t for t in tasks if t.kind == prefer.value]
            + [t for t in tasks if t.kind != prefer.value])


def run_scene(seed, i, backend, proposer, robot, args):
    spec = random_scene(seed, mix="meshes")
    with SimWorld(spec) as w:
        backend.reset()
        track = {"body": None, "z0": 0.0, "zmax": 0.0}

        def watch():
            if track["body"] is not None:
                z = w.object_box(track["body"])[0].position[2]
                track["zmax"] = max(track["zmax"], z)

        runner = SimTaskRunner(w, backend, robot, noise_seed=seed, watch=watch,
                               use_points=not args.box_grasps)
        scene = runner.perceive()
        all_tasks = [t for t in proposer.propose(scene, 0) if t.kind != TaskKind.MOVE.value]
        bases = [{"kind": t.kind, "target_shape": scene.get(t.target_id).shape,
                  "target_container": bool(scene.get(t.target_id).container)}
                 for t in all_tasks if TaskKind(t.kind) in BASE_KINDS]
        if not all_tasks:
            return None, bases
        row = {"seed": seed, "objects": len(spec.objects), "proposals": len(all_tasks),
               "proposed_kinds": dict(collections.Counter(t.kind for t in all_tasks))}
        tried, chosen = [], None
        for t in order(all_tasks, KINDS[i % 4])[:args.max_tries]:
            p = runner.plan(scene, TaskKind(t.kind), t.object_id, t.target_id, t.place_pose)
            tried.append({"task": t.description, "kind": t.kind, "status": p.status.value})
            if p.success:
                chosen = (t, p)
                break
        row["tried"] = tried
        if chosen is None:
            row.update(planned=False, success=False)
            return row, bases
        t, p = chosen
        a_true = nearest_truth(w, scene.get(t.object_id))
        b_true = nearest_truth(w, scene.get(t.target_id)) if t.target_id else None
        sim_obj = next(o for o in w.objects if o.spec.name == a_true.name)
        track.update(body=sim_obj, z0=a_true.pose.position[2], zmax=a_true.pose.position[2])
        before = {o.name: o for o in w.truth()}
        a_before = truth_prior(w, a_true.name)
        run = runner.run(scene, t, plan=p)
        a_after = truth_prior(w, a_true.name)
        b_after = truth_prior(w, b_true.name) if b_true is not None else None
        truth_check = check_done(TaskKind(t.kind), a_before, a_after, b_after, t.place_pose)
        after = {o.name: o for o in w.truth()}
        knocked = [n for n, o in after.items() if n != a_true.name
                   and tilt_deg(o.pose) - tilt_deg(before[n].pose) > 30]
        row.update(planned=True, kind=t.kind, task=t.description, object_family=a_true.kind,
                   target_family=b_true.kind if b_true is not None else "",
                   grasp=run.grasp, code=run.status.value if run.status else "", slipped=run.slipped, retried=run.retried,
                   hand=[h.state.value for h in run.hand],
                   picked=bool(track["zmax"] - track["z0"] >= 0.03),
                   stuck=in_hand(runner, robot, a_after),
                   knocked_over=knocked, success=bool(truth_check.ok),
                   truth_check=truth_check.detail,
                   perceived_ok=bool(run.check.ok) if run.check else None,
                   perceived_check=run.check.detail if run.check else run.reason[:200],
                   cleared=[c for c, _ in p.cleared], violations=run.violations)
        return row, bases


HOLLOW_OR_IRREGULAR = ("cup", "mug", "bowl", "plate", "bottle", "pybullet")


def failure_cause(r) -> str:
    """The cause of an executed task's failure, read from its row (scoring only; the truth's
    families name the target): "" for a success."""
    if r["success"]:
        return ""
    code, hand = r["code"], r["hand"]
    if r["stuck"]:
        return "stuck in the gripper"
    if code in ("missing_object", "infeasible_after_slip", "slipped") or (
            r["slipped"] and code != "ok"):
        return f"slip, then {code}"
    if hand and hand[-1] == "empty" or not r["picked"]:
        return "not picked"
    if r["slipped"]:
        return "slip, retried, then failed"
    if r["kind"] == "stack" and r["target_family"] in HOLLOW_OR_IRREGULAR:
        return f"stacked on a {r['target_family']}"
    if r["knocked_over"]:
        return "knocked another over"
    return f"{r['kind']}: placed, rule not met"


def pct(a, n):
    return round(100.0 * a / n, 1) if n else None


def summary(rows):
    ex = [r for r in rows if r["planned"]]
    out = {"scenes": len(rows), "planned": len(ex),
           "success_pct_of_executed": pct(sum(r["success"] for r in ex), len(ex)),
           "success_pct_of_scenes": pct(sum(r["success"] for r in rows), len(rows)),
           "picked_pct": pct(sum(r["picked"] for r in ex), len(ex)),
           "slipped_pct": pct(sum(r["slipped"] for r in ex), len(ex)),
           "retried": sum(r["retried"] for r in ex),
           "stuck_pct": pct(sum(r["stuck"] for r in ex), len(ex)),
           "knocked_over_pct": pct(sum(bool(r["knocked_over"]) for r in ex), len(ex)),
           "perceived_check_agrees_pct": pct(sum(r["perceived_ok"] == r["success"] for r in ex),
                                             len(ex))}
    for key in ("kind", "object_family", "target_family"):
        groups = collections.defaultdict(list)
        for r in ex:
            groups[r[key] or "-"].append(r["success"])
        out[f"by_{key}"] = {k: {"executed": len(v), "success_pct": pct(sum(v), len(v))}
                            for k, v in sorted(groups.items())}
    out["failure_causes"] = dict(collections.Counter(
        failure_cause(r) for r in ex if not r["success"]).most_common())
    viol = {"joint": 0, "velocity": 0, "acceleration": 0}
    for r in ex:
        for k in viol:
            viol[k] += r["violations"][k]
    out["limit_violations"] = viol
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--seed0", type=int, default=9000)
    ap.add_argument("--max-tries", type=int, default=4, help="proposals plan-checked per scene")
    ap.add_argument("--out", default="benchmarks/results/everyday.json")
    ap.add_argument("--box-grasps", action="store_true",
                    help="grasp from the perceived boxes only (no grasps sampled on the "
                         "perceived points), for comparison")
    args = ap.parse_args()
    backend, proposer, robot = make_backend("geometric"), GeometricProposer(), RobotModel()
    rows, bases, skipped, seed, i = [], [], [], args.seed0, 0
    t0 = time.time()
    while len(rows) < args.scenes and seed < args.seed0 + 10 * args.scenes:
        row, b = run_scene(seed, i, backend, proposer, robot, args)
        bases += [dict(x, seed=seed) for x in b]
        if row is None:
            skipped.append(seed)
        else:
            rows.append(row)
            i += 1
            print(json.dumps({k: row.get(k) for k in ("seed", "kind", "code", "success",
                                                      "perceived_ok", "slipped")}), flush=True)
        seed += 1
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
           "seeds": [args.seed0, seed - 1], "skipped_no_proposal": skipped,
           **summary(rows),
           "proposals_with_base": len(bases),
           "irregular_or_round_bases": sum(x["target_shape"] == "sphere" or (
               x["target_shape"] == "other" and not x["target_container"]) for x in bases),
           "wall_s": round(time.time() - t0, 1), "rows": rows, "bases": bases}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k not in ("rows", "bases")}, indent=1))
    robot.close()


if __name__ == "__main__":
    main()
