"""The project's MultiThreadedExecutor (ros/executors.py): a task waiting for a worker is not queued
again (rclpy 9's executor queued one copy per spin turn, ros2/rclpy#1452), callbacks still run at
their rates, and coroutine callbacks that await a service still finish."""

import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.callback_groups import ReentrantCallbackGroup  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from spatialpin_ros.ros.executors import MultiThreadedExecutor  # noqa: E402


def _spin_for(ex, seconds: float, watch=None) -> int:
    """Spin ``ex`` for ``seconds``; the largest thread-pool queue seen."""
    deepest = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ex.spin_once(timeout_sec=0.05)
        deepest = max(deepest, ex._executor._work_queue.qsize())
        if watch is not None and watch():
            break
    return deepest


def test_a_slow_callback_does_not_flood_the_pool(rclpy_context):
    node = Node("busy_node")
    ran = {"slow": 0, "fast": 0}

    def slow():  # a render: holds a worker for 30 ms; two at once keep both workers busy
        ran["slow"] += 1
        time.sleep(0.03)

    def fast():
        ran["fast"] += 1

    node.create_timer(0.005, slow, callback_group=ReentrantCallbackGroup())
    node.create_timer(0.002, fast)
    ex = MultiThreadedExecutor(num_threads=2)
    ex.add_node(node)
    try:
        deepest = _spin_for(ex, 1.5)
    finally:
        ex.shutdown()
        node.destroy_node()
    # rclpy 9.1.2's own executor queued 7-8 here (and 1,000 in the three-node graph).
    assert deepest <= 4, deepest
    assert ran["slow"] >= 20 and ran["fast"] >= 50, ran


def test_coroutine_callbacks_that_await_a_service_finish(rclpy_context):
    server = Node("trigger_server")
    server.create_service(Trigger, "/exec_test/trigger",
                          lambda req, res: setattr(res, "success", True) or res)
    node = Node("awaiting_client")
    cli = node.create_client(Trigger, "/exec_test/trigger",
                             callback_group=ReentrantCallbackGroup())
    done = []

    async def call_once():
        if done or not cli.service_is_ready():
            return
        done.append(None)
        res = await cli.call_async(Trigger.Request())
        done.append(res.success)

    node.create_timer(0.05, call_once, callback_group=ReentrantCallbackGroup())
    ex = MultiThreadedExecutor(num_threads=3)
    for n in (server, node):
        ex.add_node(n)
    try:
        _spin_for(ex, 10.0, watch=lambda: len(done) == 2)
    finally:
        ex.shutdown()
        node.destroy_node()
        server.destroy_node()
    assert done == [None, True]
