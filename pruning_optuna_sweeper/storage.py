"""Opening a study storage from a URL, and printing that URL safely."""

from __future__ import annotations

import functools
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from pruning_optuna_sweeper.compat import stale_trial_callback_argument
from pruning_optuna_sweeper.journal import (
    JournalFileError,
    check_journal_file,
    is_journal_url,
    journal_path,
    open_journal,
)
from pruning_optuna_sweeper.proxy import ProxyError, check_reachable, is_grpc_url, open_proxy

DEFAULT_STORAGE = "sqlite:///studies/optuna.db"
# SQLite's result code for a locked database (sqlite3.SQLITE_BUSY from Python 3.11 on).
SQLITE_BUSY = 5
# SQLite serialises writers; parallel trials wait this long for the lock
# instead of failing with "database is locked".
SQLITE_LOCK_TIMEOUT_S = 60
# Tries to open a database whose tables another process is creating at the same time.
SCHEMA_RACE_ATTEMPTS = 5

_open: dict[tuple[str, int | None, int | None], BaseStorage] = {}
# A forked worker (joblib's multiprocessing backend) opens its own storages:
# a database connection must not be used on both sides of a fork.
os.register_at_fork(after_in_child=_open.clear)


class StorageError(ValueError):
    """A storage URL that cannot be used."""


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (not a library's multi-line dump), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def root_cause(error: BaseException) -> BaseException:
    """The error at the bottom of `error`'s chain: the driver's "database or disk is full", not
    Optuna's "An exception is raised during the commit" around it."""
    while True:
        below = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
        if below is None:
            return error
        error = below


def default_storage() -> str:
    return os.environ.get("SWEEP_STORAGE", DEFAULT_STORAGE)


def url_password(url: str) -> str | None:
    """The URL's password, given before the host or as a `password=` query parameter."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    return parsed.password or _query_password(parsed)


def _query_password(parsed: URL) -> str | None:
    value = parsed.query.get("password") or parsed.query.get("passwd")
    return value if isinstance(value, str) or value is None else value[0]


# A password in a URL, as SQLAlchemy reads them: scheme://user:PASSWORD@...,
# or a password= (passwd= for MySQL drivers) query parameter.
# Greedy to the last @ of a word, so a raw @ in the password is masked too.
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)(\S+)(@)")
# In one value (a parsed override), a password may also hold spaces.
_SPACED_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@]*)(@)")
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd)=)([^&\s'\",)\]]+)", re.IGNORECASE)


def refuse_password_in_overrides(overrides: list[str]) -> None:
    """Refuse any command-line override that holds a URL password.

    Hydra prints a sweep's job overrides, saves every job's overrides and
    config under its output folder, echoes an override it cannot parse, and
    a sweep logs its search space, so a password anywhere on the command line
    (`storage=...`, `storage =...`, `storage=choice(...)`, a list) would leak;
    the SWEEP_STORAGE environment variable keeps it out (configs hold only
    ${oc.env:SWEEP_STORAGE}).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for line in overrides:
        if _holds_password(line, parser):
            masked = _mask_passwords(line)
            if _SPACED_PASSWORD.sub(r"\1***\3", masked) != masked:  # a password with spaces: show no value
                masked = line.split("=", 1)[0] + "=<a URL whose password is not shown>"
            raise StorageError(
                f"{masked} holds a password on the command line, where Hydra would print it and save it "
                "in the run's .hydra/ files; expected the storage URL in the SWEEP_STORAGE environment "
                "variable instead: export SWEEP_STORAGE='postgresql+psycopg://user:PASSWORD@host/db'"
            )


def _holds_password(override: str, parser: Any) -> bool:
    """Whether any value of the override (a string, or one in a list, dict or
    choice) holds a URL password; the whole text when Hydra's `parser` cannot
    parse it (Hydra would echo it)."""
    from hydra.errors import OverrideParseException

    try:
        [parsed] = parser.parse_overrides([override])
    except OverrideParseException:
        return _has_password(override)
    return any(_has_password(text) for text in _strings(parsed.value()))


def _has_password(text: str) -> bool:
    return bool(_SPACED_PASSWORD.search(text)) or _mask_passwords(text) != text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in [*value.keys(), *value.values()]:
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(getattr(value, "list", None), list):  # choice(...)
        yield from _strings(value.list)


def _mask_passwords(text: str) -> str:
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***\3", text))


def mask_url(url: str | None) -> str:
    """The URL with any password replaced by ***, for logs and messages."""
    if url is None:
        return "in-memory storage"
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Shown as it is when nothing in it can be a password.
        return url if "@" not in url and "password" not in url.lower() else "<unparseable storage URL>"
    if not (parsed.password or _query_password(parsed) or "@" in url):
        return url  # as typed: rendering would encode it (sqlite:///%3Amemory%3A)
    return _mask_passwords(parsed.render_as_string(hide_password=True))


def open_storage(
    url: str | None,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
    must_exist: bool = False,
) -> BaseStorage:
    """An Optuna storage for `url`, opened once per process and settings.

    SQLite gets a long lock timeout and write-ahead logging, so that parallel
    trials and a live dashboard can read and write the same file. With
    `must_exist`, a SQLite file that is not there is an error rather than
    a new, empty database (for commands that only read studies).
    """
    if url is None:
        return InMemoryStorage()
    key = (url, heartbeat_interval, grace_period)
    if key in _open:
        return _open[key]
    if is_journal_url(url) or is_grpc_url(url):
        check_storage(url, must_exist=must_exist)
        try:
            _open[key] = (
                open_proxy(url)
                if is_grpc_url(url)
                else open_journal(
                    journal_path(url),
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    stale_trial_callback=stale_trial_callback,
                )
            )
        except ProxyError as error:
            raise StorageError(str(error)) from None
        except OSError as e:
            raise StorageError(
                f"cannot open storage {mask_url(url)}: {type(e).__name__}: {first_line(e)}"
            ) from None
        return _open[key]
    parsed = check_storage(url, must_exist=must_exist)
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        engine_kwargs = {"connect_args": {"timeout": SQLITE_LOCK_TIMEOUT_S}}
    try:
        storage = _create_rdb_storage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            **{stale_trial_callback_argument(): stale_trial_callback},
        )
    except Exception as e:
        reason = first_line(e).replace(url_password(url) or "\0", "***")
        raise StorageError(f"cannot open storage {mask_url(url)}: {type(e).__name__}: {reason}") from None
    _open[key] = storage
    return storage


