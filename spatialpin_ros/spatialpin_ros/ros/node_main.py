"""The ``main()`` every node shares: init, spin, clean shutdown (ros2/demos style)."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException

from spatialpin_ros.core.errors import SpatialPinError
from spatialpin_ros.ros.executors import MultiThreadedExecutor


def run_node(node_cls, args=None, threads: int = 1) -> int:
    """Create ``node_cls()`` and spin it (with ``threads`` > 1 on a MultiThreadedExecutor) until
    Ctrl-C or shutdown; the node is always destroyed. A node that cannot start (bad parameters)
    exits with code 2 and the reason."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_cls()
        if threads > 1:
            executor = MultiThreadedExecutor(num_threads=threads)
            executor.add_node(node)
            executor.spin()
        else:
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, SpatialPinError) as e:
        print(f"{node_cls.__name__}: cannot start: {e}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
