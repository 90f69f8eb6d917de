"""The package's public face: exports, the error hierarchy, the CLI entry point."""

from __future__ import annotations

import subprocess
import sys

import vssim
from vssim import engine


def test_error_hierarchy() -> None:
    assert issubclass(vssim.InvalidArgumentError, vssim.VssimError)
    assert issubclass(vssim.InvalidArgumentError, ValueError)
    assert issubclass(vssim.TrackerFileError, vssim.VssimError)
    assert issubclass(vssim.EngineStateError, vssim.VssimError)


def test_engine_exports() -> None:
    for name in engine.__all__:
        assert hasattr(engine, name), name
    assert vssim.__version__


def test_engine_figures_come_from_the_extension() -> None:
    """The copy unit, snapshot limit and block sizes are the extension's attributes, not copies."""
    from vssim import _engine

    names = ["DEFAULT_CHUNK_SIZE", "MAX_SNAPSHOTS", "DEFAULT_CBT_BLOCK_SIZE"]
    names += ["VHDX_DEFAULT_BLOCK_SIZE", "VHDX_MAX_VIRTUAL_SIZE"]
    for name in names:
        assert getattr(engine, name) is getattr(_engine, name), name
    assert (engine.DEFAULT_CHUNK_SIZE, engine.MAX_SNAPSHOTS) == (16 * 1024, 512)
    assert engine.VHDX_MAX_VIRTUAL_SIZE == 64 << 40
    assert engine.CowTracker(1 << 30).chunk_size == engine.DEFAULT_CHUNK_SIZE


def test_demo_runs_small() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vssim",
            "demo",
            "--vms",
            "40",
            "--csvs",
            "2",
            "--window",
            "5",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "40 VMs on 2 CSVs" in out.stdout
    assert "M writes/s" in out.stdout


def _demo(*extra: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "vssim", "demo", "--vms", "8", "--csvs", "1", *extra],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _changed_per_vm_mib(out: str) -> int:
    return int(out.rsplit("(", 1)[1].split(" MiB per VM")[0].replace(",", ""))


def test_the_demo_runs_a_calibrated_class() -> None:
    """The demo's VMs are a workload class's, calibrated to its daily change: a default (server,
    3 %/day of 40 GiB) VM changes well under its day's 1.2 GiB in ten minutes, a database VM
    (10 %/day of 100 GiB, 660 writes/s) several times more; ``--iops`` changes only the rate."""
    server = _demo("--window", "600")
    assert "server workload (30 IOPS, 70% reads, 127 GiB disks with 40 GiB of data)" in server
    database = _demo("--window", "600", "--class", "database")
    assert "database workload (1500 IOPS" in database
    assert 0 < _changed_per_vm_mib(server) < 0.03 * 40 * 1024
    assert _changed_per_vm_mib(database) > 3 * _changed_per_vm_mib(server)
    assert "server workload (300 IOPS, 70% reads" in _demo("--window", "5", "--iops", "300")


def test_a_command_imports_only_its_own_module() -> None:
    """``vssim vhdx …`` loads neither the planner's matplotlib nor the other commands (their
    imports cost seconds, and a plan's first progress line must come within two); ``vssim
    plan`` draws with matplotlib only when it writes the report; ``vssim --help`` lists all."""
    probe = (
        "import sys; from vssim.cli import build_parser; build_parser({argv!r}); "
        "print(sorted(m for m in sys.modules if m.startswith('vssim.cli.') or m == 'matplotlib'))"
    )

    def loaded(argv: list[str]) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", probe.format(argv=argv)],
            capture_output=True,
            text=True,
            check=True,
        )
        return list(eval(out.stdout))

    assert loaded(["vhdx", "info", "x.vhdx"]) == ["vssim.cli.vhdx"]
    plan = loaded(["--debug", "plan", "s.toml"])
    assert "vssim.cli.plan" in plan
    assert "matplotlib" not in plan
    assert "vssim.cli.run" not in plan
    assert "vssim.cli.vshadow" not in plan
    every = loaded(["--help"])
    assert {"vssim.cli.demo", "vssim.cli.bench_report", "vssim.cli.volume"} <= set(every)
