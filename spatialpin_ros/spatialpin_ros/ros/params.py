"""Declared parameters: each with a default, a description and an optional validator.

A node lists its parameters once, as ``{name: Param(default, description, validate)}``; this
declares them all, reads their values into an attribute namespace, and rejects runtime changes
that fail validation (the reason goes back to the caller of ``ros2 param set``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Optional

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node

Validator = Callable[[Any], Optional[str]]  # returns a reason when the value is bad


@dataclass
class Param:
    """A parameter: ``default`` value, ``description`` (shown by ``ros2 param describe``), an
    optional ``validate`` returning a reason string for bad values, and ``read_only``."""

    default: Any
    description: str
    validate: Optional[Validator] = None
    read_only: bool = False


def positive(v: Any) -> Optional[str]:
    return None if isinstance(v, (int, float)) and v > 0 else f"must be > 0, got {v!r}"


def non_negative(v: Any) -> Optional[str]:
    return None if isinstance(v, (int, float)) and v >= 0 else f"must be >= 0, got {v!r}"


def one_of(*choices: str) -> Validator:
    def check(v: Any) -> Optional[str]:
        return None if v in choices else f"must be one of {list(choices)}, got {v!r}"
    return check


def numbers(n: int, allow_empty: bool = True) -> Validator:
    def check(v: Any) -> Optional[str]:
        v = list(v) if isinstance(v, (list, tuple)) else v
        if allow_empty and (v == [] or v is None):
            return None
        if not isinstance(v, list) or len(v) != n or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            return f"must be a list of {n} numbers{' or []' if allow_empty else ''}, got {v!r}"
        return None
    return check


def declare_params(node: Node, specs: dict[str, Param]) -> SimpleNamespace:
    """Declare ``specs`` on ``node`` and return their values (overrides applied) as attributes
    (dots in names become underscores). Invalid values from a parameter file raise ValueError.
    Runtime changes are validated and, when accepted, update the returned namespace."""
    values = SimpleNamespace()
    for name, spec in specs.items():
        is_list = isinstance(spec.default, (list, tuple))
        desc = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                   dynamic_typing=is_list)
        value = node.declare_parameter(name, list(spec.default) if is_list else spec.default,
                                       desc).value
        if is_list and value is not None:
            value = list(value)
        if spec.validate and (reason := spec.validate(value)):
            raise ValueError(f"parameter {name}: {reason}")
        setattr(values, name.replace(".", "_"), value)

    def on_set(params) -> SetParametersResult:
        for p in params:
            spec = specs.get(p.name)
            if spec is None:
                continue
            if spec.validate and (reason := spec.validate(p.value)):
                return SetParametersResult(successful=False, reason=f"{p.name}: {reason}")
        for p in params:
            if p.name in specs:
                v = p.value
                setattr(values, p.name.replace(".", "_"), list(v) if isinstance(
                    v, (list, tuple)) or type(v).__name__ == "ndarray" else v)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values
