"""Write a suite given as a dict as TOML text, so that it is parsed, validated and recorded
(`suite.json` keeps the text) exactly as a suite file is.

Tables become `[name]` sections, lists of tables `[[name]]` blocks, deeper tables inline
tables: the layout of a hand-written suite file. The text read back equals the dict (checked).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise ConfigError(f"{where}: keys are strings, got {key!r} ({type(key).__name__})")
    return key if BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's, but for DEL, which TOML wants escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):  # numpy's integers too
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str | os.PathLike):
        return _string(os.fspath(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k, where)} = {_value(v, f'{where}.{k}')}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    raise ConfigError(f"{where}: {type(value).__name__} {value!r} has no TOML form; use a string, number, "
                      f"boolean, list or dict")


def _is_tables(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, Mapping) for v in value)


def dumps(doc: Mapping[str, Any], where: str = "suite") -> str:
    """TOML text of `doc` (keys are strings; values strings, numbers, booleans, paths, lists, dicts)."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{where}: expected a dict, got {type(doc).__name__}")
    plain = [k for k, v in doc.items() if not isinstance(v, Mapping) and not _is_tables(v)]
    lines = [f"{_key(k, where)} = {_value(doc[k], f'{where}: {k}')}" for k in plain]
    for k, v in doc.items():
        if isinstance(v, Mapping):
            lines += ["", f"[{_key(k, where)}]"]
            lines += [f"{_key(kk, where)} = {_value(vv, f'{where}: {k}.{kk}')}" for kk, vv in v.items()]
        elif _is_tables(v):
            for i, table in enumerate(v):
                lines += ["", f"[[{_key(k, where)}]]"]
                lines += [f"{_key(kk, where)} = {_value(vv, f'{where}: {k}[{i}].{kk}')}" for kk, vv in table.items()]
    text = "\n".join(lines) + "\n"
    if not _same(tomllib.loads(text), doc):  # a bug here must not run another suite than the one given
        raise ConfigError(f"{where}: cannot be written as TOML as given: {doc!r}")
    return text


def _same(read: Any, given: Any) -> bool:
    if isinstance(given, Mapping):
        return isinstance(read, dict) and set(read) == set(given) and all(_same(read[k], given[k]) for k in given)
    if isinstance(given, list | tuple):
        return isinstance(read, list) and len(read) == len(given) and all(map(_same, read, given))
    if isinstance(given, os.PathLike):
        return read == os.fspath(given)
    if isinstance(given, bool) or isinstance(read, bool):
        return read is given
    if isinstance(given, numbers.Real) and not isinstance(given, numbers.Integral) and math.isnan(given):
        return isinstance(read, float) and math.isnan(read)
    return isinstance(read, int) == isinstance(given, numbers.Integral) and read == given
