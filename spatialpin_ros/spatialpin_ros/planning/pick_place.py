"""Pick-and-place (stacking) task planning: one timed trajectory for the arm and the fingers
(ROS-free).

Stages, in order (names as in ``TaskPlan.stages``)::

    preshape   fingers open to the object's width plus a margin (arm still)
    approach   planned motion from q_start to the pre-grasp pose (TCP 10 cm above the grasp)
    descend    straight down to the grasp pose (the object may touch the gripper)
    close      fingers close to squeeze the object, then a short dwell
    lift       straight up (the object now moves with the hand)
    transport  planned motion, holding the object, to the pre-place pose
    lower      straight down until the object's bottom is ``clearance`` above the target's top
    release    fingers open, then a short dwell
    retreat    straight up
    home       planned motion back to ``q_home`` (optional)

The planner reads only the given Scene of priors (and an optional point cloud), never a
simulator. Failure reasons start with a fixed phrase and ``TaskPlan.code`` names them:
``missing_object`` ("missing object"), ``too_wide`` ("object too wide"), ``target_too_small``
("target too small"), ``no_flat_top``, ``unreachable`` ("unreachable"), ``blocked`` ("no
collision-free grasp/placement"), ``timeout`` ("timeout"), ``cancelled`` ("cancelled"),
``collision`` ("start in collision"), ``error``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.planning.cartesian import gripper_move, straight_line
from spatialpin_ros.core.stacking import (MAX_GRASP_WIDTH, MIN_SUPPORT, Infeasible, bottom_z,
                                          clip_polygon, footprint, free_spot, grasp_width,
                                          point_polygon_distance,
                                          polygon_area, polygon_gap, top_z)
from spatialpin_ros.planning.grasps import (Grasp, Placement, grasp_candidates, placements_at,
                                            placements_for, stack_poses)
from spatialpin_ros.planning.planner import MotionPlanner, PlanResult, path_length
from spatialpin_ros.core.task_kinds import (TaskKind, check_kind, phantom_reason,
                                            place_on_pose, put_in_pose)
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.scene import TABLE, PlanningScene, support_z
from spatialpin_ros.planning.timing import TimedPath

@dataclass
class MotionRecord:
    """One arm motion of the plan: ``kind`` "planned" (OMPL / direct) or "cartesian";
    ``planning_time`` s; ``path`` (K, dof) its waypoints; ``sampled``: OMPL was needed;
    ``length`` joint-space length (rad); ``reference_length`` of a long RRT* run when asked
    (``reference_algorithm``: "rrtstar", or "aorrtc" where RRT* found no path)."""

    name: str
    kind: str
    planning_time: float
    path: np.ndarray
    sampled: bool = False
    length: float = float("nan")
    reference_length: float = float("nan")
    reference_time: float = float("nan")
    reference_algorithm: str = ""


@dataclass
class TaskPlan:
    """The result of ``plan_pick_and_place``.

    ``trajectory``: arm and gripper joints (``RobotModel.joint_names``) sampled every ``dt`` s, positions,
    velocities and accelerations. ``ee_path`` (N, 3) and ``ee_quat`` (N, 4): the TCP at each
    sample. ``stages``: (name, t_start, t_end) in seconds from the start. ``planning_time``:
    wall-clock seconds of the whole call. ``motions``: every arm motion with its planning time.
    """

    success: bool
    reason: str = ""
    code: str = "ok"
    trajectory: Optional[JointTrajectory] = None
    ee_path: Optional[np.ndarray] = None
    ee_quat: Optional[np.ndarray] = None
    stages: list[tuple[str, float, float]] = field(default_factory=list)
    planning_time: float = 0.0
    motions: list[MotionRecord] = field(default_factory=list)
    grasp: Optional[Grasp] = None
    placement: Optional[Placement] = None
    #: Objects moved out of the way first (``plan_task``): (object id, where its centre went).
    cleared: list[tuple[str, Pose]] = field(default_factory=list)

    @property
    def motion_times(self) -> dict[str, float]:
        """Planning seconds per motion name."""
        return {m.name: m.planning_time for m in self.motions}

    def stage(self, name: str) -> tuple[float, float]:
        for n, a, b in self.stages:
            if n == name:
                return a, b
        raise KeyError(name)


class _Fail(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def supporting_object(prior: ObjectPrior, scene: Scene, table_z: float) -> Optional[str]:
    """The object the prior stands on (its top within 2 cm of the prior's bottom, footprints
    overlapping), or None for the table."""
    b = bottom_z(prior)
    if b < table_z + 0.015:
        return None
    fp = footprint(prior)
    best, best_area = None, 0.0
    for o in scene.objects:
        if o.id == prior.id or abs(top_z(o) - b) > 0.02:
            continue
        inter = clip_polygon(fp, footprint(o))
        area = polygon_area(inter) if len(inter) >= 3 else 0.0
        if area > best_area:
            best, best_area = o.id, area
    return best


def object_on_top(prior: ObjectPrior, scene: Scene) -> Optional[str]:
    """An object resting on top of ``prior`` (None when its top is clear)."""
    t = top_z(prior)
    fp = footprint(prior)
    for o in scene.objects:
        if o.id == prior.id:
            continue
        if abs(bottom_z(o) - t) < 0.02:
            inter = clip_polygon(footprint(o), fp)
            if len(inter) >= 3 and polygon_area(inter) > 1e-5:
                return o.id
    return None


def without_phantoms(scene: Scene, keep: Sequence[Optional[str]] = ()) -> Scene:
    """The scene without phantom pieces (``core.task_kinds.phantom_reason``), except ``keep``."""
    objs = [o for o in scene.objects
            if o.id in keep or phantom_reason(o, scene.objects) is None]
    return scene if len(objs) == len(scene.objects) else scene.replace(objects=objs)


def object_inside(container: ObjectPrior, scene: Scene) -> Optional[str]:
    """An object standing in or on a container (its centre over the container's footprint, its
    bottom between the inner bottom and 2 cm above the rim), or None."""
    fp = footprint(container)
    lo = top_z(container) - float(container.inner_depth) - 0.02
    for o in scene.objects:
        if o.id == container.id:
            continue
        if (point_polygon_distance(o.center[None, :2], fp)[0] == 0.0
                and lo <= bottom_z(o) <= top_z(container) + 0.02):
            return o.id
    return None


class _Builder:
    """Concatenates timed pieces (arm, and the gripper's finger opening turned into its joints'
    positions) into one trajectory over ``robot.joint_names``."""

    def __init__(self, robot: RobotModel, q0: np.ndarray, f0: float, dt: float):
        self.robot = robot
        self.n, self.dof = len(robot.joint_names), robot.dof
        self.t = [0.0]
        self.q = [np.concatenate([q0, robot.gripper_positions(f0)])]
        self.v = [np.zeros(self.n)]
        self.a = [np.zeros(self.n)]
        self.dt = dt
        self.stages: list[tuple[str, float, float]] = []

    @property
    def now(self) -> float:
        return self.t[-1]

    @property
    def last(self) -> np.ndarray:
        return self.q[-1]

    def _append(self, tp: TimedPath, arm: bool, name: str) -> None:
        t0 = self.now
        base = self.last.copy()
        d = self.dof
        for i in range(1, len(tp.t)):
            q = base.copy()
            v, a = np.zeros(self.n), np.zeros(self.n)
            if arm:
                q[:d], v[:d], a[:d] = tp.q[i], tp.v[i], tp.a[i]
            else:
                f, vf, af = float(tp.q[i, 0]), float(tp.v[i, 0]), float(tp.a[i, 0])
                d1, d2 = self.robot.gripper_rates(f)
                q[d:] = self.robot.gripper_positions(f)
                v[d:] = d1 * vf
                a[d:] = d1 * af + d2 * vf * vf
            self.t.append(t0 + float(tp.t[i]))
            self.q.append(q)
            self.v.append(v)
            self.a.append(a)
        self.stages.append((name, t0, self.now))

    def arm(self, tp: TimedPath, name: str) -> None:
        self._append(tp, True, name)

    def fingers(self, tp: TimedPath, name: str) -> None:
        self._append(tp, False, name)

    def dwell(self, seconds: float, name: Optional[str] = None) -> None:
        t0 = self.now
        n = max(1, int(round(seconds / self.dt)))
        for _ in range(n):
            self.t.append(self.now + self.dt)
            self.q.append(self.last.copy())
            self.v.append(np.zeros(self.n))
            self.a.append(np.zeros(self.n))
        if name:
            self.stages.append((name, t0, self.now))
        elif self.stages:
            n0, a0, _ = self.stages[-1]
            self.stages[-1] = (n0, a0, self.now)

    def trajectory(self) -> JointTrajectory:
        return JointTrajectory(list(self.robot.joint_names), np.array(self.t), np.array(self.q), np.array(self.v),
                               np.array(self.a))


def plan_pick_and_place(robot: RobotModel, scene: Scene, object_id: str,
                        target_id: Optional[str] = None, place_pose: Optional[Pose] = None,
                        q_start: Optional[Sequence[float]] = None, *,
                        finger_start: Optional[float] = None,
                        planner: Optional[MotionPlanner] = None, algorithm: str = "rrtstar",
                        motion_time_limit: float = 1.0, time_limit: float = 10.0,
                        return_home: bool = True, q_home: Optional[Sequence[float]] = None,
                        should_cancel: Optional[Callable[[], bool]] = None,
                        cloud: Optional[np.ndarray] = None, padding: float = 0.01,
                        approach_height: float = 0.10, clearance: float = 0.005,
                        min_support: float = MIN_SUPPORT,
                        max_grasp_width: Optional[float] = None,
                        grasp_depth: float = 0.025, squeeze: float = 0.005,
                        cartesian_speed: float = 0.1, close_dwell: float = 0.4,
                        release_dwell: float = 0.3, reference_time: float = 0.0,
                        fine_clearance: float = 0.004,
                        compute_ee_path: bool = True, kind: str = "") -> TaskPlan:
    """Plan picking ``object_id`` and putting it on ``target_id`` (centred on its top, let go
    ``clearance`` above it), or down to rest with its centre at ``place_pose`` (its yaw or a
    half turn from it), from arm configuration ``q_start`` (default home) with the fingers at
    ``finger_start`` (m each). Reads only ``scene`` (and ``cloud``: optional (N, 3) world
    points, voxelised as extra obstacles where no prior is).

    ``motion_time_limit``: seconds per planned motion; ``time_limit``: seconds for the whole
    call (both give reason "timeout"). ``should_cancel()`` is polled between stages and inside
    planning (reason "cancelled"). ``padding``: metres added around every prior for the planned
    motions (the short straight moves near contact check the true shapes, keeping
    ``fine_clearance`` metres, except for the contacts the stage needs). ``reference_time`` > 0 also runs a long RRT* of that many seconds for every
    motion that needed sampling (``MotionRecord.reference_length``; its time is not counted in
    ``planning_time``). ``kind``: ``put_in`` or ``place_on`` put the object into or onto the
    target (``core.task_kinds``' poses: let go above a container's rim, or on a plate's inner
    bottom); otherwise a target means stacking on it. Never raises for an infeasible task: see
    ``TaskPlan.code``.
    """
    t_call = time.perf_counter()
    ref_spent = [0.0]
    q_start = np.asarray(robot.home if q_start is None else q_start, dtype=float)
    q_home = robot.home if q_home is None else np.asarray(q_home, dtype=float)
    finger_start = robot.finger_open if finger_start is None else float(finger_start)
    max_grasp_width = robot.max_grasp_width if max_grasp_width is None else max_grasp_width
    planner = planner or MotionPlanner(robot)
    plan = TaskPlan(False)
    ps: Optional[PlanningScene] = None

    def elapsed() -> float:
        return time.perf_counter() - t_call - ref_spent[0]

    def check_cancel() -> None:
        if should_cancel is not None and should_cancel():
            raise _Fail("cancelled", "cancelled")
        if elapsed() > time_limit:
            raise _Fail("timeout", f"timeout: planning took over the time limit of "
                        f"{time_limit:.3g} s")

    try:
        if target_id is None and place_pose is None:
            raise ValueError("give target_id or place_pose")
        check_cancel()
        try:
            obj = scene.get(object_id)
        except KeyError as e:
            raise _Fail("missing_object", f"missing object: {e.args[0]}") from None
        target = None
        if target_id is not None:
            if target_id == object_id:
                raise _Fail("error", "the object cannot be stacked on itself")
            try:
                target = scene.get(target_id)
            except KeyError as e:
                raise _Fail("missing_object", f"missing object (target): {e.args[0]}") from None
        # Phantoms (pieces smaller than a graspable object, or inside another object's box)
        # are no obstacles.
        scene = without_phantoms(scene, keep=(object_id, target_id))
        ps = PlanningScene(robot, scene, padding=padding, cloud=cloud)
        table_z = ps.table_z
        above = object_on_top(obj, scene)
        if above is not None:
            raise _Fail("blocked", f"no collision-free grasp: {above!r} rests on {object_id!r}")
        if target is not None:
            above_t = (object_on_top(target, scene) if not target.container else
                       object_inside(target, scene))
            if above_t is not None:
                raise _Fail("blocked", f"no collision-free placement: {above_t!r} rests on "
                            f"target {target_id!r}")
        # Out of the arm's reach at any height: fail at once, before trying every grasp.
        for what, xy in (("object", obj.center[:2]),
                         ("target", None if target is None else target.center[:2]),
                         ("place pose", None if place_pose is None else place_pose.position[:2])):
            r = (float(np.hypot(*(np.asarray(xy) - robot.shoulder[:2])))
                 if xy is not None else 0.0)
            if r > robot.reach:
                raise _Fail("unreachable", f"unreachable: the {what} is {r:.2f} m "
                            f"from the arm's base; it reaches {robot.reach:.2f} m at most")
        support_id = supporting_object(obj, scene, table_z)
        support_z = top_z(scene.get(support_id)) if support_id else table_z
        current_yaw = robot.fk(q_start).yaw()
        grasps = grasp_candidates(robot.hand, obj, support_z, current_yaw, max_width=max_grasp_width,
                                  depth=grasp_depth, approach_height=approach_height,
                                  lift_height=approach_height, squeeze=squeeze)
        # Object poses on the target (raises "target too small" etc. before any IK).
        poses_on = (_target_poses(kind, obj, target, clearance, min_support, scene.objects,
                                  grasp_depth, robot.fingertip_below_tcp)
                    if target is not None else None)

        chosen = _choose(robot, ps, obj, target, place_pose, grasps, q_start, support_id,
                         clearance, approach_height, poses_on, cartesian_speed,
                         planner.dt, check_cancel, fine_clearance)
        g, pl, q_pre, desc, lift, q_pp, lower, retreat = chosen
        plan.grasp, plan.placement = g, pl

        b = _Builder(robot, q_start, finger_start, planner.dt)

        def planned(name: str, qa: np.ndarray, qb: np.ndarray) -> PlanResult:
            check_cancel()
            limit = min(motion_time_limit, max(0.0, time_limit - elapsed()))
            res = planner.plan(qa, qb, ps, time_limit=limit, algorithm=algorithm,
                               should_cancel=should_cancel)
            rec = MotionRecord(name, "planned", res.planning_time,
                               res.path if res.path is not None else np.stack([qa, qb]),
                               res.sampled, res.length)
            plan.motions.append(rec)
            if not res.success:
                code = ("cancelled" if res.reason == "cancelled" else
                        "timeout" if res.reason.startswith("timeout") else "collision")
                raise _Fail(code, res.reason if code != "collision"
                            else f"{name}: {res.reason}")
            if reference_time > 0 and res.sampled:
                t_ref = time.perf_counter()
                ref = planner.reference(qa, qb, ps, time_limit=reference_time)
                rec.reference_time = time.perf_counter() - t_ref
                ref_spent[0] += rec.reference_time
                if ref.success:
                    rec.reference_length = ref.length
                    rec.reference_algorithm = ref.algorithm
            elif res.success and not res.sampled:
                rec.reference_length = res.length  # the straight segment is the shortest
            return res

        def cart(name: str, cr, seconds: float) -> None:
            plan.motions.append(MotionRecord(name, "cartesian", seconds, cr.path, False,
                                             path_length(cr.path)))
            b.arm(cr.timed, name)

        f_open = g.preshape
        # preshape
        if abs(finger_start - f_open) > 1e-6:
            b.fingers(gripper_move(finger_start, f_open, robot.finger_vmax, robot.finger_amax,
                                   robot.finger_jmax, planner.dt), "preshape")
        ps.finger_width = f_open
        # approach
        res = planned("approach", q_start, q_pre)
        b.arm(res.timed, "approach")
        # descend (timed during the choice)
        cart("descend", desc[0], desc[1])
        b.dwell(0.1)
        # close
        check_cancel()
        b.fingers(gripper_move(f_open, g.finger_target, robot.finger_vmax, robot.finger_amax,
                               robot.finger_jmax, planner.dt), "close")
        b.dwell(close_dwell)
        ps.attach(object_id, desc[0].path[-1], min(f_open, g.width / 2))
        # lift
        check_cancel()
        cart("lift", lift[0], lift[1])
        # transport
        res = planned("transport", lift[0].path[-1], q_pp)
        b.arm(res.timed, "transport")
        # lower
        check_cancel()
        cart("lower", lower[0], lower[1])
        b.dwell(0.1)
        # release
        b.fingers(gripper_move(g.finger_target, f_open, robot.finger_vmax, robot.finger_amax,
                               robot.finger_jmax, planner.dt), "release")
        b.dwell(release_dwell)
        dropped = Pose(pl.object_pose.position - [0, 0, clearance], pl.object_pose.quaternion)
        ps.detach(dropped)
        # retreat
        check_cancel()
        cart("retreat", retreat[0], retreat[1])
        if return_home:
            res = planned("home", retreat[0].path[-1], np.asarray(q_home, dtype=float))
            b.arm(res.timed, "home")
        traj = b.trajectory()
        plan.trajectory = traj
        plan.stages = b.stages
        if compute_ee_path:
            plan.ee_path, plan.ee_quat = robot.fk_path(traj.positions[:, :robot.dof])
        plan.success, plan.code, plan.reason = True, "ok", ""
    except _Fail as f:
        plan.success, plan.code, plan.reason = False, f.code, f.reason
    except Infeasible as e:
        plan.success, plan.code, plan.reason = False, e.code, e.reason
    finally:
        if ps is not None:
            ps.close()
        plan.planning_time = elapsed()
    return plan


def _target_poses(kind: str, obj: ObjectPrior, target: ObjectPrior, clearance: float,
                  min_support: float, objects: Sequence[ObjectPrior], grasp_depth: float,
                  fingertip_below_tcp: float) -> list[list[tuple[Pose, float]]]:
    """The object's poses on or in the target, in tiers (see ``grasps.stack_poses``), by kind.
    Raises Infeasible when the kind's rule refuses the target."""
    if kind in (TaskKind.PUT_IN.value, TaskKind.PLACE_ON.value):
        k = TaskKind(kind)
        check_kind(k, obj, target, objects)
        pose = (put_in_pose(obj, target, grasp_depth, fingertip_below_tcp, clearance)
                if k == TaskKind.PUT_IN else place_on_pose(obj, target, clearance))
        return [[(pose, float("nan"))]]
    if target.container:
        raise Infeasible("container", f"target {target.id!r} is a container (hollow): put "
                         "things in or on it, never stack on it")
    return stack_poses(obj, target, clearance, min_support, objects)


