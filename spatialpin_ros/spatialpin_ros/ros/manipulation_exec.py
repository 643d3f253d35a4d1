"""The manipulation node's execution steps (a mixin of ``ManipulationNode``): plan a task of any
kind, send it and watch the hand after the close and the lift (finger gap and speed from the
joint states), stop the arm when the hand is empty, and go home to try again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from std_msgs.msg import Header

from spatialpin_ros.core.errors import TrajectoryError
from spatialpin_ros.core.plan_status import PlanStatus
from spatialpin_ros.core.task_kinds import BASE_KINDS
from spatialpin_ros.core.types import Scene
from spatialpin_ros.ros import conversions as conv
from spatialpin_ros.ros.viz import plan_markers

#: Seconds after a stop is sent before the arm counts as at rest (frames before show it moving).
STOP_SETTLE_S = 0.3
PREEMPTED = "preempted by a new goal"


@dataclass(frozen=True)
class RunOutcome:
    """How one plan-and-run attempt ended. ``failure``: why it did not run to its end (None when
    it did). Otherwise ``plan`` (None: planned only, nothing sent), ``t_done`` (when the arm
    stopped, s, node clock) and ``hand`` (the last hand check, a ``recovery.HandCheck``; None
    when not judged)."""

    failure: Optional[str] = None
    plan: object = None
    t_done: float = 0.0
    hand: object = None


def _cleared_note(plan) -> str:
    """What was moved out of the way first, for result messages."""
    return "".join(f"; first moved {oid} out of the way to ({p.position[0]:.2f}, "
                   f"{p.position[1]:.2f})" for oid, p in plan.cleared)


class TaskExecutionMixin:
    """Needs the node's ``robot``, ``p``, ``joints``, ``_lock``, publishers, ``send``,
    ``motion_over``, ``stop``, ``current_q``, ``current_fingers``, ``_now``, ``_path_msg`` and
    ``motion_end_stamp``."""

    def _plan_and_run(self, ctx, scene: Scene, req) -> RunOutcome:
        """Plan the task on ``scene``, check its limits, publish it and, when asked, follow it
        watching the hand. A plan-only goal ends with ``plan`` None (``result.check`` then holds
        the message)."""
        ctx.feedback("plan", 0.1)
        plan = self._checked_plan(ctx, scene, req)
        if isinstance(plan, str):
            return RunOutcome(plan)
        if ctx.goal.execute and self._start_offset(plan.trajectory) is not None:
            # The arm moved while planning: plan once more from where it is.
            plan = self._checked_plan(ctx, scene, req)
            if isinstance(plan, str):
                return RunOutcome(plan)
        self._publish(ctx, plan, scene, req)
        if not ctx.goal.execute:
            ctx.result.check = (f"planned {len(plan.stages)} stages, "
                                f"{plan.trajectory.duration:.1f} s of motion, in "
                                f"{plan.planning_time:.2f} s on scene {scene.scene_id!r} (not "
                                "executed)" + _cleared_note(plan))
            return RunOutcome()
        why = ctx.interrupted() or self._not_sendable(plan, scene)
        return RunOutcome(why) if why else self._run_watched(plan, ctx)

    def _not_sendable(self, plan, scene: Scene) -> Optional[str]:
        """Why the planned trajectory must not be sent now (the arm left its start, or the
        scene was reset while planning), or None."""
        off = self._start_offset(plan.trajectory)
        if off is not None:
            return (f"the arm is {off[1]:.3f} away from the trajectory's start at {off[0]} "
                    f"(start_tolerance_rad {float(self.p.start_tolerance_rad):g}); it moved "
                    "while planning, twice; nothing was sent")
        with self._lock:
            reset_since = self.scene_loaded_stamp > scene.stamp
        if reset_since:
            return (f"the scene was reset while planning on {scene.scene_id!r}; nothing "
                    "was sent")
        return None

    def _checked_plan(self, ctx, scene: Scene, req):
        """The task's plan (``_plan``) within the joint, velocity and acceleration limits, or
        why there is none (str)."""
        plan = self._plan(ctx, scene, req)
        if isinstance(plan, str):
            return plan
        return self._limits_problem(plan.trajectory) or plan

    def _start_offset(self, traj) -> Optional[tuple[str, float]]:
        """(joint, difference) where the arm, by its newest joint state, is further than
        ``start_tolerance_rad`` from ``traj``'s first point; None when it is at the start."""
        q = self.current_q()
        names = list(self.robot.arm_joints)
        if q is None:
            return None       # unknown: the controller's own start check decides
        first = np.asarray(traj.positions[0], dtype=float)
        cols = [list(traj.joint_names).index(n) for n in names]
        diff = np.abs(first[cols] - q)
        j = int(np.argmax(diff))
        return (names[j], float(diff[j])) if diff[j] > float(self.p.start_tolerance_rad) \
            else None

    def _plan(self, ctx, scene: Scene, req):
        """The task's plan from where the arm is (by a joint state stamped after planning
        began), or why there is none."""
        if self.current_q() is None:
            return "no joint states from the arm"
        q0 = self.q_since(self._now(), float(self.p.joint_states_timeout_s))
        if q0 is None:
            return (f"no joint state from the arm newer than the goal within "
                    f"{float(self.p.joint_states_timeout_s):g} s (joint_states_timeout_s); "
                    "nothing was planned")
        from spatialpin_ros.planning import plan_task
        on_target = req.kind in BASE_KINDS
        plan = plan_task(
            self.robot, scene, req.oid, max_clearing=int(self.p.max_clearing),
            max_moves=int(self.p.max_clearing_moves),
            target_id=req.tid if on_target else None,
            place_pose=None if on_target else req.place,
            kind=req.kind.value if on_target else "",
            q_start=q0, finger_start=self.current_fingers(), algorithm=self.p.algorithm,
            motion_time_limit=self.p.planning_time_limit, time_limit=self.p.task_time_limit,
            should_cancel=lambda: ctx.interrupted() is not None)
        ctx.result.planning_time = float(plan.planning_time)
        ctx.result.status = plan.status.value
        if not plan.success:
            if plan.status is PlanStatus.CANCELLED and ctx.interrupted():
                return ctx.interrupted()
            return f"planning failed ({plan.status.value}): {plan.reason}"
        from spatialpin_ros.planning.recovery import describe_grasp
        ctx.result.grasp = describe_grasp(plan)
        return plan

    def _publish(self, ctx, plan, scene: Scene, req) -> None:
        """The plan into the result, the path and the markers."""
        result = ctx.result
        stamp = self.get_clock().now().to_msg()
        result.joint_trajectory = conv.trajectory_to_msg(plan.trajectory, Header(stamp=stamp))
        ee = plan.ee_path if plan.ee_quat is None else np.hstack([plan.ee_path, plan.ee_quat])
        result.ee_path = self._path_msg(ee, stamp)
        self.pub_path.publish(result.ee_path)
        task = ctx.goal.task
        desc = task.description or (f"{req.kind.value} {req.oid}"
                                     + (f" -> {req.tid}" if req.tid else ""))
        self.pub_markers.publish(plan_markers(plan, scene, desc, self.p.world_frame, stamp))

    def _limits_problem(self, traj) -> Optional[str]:
        """Never send a trajectory that breaks a joint, velocity or acceleration limit."""
        from spatialpin_ros.planning import limit_violations
        nominal = self.robot.joint_limits(nominal=True)
        try:
            traj.validate(known_joints=self.robot.joint_names, limits=nominal)
        except TrajectoryError as e:
            return f"the planned trajectory breaks a limit and was not sent: {e}"
        bad = {k: v for k, v in limit_violations(traj, nominal).items() if v}
        if bad:
            return f"the planned trajectory breaks limits {bad} and was not sent"
        return None

    def _run_watched(self, plan, ctx) -> RunOutcome:
        """Send the plan and follow it; after the close and the lift stages check the hand (when
        ``slip_retry``) and stop the arm when it is empty."""
        traj = plan.trajectory
        checks = ([b for n, _, b in plan.stages if n in ("close", "lift")]
                  if self.p.slip_retry and plan.grasp is not None else [])
        state, feedback, interrupted = ctx.state, ctx.feedback, ctx.interrupted
        feedback("execute", 0.3)
        state["moving"] = True
        why = self.send(traj)
        if why:
            state["moving"] = False
            return RunOutcome(why)
        t0 = time.monotonic()
        hand = None
        while True:
            over, failed = self.motion_over(time.monotonic() - t0, traj.duration)
            if failed:
                state["moving"] = False
                with self._lock:
                    self.motion_end_stamp = max(self.motion_end_stamp, self._now())
                return RunOutcome(failed)
            if over:
                break
            why = interrupted()
            if why:
                self.stop()
                state["moving"] = False
                return RunOutcome(f"{PREEMPTED}; the arm was stopped where it was"
                                  if why == PREEMPTED else
                                  "cancelled during execution; the arm was stopped where it was")
            t = time.monotonic() - t0
            if checks and t >= checks[0] + 0.1:
                checks.pop(0)
                hand = self._hand_now(plan)
                if hand is not None and hand.state.value == "empty":
                    self.stop()
                    break
                if hand is not None and hand.state.value == "moving":
                    checks.insert(0, t)          # not judged yet: look again 0.1 s later
            name = next((s[0] for s in plan.stages if s[1] <= t < s[2]), "execute")
            feedback(name, 0.3 + 0.6 * min(1.0, t / max(traj.duration, 1e-3)))
            time.sleep(0.05)
        t_done = self._now()
        with self._lock:
            self.motion_end_stamp = max(self.motion_end_stamp, t_done)
        state["moving"] = False
        if hand is not None and hand.state.value == "moving":
            hand = None                          # never settled: not judged, the check decides
        return RunOutcome(plan=plan, t_done=t_done, hand=hand)

    def _hand_now(self, plan):
        """The hand's state by the newest joint state (finger gap and speed), a
        ``recovery.HandCheck``; None when the joint state lacks the fingers."""
        from spatialpin_ros.planning.recovery import hand_check
        with self._lock:
            js = self.joints
        try:
            idx = [js.name.index(n) for n in self.robot.gripper_joints]
            vel = [js.velocity[i] for i in idx] if len(js.velocity) == len(js.name) else None
            f, vf = self.robot.finger_state([js.position[i] for i in idx], vel)
            return hand_check([f, f], plan.grasp, None if vel is None else [vf, vf])
        except (AttributeError, ValueError, IndexError):
            return None

    def _recover(self, scene: Scene, interrupted) -> Optional[str]:
        """After an empty hand: open, up and home; None when done, else the reason."""
        from spatialpin_ros.planning.recovery import plan_recovery
        time.sleep(STOP_SETTLE_S)
        q = self.current_q()
        if q is None:
            return "no joint states from the arm"
        traj = plan_recovery(self.robot, scene, q, self.current_fingers())
        if traj is None:
            return "the hand was empty and no way home was found"
        why = self._limits_problem(traj)
        if why:
            return why
        why = self.send(traj)
        if why:
            return f"the hand was empty; going home failed: {why}"
        t0 = time.monotonic()
        while True:
            over, failed = self.motion_over(time.monotonic() - t0, traj.duration)
            if failed:
                return f"the hand was empty; going home failed: {failed}"
            if over:
                break
            why = interrupted()
            if why:
                self.stop()
                return why
            time.sleep(0.05)
        with self._lock:
            self.motion_end_stamp = max(self.motion_end_stamp, self._now())
        return None
