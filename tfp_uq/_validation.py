"""Argument checks that raise errors naming the argument and what is allowed."""

import math
import numbers


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def real(name, value):
    """Returns `value` as a float, or raises TypeError."""
    if not _is_number(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def positive(name, value):
    """Returns `value` as a float > 0, or raises ValueError/TypeError."""
    value = real(name, value)
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def positive_finite(name, value):
    """Returns `value` as a finite float > 0, or raises ValueError/TypeError."""
    value = positive(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def non_negative(name, value):
    """Returns `value` as a float >= 0, or raises ValueError/TypeError."""
    value = real(name, value)
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def open_unit_interval(name, value):
    """Returns `value` as a float in (0, 1), or raises ValueError/TypeError."""
    value = real(name, value)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {value!r}")
    return value


def unit_interval(name, value):
    """Returns `value` as a float in [0, 1), or raises ValueError/TypeError."""
    value = real(name, value)
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def closed_unit_interval(name, value):
    """Returns `value` as a float in [0, 1], or raises ValueError/TypeError."""
    value = real(name, value)
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def positive_int(name, value):
    """Returns `value` as an int > 0, or raises ValueError/TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def optional_int(name, value):
    """Returns `value` as an int or None, or raises TypeError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer or None, got {value!r}")
    return int(value)


def boolean(name, value):
    """Returns `value` if it is a bool, or raises TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def one_of(name, value, allowed):
    """Returns `value` if it is in `allowed`, or raises ValueError."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value
