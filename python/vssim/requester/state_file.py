"""The cluster's state as a JSON file (the vshadow front end keeps one next to the scenario), so
that ``-p`` then ``-q`` then ``-da`` behave like a sequence on one cluster.

Concurrent vshadow processes on one state file behave as VSS on one cluster does: one at a time.
:class:`StateStore` takes an exclusive ``flock`` on ``<state>.lock`` for the whole of an
invocation's read–change–write (so two ``-p`` never hand out the same snapshot id nor lose a
snapshot), and writes the new state to a temporary file in the same folder, fsyncs it and renames
it over the old one (then fsyncs the folder): a reader sees the old state or the new one, never a
torn file, even if the writer is killed.

Copy-on-write trackers are not persisted: a reloaded shadow copy is listed and deletable, its diff
area starts empty. A file written for another scenario seed or format version is refused, and so
is a file of the wrong shape — the error names the file and the field (``snapshots[2].device``),
what was expected and what was found; nothing is loaded.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from vssim.errors import VssimError
from vssim.scenario import Scenario
from vssim.vss.cluster_state import ClusterState, ShadowCopy

STATE_VERSION = 1


class StateFileError(VssimError, ValueError):
    """A state file cannot be used; the message names the file, the field, what was expected and
    what was found."""


def to_json(state: ClusterState) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "scenario": state.scenario.name,
        "seed": state.scenario.seed,
        "clock": state.clock,
        "counter": state.counter,
        "device_counter": state.device_counter,
        "coordinators": state.coordinators,
        "stale_backup_until": state.stale_backup_until,
        "last_backup": {k: list(v) for k, v in state.last_backup.items()},
        "writer_failures": {k: list(v) for k, v in state.writer_failures.items()},
        "snapshots": [{**asdict(s), "backend_handle": None} for s in state.snapshots],
    }


def save(state: ClusterState, path: Path) -> None:
    """Write ``state`` atomically: a temporary file beside ``path``, fsync, rename, fsync the
    folder."""
    text = json.dumps(to_json(state), indent=1) + "\n"
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _kind(value: object) -> str:
    return type(value).__name__ if value is not None else "null"


class _Checker:
    """Type checks of a decoded state file, each naming the field it checks."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, expected: str, found: object) -> StateFileError:
        return StateFileError(
            f"{self.path}: field {field!r}: expected {expected}, found {_kind(found)} "
            f"{json.dumps(found)[:60]}"
        )

    def number(self, field: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(field, "a number", value)
        return float(value)

    def integer(self, field: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, "an integer", value)
        return value

    def text(self, field: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(field, "a string", value)
        return value

    def mapping(self, field: str, value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, "an object", value)
        return value

    def key(self, raw: dict[str, Any], field: str) -> Any:
        if field not in raw:
            raise StateFileError(f"{self.path}: field {field!r} is missing")
        return raw[field]


_INT_FIELDS = {"count", "device", "attributes"}
_FLOAT_FIELDS = {"created"}


def _snapshot(check: _Checker, i: int, raw: object) -> ShadowCopy:
    where = f"snapshots[{i}]"
    obj = check.mapping(where, raw)
    known = {f.name for f in fields(ShadowCopy)}
    extra = sorted(set(obj) - known)
    if extra:
        raise StateFileError(f"{check.path}: field '{where}.{extra[0]}' is not a shadow copy field")
    values: dict[str, Any] = {}
    for f in fields(ShadowCopy):
        name = f"{where}.{f.name}"
        if f.name not in obj:
            if f.name in ("backend_handle", "exposed_name", "exposed_path"):
                continue
            raise StateFileError(f"{check.path}: field {name!r} is missing")
        v = obj[f.name]
        if f.name == "backend_handle":
            values[f.name] = None
        elif f.name in _INT_FIELDS:
            values[f.name] = check.integer(name, v)
        elif f.name in _FLOAT_FIELDS:
            values[f.name] = check.number(name, v)
        else:
            values[f.name] = check.text(name, v)
    return ShadowCopy(**values)


def load(scenario: Scenario, path: Path) -> ClusterState:
    """The state saved at ``path``, or a fresh one when the file does not exist."""
    if not path.exists():
        return ClusterState(scenario)
    check = _Checker(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path}: not a vssim cluster state file: {exc}") from None
    obj = check.mapping("(top level)", raw)
    version = check.key(obj, "version")
    if version != STATE_VERSION:
        raise check.fail("version", f"{STATE_VERSION}", version)
    seed = check.key(obj, "seed")
    if seed != scenario.seed:
        raise check.fail("seed", f"{scenario.seed} (the seed of {scenario.path})", seed)
    coordinators = check.mapping("coordinators", check.key(obj, "coordinators"))
    stale = check.mapping("stale_backup_until", obj.get("stale_backup_until", {}))
    last = check.mapping("last_backup", obj.get("last_backup", {}))
    snaps = check.key(obj, "snapshots")
    if not isinstance(snaps, list):
        raise check.fail("snapshots", "a list", snaps)
    failures = check.mapping("writer_failures", obj.get("writer_failures", {}))
    writer_failures: dict[str, tuple[int, int]] = {}
    for k, v in failures.items():
        if not isinstance(v, list) or len(v) != 2:
            raise check.fail(f"writer_failures.{k}", "a list of two integers", v)
        writer_failures[k] = (
            check.integer(f"writer_failures.{k}[0]", v[0]),
            check.integer(f"writer_failures.{k}[1]", v[1]),
        )
    last_backup: dict[str, tuple[float, float]] = {}
    for k, v in last.items():
        if not isinstance(v, list) or len(v) != 2:
            raise check.fail(f"last_backup.{k}", "a list of two numbers", v)
        last_backup[k] = (
            check.number(f"last_backup.{k}[0]", v[0]),
            check.number(f"last_backup.{k}[1]", v[1]),
        )
    return ClusterState(
        scenario,
        clock=check.number("clock", check.key(obj, "clock")),
        counter=check.integer("counter", check.key(obj, "counter")),
        device_counter=check.integer("device_counter", check.key(obj, "device_counter")),
        snapshots=[_snapshot(check, i, s) for i, s in enumerate(snaps)],
        coordinators={
            check.text(f"coordinators key {k!r}", k): check.text(f"coordinators.{k}", v)
            for k, v in coordinators.items()
        },
        stale_backup_until={
            k: check.number(f"stale_backup_until.{k}", v) for k, v in stale.items()
        },
        last_backup=last_backup,
        writer_failures=writer_failures,
    )


class StateStore:
    """One process's access to a state file: :meth:`acquire` locks it and loads the state,
    :meth:`save` writes it back atomically, :meth:`release` lets the next process in. Used as a
    context manager it releases on exit (saving only what :meth:`save` was asked to save)."""

    def __init__(self, scenario: Scenario, path: Path) -> None:
        self.scenario = scenario
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock: IO[bytes] | None = None
        self.state: ClusterState | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self) -> ClusterState:
        """Wait for the exclusive lock, then load the state (afresh: another process may have
        changed it since this one last held the lock)."""
        if self._lock is None:
            lock = self.lock_path.open("ab")
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            except BaseException:
                lock.close()
                raise
            self._lock = lock
            try:
                self.state = load(self.scenario, self.path)
            except BaseException:
                self.release()
                raise
        assert self.state is not None
        return self.state

    def save(self) -> None:
        if self._lock is None or self.state is None:
            raise RuntimeError("StateStore.save without the lock")
        save(self.state, self.path)

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
