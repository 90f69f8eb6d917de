"""Child processes bounded by a timeout and resource limits, for the hostile tests: a hang, a
runaway allocation or a crash shows as a failed test, never as a stuck or swapping machine.

The limits are set in the child itself (``preexec_fn``): an address-space limit always
(``RLIMIT_AS``), a file-size limit on request (``RLIMIT_FSIZE``, a disk that fills: writes past it
fail with ``EFBIG``; CPython ignores ``SIGXFSZ``). Beside them, calls from four threads at once
bounded by a join timeout (:func:`in_four_threads`): a deadlock fails the test.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Address space of a hostile child process: what a normal `vssim` run needs (Python, numpy,
#: polars, the engine: ~1 GiB virtual) with room to spare, far below what the runaway cases
#: reached (9 GB for a VHDX chain, 23 GB for a day's demo window).
CHILD_ADDRESS_SPACE = 2 << 30
CHILD_TIMEOUT_S = 60.0
_ENV = {"OPENBLAS_NUM_THREADS": "1", "RAYON_NUM_THREADS": "2"}


def limits(
    address_space: int = CHILD_ADDRESS_SPACE, file_size: int | None = None
) -> Callable[[], None]:
    """The ``preexec_fn`` that sets a child's limits."""

    def set_limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return set_limits


def spawn_bounded(
    args: list[str],
    *,
    cwd: pathlib.Path | None = None,
    address_space: int = CHILD_ADDRESS_SPACE,
) -> subprocess.Popen[str]:
    """Starts ``python ARGS…`` under the address-space limit (the caller bounds its wait)."""
    return subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limits(address_space),
        cwd=cwd,
        env=dict(os.environ, **_ENV),
    )


def run_bounded(
    args: list[str],
    *,
    timeout: float = CHILD_TIMEOUT_S,
    cwd: pathlib.Path | None = None,
    address_space: int = CHILD_ADDRESS_SPACE,
    file_size: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs ``python ARGS…`` under the limits and the timeout."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limits(address_space, file_size),
        cwd=cwd,
        env=dict(os.environ, **_ENV),
        check=False,
    )


def vssim(*args: str, timeout: float = CHILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``vssim ARGS…`` in a bounded child process."""
    return run_bounded(["-m", "vssim", *args], timeout=timeout)


def python(code: str, timeout: float = CHILD_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a bounded child process."""
    return run_bounded(["-c", code], timeout=timeout)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


#: Runs several ``vssim`` command lines in one interpreter (one start-up instead of one each);
#: an exception escaping ``main`` is reported as its traceback on stderr with code -1.
_BATCH = """
import contextlib, io, json, sys, traceback
from vssim.cli import main
out = []
for args in json.loads(sys.argv[1]):
    o, e = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
        try:
            rc = main(args)
        except SystemExit as x:
            rc = x.code if isinstance(x.code, int) else 2
        except BaseException:
            traceback.print_exc(file=e)
            rc = -1
    out.append([rc, o.getvalue(), e.getvalue()])
print(json.dumps(out))
"""


def vssim_batch(
    *commands: list[str],
    timeout: float = CHILD_TIMEOUT_S,
    cwd: pathlib.Path | None = None,
    address_space: int = CHILD_ADDRESS_SPACE,
) -> list[Result]:
    """Each of ``commands`` (``vssim`` arguments) in order, in one bounded child process. A
    crash, abort or hang fails the whole batch (the assertion shows the child's stderr)."""
    r = run_bounded(
        ["-c", _BATCH, json.dumps(list(commands))],
        timeout=timeout,
        cwd=cwd,
        address_space=address_space,
    )
    assert r.returncode == 0, f"the batch died ({r.returncode}): {r.stderr[-3000:]}"
    return [Result(*row) for row in json.loads(r.stdout.splitlines()[-1])]


#: Batches of writes (offsets, lengths) for the many-threads tests.
Batch = tuple[Any, Any]


def random_batches(seed: int, size: int, count: int = 8, n: int = 200_000) -> list[Batch]:
    """``count`` batches of ``n`` random writes (up to 64 KiB) inside ``size`` bytes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        (
            rng.integers(0, size - (1 << 20), n, dtype=np.uint64),
            rng.integers(1, 1 << 16, n, dtype=np.uint32),
        )
        for _ in range(count)
    ]


def in_four_threads(call: Callable[[Any, Any], None], batches: list[Batch]) -> None:
    """``call`` on every batch, the batches dealt to four threads at once; fails when a call
    raises, and — the threads are daemons joined with a timeout — when the calls deadlock,
    rather than hang the test run."""
    import threading

    errors: list[BaseException] = []

    def work(mine: list[Batch]) -> None:
        try:
            for o, n in mine:
                call(o, n)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(batches[i::4],), daemon=True) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads), "the calls did not end: a deadlock"
    assert errors == []