def blockers(scene: Scene, object_id: str, target_id: Optional[str] = None,
             near: float = 0.03, near_tall: float = 0.08) -> list[ObjectPrior]:
    """Objects that may stand in the hand's way at the object or the target and could be moved
    away: within ``near`` of either footprint (``near_tall`` when the neighbour's top is 2 cm or
    more above that object's: the hand reaches about 10 cm out along the fingers' closing
    direction), carrying nothing and narrow enough to grasp; the tallest first (a tall neighbour
    blocks the hand), then the nearest. The target itself comes last, when it stands next to the
    object (it can be stacked on where it is put)."""
    obj = scene.get(object_id)
    keys = [obj] + ([scene.get(target_id)] if target_id else [])
    out = []
    for o in scene.objects:
        if o.id == object_id or grasp_width(o) > MAX_GRASP_WIDTH or object_on_top(o, scene):
            continue
        if o.id == target_id:
            gap = polygon_gap(footprint(o), footprint(obj))
            if gap < near:
                out.append((1, 0.0, gap, o))
            continue
        reach = [(polygon_gap(footprint(o), footprint(k)),
                  near_tall if top_z(o) > top_z(k) + 0.02 else near) for k in keys]
        if any(g < r for g, r in reach):
            out.append((0, -round(top_z(o), 2), min(g for g, _ in reach), o))
    return [t[-1] for t in sorted(out, key=lambda t: t[:3])]


