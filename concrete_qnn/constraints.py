"""Parameter constraints declared as data: what a parameter accepts and how that is said.

A ``Constraint`` pairs a predicate with the words that describe the accepted values;
``check`` raises ``InvalidParameterError("<name> must be <allowed>, got <value>")``. The
network's configuration (``config.PARAMETERS``) and the estimators' own settings
(``estimators.validation.SETTINGS``) are tables of them.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from concrete_qnn.exceptions import InvalidParameterError


class Constraint(NamedTuple):
    """The values a parameter accepts: ``accepts(value)``, described as ``allowed``."""

    accepts: Callable[[object], bool]
    allowed: str

    def check(self, name: str, value) -> None:
        """Raise ``InvalidParameterError`` ("name must be allowed, got value") if refused."""
        if not self.accepts(value):
            raise InvalidParameterError(f"{name} must be {self.allowed}, got {value!r}")


def is_integer(value) -> bool:
    """An integer of Python or numpy, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A real number of Python or numpy, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer_at_least(low: int) -> Constraint:
    """An integer ``>= low``."""
    return Constraint(lambda value: is_integer(value) and value >= low, f"an integer >= {low}")


def number_in(low: float, high: float | None = None) -> Constraint:
    """A real number in ``[low, high)`` (``high`` None: ``>= low``)."""
    if high is None:
        return Constraint(lambda value: is_number(value) and value >= low, f"a number >= {low:g}")
    return Constraint(
        lambda value: is_number(value) and low <= value < high, f"a number in [{low:g}, {high:g})"
    )


def one_of(*options: str) -> Constraint:
    """One of the strings ``options``."""
    return Constraint(
        lambda value: isinstance(value, str) and value in options,
        f"one of {', '.join(map(repr, options))}",
    )


FLAG = Constraint(lambda value: isinstance(value, (bool, np.bool_)), "True or False")
