"""A pick and place that may first clear the way (ROS-free): ``plan_task`` moves neighbours
that block the task to free spots on the table, then does the task, as one trajectory."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.plan_status import PlanStatus
from spatialpin_ros.core.stacking import bottom_z, free_spot
from spatialpin_ros.core.types import ObjectPrior, Pose, Scene
from spatialpin_ros.planning.pick_place import plan_pick_and_place
from spatialpin_ros.planning.robot import RobotModel, top_down_pose
from spatialpin_ros.planning.scene import support_z
from spatialpin_ros.planning.scene_queries import blockers
from spatialpin_ros.planning.task_plan import PickPlaceConfig, TaskPlan

#: Statuses after which no further clearing move is tried.
_FINAL = (PlanStatus.CANCELLED, PlanStatus.TIMEOUT)


@dataclass
class _Clearing:
    """The state of one ``plan_task`` call: what is asked, the deadline, what was tried."""

    robot: RobotModel
    object_id: str
    target_id: Optional[str]
    place_pose: Optional[Pose]
    time_limit: float
    kwargs: dict
    t0: float = field(default_factory=time.perf_counter)
    tried: list[str] = field(default_factory=list)

    def left(self) -> float:
        return self.time_limit - (time.perf_counter() - self.t0)

    def stop(self, status: PlanStatus) -> bool:
        return status in _FINAL or self.left() <= 0.5

    def task(self, scene: Scene, q: Optional[Sequence[float]], f: Optional[float],
             kwargs: Optional[dict] = None) -> TaskPlan:
        return plan_pick_and_place(self.robot, scene, self.object_id, self.target_id,
                                   self.place_pose, q, finger_start=f,
                                   time_limit=max(self.left(), 0.0),
                                   **(self.kwargs if kwargs is None else kwargs))


def reaches_down(robot: RobotModel, b: ObjectPrior, z: float, kwargs: dict
                 ) -> Callable[[np.ndarray], bool]:
    """Whether the arm reaches (x, y) top down to put ``b`` there with its centre at height
    ``z``: an IK solution for the TCP where it would let go (``grasp_depth`` below the object's
    top) and ``approach_height`` above that, at one of the headings a grasp of ``b`` may have
    (its sides, a quarter turn apart). A spot the arm cannot reach (too near its base, too
    far) would cost every grasp and placement of the move its IK attempts, and fail."""
    depth = kwargs.get("grasp_depth", PickPlaceConfig.grasp_depth)
    up = kwargs.get("approach_height", PickPlaceConfig.approach_height)
    h = float(b.center[2]) - bottom_z(b)
    tcp_z = z + h - min(depth, 1.5 * h)
    yaw = b.pose.yaw()

    def ok(xy: np.ndarray) -> bool:
        for turn in (0.0, math.pi / 2):
            q = robot.ik(top_down_pose([xy[0], xy[1], tcp_z], yaw + turn), restarts=1)
            if q is not None and robot.ik(top_down_pose([xy[0], xy[1], tcp_z + up],
                                                        yaw + turn), q, restarts=1) is not None:
                return True
        return False
    return ok


def _moved_points(kwargs: dict, b, spot_pose: Pose) -> dict:
    """``kwargs`` with the perceived points of ``b`` (when given) carried to ``spot_pose``."""
    pts = kwargs.get("points")
    if pts is None:
        return kwargs
    return dict(kwargs, points=pts.moved(b.id, b.pose, spot_pose))


def plan_task(robot: RobotModel, scene: Scene, object_id: str, target_id: Optional[str] = None,
              place_pose: Optional[Pose] = None, q_start: Optional[Sequence[float]] = None, *,
              max_clearing: int = 3, max_moves: int = 2, time_limit: float = 10.0,
              finger_start: Optional[float] = None, _direct: Optional[TaskPlan] = None,
              **kwargs) -> TaskPlan:
    """``plan_pick_and_place``, and when that is ``BLOCKED``, clear the way first: move a
    neighbour (``blockers``, at most ``max_clearing`` tried, 0 never) to a free spot on the
    table away from the object and the target, then do the task from there, as one trajectory.
    Every single move is tried before any pair; up to ``max_moves`` moves in all. Each part is
    planned on the scene as it will be after the moves before it (the neighbours at their new
    places); stages and motions of the moves are named ``clear_<stage>`` and
    ``TaskPlan.cleared`` says what went where, in order. ``time_limit`` (s) covers everything;
    other keyword arguments go to ``plan_pick_and_place`` (``PickPlaceConfig`` fields)."""
    kwargs.pop("return_home", None)
    c = _Clearing(robot, object_id, target_id, place_pose, time_limit, kwargs)
    first = _direct or c.task(scene, q_start, finger_start)
    if first.status is not PlanStatus.BLOCKED or max_clearing <= 0 or max_moves <= 0:
        return first
    moved = []
    # One move: each blocker to a free spot, then the task directly.
    for b in blockers(scene, object_id, target_id,
                      max_width=robot.max_grasp_width)[:max_clearing]:
        if c.left() <= 0.5:
            c.tried.append("out of time")
            break
        step = _one_move(c, scene, b, q_start, finger_start)
        if step is None:
            continue
        if isinstance(step, TaskPlan):
            return step
        if step == "stop":
            break
        moved.append(step)
    # More moves: after each single move that planned, clear the way again.
    for b_id, spot_pose, move, after, main, kw_after in (moved if max_moves > 1 else []):
        if c.left() <= 0.5:
            c.tried.append("out of time")
            break
        q_end, f_end = robot.split(move.trajectory.positions[-1])
        rest = plan_task(robot, after, object_id, target_id, place_pose, q_end,
                         max_clearing=max_clearing, max_moves=max_moves - 1,
                         time_limit=max(c.left(), 0.0), finger_start=f_end,
                         _direct=main, **kw_after)
        if rest.success:
            return _joined(move, rest, b_id, spot_pose, time.perf_counter() - c.t0)
        if c.stop(rest.status):
            break
    first.planning_time = time.perf_counter() - c.t0
    if c.tried:
        first.reason += "; clearing the way did not help (" + "; ".join(c.tried)[:300] + ")"
    return first


def _one_move(c: _Clearing, scene: Scene, b, q_start, finger_start):
    """Move blocker ``b`` to a free spot, then plan the task: the joined plan on success;
    "stop" when time is up or planning was cancelled; None when no move planned; else the
    move, for a second one (blocker id, spot, move plan, scene after, task plan, the keyword
    arguments after it: the perceived points moved along)."""
    keep = [scene.get(c.object_id)] + ([scene.get(c.target_id)] if c.target_id else [])
    z = support_z(scene) + float(b.center[2]) - bottom_z(b)
    spot = free_spot(scene.objects, b, keep_away=keep,
                     accept=reaches_down(c.robot, b, z, c.kwargs))
    if spot is None:
        c.tried.append(f"no free spot within reach for {b.id!r}")
        return None
    spot_pose = Pose([spot[0], spot[1], z], b.pose.quaternion)
    move = plan_pick_and_place(c.robot, scene, b.id, place_pose=spot_pose, q_start=q_start,
                               finger_start=finger_start, time_limit=c.left(),
                               return_home=False, **c.kwargs)
    if not move.success:
        c.tried.append(f"moving {b.id!r}: {move.status.value}")
        return "stop" if c.stop(move.status) else None
    after = scene.replace(objects=[dataclasses.replace(b, pose=spot_pose) if o.id == b.id
                                   else o for o in scene.objects])
    q_end, f_end = c.robot.split(move.trajectory.positions[-1])
    kw_after = _moved_points(c.kwargs, b, spot_pose)
    main = c.task(after, q_end, f_end, kw_after)
    if main.success:
        return _joined(move, main, b.id, spot_pose, time.perf_counter() - c.t0)
    c.tried.append(f"after moving {b.id!r}: {main.status.value}")
    if c.stop(main.status):
        return "stop"
    return (b.id, spot_pose, move, after, main, kw_after)


def _joined(move: TaskPlan, main: TaskPlan, moved_id: str, spot: Pose,
            planning_time: float) -> TaskPlan:
    """One plan: ``move`` (a neighbour out of the way), then ``main``."""
    shift = move.trajectory.duration
    plan = TaskPlan(True, status=PlanStatus.OK,
                    trajectory=move.trajectory.then(main.trajectory),
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
