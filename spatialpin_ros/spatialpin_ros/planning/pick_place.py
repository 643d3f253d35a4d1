"""Pick-and-place (stacking) task planning: one timed trajectory for the arm and the gripper
(ROS-free).

Stages, in order (names as in ``TaskPlan.stages``)::

    preshape   fingers open to the object's width plus a margin (arm still)
    approach   planned motion from q_start to the pre-grasp pose (TCP 10 cm above the grasp)
    descend    straight down to the grasp pose (the object may touch the gripper)
    close      fingers close until the object stops them, then a short dwell
    lift       straight up (the object now moves with the hand)
    transport  planned motion, holding the object, to the pre-place pose
    lower      straight down until the object's bottom is ``clearance`` above the target's top
    release    fingers open, then a short dwell
    retreat    straight up
    home       planned motion back to ``q_home`` (optional)

Where no top-down grasp holds the object steady (a tall bottle fits only by its neck) or fits
at all (a tall object too wide at the top), side grasps are the fallback
(``planning.side_grasps``, ``_side``): the pre-grasp is backed off horizontally and
``descend`` comes in horizontally; the object is lifted, carried and set down upright as held;
``retreat`` backs off horizontally, then ``rise`` goes straight up. Where no side grasp works
either, the top-down refusal (UNSTABLE_GRASP, TOO_WIDE) stays, its reason saying what side
grasps met.

The planner reads only the given Scene of priors (and an optional point cloud), never a
simulator. Every outcome is a ``PlanStatus`` in ``TaskPlan.status`` (with the reason in words):
MISSING_OBJECT ("missing object"), TOO_WIDE ("object too wide"), TARGET_TOO_SMALL ("target too
small"), NO_FLAT_TOP, UNREACHABLE ("unreachable"), BLOCKED ("no collision-free
grasp/placement"), TIMEOUT ("timeout"), CANCELLED ("cancelled"), COLLISION (a planned motion
found no path), ERROR. Steps: ``_request`` (validate), ``_choice`` (grasp and placement,
``planning.choice``), ``_build`` (plan the motions and join the trajectory).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.plan_status import PlanFailure, PlanStatus
from spatialpin_ros.core.stacking import top_z
from spatialpin_ros.core.task_kinds import TaskKind, check_kind, place_on_pose, put_in_pose
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.planning.cartesian import gripper_move
from spatialpin_ros.planning.choice import Choice, ChoiceContext, StraightMove, choose
from spatialpin_ros.planning.antipodal import cloud_grasps
from spatialpin_ros.planning.grasps import Grasp, grasp_candidates, stack_poses
from spatialpin_ros.planning.hold import lever, pivots, swings, until_stopped
from spatialpin_ros.planning.object_cloud import SceneCloud, opening_centre
from spatialpin_ros.planning.planner import MotionPlanner, PlanResult, path_length
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.scene import PlanningScene
from spatialpin_ros.planning.side_grasps import hand_boxes, side_grasps
from spatialpin_ros.planning.scene_queries import (blockers, fragment_of, object_inside,
                                                   object_on_top, supporting_object,
                                                   without_phantoms, yield_to)
from spatialpin_ros.planning.task_plan import (MotionRecord, PickPlaceConfig, TaskPlan,
                                               TrajectoryBuilder)

__all__ = ["PickPlaceConfig", "MotionRecord", "TaskPlan", "blockers", "object_inside",
           "object_on_top", "plan_pick_and_place", "supporting_object", "without_phantoms"]


@dataclass
class _Run:
    """One call's clock, cancel check and motion planning (the reference runs' time is not
    counted)."""

    robot: RobotModel
    cfg: PickPlaceConfig
    planner: MotionPlanner
    should_cancel: Optional[Callable[[], bool]]
    plan: TaskPlan
    t_call: float = dataclasses.field(default_factory=time.perf_counter)
    ref_spent: float = 0.0
    #: Why no top-down grasp was used, where side grasps are tried instead (``_side``).
    top_down_failure: Optional[PlanFailure] = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_call - self.ref_spent

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise PlanFailure(PlanStatus.CANCELLED, "cancelled")
        if self.elapsed() > self.cfg.time_limit:
            raise PlanFailure(PlanStatus.TIMEOUT, f"timeout: planning took over the time "
                              f"limit of {self.cfg.time_limit:.3g} s")

    def planned(self, name: str, qa: np.ndarray, qb: np.ndarray,
                ps: PlanningScene) -> PlanResult:
        """A planned arm motion, recorded; PlanFailure when none is found."""
        self.check_cancel()
        cfg = self.cfg
        limit = min(cfg.motion_time_limit, max(0.0, cfg.time_limit - self.elapsed()))
        res = self.planner.plan(qa, qb, ps, time_limit=limit, algorithm=cfg.algorithm,
                                should_cancel=self.should_cancel)
        rec = MotionRecord(name, "planned", res.planning_time,
                           res.path if res.path is not None else np.stack([qa, qb]),
                           res.sampled, res.length)
        self.plan.motions.append(rec)
        if not res.success:
            raise PlanFailure(res.status, res.reason if res.status is not PlanStatus.COLLISION
                              else f"{name}: {res.reason}")
        if cfg.reference_time > 0 and res.sampled:
            t_ref = time.perf_counter()
            ref = self.planner.reference(qa, qb, ps, time_limit=cfg.reference_time)
            rec.reference_time = time.perf_counter() - t_ref
            self.ref_spent += rec.reference_time
            if ref.success:
                rec.reference_length = ref.length
                rec.reference_algorithm = ref.algorithm
        elif not res.sampled:
            rec.reference_length = res.length  # the straight segment is the shortest
        return res


@dataclass
class _Request:
    """A validated task: the object, the target (or None) and the scene without phantoms."""

    obj: ObjectPrior
    target: Optional[ObjectPrior]
    scene: Scene


def plan_pick_and_place(robot: RobotModel, scene: Scene, object_id: str,
                        target_id: Optional[str] = None, place_pose: Optional[Pose] = None,
                        q_start: Optional[Sequence[float]] = None, *,
                        finger_start: Optional[float] = None,
                        config: Optional[PickPlaceConfig] = None,
                        planner: Optional[MotionPlanner] = None,
                        q_home: Optional[Sequence[float]] = None,
                        should_cancel: Optional[Callable[[], bool]] = None,
                        cloud: Optional[np.ndarray] = None,
                        points: Optional[SceneCloud] = None, **overrides) -> TaskPlan:
    """Plan picking ``object_id`` and putting it on ``target_id`` (centred on its top, let go
    ``clearance`` above it), or down to rest with its centre at ``place_pose`` (its yaw or a
    half turn from it), from arm configuration ``q_start`` (rad, default home) with each finger
    opened ``finger_start`` m (default open), and back to ``q_home`` (default home). Reads only
    ``scene`` (and ``cloud``: optional (N, 3) world points, voxelised as extra obstacles where no
    prior is; ``points``: the perceived points by object, ``planning.object_cloud``: grasps are
    then sampled on the object's points, clear of everything else's, ``planning.antipodal``,
    and taken from its box only where it has too few points).

    ``config``: the settings (``PickPlaceConfig``, with units); ``overrides``: fields of it to
    replace (a TypeError names an unknown one). ``should_cancel()`` is polled between stages and
    inside planning. Never raises for an infeasible task: see ``TaskPlan.status``.
    """
    cfg = dataclasses.replace(config or PickPlaceConfig(), **overrides)
    run = _Run(robot, cfg, planner or MotionPlanner(robot), should_cancel, TaskPlan(False))
    plan = run.plan
    q_start = np.asarray(robot.home if q_start is None else q_start, dtype=float)
    q_home = robot.home if q_home is None else np.asarray(q_home, dtype=float)
    f_start = robot.finger_open if finger_start is None else float(finger_start)
    ps: Optional[PlanningScene] = None
    try:
        if target_id is None and place_pose is None:
            raise ValueError("give target_id or place_pose")
        req = _request(run, scene, object_id, target_id, place_pose)
        ps = PlanningScene(robot, req.scene, padding=cfg.padding, cloud=cloud)
        chosen = _choice(run, ps, req, place_pose, q_start, points)
        plan.grasp, plan.placement = chosen.grasp, chosen.placement
        _build(run, ps, req, chosen, q_start, f_start, q_home)
        plan.success, plan.status, plan.reason = True, PlanStatus.OK, ""
    except PlanFailure as f:
        plan.success, plan.status, plan.reason = False, f.status, f.reason
    finally:
        if ps is not None:
            ps.close()
        plan.planning_time = run.elapsed()
    return plan


def _request(run: _Run, scene: Scene, object_id: str, target_id: Optional[str],
             place_pose: Optional[Pose]) -> _Request:
    """Validate the task: the objects exist, nothing rests on them, they are within reach."""
    run.check_cancel()
    try:
        obj = scene.get(object_id)
    except KeyError as e:
        raise PlanFailure(PlanStatus.MISSING_OBJECT, f"missing object: {e.args[0]}") from None
    target = None
    if target_id is not None:
        if target_id == object_id:
            raise PlanFailure(PlanStatus.ERROR, "the object cannot be stacked on itself")
        try:
            target = scene.get(target_id)
        except KeyError as e:
            raise PlanFailure(PlanStatus.MISSING_OBJECT,
                              f"missing object (target): {e.args[0]}") from None
    # Phantoms (pieces smaller than a graspable object, or inside another object's box) are no
    # obstacles.
    scene = without_phantoms(scene, keep=(object_id, target_id))
    # A piece that may be one object with a neighbour: neither grasped nor stacked on (a
    # container is put into: its rim, seen round its hollow, says where it is).
    on_top = target if target is not None and not target.container else None
    for what, prior in (("object", obj), ("target", on_top)):
        other = fragment_of(prior, scene, resting=what == "object") if prior else None
        if other is not None:
            raise PlanFailure(PlanStatus.NOT_SEPARATE, (
                f"the {what} {prior.id!r} and {other!r} are one surface in one colour "
                "(touching at the same height, or one resting on the other): they may be one "
                "object, so where it ends is not known"))
    # Neighbours whose perceived boxes reach into the object's give way (a strip taken in), in
    # the collision scene only: the target keeps its perceived top for the support and
    # placement rules (cut, a touching target's top was too small to carry the object).
    scene = yield_to(obj, scene)
    above = object_on_top(obj, scene)
    if above is not None:
        raise PlanFailure(PlanStatus.BLOCKED,
                          f"no collision-free grasp: {above!r} rests on {object_id!r}")
    if target is not None:
        above_t = (object_on_top(target, scene) if not target.container else
                   object_inside(target, scene))
        if above_t is not None:
            raise PlanFailure(PlanStatus.BLOCKED, f"no collision-free placement: {above_t!r} "
                              f"rests on target {target_id!r}")
    # Out of the arm's reach at any height: fail at once, before trying every grasp.
    robot = run.robot
    for what, xy in (("object", obj.center[:2]),
                     ("target", None if target is None else target.center[:2]),
                     ("place pose", None if place_pose is None else place_pose.position[:2])):
        r = float(np.hypot(*(np.asarray(xy) - robot.shoulder[:2]))) if xy is not None else 0.0
        if r > robot.reach:
            raise PlanFailure(PlanStatus.UNREACHABLE, f"unreachable: the {what} is {r:.2f} m "
                              f"from the arm's base; it reaches {robot.reach:.2f} m at most")
    return _Request(obj, target, scene)


def _grasps(run: _Run, obj: ObjectPrior, support: float, q_start: np.ndarray,
            points: Optional[SceneCloud]) -> list[Grasp]:
    """Grasp candidates, best first: sampled on the object's points where it has enough of
    them, else from its perceived box."""
    robot, cfg = run.robot, run.cfg
    kw = dict(max_width=robot.max_grasp_width if cfg.max_grasp_width is None
              else cfg.max_grasp_width, depth=cfg.grasp_depth,
              approach_height=cfg.approach_height, lift_height=cfg.approach_height,
              squeeze=robot.description.gripper.squeeze if cfg.squeeze is None
              else cfg.squeeze)
    yaw = robot.fk(q_start).yaw()
    own = points.of(obj.id) if points is not None else np.zeros((0, 3))
    own = own if len(own) >= cfg.min_cloud_points else None
    grasps = []
    try:
        if own is not None:
            grasps = cloud_grasps(robot.hand, obj, own, points.others(obj.id), support, yaw,
                                  **kw)
    except PlanFailure as f:
        if f.status is not PlanStatus.TOO_WIDE:
            raise
        return _side(run, obj, support, own, kw, f)   # too wide at the top: lower down?
    if not grasps:
        grasps = grasp_candidates(robot.hand, obj, support, yaw, **kw)
    steady = [g for g in grasps if not pivots(g, obj, cfg.max_lever_ratio)]
    if grasps and not steady:
        g = grasps[0]
        return _side(run, obj, support, own, kw, PlanFailure(PlanStatus.UNSTABLE_GRASP, (
            f"no steady grasp of {obj.id!r}: every top-down grasp that fits holds it "
            f"{100 * lever(g, obj):.0f} cm above its centre of mass by a "
            f"{100 * g.width:.1f} cm part: it would turn in the hand and tip when put down")))
    return steady


def _side(run: _Run, obj: ObjectPrior, support: float, own: Optional[np.ndarray], kw: dict,
          failure: PlanFailure) -> list[Grasp]:
    """The fallback where no top-down grasp fits or holds steady (``failure``): steady side
    grasps (``planning.side_grasps``), or ``failure`` raised, saying why side grasps were
    no help."""
    grasps, why = side_grasps(run.robot.hand, obj, own, support, run.robot.shoulder[:2],
                              kw["max_width"], kw["approach_height"], kw["lift_height"],
                              kw["squeeze"], boxes=hand_boxes(run.robot))
    steady = [g for g in grasps if not pivots(g, obj, run.cfg.max_lever_ratio)]
    if steady:
        run.top_down_failure = failure
        return steady
    why = why or "each that fits would pivot about its contacts"
    raise PlanFailure(failure.status, f"{failure.reason}; side grasps tried: {why}")


def _choice(run: _Run, ps: PlanningScene, req: _Request, place_pose: Optional[Pose],
            q_start: np.ndarray, points: Optional[SceneCloud] = None) -> Choice:
    """Grasp candidates, the object's poses on the target, then the first that works."""
    robot, cfg, obj = run.robot, run.cfg, req.obj
    support_id = supporting_object(obj, req.scene, ps.table_z)
    support = top_z(req.scene.get(support_id)) if support_id else ps.table_z
    grasps = _grasps(run, obj, support, q_start, points)
    if cfg.close_until_stopped:
        grasps = [until_stopped(g) for g in grasps]
    # Object poses on the target (raises "target too small" etc. before any IK).
    poses_on = (_target_poses(cfg, req, robot.fingertip_below_tcp, points)
                if req.target is not None else None)
    ctx = ChoiceContext(obj, req.target, place_pose, poses_on, support_id, q_start,
                        cfg.clearance, cfg.approach_height, cfg.fine_clearance,
                        cfg.cartesian_speed, run.planner.dt)
    try:
        return choose(robot, ps, grasps, ctx, run.check_cancel)
    except PlanFailure as f:
        first = run.top_down_failure
        if first is None or f.status not in (PlanStatus.UNREACHABLE, PlanStatus.BLOCKED):
            raise
        # Side grasps were the fallback: the top-down refusal stays, saying what they met.
        raise PlanFailure(first.status, f"{first.reason}; side grasps tried: {f.reason}"
                          ) from None


