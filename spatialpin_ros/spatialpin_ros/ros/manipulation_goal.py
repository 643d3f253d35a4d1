"""The manipulation node's goal, step by step (a mixin of ``ManipulationNode``): validate the
goal, perceive a fresh scene, check the task on it, plan, check limits, publish, follow (with
one retry after an empty hand; ``manipulation_exec``) and verify. ``GoalContext`` carries one
goal's handle, result and stage, and ends it with a reason and a ``PlanStatus``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from spatialpin_interfaces.action import ExecuteTask

from spatialpin_ros.core.plan_status import PlanStatus
from spatialpin_ros.core.task_kinds import TaskKind, kind_of
from spatialpin_ros.core.types import Pose, Scene
from spatialpin_ros.reasoning.task_rules import (check_task, find_dropped, find_target, task_pose,
                                                verify_task)
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.manipulation_exec import PREEMPTED, _cleared_note


def place_pose_problem(pose) -> Optional[str]:
    """Why a goal's ``place_pose`` (geometry_msgs/Pose) cannot be used, or None."""
    p, o = pose.position, pose.orientation
    xyz, q = [p.x, p.y, p.z], [o.x, o.y, o.z, o.w]
    if not all(math.isfinite(v) for v in xyz):
        return f"place_pose position {xyz} is not finite"
    if not all(math.isfinite(v) for v in q):
        return f"place_pose orientation {q} is not finite"
    n = math.sqrt(sum(v * v for v in q))
    if n < 1e-6:
        return ("place_pose orientation is an all-zero quaternion, which is no rotation "
                "(use x=y=z=0, w=1 for the identity)")
    if abs(n - 1.0) > 0.01:
        return f"place_pose orientation {q} is not a unit quaternion (norm {n:.3g})"
    return None


@dataclass(frozen=True)
class TaskRequest:
    """A validated goal: its kind, object and target ids, and place pose (world frame)."""

    kind: TaskKind
    oid: str
    tid: str
    place: Optional[Pose]


@dataclass
class Executed:
    """A task that ran: its plan, when the arm stopped (s, node clock), the scene and request
    it was planned on."""

    plan: object
    t_done: float
    scene: Scene
    req: TaskRequest


class GoalContext:
    """One goal's handle, run, result and stage: feedback, interruption and how it ends. A
    failure's ``result.status`` is the plan's status when planning said why, else "cancelled"
    or "error"."""

    def __init__(self, node, goal_handle, run, result, state: dict):
        self.node, self.goal_handle, self.run = node, goal_handle, run
        self.goal = goal_handle.request
        self.result, self.state = result, state

    def feedback(self, stage: str, progress: float) -> None:
        self.state["stage"] = stage
        self.goal_handle.publish_feedback(ExecuteTask.Feedback(stage=stage, progress=progress))

    def interrupted(self) -> Optional[str]:
        if self.run.preempted:
            return PREEMPTED
        if self.goal_handle.is_cancel_requested:
            return "cancelled"
        return None

    def fail(self, msg: str, cancelled: bool = False):
        if cancelled or msg.startswith(PREEMPTED):
            self.result.status = PlanStatus.CANCELLED.value
        elif not self.result.status or self.result.status == PlanStatus.OK.value:
            self.result.status = PlanStatus.ERROR.value
        return self.node._end(self.goal_handle, self.result, False, msg, cancelled)

    def stopped(self, why: str):
        return self.fail(why, cancelled=why == "cancelled")


