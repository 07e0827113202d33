"""Where a search's studies live: its folder, and an Optuna storage opened and checked (a URL that
cannot be reached, or a damaged SQLite file, is one clear error before anything runs)."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError

SEARCH_DIR = "search"


def load_optuna() -> Any:
    """Optuna, imported when first needed (it is an optional dependency), its logging quieted."""
    import optuna
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna


def search_dir(out: Path) -> Path:
    return Path(out) / SEARCH_DIR


def default_storage(out: Path) -> str:
    return f"sqlite:///{(search_dir(out) / 'study.db').resolve()}"


def open_storage(url: str, default_file: Path | None = None) -> Any:
    """An Optuna storage for `url`, connected and (SQLite) checked now: a URL that cannot be reached or a
    damaged database file is a ConfigError. `default_file`: the url is the search's own study file, which
    the user did not name, so an error names the file instead of --storage."""
    optuna = load_optuna()
    where = f"the search's study file {default_file}" if default_file else f"--storage {url}"
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage
            path = Path(url[len("journal:"):])
            if not path.parent.is_dir():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": 120}}  # several processes write one file
        elif url.startswith(("postgresql", "mysql")):
            kwargs = {"connect_args": {"connect_timeout": 15}}
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        storage.get_all_studies()  # a first query: the server answers, the tables exist
        if url.startswith("sqlite"):
            _check_sqlite(storage)
        return storage
    except Exception as exc:  # noqa: BLE001  any driver's failure to connect is the same error to the user
        damaged = _damaged(exc)
        # SQLAlchemy appends the statement and a link to its docs: the driver's reason is enough
        detail = " ".join(re.split(r"\[SQL:|\(Background on", str(damaged or exc))[0].split())[:300]
        if damaged:
            raise ConfigError(f"{where}: the database file is damaged ({detail}); delete it, or move it away, "
                              f"to restart the search") from None
        if default_file:
            raise ConfigError(f"{where}: cannot be opened ({type(exc).__name__}: {detail})") from None
        raise ConfigError(f"{where}: cannot be reached ({type(exc).__name__}: {detail}); give an "
                          f"SQLAlchemy URL (sqlite:///path, postgresql://..., mysql://...) or journal:PATH "
                          f"in an existing folder") from None


class _DamagedDatabase(Exception):
    """SQLite's integrity check found a damaged file."""


def _check_sqlite(storage: Any) -> None:
    """SQLite's quick integrity check: a truncated file can hold an intact studies table (so the first
    query passes) and fail in the middle of the search, when a trial is read or told."""
    from sqlalchemy import text

    with storage.engine.connect() as conn:
        rows = [r[0] for r in conn.execute(text("PRAGMA quick_check"))]
    if rows != ["ok"]:
        raise _DamagedDatabase("; ".join(str(r) for r in rows[:3]))


def _damaged(exc: BaseException) -> BaseException | None:
    """The error in `exc`'s chain that says the SQLite file is not a (whole) database, as opposed to one
    that cannot be opened or is busy (sqlite3 raises those as OperationalError, a subclass); None if none.
    Optuna wraps some of these in its StorageInternalError, so the chain is searched."""
    import sqlite3

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        orig = getattr(exc, "orig", exc)
        if isinstance(exc, _DamagedDatabase) or (isinstance(orig, sqlite3.DatabaseError)
                                                 and not isinstance(orig, sqlite3.OperationalError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


