"""The perception backend interface and its registry (ROS-free).

A backend turns one :class:`~spatialpin_ros.core.types.RGBDFrame` into a
:class:`~spatialpin_ros.core.types.Scene` of 3D object priors::

    backend = make_backend("geometric")          # the default, no model weights, CPU only
    scene = backend.perceive(frame, scene_id="table")

Three smaller parts are pluggable so that a learned backend can replace one piece at a time:

* :class:`DepthEstimator` -- depth from colour (monocular depth) when the frame has none;
* :class:`Segmenter` -- instance masks (optionally with names and scores);
* :class:`ObjectNamer` -- a name per mask (open-vocabulary labelling).

The geometric backend accepts any of them as constructor arguments and otherwise uses its own
colour/geometry segmentation and colour-and-shape names.
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import numpy as np

from spatialpin_ros.core.types import CameraModel, RGBDFrame, Scene


@dataclass
class Segmentation:
    """Instance masks of one image: ``masks`` are (H, W) bool arrays; ``names`` and ``scores``
    are per mask (empty when the segmenter gives none)."""

    masks: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key in ("names", "scores"):
            vals = getattr(self, key)
            if vals and len(vals) != len(self.masks):
                raise ValueError(f"{key}: {len(vals)} values for {len(self.masks)} masks")

    def __len__(self) -> int:
        return len(self.masks)


class DepthEstimator(abc.ABC):
    """Estimates metric depth from a colour image."""

    @abc.abstractmethod
    def estimate(self, rgb: np.ndarray, camera: CameraModel) -> np.ndarray:
        """(H, W) float32 depth in metres along the optical axis; 0 where unknown."""


class Segmenter(abc.ABC):
    """Splits an image into object instances."""

    @abc.abstractmethod
    def segment(self, rgb: np.ndarray, depth: np.ndarray, camera: CameraModel) -> Segmentation:
        """Instance masks of the objects in ``rgb`` (``depth`` aligned, 0 where missing)."""


class ObjectNamer(abc.ABC):
    """Names objects given their masks."""

    @abc.abstractmethod
    def name(self, rgb: np.ndarray, masks: Sequence[np.ndarray]) -> list[str]:
        """One short noun phrase per mask ("red box", "mug")."""

    def name_priors(self, rgb: np.ndarray, priors: Sequence) -> list[str]:
        """:meth:`name` of the priors' masks (``ObjectPrior.full_mask``); a namer may work on
        the masks' roi crops instead of full-size masks."""
        h, w = rgb.shape[:2]
        return self.name(rgb, [p.full_mask(h, w) for p in priors])


class PerceptionBackend(abc.ABC):
    """RGB-D frame in, 3D scene priors out. Implementations may keep state across frames (object
    ids); :meth:`reset` forgets it (call it when the scene changes)."""

    #: Registry name of the backend.
    name: str = ""

    @abc.abstractmethod
    def perceive(self, frame: RGBDFrame, scene_id: str = "") -> Scene:
        """The 3D priors of the objects in ``frame``, in the frame's world frame.

        Raises :class:`~spatialpin_ros.core.errors.PerceptionError` when the frame cannot be
        used (no camera pose, no valid depth).
        """

    def reset(self) -> None:
        """Forget state carried across frames (object ids)."""


BackendFactory = Callable[..., PerceptionBackend]
_REGISTRY: dict[str, Union[str, BackendFactory]] = {
    # Lazy: "module:attribute", imported on first use.
    "geometric": "spatialpin_ros.perception.geometric:GeometricBackend",
    "models": "spatialpin_ros.perception.models:ModelBackend",
}
DEFAULT_BACKEND = "geometric"


def register_backend(name: str, factory: Union[str, BackendFactory]) -> None:
    """Register ``factory`` (a callable taking keyword parameters, or "module:attr") as ``name``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def available_backends() -> list[str]:
    """The registered backend names, sorted."""
    return sorted(_REGISTRY)


def make_backend(name: Optional[str] = None, **params) -> PerceptionBackend:
    """A new backend by registry name (default "geometric"), built with ``params``.

    Raises ValueError naming the known backends when ``name`` is unknown.
    """
    key = DEFAULT_BACKEND if name in (None, "") else name
    if key not in _REGISTRY:
        raise ValueError(f"unknown perception backend {key!r}; known: "
                         f"{', '.join(available_backends())}")
    factory = _REGISTRY[key]
    if isinstance(factory, str):
        module, attr = factory.split(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(**params)
