"""The parts of a modelled run: workload keys in scenarios, the engine backend behind the
protocol, the shared links, and the ``vssim run`` command."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import simpy

from scale_scenarios import small, small_raw
from vssim.errors import InvalidArgumentError, ScenarioError
from vssim.metrics import SCHEMAS
from vssim.scale.fair_share_links import FairShareLinks
from vssim.scale.model_cluster import ModelClusterBackend
from vssim.scenario import parse_scenario
from vssim.scenario.engine_streams import stream_seed


def with_workload(**w: Any) -> dict[str, Any]:
    raw = small_raw(vms=4)
    raw["generate"]["workload"] = w
    return raw


def test_engine_refusals_name_the_file_and_the_vm() -> None:
    """A value the scenario accepts but the engine refuses is reported with the scenario file,
    the VM (and disk) and the engine's argument and limit, not the engine's words alone."""
    raw = small_raw(vms=2, write_iops=1e12)
    with pytest.raises(InvalidArgumentError) as err:
        ModelClusterBackend(parse_scenario(raw, Path("big.toml")))
    msg = str(err.value)
    assert msg.startswith("big.toml: VM 'VM0001' workload (write_iops 1e+12"), msg
    assert "`iops`" in msg, msg
    assert "expected 0 to 10,000,000" in msg, msg
    # The loader refuses a disk past 64 TiB itself (issue 15); a Scenario built by hand reaches
    # the engine, whose refusal still names the file and the disk.
    raw = small_raw(vms=2, disk_size="70 TiB", allocated="1 GiB")
    with pytest.raises(ScenarioError, match=r"generate.disk_size = '70 TiB': .* to 64 TiB"):
        parse_scenario(raw, Path("huge.toml"))
    sc = parse_scenario(small_raw(vms=2, allocated="1 GiB"), Path("huge.toml"))
    vm = sc.vms[0]
    huge = dataclasses.replace(vm.disks[0], virtual_size=70 << 40)
    sc = dataclasses.replace(sc, vms=(dataclasses.replace(vm, disks=(huge,)), *sc.vms[1:]))
    with pytest.raises(InvalidArgumentError) as err:
        ModelClusterBackend(sc)
    msg = str(err.value)
    assert msg.startswith("huge.toml: VM 'VM0001' disk 0 ("), msg
    assert "`virtual_size`" in msg, msg
    assert "64 TiB" in msg, msg


def test_workload_keys_reach_the_vms() -> None:
    raw = with_workload(
        locality="zipf", theta=1.2, read_fraction=0.5, sizes=[4096, 65536], weights=[3, 1]
    )
    sc = parse_scenario(raw, Path("w.toml"))
    w = sc.vms[0].workload
    assert (w.locality, w.theta, w.read_fraction) == ("zipf", 1.2, 0.5)
    assert w.sizes == (4096, 65536)
    assert w.weights == (3.0, 1.0)
    assert w.iops == pytest.approx(2 * w.write_iops)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("locality", "random", "locality"),
        ("read_fraction", 1.0, "read_fraction"),
        ("hot_fraction", 0.0, "hot_fraction"),
        ("sizes", [1000], "sizes"),
        ("theta", 9, "theta"),
        ("diurnal_amplitude", 2, "diurnal_amplitude"),
        ("diurnal_period_s", 0, "diurnal_period_s"),
        ("bogus", 1, "bogus"),
    ],
)
def test_bad_workload_keys_are_refused(key: str, value: object, match: str) -> None:
    with pytest.raises(ScenarioError, match=match):
        parse_scenario(with_workload(**{key: value}), Path("w.toml"))


def test_weights_must_match_sizes() -> None:
    with pytest.raises(ScenarioError, match="weights"):
        parse_scenario(with_workload(sizes=[4096, 8192], weights=[1.0]), Path("w.toml"))


def test_stream_seeds_follow_seed_and_guid() -> None:
    sc = small(vms=4)
    seeds = {stream_seed(sc.seed, vm, 0) for vm in sc.vms}
    assert len(seeds) == 4
    assert stream_seed(sc.seed, sc.vms[0], 0) != stream_seed(sc.seed, sc.vms[0], 1)
    assert stream_seed(sc.seed, sc.vms[0], 0) == stream_seed(sc.seed, sc.vms[0], 0)
    assert stream_seed(sc.seed + 1, sc.vms[0], 0) != stream_seed(sc.seed, sc.vms[0], 0)


def test_backend_snapshot_at_the_exact_instant() -> None:
    sc = small(vms=8)
    now = [0.0]
    b = ModelClusterBackend(sc, clock=lambda: now[0])
    assert b.model.vm_count == 8
    csv = sc.csvs[0]
    now[0] = 7.5
    h = b.create_snapshot(csv, 0)
    assert b.t == 7.5
    life = b.lives[(csv.name, h)]
    assert life.created == 7.5
    written_at_snap = b.vm_total("bytes_written", sc.vms[0].name)
    assert written_at_snap > 0
    now[0] = 20.0
    b.delete_snapshot(csv, h)
    assert life.deleted == 20.0
    assert life.deleted_by == "released"
    assert life.chunks_copied > 0
    assert life.diff_area_peak > 0
    assert not b.model.is_live(b.csv_id[csv.name], h)
    assert b.apply_writes(csv, None, None).chunks_copied == 0  # type: ignore[arg-type]
    # Changed blocks since the start; reset → nothing changed.
    vm = sc.vms[0].name
    assert b.changed_bytes(vm) > 0
    b.reset_changes(vm)
    assert b.changed_bytes(vm) == 0
    assert b.file_size(vm) >= sc.vms[0].disks[0].allocated_size


def test_links_share_bandwidth_fairly() -> None:
    sc = small(vms=2, csv_bandwidth="800 MB/s", target="400 MB/s")
    env = simpy.Environment()
    r = FairShareLinks(env, sc)
    csv = sc.csvs[0]
    done: dict[str, float] = {}

    def p(name: str, n: int, delay: float = 0.0, **kw: Any) -> Any:
        yield env.timeout(delay)
        yield from r.transfer(n, csv, **kw)
        done[name] = env.now

    env.process(p("a", 800_000_000))
    env.process(p("b", 800_000_000))
    env.process(p("c", 400_000_000, delay=0.5, target=True, nodes=("NODE02",)))
    env.run()
    # 0–0.5 s: a, b at 400 MB/s; then three readers of the CSV at 266.7 MB/s each.
    assert done["c"] == pytest.approx(2.0)
    assert done["a"] == pytest.approx(2.5)
    assert done["b"] == pytest.approx(2.5)
    assert r.link_busy["target"] == pytest.approx(1.5)
    assert r.nic_bytes["NODE02"] == 400_000_000


def test_cli_run_writes_parquet(tmp_path: Path) -> None:
    import tomllib  # noqa: F401  (the scenario is written as TOML below)

    raw = copy.deepcopy(small_raw(vms=12))
    toml = tmp_path / "small.toml"
    toml.write_text(_to_toml(raw), encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "vssim",
            "run",
            str(toml),
            "--backup",
            "full",
            "incremental",
            "--interval",
            "30",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "modelled backups" in proc.stdout
    assert "incremental" in proc.stdout
    for name, schema in SCHEMAS.items():
        df = pl.read_parquet(out / f"{name}.parquet")
        assert dict(df.schema) == schema
    vms = pl.read_parquet(out / "vms.parquet")
    assert vms.height == 24
    bad = subprocess.run(
        [sys.executable, "-m", "vssim", "run", str(toml), "--backup", "selective"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "selective backup needs" in bad.stderr


def _to_toml(raw: dict[str, Any]) -> str:
    """Enough TOML for the scenario dicts of these tests."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return "'" + v + "'"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines: list[str] = []
    for key, table in raw.items():
        if isinstance(table, list):
            for t in table:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {value(v)}" for k, v in t.items()]
        else:
            lines.append(f"[{key}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
