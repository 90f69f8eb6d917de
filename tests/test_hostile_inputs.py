"""Hostile input and careless use of scenarios, materialized runs and the command lines (issue 15,
the Python side), each case as the issue states it.

Every case runs in a child process bounded by a timeout and an address-space limit set in the
child (:mod:`bounded`): a hang or a runaway allocation fails the test instead of the machine.
Cases:

- item 1: two VMs whose names map to one folder (``VM-A`` on one CSV, ``VM A`` on another) in a
  materialized run keep their own backups; disks of one CSV that would be one Windows file are
  refused, naming both VMs and the file;
- item 13: ``kill -9`` at several instants of a materialized full + incrementals run, a disk that
  fills during an incremental (``RLIMIT_FSIZE``), Ctrl-C: never a backup file under its final
  name that is incomplete, the manifest lists only complete, verified files, and a restore
  reports what an interrupted run left;
- item 11: a CSV of ``1048576 TiB``, disks in EiB or past 64 TiB, 8,000 generated VMs with 64 TiB
  disks, ``vssim demo --window 1e12``: refused up front with the limit named, or run in memory
  that follows what is touched;
- item 12: ``[generate] nodes = 1, csvs = 1, vms = 1025`` through ``run``, ``plan``, ``vshadow``
  and ``load_scenario``; ``run --interval nan`` (``1e18``, ``inf``): each ends at once;
- unclear errors: ``bench-report`` on non-numeric fields, deep nesting, binary input; a manifest
  field of the wrong type; ``run --streams 0``, ``--interval -5``; ``write_iops = 1e12``; any
  unexpected exception (one line and a request to report it; the traceback with ``--debug``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from bounded import CHILD_TIMEOUT_S, Result, limits, python, run_bounded, vssim_batch
from vssim import engine
from vssim.cli import main
from vssim.errors import MaterializeError
from vssim.scale.backup_store import STAGED, leftovers, read_manifest
from vssim.scale.materialize import restore
from vssim.scale.materialized_names import SLUG_MAX, MaterializedNames, slug
from vssim.scenario import parse_scenario

#: A materialized run small enough for a test: 2 VMs with 32 MiB dynamic disks on one CSV.
MATERIALIZED = """
[cluster]
name = "HOSTILE"
seed = 3
[generate]
nodes = 2
csvs = 1
vms = 2
csv_size = "1 TiB"
disk_size = "32 MiB"
allocated = "8 MiB"
write_iops = 400
"""
RUN_ARGS = ["--backup", "full", "incremental", "incremental", "--interval", "20"]
RUN_ARGS += ["--no-qemu-check"]

ONE_FOLDER = """
[cluster]
name = "COLLIDE"
seed = 1
[[nodes]]
name = "N1"
[[csvs]]
name = "CSV1"
mount_point = 'C:\\ClusterStorage\\Volume1'
coordinator = "N1"
size = "1 TiB"
[[csvs]]
name = "CSV2"
mount_point = 'C:\\ClusterStorage\\Volume2'
coordinator = "N1"
size = "1 TiB"
[[vms]]
name = "VM-A"
node = "N1"
csv = "CSV1"
disks = [{ size = "32 MiB", allocated = "8 MiB" }]
workload = { write_iops = 100 }
[[vms]]
name = "VM A"
node = "N1"
csv = "CSV2"
disks = [{ size = "32 MiB", allocated = "8 MiB" }]
workload = { write_iops = 100 }
"""

SMALL = """
[cluster]
name = "T"
[generate]
nodes = 2
csvs = 1
vms = 4
csv_size = "1 TiB"
disk_size = "32 MiB"
allocated = "8 MiB"
write_iops = 100
"""


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8")
    return p


def refused(r: Result | subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with a message (exit 2, no traceback) holding every one of ``words``."""
    err = r.stderr
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], err[-2000:])
    assert "Traceback" not in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def vhdx_files(store: Path) -> list[str]:
    """The backup files under their final names, relative to the store."""
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*.vhdx") if p.is_file())