def plan_task(robot: RobotModel, scene: Scene, object_id: str, target_id: Optional[str] = None,
              place_pose: Optional[Pose] = None, q_start: Optional[Sequence[float]] = None, *,
              max_clearing: int = 3, max_moves: int = 2, time_limit: float = 10.0,
              finger_start: Optional[float] = None, _direct: Optional[TaskPlan] = None,
              **kwargs) -> TaskPlan:
    """``plan_pick_and_place``, and when that is ``blocked``, clear the way first: move a
    neighbour (``blockers``, at most ``max_clearing`` tried, 0 never) to a free spot on the
    table away from the object and the target, then do the task from there, as one trajectory.
    Every single move is tried before any pair; up to ``max_moves`` moves in all. Each part is
    planned on the scene as it will be after the moves before it (the neighbours at their new
    places); stages and motions of the moves are named ``clear_<stage>`` and
    ``TaskPlan.cleared`` says what went where, in order. ``time_limit`` covers everything; other
    keyword arguments go to ``plan_pick_and_place``."""
    t0 = time.perf_counter()
    kwargs.pop("return_home", None)
    first = _direct or plan_pick_and_place(robot, scene, object_id, target_id, place_pose,
                                           q_start, finger_start=finger_start,
                                           time_limit=time_limit, **kwargs)
    if first.code != "blocked" or max_clearing <= 0 or max_moves <= 0:
        return first
    tried: list[str] = []
    moved: list[tuple[str, Pose, TaskPlan, Scene, TaskPlan]] = []
    keep = [scene.get(object_id)] + ([scene.get(target_id)] if target_id else [])

    def left() -> float:
        return time_limit - (time.perf_counter() - t0)

    def stop(code: str) -> bool:
        return code in ("cancelled", "timeout") or left() <= 0.5

    # One move: each blocker to a free spot, then the task directly.
    for b in blockers(scene, object_id, target_id)[:max_clearing]:
        if left() <= 0.5:
            tried.append("out of time")
            break
        spot = free_spot(scene.objects, b, keep_away=keep)
        if spot is None:
            tried.append(f"no free spot for {b.id!r}")
            continue
        z = support_z(scene) + float(b.center[2]) - bottom_z(b)
        spot_pose = Pose([spot[0], spot[1], z], b.pose.quaternion)
        move = plan_pick_and_place(robot, scene, b.id, place_pose=spot_pose, q_start=q_start,
                                   finger_start=finger_start, time_limit=left(),
                                   return_home=False, **kwargs)
        if not move.success:
            tried.append(f"moving {b.id!r}: {move.code}")
            if stop(move.code):
                break
            continue
        after = scene.replace(objects=[dataclasses.replace(b, pose=spot_pose) if o.id == b.id
                                       else o for o in scene.objects])
        end = move.trajectory.positions[-1]
        q_end, f_end = robot.split(end)
        main = plan_pick_and_place(robot, after, object_id, target_id, place_pose, q_end,
                                   finger_start=f_end, time_limit=max(left(), 0.0),
                                   **kwargs)
        if main.success:
            return _joined(move, main, b.id, spot_pose, time.perf_counter() - t0)
        tried.append(f"after moving {b.id!r}: {main.code}")
        if stop(main.code):
            break
        moved.append((b.id, spot_pose, move, after, main))
    # More moves: after each single move that planned, clear the way again.
    for b_id, spot_pose, move, after, main in (moved if max_moves > 1 else []):
        if left() <= 0.5:
            tried.append("out of time")
            break
        end = move.trajectory.positions[-1]
        q_end, f_end = robot.split(end)
        rest = plan_task(robot, after, object_id, target_id, place_pose, q_end,
                         max_clearing=max_clearing, max_moves=max_moves - 1,
                         time_limit=max(left(), 0.0), finger_start=f_end,
                         _direct=main, **kwargs)
        if rest.success:
            return _joined(move, rest, b_id, spot_pose, time.perf_counter() - t0)
        if stop(rest.code):
            break
    first.planning_time = time.perf_counter() - t0
    if tried:
        first.reason += "; clearing the way did not help (" + "; ".join(tried)[:300] + ")"
    return first


