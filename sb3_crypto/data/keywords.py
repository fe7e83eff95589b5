"""Keyword checks by name: every environment and market keyword goes through one of these.

Each function takes the keyword's ``name`` (used in the message; nested options are named like
``synthetic_kwargs['n_bars']``) and its ``value``, and returns the value converted to the type the
code uses, or raises:

* :class:`TypeError` when the value has the wrong type (a list for a number, ``None`` where it is
  not allowed, a number for a string);
* :class:`ValueError` when it has the right type but is out of range (NaN, infinite, negative,
  zero where meaningless, an unknown choice, a string that is no number).

Messages start with the keyword's name and state the accepted range and the value received, e.g.
``fee must be a number in [0, 1), got 'abc' (str)``.

Strings that YAML files or command lines produce are converted where unambiguous: ``"0.001"`` to
0.001, ``"256"`` to 256, ``"true"/"false"``, ``"yes"/"no"``, ``"on"/"off"``, ``"1"/"0"`` to
booleans, and ``"none"``/``"null"`` to ``None`` for optional keywords. A boolean is never a number
(``fee=True`` is refused).

This module is a leaf of the data layer (it imports nothing from the package) so that both the
data layer and the environments above it use the same checks.
"""

from __future__ import annotations

import datetime
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

T = TypeVar("T")

_TRUE = frozenset({"true", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "no", "n", "off", "0"})
_NONE = frozenset({"none", "null"})
_BOOLEAN_WORDS = "true/false, yes/no, on/off or 1/0"


def describe(value: Any) -> str:
    """``repr`` of a value (shortened) and its type name, for error messages."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _number(x: float) -> str:
    """A bound as people write it: 0, 1, 0.5, 1e+15."""
    if float(x).is_integer() and abs(x) < 1e9:
        return str(int(x))
    return f"{x:g}"


def interval(
    low: float | None = None, high: float | None = None, *, low_inclusive: bool = True, high_inclusive: bool = False
) -> str:
    """Text of an accepted range: ``in [0, 1)``, ``> 0``, ``>= 2``, ``<= 10``, or ``finite``."""
    if low is not None and high is not None:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        return f"in {left}{_number(low)}, {_number(high)}{right}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {_number(low)}"
    if high is not None:
        return f"{'<=' if high_inclusive else '<'} {_number(high)}"
    return "finite"


def _in_range(x: float, low: float | None, high: float | None, low_inclusive: bool, high_inclusive: bool) -> bool:
    if low is not None and (x < low or (x == low and not low_inclusive)):
        return False
    return high is None or not (x > high or (x == high and not high_inclusive))


def is_none(value: Any) -> bool:
    """``None``, or a string a YAML file or command line uses for it (``"none"``, ``"null"``)."""
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = False,
) -> float:
    """A finite real number in the given range, as a Python ``float``.

    Accepts ints, floats, numpy numbers and numeric strings (``"0.001"``); refuses booleans, NaN,
    infinities and anything outside ``low``/``high`` (inclusive as stated).
    """
    expected = (
        f"{name} must be a number {interval(low, high, low_inclusive=low_inclusive, high_inclusive=high_inclusive)}"
    )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(f"{expected}, got {describe(value)}")
    try:
        x = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise ValueError(f"{expected}, got {describe(value)}") from None
    if not math.isfinite(x) or not _in_range(x, low, high, low_inclusive, high_inclusive):
        raise ValueError(f"{expected}, got {describe(value)}")
    return x


def rate(name: str, value: Any) -> float:
    """A cost or tolerance as a fraction in ``[0, 1)`` (fees, slippage, funding, dead band)."""
    return real(name, value, low=0.0, high=1.0)


def positive(name: str, value: Any, *, high: float | None = None) -> float:
    """A real number ``> 0`` (and ``<= high`` when given): amounts of money, scales, leverage."""
    return real(name, value, low=0.0, low_inclusive=False, high=high, high_inclusive=True)


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (both inclusive), as a Python ``int``.

    Accepts ints, numpy integers, integral floats (``32.0``) and integer strings (``"256"``);
    refuses booleans and fractional values.
    """
    expected = f"{name} must be an integer {interval(low, high, high_inclusive=True)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, str)):
        raise TypeError(f"{expected}, got {describe(value)}")
    if isinstance(value, numbers.Integral):
        n = int(value)
    else:
        text = value.strip() if isinstance(value, str) else value
        try:
            n = int(text) if isinstance(text, str) else None
        except ValueError:
            n = None
        if n is None:
            try:
                x = float(text)
            except (ValueError, OverflowError):
                raise ValueError(f"{expected}, got {describe(value)}") from None
            if not (math.isfinite(x) and x.is_integer()):
                raise ValueError(f"{expected}, got {describe(value)}")
            n = int(x)
    if not _in_range(n, low, high, True, True):
        raise ValueError(f"{expected}, got {describe(value)}")
    return n