def assert_store_sound(store: Path, tmp: Path) -> list[str]:
    """What an interrupted materialized run may leave: staged files; the backups the manifest
    lists, each under its final name, restoring and verifying; and, killed in the milliseconds
    between a set's renames and its manifest, that one set's files (one backup number, one file
    per disk) under final names, unlisted — complete, since a file is fsynced and verified
    before it takes its name (a ``check`` that passes proves nothing: an incomplete file passed
    it). A restore reports every file it does not list. Returns the VMs restored."""
    entries = read_manifest(store) if (store / "manifest.json").exists() else []
    listed = {e.file for e in entries}
    finals = set(vhdx_files(store))
    assert listed <= finals, "the manifest lists a file that is not there"
    unlisted = sorted(finals - listed)
    numbers = {Path(f).name.split("-", 1)[0] for f in unlisted}
    assert len(numbers) <= 1, f"unlisted backups of several sets: {unlisted}"
    assert len({str(Path(f).parent) for f in unlisted}) == len(unlisted), unlisted
    for f in unlisted:
        assert engine.Vhdx.check_file(store / f) == [], f
    left = {p.relative_to(store).as_posix() for p in leftovers(store, entries)}
    # Staged files: ours (``.staged``), and the engine's own while it writes a VHDX.
    staging = {f for f in left if f.endswith(STAGED) or ".vssim-staging-" in f}
    assert left == staging | set(unlisted), left
    vms = sorted({e.vm for e in entries})
    for i, vm in enumerate(vms):
        r = restore(store, vm, tmp / f"restored-{i}.vhdx")
        assert r.verified, (vm, r.backup.file)
        assert {p.relative_to(store).as_posix() for p in r.leftovers} == left
    return vms


# --- the quick refusals: one bounded interpreter runs them all ----------------------------------

MANIFEST_ROW = {
    "backup": 0,
    "job": "0:full#0",
    "vm": "VM0001",
    "disk": 0,
    "seq": 1,
    "kind": "full",
    "file": "0001-VM0001/disk0/0001-full.vhdx",
    "parent": None,
    "snapshot_s": 1.0,
    "bytes_read": 1,
    "modelled_bytes": 1,
    "digest_at_snapshot": "x",
    "digest_restored": "x",
    "committed": True,
    "qemu_img_check": None,
}
#: Manifests with one wrong field each, and what the refusal must say.
MANIFESTS = {
    "seq": ({"seq": "one"}, "backups[0].seq = 'one': expected int"),
    "escape": ({"file": "../../etc/passwd"}, "a path inside the store"),
    "absolute": ({"file": "/etc/passwd"}, "a path inside the store"),
    "loop": (
        {"kind": "incremental", "parent": "0001-VM0001/disk0/0001-full.vhdx"},
        "its parents loop back",
    ),
}
#: `vssim run` options out of range (on a valid scenario), and what the refusal must say.
RUN_OPTIONS = {
    ("--interval", "nan"): "--interval",
    ("--interval", "1e18"): "604,800",
    ("--interval", "inf"): "--interval",
    ("--interval", "-5"): "--interval",
    ("--streams", "0"): "--streams: expected an integer from 1",
    ("--per-csv", "-1"): "--per-csv",
    ("--per-node", "0"): "--per-node",
    ("--batch-vms", "-3"): "--batch-vms",
    ("--fraction", "nan"): "--fraction",
}
BENCH_FILES = {
    "text.json": json.dumps(
        {"benchmarks": [{"stats": {"min": "abc", "max": 1, "median": 1, "ops": 1}}]}
    ),
    "deep.json": "[" * 100_000 + "]" * 100_000,
    "params.json": json.dumps(
        {"benchmarks": [{"stats": {"min": 1, "max": 1, "median": 1, "ops": 1}, "params": [1]}]}
    ),
}