def _build(run: _Run, ps: PlanningScene, req: _Request, c: Choice, q_start: np.ndarray,
           f_start: float, q_home: np.ndarray) -> None:
    """Plan the free motions between the chosen straight moves and join everything."""
    robot, cfg, plan = run.robot, run.cfg, run.plan
    g, pl = c.grasp, c.placement
    dt = run.planner.dt
    b = TrajectoryBuilder(robot, q_start, f_start, dt)

    def cart(name: str, m: StraightMove) -> None:
        plan.motions.append(MotionRecord(name, "cartesian", m.seconds, m.line.path, False,
                                         path_length(m.line.path)))
        b.arm(m.line.timed, name)

    def fingers(f0: float, f1: float, name: str) -> None:
        b.fingers(gripper_move(f0, f1, robot.finger_vmax, robot.finger_amax, robot.finger_jmax,
                               dt), name)

    f_open = g.preshape
    if abs(f_start - f_open) > 1e-6:
        fingers(f_start, f_open, "preshape")
    ps.finger_width = f_open
    b.arm(run.planned("approach", q_start, c.q_pregrasp, ps).timed, "approach")
    cart("descend", c.descend)
    b.dwell(0.1)
    run.check_cancel()
    fingers(f_open, g.finger_target, "close")
    b.dwell(cfg.close_dwell)
    ps.attach(req.obj.id, c.descend.end, min(f_open, g.width / 2))
    run.check_cancel()
    cart("lift", c.lift)
    transport = run.planned("transport", c.lift.end, c.q_preplace, ps)
    timed = transport.timed
    swinging = swings(g, req.obj, cfg.swing_ratio)
    if swinging and cfg.pinch_transport_speed < 1.0:
        timed = run.planner.time(transport.path, ps, speed=cfg.pinch_transport_speed)
    b.arm(timed, "transport")
    if swinging:
        b.dwell(cfg.settle_dwell)            # let a swing die down before putting it down
    run.check_cancel()
    cart("lower", c.lower)
    b.dwell(0.1)
    fingers(g.finger_target, c.release_width, "release")
    b.dwell(cfg.release_dwell)
    ps.detach(Pose(pl.object_pose.position - [0, 0, cfg.clearance], pl.object_pose.quaternion))
    ps.finger_width = c.release_width
    run.check_cancel()
    cart("retreat", c.retreat)
    if c.rise is not None:
        cart("rise", c.rise)
    if cfg.return_home:
        b.arm(run.planned("home", (c.rise or c.retreat).end, q_home, ps).timed, "home")
    traj = b.trajectory()
    plan.trajectory = traj
    plan.stages = b.stages
    if cfg.compute_ee_path:
        plan.ee_path, plan.ee_quat = robot.fk_path(traj.positions[:, :robot.dof])


