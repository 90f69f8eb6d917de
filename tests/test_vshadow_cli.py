"""``vssim vshadow`` on the seed's cluster: golden outputs (-wm2, -ws, -q …), the seed's
experiment on 2012 and 2008 R2, option syntax, persistence between invocations, exit codes.

Goldens live in tests/golden/; regenerate with
``VSSIM_UPDATE_GOLDEN=1 pytest tests/test_vshadow_cli.py`` after a deliberate change (review
the diff)."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from scenarios import EXAMPLES, SEED
from vssim.cli import main
from vssim.scenario import load_scenario
from vssim.vss.writers import csv_component_name, hyperv_component

GOLDEN = Path(__file__).parent / "golden"
SEED_2008 = EXAMPLES / "seed-ws2008r2.toml"
A, B = "E8920-ND1", "E8920-ND2"
VOLUME = "C:\\ClusterStorage\\Volume"


def vshadow(
    capsys: pytest.CaptureFixture[str],
    state: Path,
    *args: str,
    node: str = A,
    scenario: Path = SEED,
    stdin: str = "",
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, str]:
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(
        ["vshadow", "--scenario", str(scenario), "--node", node, "--state", str(state), *args]
    )
    return code, capsys.readouterr().out


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VSSIM_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"missing golden {path}; run with VSSIM_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


def remote_component() -> str:
    sc = load_scenario(SEED)
    vm = next(v for v in sc.vms if v.name == "W808-Build8370-02")
    return f"Cluster Shared Volume VSS Writer:\\{csv_component_name(sc, vm)}"


def test_golden_wm2_lists_the_csv_writer_with_other_nodes_vms(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", "-wm2")
    assert code == 0
    check_golden("seed-ws2012-ND1-wm2.txt", out)
    assert '* WRITER "Cluster Shared Volume VSS Writer"' in out
    assert "    - WriterId   = {1072ae1c-e5a7-4ea1-9e4a-6f7964656570}" in out
    sc = load_scenario(SEED)
    for vm in sc.vms:
        listed = f"{csv_component_name(sc, vm)}" in out
        assert listed == (vm.node != A), vm.name
        if vm.node != A:
            folder = f"{VOLUME}\\{vm.name}"
            assert (
                f"File List: Path = {folder}\\Virtual Machines\\, Filespec = "
                f"{vm.component_name}.xml"
            ) in out
            assert (
                f"File List: Path = {folder}\\Virtual Hard Disks\\, Filespec = {vm.name}.vhdx"
                in out
            )
    assert out.count("       - Type: VSS_CT_FILEGROUP [2]") == len(sc.vms)


def test_golden_ws(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", "-ws")
    assert code == 0
    check_golden("seed-ws2012-ND1-ws.txt", out)
    assert out.count("   - Status: 1 (VSS_WS_STABLE)") == 2


def test_golden_wm_and_wm3_on_2008r2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", "-wm", scenario=SEED_2008)
    assert code == 0
    assert "Cluster Shared Volume VSS Writer" not in out
    check_golden("seed-ws2008r2-ND1-wm.txt", out)
    code, out = vshadow(capsys, tmp_path / "s.json", "-wm3")
    import xml.etree.ElementTree as ET

    docs = out.split("--[Writer ")[1:]
    assert len(docs) == 2
    assert out.rstrip().endswith("--[end of data]--")
    for d in docs:
        xml = d.split("]--\n", 1)[1].replace("--[end of data]--", "").strip()
        root = ET.fromstring(xml)
        assert root.tag.endswith("WRITER_METADATA")


def test_seed_experiment_on_2012_backs_up_only_the_remote_vm(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    comp = remote_component()
    code, out = vshadow(capsys, state, f"-wi={comp}", VOLUME)
    assert code == 0, out
    check_golden("seed-ws2012-ND1-wi-remote-vm.txt", out)
    assert f'  - The component "{comp}" is selected' in out
    assert " * Writer 'Cluster Shared Volume VSS Writer':" in out
    assert out.count("   - Add component ") == 1
    assert "Shadow copy set succesfully created." in out
    assert out.rstrip().endswith("Snapshot creation done.")
    # not persistent: gone once vshadow exits
    code, out = vshadow(capsys, state, "-q")
    assert "There are no shadow copies in the system" in out


def test_seed_experiment_fails_on_2008r2_the_vshadow_way(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    comp = remote_component()
    code, out = vshadow(capsys, tmp_path / "s.json", f"-wi={comp}", VOLUME, scenario=SEED_2008)
    assert code == 1
    check_golden("seed-ws2008r2-ND1-wi-remote-vm.txt", out)
    assert (
        f'ERROR: The component "{comp}" was not found in the writer components list! '
        "Aborting backup ..."
    ) in out
    assert "Creating shadow set" not in out


def test_2008r2_local_hyperv_component_works(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sc = load_scenario(SEED_2008)
    vm = next(v for v in sc.vms if v.name == "W808-Build8370-02")
    comp = f"Microsoft Hyper-V VSS Writer:{hyperv_component(sc, vm).full_path}"
    code, out = vshadow(
        capsys, tmp_path / "s.json", f"/WI={comp}", VOLUME, node=B, scenario=SEED_2008
    )
    assert code == 0, out
    assert f'  - The component "{comp}" is selected' in out
    assert "Attributes:  Transportable Auto_Release Hardware" in out
    # the same component from another node is not there
    code, out = vshadow(
        capsys, tmp_path / "s.json", f"-wi={comp}", VOLUME, node=A, scenario=SEED_2008
    )
    assert code == 1
    assert "was not found in the writer components list" in out


def test_persistence_p_q_dx_da(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "s.json"
    code, out = vshadow(capsys, state, "-p", f"-wi={remote_component()}", VOLUME)
    assert code == 0
    code, out = vshadow(capsys, state, "-q")
    assert code == 0
    check_golden("seed-ws2012-ND1-q-after-p.txt", out)
    assert "   - Attributes:  No_Auto_Release Persistent" in out
    set_id = out.split("   - Shadow copy Set: ")[1].split()[0]
    snap_id = out.split("* SNAPSHOT ID = ")[1].split()[0]
    code, out = vshadow(capsys, state, f"-qx={set_id}", node=B)
    assert code == 0
    assert snap_id in out
    code, out = vshadow(capsys, state, f"-s={snap_id}")
    assert code == 0
    assert f"* SNAPSHOT ID = {snap_id} ..." in out
    # a second persistent set, then delete by set id
    vshadow(capsys, state, "-p", "-nw", VOLUME)
    code, out = vshadow(capsys, state, "-q")
    assert out.count("* SNAPSHOT ID") == 2
    assert "No_Writers" in out
    code, out = vshadow(capsys, state, f"-dx={set_id}")
    assert code == 0
    assert f"- Deleting shadow copy set {set_id} ..." in out
    code, out = vshadow(capsys, state, "-q")
    assert out.count("* SNAPSHOT ID") == 1
    assert snap_id not in out
    # -da asks first
    code, out = vshadow(capsys, state, "-da", stdin="n\n", monkeypatch=monkeypatch)
    assert code == 0
    assert "Are you sure? [Y/N]" in out
    assert "- Deleting" not in out
    code, out = vshadow(capsys, state, "-da", stdin="y\n", monkeypatch=monkeypatch)
    assert code == 0
    assert out.count("- Deleting shadow copy {") == 1
    code, out = vshadow(capsys, state, "-q")
    assert "There are no shadow copies in the system" in out
    code, out = vshadow(capsys, state, f"-ds={snap_id}")
    assert code == 1
    assert "VSS_E_OBJECT_NOT_FOUND" in out


def test_script_and_bc_document(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script, bc = tmp_path / "set.cmd", tmp_path / "bc.xml"
    code, _out = vshadow(
        capsys,
        tmp_path / "s.json",
        f"-script={script}",
        f'-bc="{bc}"',
        f"-wi={remote_component()}",
        VOLUME,
    )
    assert code == 0
    text = script.read_text()
    assert "SET SHADOW_SET_ID={" in text
    assert "SET SHADOW_ID_1={" in text
    assert "SET SHADOW_DEVICE_1=\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy" in text
    import xml.etree.ElementTree as ET

    root = ET.fromstring(bc.read_text())
    assert root.tag.endswith("BACKUP_COMPONENTS")
    assert len([e for e in root.iter() if e.tag.endswith("COMPONENT")]) == 1


def test_wx_excludes_and_unknown_options(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    code, out = vshadow(capsys, state, "-wx=Cluster Shared Volume VSS Writer", VOLUME)
    assert code == 0
    assert " * Writer 'Cluster Shared Volume VSS Writer':" not in out
    assert out.count("   - Add component ") == 1  # only node 1's own VM
    code, out = vshadow(capsys, state, "-frobnicate")
    assert code == 1
    assert "ERROR: invalid parameter '-frobnicate'" in out
    code, out = vshadow(capsys, state, "D:\\")
    assert code == 1
    code, out = vshadow(capsys, state, "-wi=No Such Writer", VOLUME)
    assert code == 1
    assert 'ERROR: The writer "No Such Writer" was not found!' in out


def test_writer_failure_is_reported_like_vshadow(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    toml = SEED.read_text() + (
        '\n[[faults]]\nkind = "writer_fail"\nnode = "E8920-ND2"\nwriter = "hyperv"\n'
        'phase = "freeze"\nhresult = "VSS_E_WRITERERROR_RETRYABLE"\n'
    )
    sc = tmp_path / "faulty.toml"
    sc.write_text(toml)
    code, out = vshadow(
        capsys, tmp_path / "s.json", f"-wi={remote_component()}", VOLUME, scenario=sc
    )
    assert code == 2
    assert "ERROR: Selected writer 'Cluster Shared Volume VSS Writer' is in failed state!" in out
    assert "   - Status: 9 (VSS_WS_FAILED_AT_FREEZE)" in out
    assert "   - Writer Failure code: 0x800423f3 (VSS_E_WRITERERROR_RETRYABLE)" in out


def test_missing_arguments_and_unknown_node(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["vshadow", "-q"]) == 1
    code, _ = vshadow(capsys, tmp_path / "s.json", "-q", node="NOPE")
    assert code == 1


def test_exec_runs_after_the_shadow_copies_exist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    good = tmp_path / "backup.sh"
    good.write_text(f"#!/bin/sh\ntouch {marker}\n")
    good.chmod(0o755)
    code, out = vshadow(
        capsys, tmp_path / "s.json", f"-exec={good}", f"-wi={remote_component()}", VOLUME
    )
    assert code == 0
    assert marker.exists()
    assert out.index("List of created shadow copies") < out.index("- Executing command")
    bad = tmp_path / "fail.sh"
    bad.write_text("#!/bin/sh\nexit 3\n")
    bad.chmod(0o755)
    code, out = vshadow(capsys, tmp_path / "s.json", f"-exec={bad}", VOLUME)
    assert code == 2
    assert "- Backup failed. Mark all writers as not succesfully backed up... " in out
    code, out = vshadow(capsys, tmp_path / "s.json", f"-exec={tmp_path / 'missing.sh'}", VOLUME)
    assert code == 1
    assert "must be an existing file!" in out


def test_nar_makes_online_vm_backups_fail(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", "-NAR", f"-wi={remote_component()}", VOLUME)
    assert code == 2
    assert "   - Status: 11 (VSS_WS_FAILED_AT_POST_SNAPSHOT)" in out
    assert "(VSS_E_WRITERERROR_RETRYABLE)" in out