def _one_disk_two_names() -> str:
    out = ONE_FOLDER.replace(
        'disks = [{ size = "32 MiB", allocated = "8 MiB" }]\nworkload = { write_iops = 100 }\n'
        '[[vms]]\nname = "VM A"',
        'disks = [{ size = "32 MiB", allocated = "8 MiB", file = "data.vhdx" },\n'
        '         { size = "32 MiB", allocated = "8 MiB", file = "DATA.vhdx" }]\n'
        '[[vms]]\nname = "VM A"',
    )
    assert out != ONE_FOLDER
    return out


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Result]]:
    """Every quick case's command line, run in one bounded child process (one start-up): the
    folder their files are in, and each case's result by name."""
    tmp = tmp_path_factory.mktemp("refusals")
    files = {
        "small.toml": SMALL,
        "one-vm.toml": _one_disk_two_names(),
        # Two VMs whose names share one slug, on one CSV, each with a disk called disk.vhdx: two
        # files on Windows (two VM folders), two files here.
        "same-csv.toml": ONE_FOLDER.replace('csv = "CSV2"', 'csv = "CSV1"').replace(
            'allocated = "8 MiB" }', 'allocated = "8 MiB", file = "disk.vhdx" }'
        ),
        "dotdot.toml": ONE_FOLDER.replace(
            'allocated = "8 MiB" }]', 'allocated = "8 MiB", file = ".." }]', 1
        ),
        "csv.toml": SMALL.replace('"1 TiB"', '"1048576 TiB"'),
        "written.toml": ONE_FOLDER.replace('size = "1 TiB"', 'size = "1048576 TiB"', 1),
        "eib.toml": SMALL.replace('"32 MiB"', '"1 EiB"'),
        "past.toml": SMALL.replace('"32 MiB"', '"65 TiB"'),
        "full.toml": '[cluster]\nname = "FULL"\n[generate]\nnodes = 1\ncsvs = 1\nvms = 1025\n',
        "inf.toml": SMALL + "workload = { guest_vss_seconds = inf }\n",
        "iops.toml": SMALL.replace("write_iops = 100", "write_iops = 1e12"),
        **BENCH_FILES,
    }
    for name, text in files.items():
        write(tmp, name, text)
    (tmp / "binary.json").write_bytes(bytes(range(256)) * 4)
    for name, (change, _) in MANIFESTS.items():
        (tmp / name).mkdir()
        doc = {"version": 1, "backups": [{**MANIFEST_ROW, **change}]}
        (tmp / name / "manifest.json").write_text(json.dumps(doc))
    t = str(tmp)
    cases: dict[str, list[str]] = {
        "one-vm": ["run", f"{t}/one-vm.toml", "--materialize", f"{t}/M1"],
        "same-csv": [
            *("run", f"{t}/same-csv.toml", "--interval", "20", "--no-qemu-check"),
            *("--materialize", f"{t}/M2"),
        ],
        "dotdot": ["run", f"{t}/dotdot.toml"],
        "csv": ["run", f"{t}/csv.toml"],
        "written": ["run", f"{t}/written.toml"],
        "eib": ["run", f"{t}/eib.toml"],
        "past": ["run", f"{t}/past.toml"],
        "demo-window": ["demo", "--window", "1e12"],
        "full-run": ["run", f"{t}/full.toml"],
        "full-plan": ["plan", f"{t}/full.toml", "--out", f"{t}/plan"],
        "full-vshadow": ["vshadow", "--scenario", f"{t}/full.toml", "--node", "NODE01", "-q"],
        "inf": ["run", f"{t}/inf.toml"],
        "iops": ["run", f"{t}/iops.toml"],
        **{f"bench {n}": ["bench-report", f"{t}/{n}"] for n in (*BENCH_FILES, "binary.json")},
        **{
            f"manifest {n}": ["restore", f"{t}/{n}", "VM0001", "--out", f"{t}/{n}.vhdx"]
            for n in MANIFESTS
        },
        **{
            f"run {' '.join(k)}": ["run", f"{t}/small.toml", "--backup", "full", "full", *k]
            for k in RUN_OPTIONS
        },
    }
    # One interpreter that loads polars, matplotlib (plan) and the engine reserves more address
    # space than one command: 3 GiB, still far below what the runaway cases reached.
    results = vssim_batch(*cases.values(), timeout=CHILD_TIMEOUT_S, address_space=3 << 30)
    return tmp, dict(zip(cases, results, strict=True))


# --- item 1: one naming scheme ------------------------------------------------------------------


def test_vms_whose_names_share_a_folder_keep_their_own_backups(tmp_path: Path) -> None:
    scenario = write(tmp_path, "collide.toml", ONE_FOLDER)
    d = tmp_path / "D"
    r = run_bounded(
        [
            *("-m", "vssim", "run", str(scenario), "--backup", "full", "incremental"),
            *("--interval", "20", "--materialize", str(d), "--no-qemu-check"),
        ]
    )
    assert r.returncode == 0, r.stderr[-2000:]
    entries = read_manifest(d / "backups")
    assert sorted({e.vm for e in entries}) == ["VM A", "VM-A"]
    assert len({e.file for e in entries}) == len(entries) == 4
    for vm in ("VM-A", "VM A"):
        out = tmp_path / f"{vm}.vhdx"
        assert main(["restore", str(d), vm, "--out", str(out)]) == 0
    # A name given case folded, as Windows compares names, finds its VM too.
    assert restore(d, "vm a", tmp_path / "folded.vhdx").vm == "VM A"


