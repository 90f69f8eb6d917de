"""Property tests: random sequences of writes, trims, flushes and reopenings against a bytearray."""

from __future__ import annotations

import pathlib
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vssim import engine

MiB = 1024 * 1024
SIZE = 6 * MiB + 4096

op = st.one_of(
    st.tuples(
        st.just("write"),
        st.integers(0, SIZE - 1),
        st.integers(1, 3 * MiB),
        st.integers(0, 255),
    ),
    st.tuples(st.just("trim"), st.integers(0, SIZE - 1), st.integers(1, 3 * MiB), st.just(0)),
    st.tuples(st.just("flush"), st.just(0), st.just(0), st.just(0)),
    st.tuples(st.just("reopen"), st.just(0), st.just(0), st.just(0)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(op, max_size=14),
    logical=st.sampled_from([512, 4096]),
    differencing=st.booleans(),
)
def test_matches_a_bytearray(
    ops: list[tuple[str, int, int, int]], logical: int, differencing: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = pathlib.Path(tmp) / "base.vhdx"
        ref = bytearray(SIZE)
        d = engine.Vhdx.create(base, SIZE, block_size=MiB, logical_sector_size=logical)
        d.write(MiB // 2, b"\x5a" * (3 * MiB))
        ref[MiB // 2 : MiB // 2 + 3 * MiB] = b"\x5a" * (3 * MiB)
        path = base
        if differencing:
            d.close()
            path = pathlib.Path(tmp) / "child.avhdx"
            d = engine.Vhdx.create(path, disk_type="differencing", parent=base)
        for kind, off, n, fill in ops:
            n = min(n, SIZE - off)
            if kind == "write":
                data = bytes([fill]) * n
                d.write(off, data)
                ref[off : off + n] = data
            elif kind == "trim":
                d.trim(off, n)
                ref[off : off + n] = bytes(n)
            elif kind == "flush":
                d.flush()
            else:
                d.close()
                d = engine.Vhdx.open(path, writable=True)
            lo = max(0, off - 5000)
            assert d.read(lo, min(SIZE - lo, n + 10000)) == ref[lo : lo + n + 10000]
        assert d.read(0, SIZE) == ref
        d.close()
        with engine.Vhdx.open(path) as r:
            assert r.read(0, SIZE) == ref
            assert r.check() == []
