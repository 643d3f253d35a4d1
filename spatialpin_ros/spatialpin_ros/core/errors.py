"""Domain errors. Each subclasses a built-in so that callers may catch either."""


class SpatialPinError(Exception):
    """Base class of every error this package raises on purpose."""


class SceneSpecError(SpatialPinError, ValueError):
    """A scene file or scene description is malformed (the message names the bad field)."""


class TrajectoryError(SpatialPinError, ValueError):
    """A joint trajectory is malformed or breaks the robot's limits."""


class ImageError(SpatialPinError, TypeError):
    """An image has an unsupported encoding, shape or dtype."""


class ConfigError(SpatialPinError, ValueError):
    """A parameter file or parameter value is invalid."""


class PerceptionError(SpatialPinError, ValueError):
    """Perception cannot run on its input (e.g. no valid depth, no camera pose)."""


class ModelLoadError(SpatialPinError, RuntimeError):
    """A learned model (weights, config or processor) could not be loaded: a missing local path,
    a hub id that is neither cached nor downloadable, or a checkpoint of the wrong kind (the
    message names what was tried and what was expected)."""
