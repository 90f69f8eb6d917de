"""The engine's thread pool (``join_the_pool`` in ``rust/python/src/lib.rs``): the importing
thread is one of rayon's workers; calls from any other thread, one or several at once, with one
pool thread or many, after the importing thread ended, and in a forked child, still finish with
the same answer.
Each case runs in a fresh interpreter (the pool is made once per process, at import) under a
timeout: a call left waiting for a worker is a hang, and the test says so."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

#: A batch large enough for the tracker's parallel path (``ChunkSet::PARALLEL_MIN`` writes),
#: and what it must copy, worked out on the importing thread first.
PRELUDE = """
import threading
import numpy as np
def batch():
    from vssim import engine
    rng = np.random.default_rng(5)
    offs = (rng.integers(0, 1 << 30, 200_000) // 4096 * 4096).astype(np.uint64)
    lens = np.full(200_000, 8192, dtype=np.uint32)
    t = engine.CowTracker(2 << 30)
    t.create_snapshot()
    return t.apply_writes(offs, lens).chunks_copied
def in_threads(n):
    out = [None] * n
    def one(i):
        out[i] = batch()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out
"""


def run_case(body: str, threads: str | None) -> str:
    env = dict(os.environ)
    env.pop("RAYON_NUM_THREADS", None)
    if threads is not None:
        env["RAYON_NUM_THREADS"] = threads
    code = PRELUDE + textwrap.dedent(body)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the engine hung (RAYON_NUM_THREADS={threads}):\n{body}")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("threads", [None, "1", "2", "3"])
def test_calls_from_other_threads_finish_with_the_same_answer(threads: str | None) -> None:
    out = run_case(
        """
        from vssim import engine
        want = batch()
        assert want > 50_000, want
        assert in_threads(1) == [want]
        assert in_threads(3) == [want] * 3
        print("ok")
        """,
        threads,
    )
    assert out == "ok"


@pytest.mark.parametrize("threads", [None, "1", "2"])
def test_the_importing_thread_may_end(threads: str | None) -> None:
    out = run_case(
        """
        t = threading.Thread(target=lambda: __import__("vssim.engine"))
        t.start()
        t.join()
        a = batch()
        assert in_threads(2) == [a, a]
        print("ok")
        """,
        threads,
    )
    assert out == "ok"


@pytest.mark.parametrize("threads", [None, "2"])
def test_a_forked_child_finishes(threads: str | None) -> None:
    """A child forked after the import (``multiprocessing``'s default start method here) has
    none of the pool's threads; its main thread is still the pool's first worker, so its calls
    run there, alone, and finish (with the pool's threads outside it, they waited for ever)."""
    out = run_case(
        """
        import os
        want = batch()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if batch() == want else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        threads,
    )
    assert out == "0"