class GoalStepsMixin:
    """Needs the node's ``p``, ``_lock``, ``unusable``, ``scene``, ``_end``, ``_now``,
    ``_fresh_scene``, ``_plan_and_run`` and ``_recover``."""

    # -- the action: validate, perceive, plan, check limits, publish, follow, verify ----------
    def _task(self, goal_handle, run, arrival: float, result: ExecuteTask.Result,
              state: dict) -> ExecuteTask.Result:
        """One goal, step by step (any step may end it with a reason)."""
        ctx = GoalContext(self, goal_handle, run, result, state)
        ctx.feedback("check", 0.02)
        request = self._validate(ctx)
        if isinstance(request, str):
            return ctx.fail(request)
        # Judged on a scene perceived after the goal arrived, the last reset and the last arm
        # motion (the arrival also covers a reset whose notice is still on its way).
        ctx.feedback("perceive", 0.05)
        scene, why = self._fresh_scene(arrival, float(self.p.fresh_scene_timeout_s),
                                       ctx.interrupted)
        if scene is None:
            return ctx.stopped(why)
        why = self._check_on(ctx, scene, request)
        if why:
            return ctx.fail(why)
        done = self._attempts(ctx, scene, request)
        if isinstance(done, ExecuteTask.Result):
            return done
        return self._verify(ctx, done)

    def _validate(self, ctx: "GoalContext"):
        """The goal's kind and place pose (a TaskRequest), or why it cannot be done."""
        task = ctx.goal.task
        try:
            kind = kind_of(task.action, task.kind)
        except ValueError:
            return (f"unknown action {conv.bounded(task.action, 40)!r} or kind "
                    f"{conv.bounded(task.kind, 40)!r}; use stack or pick_and_place, and a "
                    "kind of " + ", ".join(k.value for k in TaskKind))
        if (task.action == "stack") != (kind == TaskKind.STACK):
            return (f"action {conv.bounded(task.action, 40)!r} does not match kind "
                    f"{kind.value!r} (stack goes with stack, every other kind with "
                    "pick_and_place)")
        ctx.result.kind = kind.value
        with_pose = kind in (TaskKind.MOVE, TaskKind.PLACE_NEXT_TO)
        if with_pose:
            why = place_pose_problem(task.place_pose)
            if why:
                return why
        with self._lock:
            bad = self.unusable.get(task.scene_id) if task.scene_id else None
            latest_bad = next(reversed(self.unusable.values()), None)
            have_scene = self.scene is not None
        if bad is not None:
            return (f"task scene {conv.bounded(task.scene_id, 40)!r} has no objects to use: "
                    f"perception status {conv.scene_status_text(bad)}")
        if not have_scene and latest_bad is not None:
            return ("no scene yet: perception has published only scenes it could not use; "
                    f"the latest, {conv.bounded(latest_bad.scene_id, 40)!r}, is "
                    f"{conv.scene_status_text(latest_bad)}")
        place = conv.pose_from_msg(task.place_pose) if with_pose else None
        return TaskRequest(kind, task.object_id, task.target_id, place)

    def _check_on(self, ctx: "GoalContext", scene: Scene, req: "TaskRequest") -> Optional[str]:
        """Why the task cannot be done on ``scene`` (its own rule), or None."""
        sid = ctx.goal.task.scene_id
        if sid and sid != scene.scene_id:
            self.get_logger().info(f"task for {conv.bounded(sid, 40)}; planning on the latest "
                                   f"scene {scene.scene_id} (object ids are stable across "
                                   "frames)")
        if req.kind == TaskKind.MOVE:
            return (None if req.oid in {o.id for o in scene.objects} else
                    f"no object {conv.bounded(req.oid, 40)!r} in the scene {scene.scene_id!r}")
        return check_task(scene, req.kind, req.oid, req.tid)

    def _attempts(self, ctx: "GoalContext", scene: Scene, req: "TaskRequest"):
        """Plan and run the task; after an empty hand, recover and try once more. Returns the
        ended goal's result, or what to verify (an Executed)."""
        tries = 2 if self.p.slip_retry else 1
        for attempt in range(tries):
            out = self._plan_and_run(ctx, scene, req)
            if out.failure is not None:
                return ctx.fail(out.failure, cancelled=out.failure.startswith("cancelled"))
            plan, t_done, hand = out.plan, out.t_done, out.hand
            if plan is None:          # plan only
                return self._end(ctx.goal_handle, ctx.result, True, ctx.result.check)
            if hand is None or hand.held:
                return Executed(plan, t_done, scene, req)
            ctx.result.check = f"hand empty: {hand.detail}"
            ctx.result.status = PlanStatus.SLIPPED.value
            if attempt == tries - 1:
                return ctx.fail(f"the object was not in the hand ({hand.detail})"
                                + ("; tried again once" if attempt else ""))
            ctx.result.retried = True
            retry = self._after_slip(ctx, scene, req, hand)
            if isinstance(retry, ExecuteTask.Result):
                return retry
            scene, req = retry
        raise AssertionError("unreachable")  # the loop always returns

    def _after_slip(self, ctx: "GoalContext", scene: Scene, req: "TaskRequest", hand):
        """Home, re-perceive, find the objects again: (fresh scene, request) to try once more,
        or the ended goal's result."""
        ctx.feedback("recover", 0.6)
        why = self._recover(scene, ctx.interrupted)
        if why:
            return ctx.stopped(why) if why in (PREEMPTED, "cancelled") else ctx.fail(why)
        fresh, why = self._fresh_scene(self._now(), float(self.p.verify_timeout_s),
                                       ctx.interrupted)
        if fresh is None:
            return ctx.stopped(why) if why in (PREEMPTED, "cancelled") else ctx.fail(
                f"slipped; no fresh scene to try again: {why}")
        a = find_dropped(fresh, scene, scene.get(req.oid))
        b, found = find_target(fresh, scene.get(req.tid)) if req.tid else (None, True)
        if a is None or not found:
            return ctx.fail(f"slipped ({hand.detail}); the object or target is not seen again")
        oid, tid = a.id, (b.id if b is not None else "")
        why = check_task(fresh, req.kind, oid, tid) if req.kind != TaskKind.MOVE else None
        if why:
            return ctx.fail(f"slipped ({hand.detail}); trying again is not feasible: {why}")
        place = req.place
        if req.kind == TaskKind.PLACE_NEXT_TO:
            place = task_pose(fresh, req.kind, oid, tid) or place
        return fresh, TaskRequest(req.kind, oid, tid, place)

    def _verify(self, ctx: "GoalContext", done: "Executed") -> ExecuteTask.Result:
        """Check the task on a scene perceived after the motion ended."""
        ctx.feedback("verify", 0.92)
        fresh, why = self._fresh_scene(done.t_done, float(self.p.verify_timeout_s),
                                       ctx.interrupted)
        if fresh is None:
            if why in (PREEMPTED, "cancelled"):
                return ctx.stopped(why)
            return ctx.fail(f"executed, but not verified: {why}")
        req, result = done.req, ctx.result
        check = verify_task(fresh, done.scene, req.kind, req.oid, req.tid, req.place)
        result.check = f"{check.rule}: {check.detail}"
        verdict = {TaskKind.STACK: "stacked", TaskKind.PUT_IN: "put in",
                   TaskKind.PLACE_ON: "placed on", TaskKind.PLACE_NEXT_TO: "placed next to",
                   TaskKind.MOVE: "moved"}[req.kind]
        msg = ((verdict if check.ok else f"not {verdict}") + ": " + check.detail
               + _cleared_note(done.plan) + ("; the hand was empty the first time and the "
                                             "task was tried again" if result.retried else ""))
        ctx.feedback("done", 1.0)
        return self._end(ctx.goal_handle, result, check.ok, msg)
