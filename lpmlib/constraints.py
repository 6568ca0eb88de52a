"""Declarative parameter constraints: one style for every configuration class.

In the spirit of scikit-learn's parameter constraints, a class lists, per field, what its value must be:
a number in an interval, a flag, one of a few options, text matching a pattern, or any of several of
these. `check` raises one error that names the field, what it must be and the value it got.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Closed = Literal["both", "left", "right", "neither"]


class Constraint(Protocol):
    def allows(self, value: Any) -> bool: ...

    def __str__(self) -> str: ...


@dataclass(frozen=True)
class Interval:
    """An integer (`kind=int`) or a finite real number (`kind=float`, an integer too) between `low` and
    `high` (numpy scalars included; True and False are not numbers here)."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: Closed = "both"

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(
            value, numbers.Integral if self.kind is int else numbers.Real
        ):
            return False
        if not math.isfinite(value):
            return False
        above = (
            self.low is None or value > self.low or (value == self.low and self.closed in ("both", "left"))
        )
        below = (
            self.high is None
            or value < self.high
            or (value == self.high and self.closed in ("both", "right"))
        )
        return above and below

    def __str__(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        low = None if self.low is None else (">=" if self.closed in ("both", "left") else ">")
        high = None if self.high is None else ("<=" if self.closed in ("both", "right") else "<")
        bounds = [f"{sign} {_number(bound)}" for sign, bound in ((low, self.low), (high, self.high)) if sign]
        return f"{noun} {' and '.join(bounds)}" if bounds else noun


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class Flag:
    """True or False (not 0 or 1)."""

    def allows(self, value: Any) -> bool:
        return isinstance(value, bool)

    def __str__(self) -> str:
        return "True or False"


@dataclass(frozen=True)
class Options:
    """One of a few values (of the same type: 1 is not True)."""

    values: tuple

    def allows(self, value: Any) -> bool:
        return any(value == option and type(value) is type(option) for option in self.values)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(option) for option in self.values)


@dataclass(frozen=True)
class Pattern:
    """Text that matches a regular expression as a whole."""

    regex: str
    description: str

    def allows(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(self.regex, value) is not None

    def __str__(self) -> str:
        return self.description


Constraints = Mapping[str, Constraint | tuple[Constraint, ...]]  # a tuple: any of its constraints


def check(
    values: Mapping[str, Any], constraints: Constraints, where: str, error: type[Exception] = ValueError
) -> None:
    """Raise `error` for the first value that breaks its constraint: "<where> 'name' must be ..., got ..."."""
    for name, constraint in constraints.items():
        if name not in values:
            continue
        alternatives = constraint if isinstance(constraint, tuple) else (constraint,)
        if not any(alternative.allows(values[name]) for alternative in alternatives):
            described = " or ".join(str(alternative) for alternative in alternatives)
            raise error(f"{where} '{name}' must be {described}, got {values[name]!r}")


def check_fields(instance: Any, constraints: Constraints, error: type[Exception] = ValueError) -> None:
    """`check` on a dataclass instance's fields, naming its class."""
    check(vars(instance), constraints, f"{type(instance).__name__} field", error)
