"""Typed hyperparameter sets: build a `Params` dataclass from suite values, with checks.

Every rule, task and optimizer declares its hyperparameters as a dataclass named `Params`.
`make_params` turns the plain values of a suite file into an instance, rejecting unknown keys
and wrong types with a message that names where the value came from and what was expected.

Values are checked for what a hostile or mistyped file can hold, whatever the field: a float is
never NaN and is finite unless its field says `metadata={ALLOW_INF: True}` (none does today); an
int fits in 64 bits (what torch takes); a string holds no control characters and at most
`MAX_STRING` characters; nested values go at most `MAX_DEPTH` levels deep.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import math
import textwrap
import tokenize
import types
import typing
import unicodedata
from typing import Any, Literal, NamedTuple, get_args, get_origin

from .errors import ConfigError, closest

#: dataclass field metadata key: this float parameter may be +inf or -inf (never NaN).
ALLOW_INF = "allow_inf"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_STRING = 10_000
MAX_NAME = 200
MAX_DEPTH = 16
_FREE_TEXT_CONTROLS = "\t\n\r"  # line breaks and tabs: fine in a description, never in a name


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted for a message, control characters escaped and long text cut."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_text(value: str, where: str, *, name: bool = True) -> str:
    """`value` when it is usable as a name (`name=True`) or as free text; else a ConfigError.

    Control characters (Unicode category Cc, and the invisible format characters Cf in names)
    are refused: a NUL cannot be part of a path, and escapes or bidi overrides in a name would
    make two different cells look alike in a report. Free text may hold tabs and line breaks.
    """
    limit = MAX_NAME if name else MAX_STRING
    if len(value) > limit:
        raise ConfigError(f"{where}: {'a name' if name else 'text'} of at most {limit:,} characters is allowed, "
                          f"got {len(value):,} ({shown(value)})")
    bad = sorted({c for c in value if (unicodedata.category(c) == "Cc" and (name or c not in _FREE_TEXT_CONTROLS))
                  or (name and unicodedata.category(c) == "Cf")})
    if bad:
        codes = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise ConfigError(f"{where}: {shown(value)} holds control characters ({codes}); "
                          f"use printable characters only")
    return value


def check_float(value: float, where: str, allow_inf: bool = False) -> float:
    """`value` unless it is NaN, or infinite where infinity is not allowed."""
    if math.isnan(value):
        raise ConfigError(f"{where}: nan is not a number; give a finite value")
    if math.isinf(value) and not allow_inf:
        raise ConfigError(f"{where}: {value} is not allowed; give a finite value")
    return value


def check_int(value: int, where: str) -> int:
    """`value` when it fits in a signed 64-bit integer (torch's widest)."""
    if not INT_MIN <= value <= INT_MAX:
        raise ConfigError(f"{where}: {value} is out of range; integers must lie in {INT_MIN}..{INT_MAX}")
    return value


def check_plain(value: Any, where: str, path: str = "", depth: int = 0) -> None:
    """Walk a value read from a file: no NaN anywhere, ints in 64 bits, names and text clean, depth bounded.

    `where` names the file, `path` the key inside it (`rules[0].params.lr`). Infinity is left to
    the place that reads the value (a budget refuses it; a parameter may allow it).
    """
    loc = f"{where}: {path}" if path else where
    if depth > MAX_DEPTH:
        raise ConfigError(f"{loc}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        check_int(value, loc)
    elif isinstance(value, float):
        check_float(value, loc, allow_inf=True)
    elif isinstance(value, str):
        check_text(value, loc, name=False)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(str(key), f"{loc}: key")
            check_plain(item, where, f"{path}.{key}" if path else str(key), depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, where, f"{path}[{i}]", depth + 1)


@dataclasses.dataclass(frozen=True)
class NoParams:
    """Placeholder for components without hyperparameters."""


def fields(params_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(params_cls)}


def default_value(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, where: str, allow_inf: bool = False) -> Any:
    """Check `value` against the annotation `tp`; return it in the field's own type.

    Ints are accepted where a float is expected; lists become tuples; bools are never numbers.
    Floats are finite (±inf only with `allow_inf`), ints fit in 64 bits, strings are clean names.
    """
    origin = get_origin(tp)
    if tp is Any:
        check_plain(value, where)
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}"
                          f"{closest(str(value), [str(a) for a in get_args(tp)])}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where, allow_inf)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(tp)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item_tp = args[0] if args else Any
        return tuple(coerce(v, item_tp, f"{where}[{i}]", allow_inf) for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return check_int(value, where)
    elif tp is float:
        if isinstance(value, int) and not isinstance(value, bool):
            check_int(value, where)  # float() of a huge int raises OverflowError
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return check_float(float(value), where, allow_inf)
    elif tp is str:
        if isinstance(value, str):
            return check_text(value, where)
    elif isinstance(value, tp):
        check_plain(value, where)  # e.g. `object`: whatever it holds is still held to the file's rules
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def make_params(params_cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """Instantiate `params_cls` from plain values, naming `where` in every error."""
    values = dict(values or {})
    known = fields(params_cls)
    hints = typing.get_type_hints(params_cls)
    for key in values:
        if key not in known:
            check_text(str(key), f"{where}: parameter name")
            choices = ", ".join(known) or "(none)"
            raise ConfigError(f"{where}: unknown parameter '{key}'{closest(key, known)}; "
                              f"known parameters: {choices}")
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}", bool(known[k].metadata.get(ALLOW_INF)))
              for k, v in values.items()}
    try:
        return params_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def as_dict(params: Any) -> dict[str, Any]:
    """Plain JSON-able values of a Params instance (tuples become lists)."""
    def plain(v: Any) -> Any:
        return list(plain(x) for x in v) if isinstance(v, (tuple, list)) else v
    return {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)}


class ParamInfo(NamedTuple):
    """One hyperparameter as `plasticity list` shows it."""
    name: str
    type: str
    default: Any
    help: str


def describe(params_cls: type) -> list[ParamInfo]:
    """Name, type description, default and description of each field, for `plasticity list`.

    A field's description is the comment after it in the class body (`lr: float = 0.1  # step size`),
    or `#:` comment lines right above it; a subclass that redeclares a field without a comment
    (only to change its default) keeps the base class's description.
    """
    hints = typing.get_type_hints(params_cls)
    helps: dict[str, str] = {}
    for klass in reversed(params_cls.__mro__):
        helps.update(_field_comments(klass))
    return [ParamInfo(f.name, _type_name(hints[f.name]), default_value(f), helps.get(f.name, ""))
            for f in dataclasses.fields(params_cls)]


@functools.cache
def _field_comments(klass: type) -> dict[str, str]:
    """Comments on the annotated fields written in `klass`'s own body ({} without source)."""
    if klass is object or "__annotations__" not in vars(klass):
        return {}
    try:
        source = textwrap.dedent("".join(inspect.getsourcelines(klass)[0]))
        tree = ast.parse(source)
        comments = {tok.start[0]: tok.string[1:] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                    if tok.type == tokenize.COMMENT}
    except (OSError, TypeError, SyntaxError, tokenize.TokenError):
        return {}  # no source (a class built at run time, a frozen app): no descriptions
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    found: dict[str, str] = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        after = [comments[i].strip() for i in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                 if i in comments]
        above, i = [], node.lineno - 1
        while comments.get(i, "").startswith(":"):
            above.insert(0, comments[i][1:].strip())
            i -= 1
        text = " ".join(c for c in above + after if c and not c.startswith(("noqa", "type:")))
        if text:
            found[node.target.id] = text
    return found
