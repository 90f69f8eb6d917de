"""Scenario files: the examples load; every validation error names the file, the key path, the
bad value and what was expected; [generate] makes big clusters quickly and deterministically."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from scenarios import EXAMPLES, SEED, seed_raw
from vssim.errors import ScenarioError, VssimError
from vssim.scenario import OsProfile, ProviderKind, load_scenario, parse_scenario


def test_seed_example() -> None:
    sc = load_scenario(SEED)
    assert sc.os is OsProfile.WS2012
    assert [n.name for n in sc.nodes] == [f"E8920-ND{i}" for i in range(1, 5)]
    (csv,) = sc.csvs
    assert csv.mount_point == "C:\\ClusterStorage\\Volume"
    assert csv.volume_name.startswith("\\\\?\\Volume{")
    assert csv.volume_name.endswith("}\\")
    assert csv.provider is ProviderKind.SYSTEM
    assert csv.coordinator == "E8920-ND1"
    assert {vm.node for vm in sc.vms} == {n.name for n in sc.nodes}
    assert all(vm.name.startswith("W808-Build8370-") for vm in sc.vms)
    assert sc.csv_for_path("c:\\clusterstorage\\volume\\") is csv
    assert sc.csv_for_path(csv.volume_name) is csv
    assert sc.csv_for_path("C:\\ClusterStorage\\Volume2") is None
    assert not next(v for v in sc.vms if v.name.endswith("06")).online_backup


def test_ids_are_deterministic() -> None:
    a, b = load_scenario(SEED), load_scenario(SEED)
    assert [v.guid for v in a.vms] == [v.guid for v in b.vms]
    assert a.csvs[0].volume_guid == b.csvs[0].volume_guid
    raw = seed_raw()
    raw["cluster"]["seed"] = 1
    c = parse_scenario(raw, Path("x.toml"))
    assert c.vms[0].guid != a.vms[0].guid


def _mutate(fn: Any) -> dict[str, Any]:
    raw = copy.deepcopy(seed_raw())
    fn(raw)
    return raw


def _set(path: list[Any], value: Any) -> Any:
    def fn(raw: dict[str, Any]) -> None:
        node: Any = raw
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value

    return fn


def _many_nodes(n: int) -> Any:
    def fn(raw: dict[str, Any]) -> None:
        raw["nodes"] = [{"name": f"N{i}"} for i in range(n)]
        raw["csvs"][0]["coordinator"] = "N0"
        for vm in raw["vms"]:
            vm["node"] = "N1"

    return fn


def _dup_guid(raw: dict[str, Any]) -> None:
    raw["vms"][0]["guid"] = "{11111111-2222-3333-4444-555555555555}"
    raw["vms"][1]["guid"] = "11111111-2222-3333-4444-555555555555"


def _too_many_per_node(raw: dict[str, Any]) -> None:
    raw["generate"] = {"vms": 0}
    raw["vms"] = [
        {
            "name": f"V{i}",
            "node": "E8920-ND1",
            "csv": "Cluster Disk 1",
            "disks": [{"size": "1 GiB", "allocated": "1 MiB"}],
        }
        for i in range(1025)
    ]


CASES = [
    (_set(["vms", 1, "node"], "E8920-ND9"), "vms[1].node", "E8920-ND9", "one of the nodes"),
    (_set(["vms", 2, "csv"], "Nope"), "vms[2].csv", "Nope", "one of the CSVs"),
    (_dup_guid, "vms[1].guid", "11111111-2222-3333-4444-555555555555", "not already used"),
    (_many_nodes(65), "nodes", "65 nodes", "at most 64 nodes"),
    (_too_many_per_node, "vms[1024].node", "E8920-ND1", "fewer than 1024 VMs"),
    (_set(["cluster", "os"], "ws2016"), "cluster.os", "ws2016", "'ws2008r2', 'ws2012'"),
    (
        _set(["csvs", 0, "mount_point"], "D:\\Data"),
        "csvs[0].mount_point",
        "D:\\Data",
        "C:\\ClusterStorage\\Volume<N>",
    ),
    (_set(["csvs", 0, "coordinator"], "X"), "csvs[0].coordinator", "X", "one of the nodes"),
    (_set(["csvs", 0, "provider"], "magic"), "csvs[0].provider", "magic", "'system' or"),
    (
        _set(["csvs", 0, "diff_area_limit"], "10 MiB"),
        "csvs[0].diff_area_limit",
        "10 MiB",
        "at least 320 MiB",
    ),
    (_set(["csvs", 0, "size"], "1 GiB"), "vms[0].disks", None, "fit CSV"),
    (
        _set(["vms", 0, "disks"], [{"size": "1 GiB", "allocated": "2 GiB"}]),
        "vms[0].disks[0].allocated",
        "2 GiB",
        "0 .. size",
    ),
    (_set(["vms", 0, "colour"], "blue"), "vms[0].colour", "blue", "no such key"),
    (
        _set(["vms", 3, "name"], "W808-Build8370-01"),
        "vms[3].name",
        "W808-Build8370-01",
        "not used before",
    ),
    (_set(["links", "nic_bandwidth"], "fast"), "links.nic_bandwidth", "fast", "a bandwidth"),
    (
        _set(["faults"], [{"kind": "writer_fail", "node": "E8920-ND2", "phase": "lunch"}]),
        "faults[0].phase",
        "lunch",
        "one of identify",
    ),
    (
        _set(["faults"], [{"kind": "writer_fail", "phase": "freeze"}]),
        "faults[0].node",
        None,
        "a node",
    ),
    (
        _set(
            ["faults"],
            [
                {
                    "kind": "writer_fail",
                    "node": "E8920-ND2",
                    "phase": "freeze",
                    "hresult": "E_WHATEVER",
                }
            ],
        ),
        "faults[0].hresult",
        "E_WHATEVER",
        "VSS HRESULT",
    ),
    (_set(["generate"], {"nodes": 65}), "generate.nodes", 65, "0..64"),
]


@pytest.mark.parametrize(("mutate", "key", "value", "expected"), CASES)
def test_validation_errors_name_file_key_value_expected(
    mutate: Any, key: str, value: Any, expected: str
) -> None:
    raw = _mutate(mutate)
    with pytest.raises(ScenarioError) as err:
        parse_scenario(raw, Path("bad.toml"))
    e = err.value
    assert isinstance(e, ValueError)
    assert isinstance(e, VssimError)
    assert e.file == "bad.toml"
    assert e.key == key
    if value is not None:
        assert e.value == value
    assert expected in e.expected
    assert str(e).startswith(f"bad.toml: {key} = ")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.toml"
    p.write_text("[cluster\nname = 1\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(p)
    assert str(p) in str(err.value)


@pytest.mark.parametrize("name", ["ws2012-64n-4000vm.toml", "ws2008r2-64n-4000vm.toml"])
def test_big_examples_load_and_generate_fast(name: str) -> None:
    t = time.perf_counter()
    sc = load_scenario(EXAMPLES / name)
    elapsed = time.perf_counter() - t
    assert len(sc.nodes) == 64
    assert len(sc.vms) == 4000
    assert len(sc.csvs) == 16
    assert elapsed < 5.0
    assert max(len(v) for v in sc.vms_by_node.values()) <= 1024
    assert len({v.guid for v in sc.vms}) == 4000
    again = load_scenario(EXAMPLES / name)
    assert [(v.node, v.csv) for v in again.vms] == [(v.node, v.csv) for v in sc.vms]
    assert len((EXAMPLES / name).read_text().splitlines()) < 30


def test_generate_adds_to_written_entries() -> None:
    raw = seed_raw()
    raw["generate"] = {"vms": 10, "vm_prefix": "GEN", "allocated": "1 GiB", "disk_size": "2 GiB"}
    sc = parse_scenario(raw, Path("g.toml"))
    assert len(sc.vms) == 16
    assert sum(v.name.startswith("GEN") for v in sc.vms) == 10
