"""Shared test setup: an isolated ROS domain per test session, and helpers for node tests."""

import os
import random

import pytest

# Isolate this session's DDS traffic from other runs on the machine (set before rclpy loads).
# The domain is drawn from the OS's entropy, not seeded by the process id: in fresh containers
# the test process gets the same pid run after run, so two test runs sharing a host network
# would draw the same domain and each see the other's camera frames, scenes and trajectories.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture(scope="module")
def rclpy_context():
    """rclpy initialised once per test module (node tests), shut down after it."""
    rclpy = pytest.importorskip("rclpy")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


def _robot(name: str):
    from spatialpin_ros.planning.robot import RobotModel
    r = RobotModel(name)
    yield r
    r.close()


@pytest.fixture(scope="module")
def xarm():
    """The xArm6 robot model (planning only, no GUI), one per test module."""
    yield from _robot("xarm6")


@pytest.fixture(scope="module")
def kuka():
    """The KUKA iiwa with its WSG-50 (planning only), one per test module."""
    yield from _robot("kuka_iiwa")


def spin_until(executor, predicate, timeout: float = 20.0, step: float = 0.05) -> bool:
    """Spin ``executor`` until ``predicate()`` holds or ``timeout`` seconds pass."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=step)
        if predicate():
            return True
    return False


def send_goal(action, executor, goal, timeout: float = 10.0):
    """Send ``goal`` through the action client ``action`` and wait until it is accepted:
    (goal handle, result future, the feedback stages as they come)."""
    assert action.wait_for_server(timeout_sec=10)
    feedback = []
    fut = action.send_goal_async(goal,
                                 feedback_callback=lambda f: feedback.append(f.feedback.stage))
    assert spin_until(executor, fut.done, timeout=timeout)
    handle = fut.result()
    assert handle.accepted
    return handle, handle.get_result_async(), feedback


def frames_with_true_masks(seeds):
    """For each ``random_scene(seed)``: its 640x480 RGB-D frame, the true masks of the objects
    with more than 50 visible pixels, and their names (simulator truth, for tests only)."""
    from spatialpin_ros.sim.scene_spec import random_scene
    from spatialpin_ros.sim.world import SimWorld
    out = []
    for seed in seeds:
        world = SimWorld(random_scene(seed))
        try:
            frame, ids = world.render(with_segmentation=True)
            bodies = [o.body for o in world.objects]
            names = [o.spec.name for o in world.objects]
        finally:
            world.close()
        keep = [i for i, b in enumerate(bodies) if (ids == b).sum() > 50]
        out.append((frame, [ids == bodies[i] for i in keep], [names[i] for i in keep]))
    return out
