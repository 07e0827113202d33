"""The one set of validators for tables read from suite files and the command line: known keys,
value types, choices and whole numbers in a range. The suite, its `[evaluation]` and `[budget]`,
the search space and the execution settings all check through these, so one mistake reads the
same wherever it is made: the file, the key, what was given and what is allowed."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, closest
from .params import shown

MAX_COUNT = 10**6


def check_keys(table: dict, known: Iterable[str], where: str) -> None:
    """Every key of `table` is one of `known`; else an error naming the nearest known key."""
    known = set(known)
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {shown(str(key))}{closest(str(key), known)}; "
                              f"known keys: {', '.join(sorted(known))}")


def _type_names(wanted: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in (wanted if isinstance(wanted, tuple) else (wanted,)))


def check_type(value: Any, wanted: type | tuple[type, ...], key: str, where: str) -> Any:
    """`value` has type `wanted` (a bool is no number); returns it."""
    if isinstance(value, bool) and wanted is not bool or not isinstance(value, wanted):
        raise ConfigError(f"{where}: '{key}' has the wrong type: {type(value).__name__} {value!r} "
                          f"(expected {_type_names(wanted)})")
    return value


def checked_table(table: Any, spec: dict[str, Any], where: str) -> dict[str, Any]:
    """A table whose keys are those of `spec` and whose values have its types (the caller checks ranges)."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    check_keys(table, spec, where)
    for key, value in table.items():
        check_type(value, spec[key], key, where)
    return dict(table)


def choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    """`value` is one of `choices` (strings); else an error naming the nearest."""
    if not isinstance(value, str) or value not in choices:
        text = shown(value) if isinstance(value, str) else repr(value)
        raise ConfigError(f"{where}: {text} is not one of {', '.join(choices)}{closest(str(value), choices)}")
    return value


def whole(value: Any, where: str, low: int, high: int = MAX_COUNT) -> int:
    """`value` is a whole number (not a bool) in low..high."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}: expected a whole number in {low}..{high:,}, got {value!r}")
    return value


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