def _joined(move: TaskPlan, main: TaskPlan, moved_id: str, spot: Pose,
            planning_time: float) -> TaskPlan:
    """One plan: ``move`` (a neighbour out of the way), then ``main``."""
    shift = move.trajectory.duration
    plan = TaskPlan(True, trajectory=move.trajectory.then(main.trajectory),
                    planning_time=planning_time, grasp=main.grasp, placement=main.placement)
    plan.stages = ([(f"clear_{n}", a, b) for n, a, b in move.stages]
                   + [(n, a + shift, b + shift) for n, a, b in main.stages])
    plan.motions = ([dataclasses.replace(m, name=f"clear_{m.name}") for m in move.motions]
                    + main.motions)
    if move.ee_path is not None and main.ee_path is not None:
        plan.ee_path = np.concatenate([move.ee_path, main.ee_path[1:]])
        plan.ee_quat = np.concatenate([move.ee_quat, main.ee_quat[1:]])
    plan.cleared = [(moved_id, spot)] + main.cleared
    return plan


#: How much higher than ``approach_height`` the pre-grasp, lift, pre-place and retreat poses
#: may go to clear tall neighbours (metres).
RAISE = 0.16


def _raised(p: Pose, dz: float) -> Pose:
    return Pose(p.position + [0.0, 0.0, dz], p.quaternion)