def test_every_materialized_name_is_unique_and_a_collision_is_refused() -> None:
    sc = parse_scenario(tomllib.loads(ONE_FOLDER), Path("collide.toml"))
    names = MaterializedNames(sc)
    dirs = [names.vm_dir(vm) for vm in sc.vms]
    assert dirs == ["0001-VM-A", "0002-VM-A"]
    assert slug("x" * 300) == "x" * SLUG_MAX
    assert [slug(n) for n in ("..", " ", "/", ".hidden", "a\\b:c")] == [
        "_",
        "_",
        "_",
        "hidden",
        "a-b-c",
    ]
    # A Scenario built by hand, past the loader: two VMs of one name.
    twin = dataclasses.replace(sc, vms=(sc.vms[0], dataclasses.replace(sc.vms[1], name="VM-A")))
    with pytest.raises(MaterializeError, match="two VMs are named 'VM-A'"):
        MaterializedNames(twin)
    # The registry folds case as NTFS does and names both owners.
    with pytest.raises(MaterializeError, match=r"'x' disk 0 and VM 'VM-A'.s backups would both be"):
        names._claim("BACKUPS/0001-vm-a", "VM 'x' disk 0")


def test_disks_that_would_be_one_windows_file_are_refused(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    tmp, r = refusals
    refused(
        r["one-vm"], "vms[0].disks[1].file", "VM 'VM-A' disk 1", "VM 'VM-A' disk 0", "DATA.vhdx"
    )
    assert not (tmp / "M1").exists()
    assert r["same-csv"].returncode == 0, r["same-csv"].stderr
    disks = sorted((tmp / "M2" / "csvs").rglob("*.vhdx"))
    assert [p.name for p in disks] == ["0-disk.vhdx", "0-disk.vhdx"]
    assert disks[0].parent != disks[1].parent
    refused(r["dotdot"], "vms[0].disks[0].file", "a file name")


# --- item 13: staged backup files ---------------------------------------------------------------


def start_run(tmp: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """The materialized run in a child process (stderr to ``stderr.txt``), under the limits."""
    scenario = write(tmp, "s.toml", MATERIALIZED)
    d = tmp / "D"
    with open(tmp / "stderr.txt", "wb") as log:
        p = subprocess.Popen(
            [sys.executable, "-m", "vssim", "run", str(scenario), *RUN_ARGS, "--materialize", d],
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=limits(),
        )
    return p, d / "backups"


def when(p: subprocess.Popen[bytes], ready: Callable[[], bool], what: str) -> None:
    """Waits (bounded) until ``ready()``; fails if the run ended first."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not ready():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            pytest.fail(f"the run ended (or timed out) before {what}")
        time.sleep(0.002)


def being_written(store: Path, pattern: str) -> Callable[[], bool]:
    """A file of ``pattern`` exists under any name (staged, or its final name)."""
    return lambda: store.is_dir() and any(store.rglob(pattern + "*"))


def manifest_lists(store: Path, kind: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return kind in (store / "manifest.json").read_text()
        except OSError:
            return False

    return ready


INSTANTS = {
    "a full being written": lambda s: being_written(s, "*-full.vhdx"),
    "the first incremental being written": lambda s: being_written(s, "*0002-incremental.vhdx"),
    "just after the manifest lists incrementals": lambda s: manifest_lists(s, "incremental"),
}


@pytest.mark.parametrize("instant", sorted(INSTANTS))
def test_kill_minus_nine_never_leaves_an_incomplete_backup_under_its_name(
    tmp_path: Path, instant: str
) -> None:
    p, store = start_run(tmp_path)
    when(p, INSTANTS[instant](store), instant)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=CHILD_TIMEOUT_S)
    vms = assert_store_sound(store, tmp_path)
    if instant != "a full being written":
        assert vms, "the first backup had committed"


#: Kills at seeded random instants (``make bench`` runs many more).
KILL_ROUNDS = int(os.environ.get("VSSIM_KILL_ROUNDS", "1"))


@pytest.mark.parametrize("round_", range(KILL_ROUNDS))
def test_kill_minus_nine_at_a_random_instant(tmp_path: Path, round_: int) -> None:
    """Wherever the kill lands (the run may even have ended), the store is sound."""
    at = random.Random(round_).uniform(0.3, 3.0)
    p, store = start_run(tmp_path)
    try:
        p.wait(timeout=at)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=CHILD_TIMEOUT_S)
    assert_store_sound(store, tmp_path)


def test_a_disk_that_fills_during_an_incremental_leaves_no_backup_half_written(
    tmp_path: Path,
) -> None:
    scenario = write(tmp_path, "s.toml", MATERIALIZED)
    d = tmp_path / "D"
    # A 32 MiB dynamic disk's file (and its full backup's) is 36 MiB, an incremental's 37 MiB
    # (its sector-bitmap block comes first): a 36.5 MiB file-size limit fills the "disk" in the
    # middle of the first incremental, after every full was written.
    r = run_bounded(
        ["-m", "vssim", "run", str(scenario), *RUN_ARGS, "--materialize", str(d)],
        file_size=73 << 19,
    )
    refused(r, "0002-incremental.vhdx.staged", "File too large")
    assert not [p for p in (d / "backups").rglob("*") if p.name.endswith(STAGED)]
    entries = read_manifest(d / "backups")
    assert {e.kind for e in entries} == {"full"}
    assert set(vhdx_files(d / "backups")) == {e.file for e in entries}
    assert assert_store_sound(d / "backups", tmp_path)


def test_ctrl_c_removes_what_it_had_not_committed(tmp_path: Path) -> None:
    p, store = start_run(tmp_path)
    when(p, being_written(store, "*0002-incremental.vhdx"), "the first incremental")
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=CHILD_TIMEOUT_S) == 130
    err = (tmp_path / "stderr.txt").read_text()
    # The run's progress lines (vssim.cli.progress), then the interruption's one line, no
    # traceback.
    lines = err.splitlines()
    assert lines[-1].startswith("vssim: interrupted"), err
    assert all(line.startswith(("vssim run: ", "  ")) for line in lines[:-1]), err
    assert "Traceback" not in err
    assert not [q for q in store.rglob("*") if q.name.endswith(STAGED)]
    entries = read_manifest(store)
    assert set(vhdx_files(store)) == {e.file for e in entries}
    assert {e.kind for e in entries} == {"full"}
    assert assert_store_sound(store, tmp_path)


def test_a_manifest_field_of_the_wrong_type_is_named(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    _, r = refusals
    for name, (_, want) in MANIFESTS.items():
        refused(r[f"manifest {name}"], want)


# --- item 11: sizes past the limits -------------------------------------------------------------


def test_sizes_past_the_limits_are_refused_up_front(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    _, r = refusals
    refused(r["csv"], "generate.csv_size = '1048576 TiB'", "256 TiB", "NTFS")
    refused(r["written"], "csvs[0].size = '1048576 TiB'", "256 TiB", "NTFS")
    refused(r["eib"], "generate.disk_size = '1 EiB'", "64 TiB", "MS-VHDX")
    refused(r["past"], "generate.disk_size = '65 TiB'", "64 TiB", "MS-VHDX")
    refused(r["demo-window"], "--window", "86,400")


def test_eight_thousand_vms_with_64_tib_disks_cost_what_they_touch() -> None:
    # 129 KiB a VM (the disk's change tracker, paged) where it was ~9 MB: 8,000 VMs with 64 TiB
    # disks fit in 3 GiB of address space, a window of their writes (each into a block never
    # touched: memory grows with those) included.
    r = run_bounded(
        [
            "-c",
            "from pathlib import Path\n"
            "from vssim.scenario import parse_scenario\n"
            "from vssim.scale.model_cluster import ModelClusterBackend\n"
            "raw = {'cluster': {'name': 'BIG'}, 'generate': {'nodes': 8, 'csvs': 16,\n"
            "       'vms': 8000, 'disk_size': '64 TiB', 'allocated': '1 GiB',\n"
            "       'csv_size': '256 TiB', 'write_iops': 20}}\n"
            "b = ModelClusterBackend(parse_scenario(raw, Path('big.toml')))\n"
            "b.advance_to(0.2)\n"
            "print(b.writes_simulated)\n",
        ],
        address_space=3 << 30,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout) > 20_000


def test_the_demo_window_runs_in_pieces_that_sum_to_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The demo holds at most WINDOW_WRITES writes at once (a day's window took 23 GB): its
    pieces give the counters one advance over the whole window gives."""
    from vssim.cli import demo

    def cluster() -> engine.ModelCluster:
        c = engine.ModelCluster()
        c.add_csv(1 << 40)
        for vm in range(3):
            c.add_vm(0, 1 << 30, engine.WorkloadSpec(iops=500.0), allocated=1 << 28, seed=vm)
        c.snapshot(0)
        return c

    whole = cluster().advance(0.0, 30.0)
    calls: list[tuple[float, float]] = []
    c = cluster()
    advance = c.advance
    monkeypatch.setattr(demo, "WINDOW_WRITES", 4096)
    pieces = demo.advance_in_pieces(_Recording(c, advance, calls), 30.0, 3 * 500.0)
    assert len(calls) == 11, calls
    assert (calls[0][0], calls[-1][1]) == (0.0, 30.0)
    for k in ("writes", "reads", "chunks_copied", "blocks_allocated", "paused_vm"):
        assert (pieces[k] == whole[k]).all(), k
    assert int(whole["writes"].sum()) > 10_000


class _Recording:
    """A cluster whose ``advance`` calls are recorded."""

    def __init__(self, c: engine.ModelCluster, advance: Callable[..., dict], calls: list) -> None:
        self.c, self._advance, self.calls = c, advance, calls

    def advance(self, t0: float, t1: float) -> dict:
        self.calls.append((t0, t1))
        return self._advance(t0, t1)


# --- item 12: every loop bounded ----------------------------------------------------------------


def test_more_vms_than_the_nodes_hold_is_refused_everywhere(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    tmp, r = refusals
    want = ("generate.vms = 1025", "1024")
    refused(r["full-run"], *want)
    refused(r["full-plan"], *want)
    v = r["full-vshadow"]
    assert v.returncode != 0, v
    assert "Traceback" not in v.stderr, v
    assert all(w in v.stdout + v.stderr for w in want), v
    p = tmp / "full.toml"
    done = python(f"from vssim.scenario import load_scenario\nload_scenario({str(p)!r})\n")
    assert done.returncode == 1, done.stderr
    assert f"ScenarioError: {p}: {want[0]}" in done.stderr, done.stderr


def test_every_run_argument_is_finite_and_in_range(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    _, r = refusals
    for option, want in RUN_OPTIONS.items():
        refused(r[f"run {' '.join(option)}"], want)
    refused(r["inf"], "guest_vss_seconds = inf", "86,400")


# --- unclear errors -----------------------------------------------------------------------------


def test_bench_report_names_what_is_wrong_with_its_input(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    _, r = refusals
    refused(r["bench text.json"], "benchmarks[0].stats.min = 'abc': expected a number")
    refused(r["bench deep.json"], "nested too deeply")
    refused(r["bench params.json"], "benchmarks[0].params")
    refused(r["bench binary.json"], "not UTF-8")


def test_an_engine_refusal_names_the_file_the_vm_and_the_key(
    refusals: tuple[Path, dict[str, Result]],
) -> None:
    _, r = refusals
    refused(r["iops"], "iops.toml", "VM 'VM0001'", "write_iops 1e+12", "10,000,000")


def test_an_unexpected_error_is_one_line_and_asks_to_be_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vssim import benchreport

    def boom(paths: list[Path]) -> benchreport.Report:
        raise RuntimeError("boom")

    results = tmp_path / "r.json"
    results.write_text('{"benchmarks": []}')
    monkeypatch.setattr(benchreport, "build", boom)
    monkeypatch.delenv("VSSIM_DEBUG", raising=False)
    assert main(["bench-report", str(results)]) == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "internal error: RuntimeError: boom" in err
    assert "please report it" in err
    assert "--debug" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "bench-report", str(results)])
    monkeypatch.setenv("VSSIM_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["bench-report", str(results)])
