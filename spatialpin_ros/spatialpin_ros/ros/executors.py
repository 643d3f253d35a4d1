"""A MultiThreadedExecutor that does not flood its thread pool (every node and test uses it).

rclpy's ``MultiThreadedExecutor`` (Kilted's 9.1.x, and Jazzy's) hands a task back from
``wait_for_ready_callbacks`` while the task has not started yet, and ``_spin_once_impl`` submits
it to the thread pool again each time (ros2/rclpy#1452, fixed upstream in rclpy 10.0.4 by
ros2/rclpy#1547). While any task waits for a worker, the wait returns at once, so the spin loop
runs flat out and the pool's queue grows by one copy a turn. On a 2-core machine with the
simulator, perception and manipulation in one process, the queue reached 1,000 copies and a
camera frame waited 3-6 s before perception saw it, so goals timed out waiting for a fresh scene.

This subclass submits a task only when it is not already waiting in the pool. A task handed back
while it waits is skipped, and the spin loop sleeps a millisecond so that the workers get the
interpreter. A task that awaits something (a coroutine callback) and is handed back after it ran
is submitted again, as rclpy does.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional, Union

from rclpy.executors import (ConditionReachedException, ExternalShutdownException,
                             MultiThreadedExecutor as _RclpyMultiThreadedExecutor,
                             ShutdownException, TimeoutException)

#: Seconds the spin loop sleeps after being handed a task that is still queued.
QUEUED_BACKOFF_S = 0.001


class MultiThreadedExecutor(_RclpyMultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor (same arguments) without re-queueing waiting tasks."""

    def __init__(self, num_threads: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(num_threads, **kwargs)
        self._queued: set = set()
        self._queued_lock = threading.Lock()

    def _run(self, handler) -> None:
        with self._queued_lock:
            self._queued.discard(handler)
        handler()

    def _spin_once_impl(self, timeout_sec: Optional[Union[float, Any]] = None,
                        wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None,
                                                                    wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException,
                ConditionReachedException):
            return
        with self._queued_lock:
            queued = handler in self._queued
            if not queued:
                self._queued.add(handler)
        if queued:
            time.sleep(QUEUED_BACKOFF_S)
            return
        self._executor.submit(self._run, handler)
        if handler not in self._futures:
            self._futures.append(handler)
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise a finished callback's exception, as rclpy does
