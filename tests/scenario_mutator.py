"""A seeded mutator of scenario files, for the scenario soak (``test_scenario_soak.py``).

Each case takes one example scenario (parsed TOML), applies one to three mutations — a value
replaced by a hostile one (NaN, infinities, negative, huge, the wrong type, a size past every
limit, a long or strange string), a key deleted, an unknown key added, an array element
duplicated, a number scaled, a table replaced by a scalar — and runs it:
:func:`vssim.scenario.parse_scenario`, then, when it loads and is small, a short ``vssim run`` of
it written back as TOML (a full then an incremental backup; the CLI reads the file as a user's
would). The only outcomes allowed: it loads and runs (exit 0), or it is refused with a message
(``ScenarioError``, exit 2, no traceback) — never another exception, a hang (a per-case alarm)
or an abort (the child process dies: the soak fails with its stderr).

The hostile values are chosen so that any that is accepted is also cheap enough to run: a value
past a limit must be refused; the boundary values (limits, 0, 1) load and run. Not every limit:
the slowest bandwidth allowed (1 Mbit/s) makes a legitimate run of an example take minutes of
simulated-writes work, past a case's budget — a bound on work is not one of the limits.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import random
import signal
import sys
import time
import tomllib
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
#: Scenarios with at most this many VMs also get a short run after they load.
RUN_AT_MOST_VMS = 64
#: A case's time budget in the child (seconds): past it the case counts as a hang.
CASE_SECONDS = 60

HOSTILE: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    -1,
    -0.0,
    0,
    1e308,
    1e-320,
    2**63,
    2**64 + 1,
    10**30,
    True,
    "",
    "x" * 5000,
    "1048576 TiB",
    "1 EiB",
    "65 TiB",
    "-5 GiB",
    "5 XiB",
    "nan GiB",
    "1e3 GiB",
    "0 B",
    "0 bit/s",
    "1 bit/s",
    "inf MB/s",
    "VM\\..\\other",
    "C:\\ClusterStorage\\Volume1",
    "NODE\u202eevil",
    [],
    [1, "two", 3.5],
    {},
    {"nested": {"deeper": [math.nan]}},
]
#: Values at the edges of what loads (each limit itself, zero, one): most load, and then run.
BOUNDARY: list[Any] = [
    0,
    1,
    0.5,
    86_400,
    "64 TiB",
    "256 TiB",
    "320 MiB",
    "100 Mbit/s",
    "1 Tbit/s",
    "0 B",
    "1 B",
]
UNKNOWN_KEYS = ["colour", "", "write_iops ", "VMS"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of the document (tables' keys, arrays' indices)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        doc = doc[k]
    return doc


def mutate(doc: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], list[str]]:
    """A mutated copy of ``doc`` and what was done to it."""
    doc = copy.deepcopy(doc)
    done: list[str] = []
    for _ in range(rng.randint(1, 3)):
        paths = _paths(doc)
        if not paths:
            break
        path = rng.choice(paths)
        parent, key = _parent(doc, path), path[-1]
        how = rng.random()
        if how < 0.6:
            value = rng.choice(HOSTILE if rng.random() < 0.6 else BOUNDARY)
            parent[key] = copy.deepcopy(value)
            done.append(f"{path} = {value!r:.60}")
        elif how < 0.7 and isinstance(parent, dict):
            del parent[key]
            done.append(f"del {path}")
        elif how < 0.8 and isinstance(parent, dict):
            k = rng.choice(UNKNOWN_KEYS)
            parent[k] = 1
            done.append(f"{path[:-1]}.{k!r} = 1 (unknown key)")
        elif how < 0.9 and isinstance(parent[key], list) and parent[key]:
            item = rng.choice(parent[key])
            parent[key].append(copy.deepcopy(item))
            done.append(f"{path} += a copy of one element")
        elif isinstance(parent[key], int | float) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * rng.choice([-1, 1e6, 1e-6, 1025])
            done.append(f"{path} scaled to {parent[key]!r}")
        else:
            parent[key] = rng.choice([[], {}, "table", 7])
            done.append(f"{path} = {parent[key]!r} (a shape change)")
    return doc, done


def toml_value(v: Any) -> str:
    """``v`` as a TOML value (inline tables and arrays: any document fits on its key's line)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    if hasattr(v, "isoformat"):
        return str(v.isoformat())
    raise TypeError(f"no TOML for {v!r}")


def toml_text(doc: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


class HangError(Exception):
    """A case ran past its budget."""


def _alarm(signum: int, frame: object) -> None:
    raise HangError


def run_cases(seed: int, cases: int, work: Path) -> dict[str, Any]:
    """The soak itself (in the bounded child): ``cases`` mutated scenarios; how many were
    refused, loaded and ran, and the failures."""
    from vssim.cli import main
    from vssim.errors import ScenarioError
    from vssim.scenario import parse_scenario

    rng = random.Random(seed)
    docs = [(p.name, tomllib.loads(p.read_text(encoding="utf-8"))) for p in EXAMPLES]
    signal.signal(signal.SIGALRM, _alarm)
    failures: list[dict[str, Any]] = []
    counts = {"refused": 0, "loaded": 0, "ran": 0, "run refused": 0}
    slowest: tuple[float, dict[str, Any]] = (0.0, {})
    for i in range(cases):
        name, base = rng.choice(docs)
        doc, done = mutate(base, rng)
        case = {"case": i, "seed": seed, "example": name, "mutations": done}
        signal.alarm(CASE_SECONDS)
        started = time.monotonic()
        try:
            try:
                sc = parse_scenario(doc, Path(f"{name}#{i}"))
            except ScenarioError:
                counts["refused"] += 1
                continue
            counts["loaded"] += 1
            if len(sc.vms) > RUN_AT_MOST_VMS:
                continue
            path = work / f"case-{i}.toml"
            path.write_text(toml_text(doc), encoding="utf-8")
            err = io.StringIO()
            argv = ["run", str(path), "--backup", "full", "incremental", "--interval", "60"]
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    rc = main(argv)
                except SystemExit as x:
                    rc = x.code if isinstance(x.code, int) else 2
            counts["ran" if rc == 0 else "run refused"] += 1
            if rc not in (0, 2) or "Traceback" in err.getvalue():
                failures.append({**case, "outcome": f"run exit {rc}: {err.getvalue()[-1500:]}"})
        except HangError:
            failures.append({**case, "outcome": f"no end within {CASE_SECONDS} s"})
        except Exception:
            failures.append({**case, "outcome": traceback.format_exc()[-2000:]})
        finally:
            signal.alarm(0)
            took = time.monotonic() - started
            if took > slowest[0]:
                slowest = (took, case)
    return {"counts": counts, "failures": failures, "slowest": [round(slowest[0], 2), slowest[1]]}


if __name__ == "__main__":
    seed, cases, work = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    print(json.dumps(run_cases(seed, cases, work)))
