"""Joint-space motion planning with OMPL (RRT* or RRTConnect), shortcutting, smoothing and time
parameterisation (ROS-free).

``MotionPlanner.plan`` answers one motion q_start -> q_goal in a PlanningScene:

1. both ends must be inside the limits and collision-free (else reason "start in collision" /
   "goal in collision", naming the colliding pair);
2. when the straight joint-space segment is collision-free it is the answer: it is the shortest
   path in the joint-space metric, so no sampling is needed;
3. otherwise OMPL plans in the joint space (bounds: the joint limits less a margin) with the
   scene's validity checker, motions checked every ``resolution`` rad:

   * ``"rrtstar"`` (default): OMPL's RRT* (range 0.3 rad, goal bias 0.3: measured on cluttered
     tabletop problems, OMPL's defaults rarely found a path within seconds) runs until it has an
     exact solution and has refined it for ``optimize_time`` s. Unidirectional RRT* still finds
     no path in many problems with a tall obstacle between the ends (even in seconds), so when
     it has none after ``rrtstar_budget`` s (default min(0.2 s, half the time limit)) OMPL's
     AORRTC (asymptotically optimal RRT-Connect: bidirectional, also anytime) takes over, with
     the same stopping rule, for the rest of the time limit; the result's ``algorithm`` then
     reads "rrtstar>aorrtc" (``fallback_algorithm="rrtconnect"`` selects RRTConnect there);
   * ``"rrtconnect"``: RRTConnect (range 1 rad), stopping at its first solution.

   ``should_cancel()`` is polled by the termination condition (reason "cancelled"). No solution
   within ``time_limit`` gives reason "timeout: ...";
4. the path is shortcut with OMPL's PathSimplifier (collision-checked) and re-checked;
5. it is timed with Ruckig under the velocity, acceleration and jerk limits; interior waypoints
   are blended (passed with a velocity, rounding the corners) when the blended trajectory passes
   the collision check at every sample, else the arm stops at each waypoint and follows the
   checked straight segments exactly. Every sample of the result is verified (with
   ``verify_tolerance``); a failure there is reported, never returned as a path.

``MotionPlanner.reference`` runs RRT* alone on the same problem for a long time (default 5 s):
a path-length reference for benchmarks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from spatialpin_ros.core.plan_status import PlanFailure, PlanStatus
from spatialpin_ros.core.trajectory import JointTrajectory
from spatialpin_ros.planning.robot import RobotModel
from spatialpin_ros.planning.scene import PlanningScene
from spatialpin_ros.planning.timing import (TimedPath, TimingError, time_path,
                                           to_joint_trajectory)

ALGORITHMS = ("rrtstar", "rrtconnect")
_ALL = ALGORITHMS + ("aorrtc",)  # AORRTC: for the reference only


@dataclass
class PlanResult:
    """One planned motion.

    ``success``; ``path`` (N, dof) waypoints after shortcutting (None on failure); ``reason``
    ("" on success); ``planning_time`` s (wall clock of the whole call: checks, sampling,
    shortcutting, time parameterisation and its verification; the last two are also given as
    ``timing_time``); ``trajectory``: the timed arm trajectory (None
    without timing); ``sampled``: whether OMPL was needed (False: the direct segment was free);
    ``raw_length`` and ``length``: joint-space path length (rad) before and after shortcutting;
    ``algorithm``: what produced the path ("direct", "rrtstar", "rrtconnect",
    "rrtstar>aorrtc", "rrtstar>rrtconnect").
    """

    success: bool
    path: Optional[np.ndarray] = None
    reason: str = ""
    #: OK, or CANCELLED, TIMEOUT, COLLISION (no collision-free path, an end in collision or
    #: outside the limits, timing failed).
    status: PlanStatus = PlanStatus.OK
    planning_time: float = 0.0
    trajectory: Optional[JointTrajectory] = None
    timed: Optional[TimedPath] = field(default=None, repr=False)
    sampled: bool = False
    raw_length: float = float("nan")
    length: float = float("nan")
    algorithm: str = ""
    timing_time: float = 0.0


def path_length(path: np.ndarray) -> float:
    """Joint-space length of a waypoint path (sum of Euclidean segment lengths, rad)."""
    P = np.asarray(path, dtype=float)
    return float(np.sum(np.linalg.norm(np.diff(P, axis=0), axis=1))) if len(P) > 1 else 0.0


def _ompl():
    from ompl import base as ob, geometric as og, util as ou
    ou.setLogLevel(ou.LOG_ERROR)
    return ob, og, ou


class MotionPlanner:
    """Plans arm motions for ``robot`` (a RobotModel).

    ``resolution``: joint-space step (rad, Euclidean) at which motions are collision-checked.
    ``optimize_time``: seconds RRT* (or AORRTC) refines after its first exact solution.
    ``simplify_time``: seconds for OMPL's path simplifier. ``dt``: trajectory sample period (s).
    ``rrtstar_range``, ``rrtstar_goal_bias``: RRT*'s extension length (rad) and goal bias.
    ``rrtstar_budget``: seconds RRT* may search for a first solution before
    ``fallback_algorithm`` ("aorrtc" or "rrtconnect") takes over (None: min(0.2 s, half the
    time limit)). ``verify_tolerance`` (m): every sample of the timed trajectory is re-checked,
    and may reach this far into the objects' padding (the planner checks states
    ``resolution`` apart; between them a link can graze the padding by a fraction of a
    millimetre). ``seed``: OMPL's random seed (process-wide; only before OMPL's first use).
    """

    def __init__(self, robot: RobotModel, resolution: float = 0.02, optimize_time: float = 0.05,
                 simplify_time: float = 0.05, dt: float = 0.01, rrtstar_range: float = 0.3,
                 rrtstar_goal_bias: float = 0.3, rrtstar_budget: Optional[float] = None,
                 verify_tolerance: float = 0.002, fallback_algorithm: str = "aorrtc",
                 seed: Optional[int] = None):
        self.robot = robot
        self.resolution = float(resolution)
        self.optimize_time = float(optimize_time)
        self.simplify_time = float(simplify_time)
        self.dt = float(dt)
        self.rrtstar_range = float(rrtstar_range)
        self.rrtstar_goal_bias = float(rrtstar_goal_bias)
        self.rrtstar_budget = rrtstar_budget
        self.verify_tolerance = float(verify_tolerance)
        if fallback_algorithm not in ("aorrtc", "rrtconnect"):
            raise ValueError("fallback_algorithm must be 'aorrtc' or 'rrtconnect'")
        self.fallback_algorithm = fallback_algorithm
        ob, og, ou = _ompl()
        if seed is not None:
            ou.RNG.setSeed(int(seed))

    # -- the public entry points ---------------------------------------------------------------
    def plan(self, q_start: Sequence[float], q_goal: Sequence[float], scene: PlanningScene,
             time_limit: float = 1.0, algorithm: str = "rrtstar",
             should_cancel: Optional[Callable[[], bool]] = None, timing: bool = True,
             try_direct: bool = True, optimize_time: Optional[float] = None,
             fallback: bool = True) -> PlanResult:
        """Plan q_start -> q_goal (each (dof,)) in ``scene`` within ``time_limit`` seconds.

        ``fallback`` False keeps RRT* alone for the whole time limit."""
        t0 = time.perf_counter()
        algorithm = algorithm.lower()
        if algorithm not in _ALL:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
        qs, qg = np.asarray(q_start, dtype=float), np.asarray(q_goal, dtype=float)

        def fail(status: PlanStatus, reason: str, sampled: bool = False) -> PlanResult:
            return PlanResult(False, reason=reason, status=status,
                              planning_time=time.perf_counter() - t0, sampled=sampled,
                              algorithm=algorithm)

        if should_cancel is not None and should_cancel():
            return fail(PlanStatus.CANCELLED, "cancelled")
        for label, q in (("start", qs), ("goal", qg)):
            if not self.robot.within_limits(q):
                return fail(PlanStatus.COLLISION, f"{label} outside the joint limits")
            if not scene.is_valid(q):
                pairs = ", ".join(f"{a}-{b}" for a, b, _ in scene.collisions(q)[:3])
                return fail(PlanStatus.COLLISION, f"{label} in collision ({pairs})")
        opt = self.optimize_time if optimize_time is None else optimize_time
        deadline = t0 + time_limit
        # The direct segment first; then sampling, and once more at half the resolution if the
        # dense samples of the timed result graze an obstacle between the checked states.
        attempts = ([("direct", self.resolution)] if try_direct else []) + [
            ("search", self.resolution), ("search", self.resolution / 2)]
        why = ""
        for kind, res in attempts:
            if kind == "direct":
                if not scene.motion_valid(qs, qg, res):
                    continue
                path, raw_len, used = np.stack([qs, qg]), path_length([qs, qg]), "direct"
            else:
                if time.perf_counter() >= deadline and why:
                    break
                found = self._search(qs, qg, scene, deadline, time_limit, algorithm,
                                     should_cancel, opt, fallback, res)
                if isinstance(found, PlanFailure):
                    return fail(found.status, found.reason, sampled=True)
                path, raw_len, used = found
            out = PlanResult(True, path=path, sampled=used != "direct", raw_length=raw_len,
                             length=path_length(path), algorithm=used)
            if not timing:
                out.planning_time = time.perf_counter() - t0
                return out
            t1 = time.perf_counter()
            try:
                timed = self.time(path, scene)
                if not self._verified(timed.q, scene):
                    timed = self.time(path, scene, blend=False)
                    if not self._verified(timed.q, scene):
                        why = "collision between the checked states of the path"
                        continue
            except TimingError as e:
                return fail(PlanStatus.COLLISION, f"time parameterisation failed: {e}",
                            used != "direct")
            out.timed = timed
            out.trajectory = to_joint_trajectory(timed, self.robot.arm_joints)
            out.timing_time = time.perf_counter() - t1
            out.planning_time = time.perf_counter() - t0
            return out
        if why:
            return fail(PlanStatus.COLLISION, why, sampled=True)
        return fail(PlanStatus.TIMEOUT, "timeout", sampled=True)

    def _verified(self, Q: np.ndarray, scene: PlanningScene) -> bool:
        tol = self.verify_tolerance
        return all(scene.is_valid(q, tol) for q in Q)

    def reference(self, q_start: Sequence[float], q_goal: Sequence[float], scene: PlanningScene,
                  time_limit: float = 5.0, aorrtc_fallback: bool = True) -> PlanResult:
        """A long-run reference for path length: RRT* alone, refining for the whole
        ``time_limit``, then simplification (when the direct segment is free it is returned: it
        is optimal). Unidirectional RRT* finds no path at all in some cluttered problems even in
        seconds; then, with ``aorrtc_fallback``, OMPL's asymptotically optimal RRT-Connect
        (AORRTC) runs for another ``time_limit`` (``algorithm`` "aorrtc")."""
        res = self.plan(q_start, q_goal, scene, time_limit=time_limit, algorithm="rrtstar",
                        timing=False, optimize_time=time_limit, fallback=False)
        if res.success or not aorrtc_fallback or res.status is PlanStatus.CANCELLED:
            return res
        return self.plan(q_start, q_goal, scene, time_limit=time_limit, algorithm="aorrtc",
                         timing=False, optimize_time=time_limit)

    def time(self, path: np.ndarray, scene: Optional[PlanningScene] = None,
             blend: bool = True, speed: float = 1.0) -> TimedPath:
        """Time a waypoint path under the robot's planning limits (see ``timing.time_path``),
        scaled by ``speed`` (0 < speed <= 1: velocities times ``speed``, accelerations times
        its square, jerks its cube: the same path, slower); blended corners are kept only where
        every sample passes ``scene``'s check."""
        r = self.robot
        tol = self.verify_tolerance
        k = float(min(max(speed, 1e-3), 1.0))
        check = (lambda q: scene.is_valid(q, tol)) if scene is not None else None
        return time_path(path, r.vmax * k, r.amax * k ** 2, r.jmax * k ** 3, r.lower, r.upper,
                         dt=self.dt, blend=blend, check=check)

    # -- OMPL ----------------------------------------------------------------------------------
    def _search(self, qs, qg, scene, deadline, time_limit, algorithm, should_cancel, opt,
                fallback, resolution):
        """(path, raw length, algorithm used), or a PlanFailure (returned, not raised)."""
        ob, og, _ = _ompl()
        r = self.robot
        n = r.dof
        space = ob.RealVectorStateSpace(n)
        bounds = ob.RealVectorBounds(n)
        for i in range(n):
            bounds.setLow(i, float(r.lower[i]))
            bounds.setHigh(i, float(r.upper[i]))
        space.setBounds(bounds)
        si = ob.SpaceInformation(space)
        is_valid = scene.is_valid

        def valid(state) -> bool:
            return is_valid([state[i] for i in range(n)])

        si.setStateValidityChecker(valid)
        si.setStateValidityCheckingResolution(resolution / space.getMaximumExtent())
        si.setup()
        start, goal = si.allocState(), si.allocState()
        for i in range(n):
            start[i], goal[i] = float(qs[i]), float(qg[i])
        cancelled = [False]

        def run(name: str, until: float):
            ss = og.SimpleSetup(si)
            ss.setStartAndGoalStates(start, goal)
            if name == "rrtstar":
                planner = og.RRTstar(si)
                planner.setRange(self.rrtstar_range)
                planner.setGoalBias(self.rrtstar_goal_bias)
                ss.setOptimizationObjective(ob.PathLengthOptimizationObjective(si))
            elif name == "aorrtc":
                planner = og.AORRTC(si)
                planner.setRange(0.5)
                ss.setOptimizationObjective(ob.PathLengthOptimizationObjective(si))
            else:
                planner = og.RRTConnect(si)
                planner.setRange(1.0)
            ss.setPlanner(planner)
            ss.setup()
            found = [None]
            # The condition must not keep the planner alive (a cycle through C++ that Python's
            # collector cannot see): it reaches it through a list emptied after the search.
            holder = [planner]

            def stop() -> bool:
                now = time.perf_counter()
                if should_cancel is not None and should_cancel():
                    cancelled[0] = True
                    return True
                if name in ("rrtstar", "aorrtc") and holder:
                    if found[0] is None and math.isfinite(holder[0].bestCost().value()):
                        found[0] = now
                    if found[0] is not None:
                        return now - found[0] >= opt or now >= deadline
                return now >= until

            ptc = ob.PlannerTerminationCondition(stop)
            ss.solve(ptc)
            holder.clear()
            return ss

        used = algorithm
        if algorithm == "rrtstar" and fallback:
            budget = (min(0.2, 0.5 * time_limit) if self.rrtstar_budget is None
                      else float(self.rrtstar_budget))
            ss = run("rrtstar", min(deadline, time.perf_counter() + budget))
            if not cancelled[0] and not ss.haveExactSolutionPath() and \
                    time.perf_counter() < deadline:
                ss = run(self.fallback_algorithm, deadline)
                used = f"rrtstar>{self.fallback_algorithm}"
        else:
            ss = run(algorithm, deadline)
        if cancelled[0]:
            return PlanFailure(PlanStatus.CANCELLED, "cancelled")
        if not ss.haveExactSolutionPath():
            return PlanFailure(PlanStatus.TIMEOUT, f"timeout: no collision-free path within "
                               f"{time_limit:.3g} s ({used})")
        path = ss.getSolutionPath()
        raw = self._to_array(path)
        raw_len = path_length(raw)
        og.PathSimplifier(si).simplify(path, float(self.simplify_time))
        simplified = self._to_array(path)
        # The simplifier checks its shortcuts; re-check the result at our resolution to be sure.
        if not all(scene.motion_valid(a, b, resolution)
                   for a, b in zip(simplified[:-1], simplified[1:])):
            simplified = raw
        simplified[0], simplified[-1] = qs, qg
        return simplified, raw_len, used

    def _to_array(self, path) -> np.ndarray:
        n = self.robot.dof
        return np.array([[s[i] for i in range(n)] for s in path.getStates()], dtype=float)