def _target_poses(cfg: PickPlaceConfig, req: _Request, fingertip_below_tcp: float,
                  points: Optional[SceneCloud] = None) -> list[list[tuple[Pose, float]]]:
    """The object's poses on or in the target, in tiers (see ``grasps.stack_poses``), by kind.
    Raises PlanFailure when the kind's rule refuses the target. An object put into a round
    container is let go over the centre of its rim as its points show it
    (``object_cloud.opening_centre``), where they show one."""
    obj, target, objects = req.obj, req.target, req.scene.objects
    if cfg.kind in (TaskKind.PUT_IN.value, TaskKind.PLACE_ON.value):
        k = TaskKind(cfg.kind)
        check_kind(k, obj, target, objects)
        pose = (put_in_pose(obj, target, cfg.grasp_depth, fingertip_below_tcp, cfg.clearance)
                if k == TaskKind.PUT_IN else place_on_pose(obj, target, cfg.clearance))
        centre = (opening_centre(target, points.of(target.id))
                  if k == TaskKind.PUT_IN and points is not None else None)
        if centre is not None:
            pose = Pose([centre[0], centre[1], pose.position[2]], pose.quaternion)
        return [[(pose, float("nan"))]]
    if target.container:
        raise PlanFailure(PlanStatus.CONTAINER, f"target {target.id!r} is a container "
                          "(hollow): put things in or on it, never stack on it")
    return stack_poses(obj, target, cfg.clearance, cfg.min_support, objects)
