"""Declare parameters with a description, a range or a set of choices, and check them.

Every node declares all its parameters through :func:`declare`, so ``ros2 param describe`` tells a
user what each one means, and a bad value is refused with a reason (at start-up by
:func:`declare`, at run time by the set-parameters callback) instead of failing later.

A run-time ``ros2 param set`` either takes effect or is refused, never accepted and ignored: a
parameter the node reads only at start-up is declared ``read_only`` (rclpy refuses the set and
says so); one the node follows at run time names an ``on_set`` callback that receives each
accepted new value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter


@dataclass(frozen=True)
class Rule:
    """Constraint on one parameter (choices for strings, a range for numbers)."""

    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None

    def check(self, name: str, value: Any) -> str | None:
        """Return why ``value`` is refused, or None when it is fine."""
        if self.choices is not None and value not in self.choices:
            return f"{name}={value!r} is not one of {list(self.choices)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{name}={value} is below the minimum {self.minimum}"
            if self.maximum is not None and value > self.maximum:
                return f"{name}={value} is above the maximum {self.maximum}"
        return None


class ParameterError(ValueError):
    """A parameter value the node cannot run with."""


def declare(node: Node, name: str, default: Any, description: str, *,
            choices: tuple[str, ...] | None = None, minimum: float | None = None,
            maximum: float | None = None, read_only: bool = False,
            on_set: Callable[[Any], None] | None = None) -> Any:
    """Declare ``name`` with a descriptor and return its (possibly overridden) value.

    ``on_set``: the node honours run-time changes; it is called with every value a later set
    makes (after the checks passed). Without it, a parameter the node reads only once should
    be ``read_only``."""
    if read_only and on_set is not None:
        raise ValueError(f"parameter {name!r}: a read-only parameter never changes (on_set)")
    desc = ParameterDescriptor(description=description, read_only=read_only)
    if choices:
        desc.additional_constraints = "one of: " + ", ".join(choices)
    if isinstance(default, bool):
        pass
    elif isinstance(default, int) and (minimum is not None or maximum is not None):
        desc.integer_range = [IntegerRange(
            from_value=int(minimum if minimum is not None else -(2**31)),
            to_value=int(maximum if maximum is not None else 2**31 - 1), step=0)]
    elif isinstance(default, float) and (minimum is not None or maximum is not None):
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(minimum if minimum is not None else -1e300),
            to_value=float(maximum if maximum is not None else 1e300), step=0.0)]
    rules = _registry(node).rules
    rules[name] = Rule(choices, minimum, maximum)
    try:
        value = node.declare_parameter(name, default, desc).value
    except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
        raise ParameterError(f"{node.get_name()}: parameter {name!r}: {exc}") from None
    reason = rules[name].check(name, value)
    if reason:
        raise ParameterError(f"{node.get_name()}: {reason}")
    if on_set is not None:  # registered after the declaration: called for later sets only
        _registry(node).setters[name] = on_set
    return value


@dataclass
class _Registry:
    """What :func:`declare` keeps per node: each parameter's rule, and the setters of those the
    node follows at run time."""

    rules: dict[str, Rule] = field(default_factory=dict)
    setters: dict[str, Callable[[Any], None]] = field(default_factory=dict)


def _registry(node: Node) -> _Registry:
    reg = getattr(node, "_etuner_params", None)
    if reg is None:
        reg = _Registry()
        node._etuner_params = reg  # type: ignore[attr-defined]
        node.add_on_set_parameters_callback(lambda ps: _on_set(reg.rules, ps))
        node.add_post_set_parameters_callback(lambda ps: _after_set(reg.setters, ps))
    return reg


def _on_set(rules: dict[str, Rule], params: list[Parameter]) -> SetParametersResult:
    for p in params:
        rule = rules.get(p.name)
        reason = rule.check(p.name, p.value) if rule else None
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def _after_set(setters: dict[str, Callable[[Any], None]], params: list[Parameter]) -> None:
    """rclpy calls this once a set succeeded (every check passed): hand the new values on."""
    for p in params:
        setter = setters.get(p.name)
        if setter is not None:
            setter(p.value)


def undeclared_overrides(node: Node) -> list[str]:
    """Parameters given to ``node`` (a YAML file, ``-p``) that it never declared. rclpy ignores
    them without a word, so a misspelt or misplaced key (``etuner.max_wait_s`` where the knob is
    ``lazytune.max_wait_s``) would change nothing; each node logs these at start-up. rclpy keeps
    the given values in ``Node._parameter_overrides`` (no public accessor); ``qos_overrides.*``
    are rclpy's own and not ours to judge."""
    given = getattr(node, "_parameter_overrides", None) or {}
    return sorted(k for k in given
                  if not node.has_parameter(k) and not k.startswith("qos_overrides."))


def warn_undeclared(node: Node) -> list[str]:
    """Log :func:`undeclared_overrides` as one warning; returns them."""
    names = undeclared_overrides(node)
    if names:
        node.get_logger().warn(
            f"ignoring {len(names)} parameter(s) this node does not have: {', '.join(names)} "
            f"(`ros2 param list {node.get_fully_qualified_name()}` lists the real ones)")
    return names