def _above(robot: RobotModel, ps: PlanningScene, pose: Pose, seed: np.ndarray,
           height: float, label: str):
    """(q, "") for the lowest pose ``height`` .. ``height + RAISE`` above ``pose`` (2 cm steps)
    with an IK solution that is collision-free with padding; else (None, reason)."""
    why = f"unreachable: no IK for the {label} pose"
    for i, extra in enumerate(np.arange(0.0, RAISE + 1e-9, 0.02)):
        q = robot.ik(_raised(pose, height + extra), seed, restarts=6 if i == 0 else 1)
        if q is None:
            if i == 0 and robot.ik(pose, seed, restarts=2) is None:
                break  # not even the pose itself is reachable
            continue
        seed = q
        if ps.is_valid_strict(q):
            return q, ""
        pairs = ", ".join(f"{a}-{b}" for a, b, _ in ps.collisions(q)[:2])
        why = f"blocked: {label} in collision ({pairs})"
    return None, why


def _choose(robot: RobotModel, ps: PlanningScene, obj: ObjectPrior,
            target: Optional[ObjectPrior], place_pose: Optional[Pose], grasps: list[Grasp],
            q_start: np.ndarray, support_id: Optional[str], clearance: float,
            approach_height: float,
            poses_on: Optional[list[list[tuple[Pose, float]]]], speed: float, dt: float,
            check_cancel: Callable[[], None], fine_clearance: float):
    """The first grasp and placement whose IK and straight moves work, with those moves.
    ``poses_on``: the object's poses on ``target`` (``stack_poses``)."""
    reasons: list[str] = []
    support_allow = [TABLE] + ([support_id] if support_id else [])
    for g in grasps:
        check_cancel()
        ps.finger_width = g.preshape
        q_pre, why = _above(robot, ps, g.pose, q_start, approach_height, "pre-grasp")
        if q_pre is None:
            reasons.append(f"{why} (grasp at yaw {math.degrees(g.yaw):.0f} deg)")
            continue
        g.pregrasp = robot.fk(q_pre)
        t0 = time.perf_counter()
        with ps.allow([obj.id] + support_allow), ps.fine(fine_clearance):
            desc = straight_line(robot, ps, q_pre, g.pose, speed=speed, dt=dt)
        if not desc.success:
            reasons.append(f"grasp at yaw {math.degrees(g.yaw):.0f} deg: {desc.reason}")
            continue
        t_desc = time.perf_counter() - t0
        q_g = desc.path[-1]
        ps.attach(obj.id, q_g, min(g.preshape, g.width / 2))
        try:
            t0 = time.perf_counter()
            # A neighbour the object already touches (perceived boxes of touching objects
            # overlap by a few millimetres) may keep touching it on the way straight up: the
            # overlap does not grow. The gripper is still checked against it.
            with ps.fine(fine_clearance):
                touching = sorted({b for a, b, _ in ps.collisions(q_g) if a == "held"})
            with ps.allow([obj.id] + support_allow), ps.allow(touching, robot_links=[]), \
                    ps.fine(fine_clearance):
                lift = straight_line(robot, ps, q_g, _raised(g.pose, approach_height + RAISE),
                                     speed=speed, dt=dt, min_length=approach_height,
                                     stop=ps.is_valid_strict)
            t_lift = time.perf_counter() - t0
            if not lift.success:
                reasons.append(f"lift: {lift.reason}")
                continue
            q_lift = lift.path[-1]
            g.lift = robot.fk(q_lift)
            if target is not None:
                places = placements_for(robot.hand, obj, g, poses_on, approach_height, target.id)
                allow_place = [target.id]
            else:
                places = placements_at(robot.hand, obj, g, place_pose, clearance, approach_height)
                allow_place = [TABLE]
            for pl in places:
                check_cancel()
                with ps.allow(allow_place), ps.fine(fine_clearance):
                    if not ps.held_clear_at(pl.object_pose):
                        reasons.append("place: the held object would touch a neighbour at "
                                       f"{np.round(pl.object_pose.position, 3).tolist()}")
                        continue
                q_pp, why = _above(robot, ps, pl.pose, q_lift, approach_height, "pre-place")
                if q_pp is None:
                    reasons.append(f"{why} (placement at "
                                   f"{np.round(pl.object_pose.position, 3).tolist()})")
                    continue
                pl.preplace = robot.fk(q_pp)
                t0 = time.perf_counter()
                with ps.allow(allow_place), ps.fine(fine_clearance):
                    lower = straight_line(robot, ps, q_pp, pl.pose, speed=speed, dt=dt)
                t_lower = time.perf_counter() - t0
                if not lower.success:
                    reasons.append(f"lower: {lower.reason}")
                    continue
                # Retreat after letting go: the object stands on the target.
                att = ps.attached
                dropped = Pose(pl.object_pose.position - [0, 0, clearance],
                               pl.object_pose.quaternion)
                ps.detach(dropped)
                try:
                    t0 = time.perf_counter()
                    with ps.allow([obj.id] + allow_place), ps.fine(fine_clearance):
                        retreat = straight_line(robot, ps, lower.path[-1],
                                                _raised(pl.pose, approach_height + RAISE),
                                                speed=speed, dt=dt, min_length=approach_height,
                                                stop=ps.is_valid_strict)
                    if retreat.success:
                        pl.retreat = robot.fk(retreat.path[-1])
                    t_ret = time.perf_counter() - t0
                finally:
                    ps.move_object(obj.id, obj.pose)
                    ps.attach(obj.id, q_g, att.finger_width, prior=att.prior)
                if not retreat.success:
                    reasons.append(f"retreat: {retreat.reason}")
                    continue
                return (g, pl, q_pre, (desc, t_desc), (lift, t_lift), q_pp, (lower, t_lower),
                        (retreat, t_ret))
        finally:
            ps.detach()
            ps.enable(obj.id)
            ps.move_object(obj.id, obj.pose)
    unreachable = [r for r in reasons if r.startswith("unreachable")]
    if reasons and len(unreachable) == len(reasons):
        raise _Fail("unreachable", f"unreachable: no reachable grasp and placement for "
                    f"{obj.id!r} ({unreachable[0][len('unreachable: '):]})")
    detail = "; ".join(dict.fromkeys(reasons))[:400]
    raise _Fail("blocked", f"no collision-free grasp/placement for {obj.id!r}: {detail}")
