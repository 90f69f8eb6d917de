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