def check_storage(url: str, *, must_exist: bool = False) -> URL:
    """`url` parsed, once it is known to be a URL and, for a SQLite file, an Optuna study file (or
    none yet); a StorageError says what is wrong, before anything is written. A file is checked
    once per process (its integrity check reads it all). A journal:// file must be a journal (or
    none yet); a grpc:// server must answer."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"storage '{mask_url(url)}' is not a storage URL; expected e.g. {DEFAULT_STORAGE}, "
            "journal:///studies/optuna.log, grpc://127.0.0.1:13000 or postgresql+psycopg://user@host/db"
        ) from None
    try:
        if is_journal_url(url):
            check_journal_file(journal_path(url), url, must_exist=must_exist)
        elif is_grpc_url(url):
            check_reachable(url)
    except (JournalFileError, ProxyError) as error:
        raise StorageError(str(error)) from None
    if url.split("://", 1)[-1].split("/", 1)[0].count("@") > 1:
        raise StorageError(
            f"storage {mask_url(url)} has more than one @ before its host; expected a password's own @ "
            "written as %40 (user:p%40ss@host), as in any URL"
        )
    is_file = parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:"
    if is_file and (url, must_exist) not in _checked:
        check_sqlite_study_file(url, Path(str(parsed.database)), must_exist=must_exist)
        _checked.add((url, must_exist))
    return parsed


_checked: set[tuple[str, bool]] = set()


SQLITE_HEADER = b"SQLite format 3\x00"


@functools.cache
def optuna_tables() -> frozenset[str]:
    """The tables Optuna's RDBStorage makes (this version's, read from an in-memory database)."""
    import sqlalchemy

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = RDBStorage("sqlite:///:memory:")
    return frozenset(sqlalchemy.inspect(storage.engine).get_table_names())


def check_sqlite_study_file(url: str, path: Path, *, must_exist: bool = False) -> None:
    """Refuse, before anything is written, a SQLite file that is not an Optuna study database.

    Optuna's RDBStorage creates its tables in whatever file it is given, so a
    typo in the URL would write a study into another application's database;
    a damaged or read-only file fails later with a misleading message. A
    missing file is fine (it becomes a new study database) unless `must_exist`.
    """
    where = mask_url(url)
    if not path.exists():
        if must_exist:
            raise StorageError(f"storage {where}: there is no SQLite file {path}; no sweep has run there yet")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"storage {where}: cannot create the folder of SQLite file {path} ({e.strerror}); "
                "expected a path in a folder that exists or can be created"
            ) from None
        return
    if not path.is_file():
        raise StorageError(f"storage {where}: {path} is not a file; expected a SQLite study file")
    if path.stat().st_size == 0:
        return  # an empty file is an empty SQLite database
    with path.open("rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise StorageError(
            f"storage {where}: {path} is not a SQLite database (damaged, or another kind of file); "
            "nothing was written to it. Expected an Optuna study file, or a new path"
        )
    try:
        with sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=SQLITE_LOCK_TIMEOUT_S
        ) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            check = db.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StorageError(
            f"storage {where}: {path} cannot be read as a SQLite database ({e}); it may be damaged. "
            "Nothing was written to it; expected an Optuna study file, or a new path"
        ) from None
    if check != "ok":
        check = " ".join(check.split())
        raise StorageError(
            f"storage {where}: {path} is a damaged SQLite database (integrity check: {check}); nothing "
            "was written to it. Expected an intact Optuna study file (restore a copy), or a new path"
        )
    others = tables - optuna_tables()  # only some of Optuna's: another process is making them
    if others:
        shown = ", ".join(sorted(others)[:5]) + (", ..." if len(others) > 5 else "")
        raise StorageError(
            f"storage {where}: {path} is a SQLite database of another application (tables: {shown}), "
            "not an Optuna study file; nothing was written to it. Expected a study file, or a new path"
        )
    if not must_exist and not _writable(path):
        raise StorageError(
            f"storage {where}: {path} is read-only (it, or its folder where SQLite keeps its journal, "
            "refuses writes); a sweep records every trial there. Expected a writable study file"
        )


def _writable(path: Path) -> bool:
    """Whether SQLite could write `path` and its journal beside it: only trying tells a
    read-only mount from a writable one (permission bits do not bind root)."""
    try:
        with path.open("r+b"):
            pass
        probe = path.parent / f".{path.name}.write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError:
        return False
    return True


def _create_rdb_storage(url: str, **kwargs: Any) -> RDBStorage:
    """RDBStorage(url) set up, retried while other processes set up the same database.

    Workers started together on an empty database all run Optuna's CREATE
    TABLE; the losers get IntegrityError or ProgrammingError (PostgreSQL's
    duplicate type or table) or OperationalError (SQLite's "table ... already
    exists"). A SQLite file is then switched to write-ahead logging, which
    needs the file to itself: SQLite refuses at once ("database is locked",
    no busy wait) while another process holds it. On a retry, the tables, and
    the journal mode SQLite keeps in the file, are found made.
    """
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        storage = None
        try:
            with warnings.catch_warnings():
                # Heartbeats are used on purpose (workers' trials, and the trials that share their storage).
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                storage = RDBStorage(url, **kwargs)
            if storage.engine.dialect.name == "sqlite":
                _use_write_ahead_log(storage)
            return storage
        except (IntegrityError, ProgrammingError, OperationalError) as error:
            # Only the races above: not a lock timeout while creating tables, nor a server refusing us.
            lost_the_race = not isinstance(error, OperationalError) or (
                getattr(error.orig, "sqlite_errorcode", None) == SQLITE_BUSY
                if storage is not None
                # SQLite's CREATE TABLE race has only its general error code: the text says which.
                else "already exists" in str(error)
            )
            if not lost_the_race or attempt == SCHEMA_RACE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _use_write_ahead_log(storage: RDBStorage) -> None:
    """Readers (a live dashboard) and one writer at a time then share the file.

    Its connections commit with synchronous=NORMAL: with the log, a commit then
    waits for no flush to disk (a few ms each, about ten a trial), the file stays
    consistent, and a crashed process loses nothing; only a power cut may take
    back the last commits.
    """
    with storage.engine.connect() as connection:
        if connection.exec_driver_sql("PRAGMA journal_mode").scalar() != "wal":
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    event.listen(storage.engine, "connect", _commit_without_flush)
    storage.engine.dispose()  # the connections made so far: the next ones are set up so


def _commit_without_flush(connection: sqlite3.Connection, _record: Any) -> None:
    connection.execute("PRAGMA synchronous=NORMAL")


@functools.lru_cache(maxsize=4)
def open_sweep_journal(path: str) -> BaseStorage:
    """The journal file at `path` (opened once per process): where a sweep with `storage: null`
    keeps its study while trials run in other processes."""
    return open_journal(Path(path))
