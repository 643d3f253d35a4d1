"""Perception: RGB-D frames to 3D scene priors (ROS-free).

``make_backend()`` gives the default geometric backend (no model weights, CPU only); see
:mod:`spatialpin_ros.perception.base` for the interface and its pluggable parts, and
:mod:`spatialpin_ros.perception.metrics` for scoring against ground truth.
"""

from spatialpin_ros.perception.base import (DepthEstimator, ObjectNamer, PerceptionBackend,
                                            Segmentation, Segmenter, available_backends,
                                            make_backend, register_backend)

__all__ = ["DepthEstimator", "ObjectNamer", "PerceptionBackend", "Segmentation", "Segmenter",
           "available_backends", "make_backend", "register_backend"]