def boolean(name: str, value: Any) -> bool:
    """A boolean: ``True``/``False``, numpy booleans, the integers 0 and 1, or the strings
    true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ValueError(f"{name} must be a boolean ({_BOOLEAN_WORDS}), got {describe(value)}")
    if isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a boolean ({_BOOLEAN_WORDS}), got {describe(value)}")
    raise TypeError(f"{name} must be a boolean ({_BOOLEAN_WORDS}), got {describe(value)}")


def choice(name: str, value: Any, options: Iterable[str]) -> str:
    """One of ``options`` (exact match)."""
    options = tuple(options)
    listed = ", ".join(repr(option) for option in options)
    if isinstance(value, str):
        if value in options:
            return str(value)
        raise ValueError(f"unknown {name} {value!r}: {name} must be one of {listed}")
    raise TypeError(f"{name} must be one of {listed}, got {describe(value)}")


def text(name: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {describe(value)}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {describe(value)}")
    return str(value)


def optional(check: Callable[..., T], name: str, value: Any, **limits: Any) -> T | None:
    """``None`` (or ``"none"``/``"null"``) passes as ``None``; anything else goes through ``check``."""
    if is_none(value):
        return None
    return check(name, value, **limits)


def optional_real(name: str, value: Any, **limits: Any) -> float | None:
    """:func:`real` or ``None``."""
    return optional(real, name, value, **limits)


def optional_integer(name: str, value: Any, **limits: Any) -> int | None:
    """:func:`integer` or ``None``."""
    return optional(integer, name, value, **limits)


def items(name: str, value: Any, length: int | None = None, what: str = "values") -> list[Any]:
    """The items of a list, tuple or 1-d array (or of a comma-separated string), optionally of a
    fixed ``length``; a mapping or a lone scalar is refused."""
    shape = f"a list of {length} {what}" if length is not None else f"a list of {what}"
    if isinstance(value, str):
        if "," not in value:
            raise TypeError(f"{name} must be {shape}, got {describe(value)}")
        values: list[Any] = [part.strip() for part in value.split(",")]
    elif isinstance(value, np.ndarray) and value.ndim == 1:
        values = value.tolist()
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        values = list(value)
    else:
        raise TypeError(f"{name} must be {shape}, got {describe(value)}")
    if length is not None and len(values) != length:
        raise ValueError(f"{name} must be {shape}, got {describe(value)}")
    return values


def fractions(name: str, value: Any, count: int = 3) -> tuple[float, ...]:
    """``count`` non-negative shares summing to 1 (within 1e-6), as floats."""
    expected = f"{name} must be {count} non-negative numbers summing to 1"
    values = items(name, value, count, "non-negative numbers summing to 1")
    shares = []
    for k, item in enumerate(values):
        try:
            shares.append(real(f"{name}[{k}]", item, low=0.0))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{expected}, got {describe(value)} ({exc})") from None
    if abs(sum(shares) - 1.0) > 1e-6:
        raise ValueError(f"{expected}, got {describe(value)} (sum {sum(shares):g})")
    return tuple(shares)


def timestamp(name: str, value: Any) -> pd.Timestamp:
    """A point in time (string, datetime, numpy or pandas timestamp) in UTC; naive times are UTC."""
    if not isinstance(value, (str, datetime.date, np.datetime64)):
        raise TypeError(f"{name} must be a date or time such as '2024-01-31', got {describe(value)}")
    try:
        stamp = pd.Timestamp(value)
        if stamp is pd.NaT or pd.isna(stamp):
            raise ValueError("not a time")
        return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    except (ValueError, TypeError, OverflowError):  # pandas' parse and out-of-bounds errors are ValueErrors
        raise ValueError(f"{name} must be a date or time such as '2024-01-31', got {describe(value)}") from None


def options(name: str, value: Any, checks: Mapping[str, Callable[[str, Any], Any]]) -> dict[str, Any]:
    """A mapping of options (``None`` is empty) whose keys are in ``checks``; each value goes through
    its check, named ``name['key']``. Unknown keys are named in the error."""
    if is_none(value):
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of options ({', '.join(checks)}), got {describe(value)}")
    unknown = [key for key in value if key not in checks]
    if unknown:
        raise ValueError(
            f"{name} has unknown option(s) {', '.join(repr(key) for key in unknown)}; known: {', '.join(checks)}"
        )
    return {key: checks[key](f"{name}[{key!r}]", item) for key, item in value.items()}


def check(function: Callable[..., T], **limits: Any) -> Callable[[str, Any], T]:
    """A ``(name, value)`` check with fixed limits, for :func:`options` tables:
    ``check(real, low=0.0, high=1.0)``."""

    def checked(name: str, value: Any) -> T:
        return function(name, value, **limits)

    return checked
