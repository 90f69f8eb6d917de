"""``vssim vshadow`` behaves as vshadow.exe does: the seed's experiment the real way on both
profiles, the exit codes, the lines a transcript must have, volumes, GUIDs, the writer set of a
real node, restore, the state file shared by concurrent invocations. Whole transcripts are in
``test_vshadow_golden.py``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios import EXAMPLES, SEED
from vssim.cli import main
from vssim.requester import run_backup
from vssim.requester.vshadow_bcdoc import file_text, parse
from vssim.requester.vshadow_text import USAGE_LINES, writer_status_block
from vssim.requester.vshadow_tool import VShadow
from vssim.scale.schedule import BackupKind, BackupSpec, select_vms
from vssim.scenario import load_scenario
from vssim.vss.node_writers import node_writers
from vssim.vss.writers import csv_component_name, hyperv_component

SEED_2008 = EXAMPLES / "seed-ws2008r2.toml"
A, B = "E8920-ND1", "E8920-ND2"
VOLUME = "C:\\ClusterStorage\\Volume"
WAITING = "(Waiting for the asynchronous operation to finish...)"


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


def tool(state: Path, scenario: Path = SEED, node: str = A) -> tuple[VShadow, io.StringIO]:
    out = io.StringIO()
    return VShadow(load_scenario(scenario), node, state, out, err=io.StringIO()), out


def remote_component(scenario: Path = SEED) -> str:
    sc = load_scenario(scenario)
    vm = next(v for v in sc.vms if v.name == "W808-Build8370-02")
    return f"Cluster Shared Volume VSS Writer:\\{csv_component_name(sc, vm)}"


# --- the seed's experiment --------------------------------------------------------------------


def test_seed_experiment_2012_verifies_and_backs_up_every_vm_of_the_csv(tmp_path: Path) -> None:
    """vshadow's -wi only verifies (readme, "Important note"): the remote VM is included, and so
    is every other includable component of the CSV — its VMs, wherever they run."""
    t, out = tool(tmp_path / "s.json")
    assert t.main([f"-wi={remote_component()}", VOLUME]) == 0
    text = out.getvalue()
    assert f'  - The component "{remote_component()}" is selected' in text
    sc = load_scenario(SEED)
    assert text.count("   - Add component ") == len(sc.vms_by_csv["Cluster Disk 1"])
    r = t.result
    assert r is not None
    assert r.ok
    assert sorted(r.frozen_vms) == sorted(vm.name for vm in sc.vms)
    assert "W808-Build8370-06" in r.downtime  # no integration services: a saved-state backup


def test_seed_experiment_2008r2_fails_as_vshadow_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = vshadow(
        capsys, tmp_path / "s.json", f"-wi={remote_component()}", VOLUME, scenario=SEED_2008
    )
    assert code == 2
    assert (
        f'ERROR: The component "{remote_component()}" was not found in the writer components '
        "list! Aborting backup ..."
    ) in out
    assert "Creating shadow set" not in out


def test_2008r2_local_vm_is_verified_from_its_own_node_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sc = load_scenario(SEED_2008)
    vm = next(v for v in sc.vms if v.name == "W808-Build8370-02")
    comp = f"Microsoft Hyper-V VSS Writer:{hyperv_component(sc, vm).full_path}"
    code, out = vshadow(
        capsys, tmp_path / "s.json", f"-wi={comp}", VOLUME, node=B, scenario=SEED_2008
    )
    assert code == 0, out
    assert f'  - The component "{comp}" is selected' in out
    assert "Attributes:  Auto_Release Hardware" in out
    code, out = vshadow(capsys, tmp_path / "s.json", f"-wi={comp}", VOLUME, scenario=SEED_2008)
    assert code == 2
    assert "was not found in the writer components list" in out


def test_a_truly_selective_backup_is_the_requester_s_and_vssim_run_s() -> None:
    """What a backup product does with the CSV writer's components: one VM, nothing else."""
    sc = load_scenario(SEED)
    comp = remote_component()
    assert [
        vm.name for vm in select_vms(sc, BackupSpec(BackupKind.SELECTIVE, include=(comp,)))
    ] == ["W808-Build8370-02"]
    r = run_backup(sc, node=A, components=[comp], copy_data=False)
    assert r.ok
    assert r.frozen_vms == ["W808-Build8370-02"]


# --- exit codes -------------------------------------------------------------------------------


def _freeze_fault(tmp_path: Path) -> Path:
    sc = tmp_path / "fault.toml"
    sc.write_text(
        SEED.read_text()
        + '\n[[faults]]\nkind = "writer_fail"\nnode = "E8920-ND2"\nwriter = "hyperv"\n'
        'phase = "freeze"\nhresult = "VSS_E_WRITERERROR_RETRYABLE"\n'
    )
    return sc


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((VOLUME,), 0),
        (("-?",), 0),
        ((), 0),
        (("-frobnicate",), 1),
        (("C:\\Windows",), 1),
        ((VOLUME, "-p"), 1),
        (("-s=not-a-guid",), 2),
        (("-s=7a2d4362-80b4-533a-b598-09e976068be3",), 2),
        (("-s={7a2d4362-80b4-533a-b598-09e976068be3}",), 2),
        (("-dx={7a2d4362-80b4-533a-b598-09e976068be3}",), 2),
        (("-wi=No Such Writer", VOLUME), 2),
        (("-exec=no-such-file.sh", VOLUME), 2),
        ((VOLUME, VOLUME + "\\"), 2),
        (("\\\\fileserver\\share",), 2),
        (("-r=no-such-file.xml",), 2),
    ],
)
def test_exit_codes_are_vshadows(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    """0 done, 1 only for invalid parameters, 2 for every HRESULT the tool throws."""
    got, out = vshadow(capsys, tmp_path / "s.json", *args)
    assert got == code, out
    assert ("Usage:" in out) == (code == 1 or args in ((), ("-?",)))


def test_a_failed_writer_and_a_failed_exec_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", VOLUME, scenario=_freeze_fault(tmp_path))
    assert code == 2
    assert "ERROR: Selected writer 'Cluster Shared Volume VSS Writer' is in failed state!" in out
    assert "   - Status: 9 (VSS_WS_FAILED_AT_FREEZE)" in out
    bad = tmp_path / "fail.sh"
    bad.write_text("#!/bin/sh\nexit 7\n")
    bad.chmod(0o755)
    code, out = vshadow(capsys, tmp_path / "s.json", f"-exec={bad}", VOLUME)
    assert code == 2
    assert "- Returned error code: 7" in out
    assert "- Backup failed. Mark all writers as not succesfully backed up... " in out
    assert "Snapshot creation done." not in out


def test_out_of_memory_exits_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t, out = tool(tmp_path / "s.json")

    def no_memory(*_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(t.client, "gather_writer_metadata", no_memory)
    assert t.main(["-wm"]) == 3
    assert out.getvalue().rstrip().endswith("ERROR: Memory allocation error")


# --- the lines a transcript has ---------------------------------------------------------------


def test_banner_and_waiting_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", VOLUME)
    lines = out.split("\n")
    assert lines[1] == "VSHADOW.EXE 3.0 - Volume Shadow Copy sample client."
    assert "Microsoft" not in lines[2] or "not Microsoft's program" in lines[2]
    # GatherWriterMetadata, PrepareForBackup, DoSnapshotSet, BackupComplete, and the writer
    # status gathered after each of the last three.
    assert out.count(WAITING) == 7
    assert "- Setting the VSS context" not in out
    code, out = vshadow(capsys, tmp_path / "s.json", "-p", "-nw", VOLUME)
    assert code == 0
    assert out.count(WAITING) == 1
    assert "- Setting the VSS context to: 0x00000019" in out
    for args, context in ((("-q",), "0xffffffff"), (("-p", VOLUME), "0x00000009")):
        _code, out = vshadow(capsys, tmp_path / "s.json", *args)
        assert f"- Setting the VSS context to: {context}" in out


def test_usage_lists_every_option_of_the_real_tool_in_its_order() -> None:
    flags = ["-?", "-p", "-nw", "-nar", "-tr", "-ad", "-ap", "-scsf", "-t=", "-bc=", "-wi=",
             "-wx=", "-mask", "-rw", "-forcerevert", "-norevert", "-revertsig", "-novolcheck",
             "-script=", "-exec=", "-wait", "-tracing"]  # fmt: skip
    commands = ["{volume list}", "-ws", "-wm", "-wm2", "-wm3", "-q", "-qx=", "-s=", "-da",
                "-do=", "-dx=", "-ds=", "-i=", "-b=", "-bw=", "-bex=", "-el=", "-el=", "-er=",
                "-er=", "-r=", "-rs=", "-revert=", "-addresync=", "-addresync=",
                "-resync="]  # fmt: skip
    text = "\n".join(USAGE_LINES)
    flag_part, command_part = text.split("List of commands:")
    command_part = command_part.split("Examples:")[0]

    def names(part: str) -> list[str]:
        tokens = [
            ln[2:].split(" - ")[0].strip() for ln in part.split("\n") if ln[:3] in ("  -", "  {")
        ]
        return [
            t if t.startswith("{") else t.split("=")[0] + ("=" if "=" in t else "") for t in tokens
        ]

    assert names(flag_part) == flags
    assert names(command_part) == commands


def test_unhonoured_options_are_echoed_and_noted(tmp_path: Path) -> None:
    t, out = tool(tmp_path / "s.json")
    err = io.StringIO()
    t.con.err = err
    assert t.main(["-tracing", "-tr", "-nw", VOLUME]) == 0
    assert "(Option: Enable tracing)" in out.getvalue()
    assert "(Option: TxF-recover option detected)" in out.getvalue()
    assert "vssim: -tracing" in err.getvalue()
    assert "vssim: -tr" in err.getvalue()
    assert "vssim" not in out.getvalue().split("\n", 3)[3]


def test_unknown_writer_state_prints_unknown_constant() -> None:
    """writer.cpp GetStringFromWriterStatus has no case for VSS_WS_UNKNOWN (0) nor
    VSS_WS_FAILED_AT_BACKUPSHUTDOWN (15)."""
    for state in (0, 15):
        lines = writer_status_block('* WRITER "{name}"', "W", state, 0, "{a}", "{b}")
        assert lines[:3] == [f"Unknown constant: {state}", "", '* WRITER "W"']
        assert lines[3] == f"   - Status: {state} (Undefined)"
    assert writer_status_block('* WRITER "{name}"', "W", 9, 0, "{a}", "{b}")[2] == (
        "   - Status: 9 (VSS_WS_FAILED_AT_FREEZE)"
    )


# --- volumes and GUIDs ------------------------------------------------------------------------


def test_every_volume_form_vshadow_accepts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sc = load_scenario(SEED)
    reserved, system = sc.local_volumes(A)
    csv = sc.csvs[0]
    for arg, unique, shown in (
        ("c:", system.volume_name, "C:\\"),
        ("C:\\", system.volume_name, "C:\\"),
        (system.volume_name, system.volume_name, "C:\\"),
        (reserved.volume_name, reserved.volume_name, ""),
        (csv.volume_name.upper(), csv.volume_name, csv.display_name),
        (VOLUME + "\\W808-Build8370-04\\Virtual Hard Disks", csv.volume_name, csv.display_name),
    ):
        code, out = vshadow(capsys, tmp_path / "s.json", "-nw", arg)
        assert code == 0, (arg, out)
        assert f"- Adding volume {unique} [{shown}] to the shadow set..." in out
    for arg in ("D:", VOLUME + "\\NoSuchVm", "C:\\Windows", "C:\\ClusterStorage"):
        code, out = vshadow(capsys, tmp_path / "s.json", arg)
        assert code == 1, arg
        assert f"ERROR: invalid parameter '{arg}'" in out


def test_guids_are_parsed_as_clsidfromstring_parses_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out = vshadow(capsys, tmp_path / "s.json", "-p", "-nw", VOLUME)
    snap = out.split("* SNAPSHOT ID = ")[1].split()[0]
    for text, code_wanted in ((snap, 0), (snap.upper(), 0), (snap[1:-1], 2), (snap + " ", 2)):
        code, out = vshadow(capsys, tmp_path / "s.json", f"-s={text}")
        assert code == code_wanted, text
        if code_wanted:
            assert f"ERROR: The string '{text}' is not formatted as a GUID!" in out


def test_a_csv_in_backup_fails_at_cluster_prepare_on_2008r2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    state = tmp_path / "s.json"
    vshadow(capsys, state, "-p", "-nw", VOLUME, scenario=SEED_2008, node=B)
    raw = json.loads(state.read_text())
    raw["stale_backup_until"] = {"Cluster Disk 1": raw["clock"] + 600}
    state.write_text(json.dumps(raw))
    code, out = vshadow(capsys, state, VOLUME, scenario=SEED_2008)
    assert code == 2
    after = out.split("(Option: Create shadow copy set)\n")[1].split("\n")
    assert after[:5] == [
        "",
        'ERROR: Win32 call "ClusterPrepareSharedVolumeForBackup" failed.',
        "- GetLastError() == 5949",
        "- Error text: Back up is in progress. Please wait for backup completion before trying "
        "this operation again.",
        "",
    ]


# --- the writer set of a real node ------------------------------------------------------------


def test_the_writers_of_a_2012_and_a_2008r2_hyper_v_cluster_node() -> None:
    names_2012 = [w.name for w in node_writers(load_scenario(SEED), A)]
    assert names_2012 == [
        "Task Scheduler Writer",
        "VSS Metadata Store Writer",
        "Performance Counters Writer",
        "System Writer",
        "Microsoft Hyper-V VSS Writer",
        "Cluster Shared Volume VSS Writer",
        "ASR Writer",
        "Shadow Copy Optimization Writer",
        "Registry Writer",
        "BITS Writer",
        "WMI Writer",
        "Cluster Database",
        "COM+ REGDB Writer",
    ]
    w2008 = node_writers(load_scenario(SEED_2008), A)
    assert [w.name for w in w2008] == [n for n in names_2012 if "Cluster Shared" not in n]
    by_name = {w.name: w for w in w2008}
    assert (
        str(by_name["Task Scheduler Writer"].instance_id) == "1bddd48e-5052-49db-9b07-b96f96727e6b"
    )
    assert str(by_name["Cluster Database"].writer_id) == "41e12264-35d8-479b-8e5c-9b23d1dad37e"
    other = {w.name: w for w in node_writers(load_scenario(SEED_2008), B)}
    assert other["System Writer"].instance_id != by_name["System Writer"].instance_id


def test_top_level_non_selectable_excluded_component_excludes_its_writer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """select.cpp DiscoverExcludedWriters: the ASR writer has includable components, but its
    boot configuration store is on System Reserved, not in the set."""
    code, out = vshadow(capsys, tmp_path / "s.json", "C:")
    assert code == 0
    assert (
        "- The writer 'ASR Writer' is now entirely excluded from the backup:\n"
        "  (the top-level non-selectable component '\\BCD\\BCD' is an excluded component)\n"
    ) in out
    assert " * Writer 'ASR Writer':" not in out
    reserved = load_scenario(SEED).local_volumes(A)[0].volume_name
    code, out = vshadow(capsys, tmp_path / "s.json", reserved, "C:")
    assert code == 0
    assert " * Writer 'ASR Writer':\n   - Add component \\ASR\\ASR\n" in out
    assert "   - Add component \\BCD\\BCD\n" in out


# --- files vshadow writes and reads -----------------------------------------------------------


def test_backup_components_document_and_setvar_script(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bc, script = tmp_path / "bc.xml", tmp_path / "set.cmd"
    code, out = vshadow(capsys, tmp_path / "s.json", f'-bc="{bc}"', f"-script={script}", VOLUME)
    assert code == 0
    assert f"Writing the file '{bc}' ..." in out
    data = bc.read_bytes()
    assert data[:2] == b"<\0"
    assert data[-2:] == b"\0\0"
    doc = parse(file_text(data))
    assert sum(len(w.components) for w in doc.writers) == out.count("   - Add component ")
    assert 'backupSucceeded="no"' in file_text(data)
    text = script.read_bytes().decode("ascii")
    assert "\r\nSET SHADOW_SET_ID={" in text
    assert "\r\nSET SHADOW_DEVICE_1=\\\\?\\GLOBALROOT" in text


def test_restore_from_a_backup_components_document(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bc = tmp_path / "bc.xml"
    vshadow(capsys, tmp_path / "s.json", f"-bc={bc}", VOLUME)
    code, out = vshadow(capsys, tmp_path / "s.json", f"-r={bc}", node=B)
    assert code == 0
    assert "- Excluding writer 'Cluster Shared Volume VSS Writer' since it does not support " in out
    sc = load_scenario(SEED)
    vm1 = next(v for v in sc.vms if v.node == A)
    assert f"   - Select component \\{vm1.component_name}" in out
    assert out.rstrip().endswith("Restore done.")
    bad = tmp_path / "bad.xml"
    bad.write_bytes("<nope/>\0".encode("utf-16-le"))
    code, out = vshadow(capsys, tmp_path / "s.json", f"-rs={bad}")
    assert code == 2
    assert "- Returned HRESULT = 0x80042311" in out


# --- the state file ---------------------------------------------------------------------------


def test_exec_sees_the_live_set_and_it_is_gone_afterwards(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A non-persistent set lives until vshadow exits; -exec runs while it does (and may run
    vshadow itself on the same state)."""
    state = tmp_path / "s.json"
    listing = tmp_path / "listing.txt"
    script = tmp_path / "look.sh"
    script.write_text(
        f"#!/bin/sh\n{sys.executable} -m vssim vshadow --scenario {SEED} --node {B} "
        f"--state {state} -q > {listing}\n"
    )
    script.chmod(0o755)
    code, out = vshadow(capsys, state, f"-exec={script}", VOLUME)
    assert code == 0, out
    snap = out.split("* SNAPSHOT ID = ")[1].split()[0]
    assert f"* SNAPSHOT ID = {snap} ..." in listing.read_text()
    code, out = vshadow(capsys, state, "-q")
    assert "There are no shadow copies in the system" in out


def test_concurrent_persistent_creations_lose_nothing(tmp_path: Path) -> None:
    """Issue 15, item 8: four vshadow -p at once on one state file: four shadow copies, four
    ids, all in the state."""
    state = tmp_path / "s.json"
    cmd = [sys.executable, "-m", "vssim", "vshadow", "--scenario", str(SEED), "--node", A,
           "--state", str(state), "-p", "-nw", VOLUME]  # fmt: skip
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [e for _, e in outs]
    ids = [o.decode().split("* SNAPSHOT ID = ")[1].split()[0] for o, _ in outs]
    assert len(set(ids)) == 4
    saved = json.loads(state.read_text())["snapshots"]
    assert sorted("{" + s["id"] + "}" for s in saved) == sorted(ids)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda raw: raw.update(snapshots={"a": 1}), "'snapshots': expected a list"),
        (lambda raw: raw["snapshots"][0].update(device="x"), "'snapshots[0].device'"),
        (lambda raw: raw["snapshots"][0].pop("set_id"), "'snapshots[0].set_id' is missing"),
        (lambda raw: raw.update(clock="soon"), "'clock': expected a number"),
        (lambda raw: raw.update(coordinators=[1]), "'coordinators': expected an object"),
        (lambda raw: raw.pop("counter"), "'counter' is missing"),
    ],
)
def test_a_state_file_of_the_wrong_shape_is_refused_by_name(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    change: object,
    field: str,
) -> None:
    state = tmp_path / "s.json"
    vshadow(capsys, state, "-p", "-nw", VOLUME)
    raw = json.loads(state.read_text())
    assert callable(change)
    change(raw)
    state.write_text(json.dumps(raw))
    before = state.read_text()
    code = main(["vshadow", "--scenario", str(SEED), "--node", A, "--state", str(state), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(state) in err
    assert field in err
    assert "Traceback" not in err
    assert state.read_text() == before


def test_wait_keeps_the_set_until_enter(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    t, out = tool(state)
    seen: list[int] = []

    class Enter(io.StringIO):
        def readline(self, *_: object) -> str:
            seen.append(len(json.loads(state.read_text())["snapshots"]))
            return "\n"

    t.con.stdin = Enter()
    assert t.main(["-wait", "-nw", VOLUME]) == 0
    assert out.getvalue().endswith("\nPress <ENTER> to continue...\n")
    assert seen == [1]
    assert json.loads(state.read_text())["snapshots"] == []


def test_wrapper_help_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["vshadow", "--help"]) == 0
    assert "--scenario FILE --node NODE" in capsys.readouterr().out
    assert main(["vshadow", "-q"]) == 1
    code, _ = vshadow(capsys, tmp_path / "s.json", "-q", node="NOPE")
    assert code == 1


def test_a_failed_writer_stays_failed_until_its_next_snapshot_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """As vssadmin list writers shows after a failed backup: the writers that failed (the CSV
    writer here, and node 2's Hyper-V writer it relayed to) report it in later -ws listings; the
    next snapshot set starts them afresh."""
    state = tmp_path / "s.json"
    code, _ = vshadow(capsys, state, VOLUME, scenario=_freeze_fault(tmp_path))
    assert code == 2
    failed = "   - Status: 9 (VSS_WS_FAILED_AT_FREEZE)"
    code, out = vshadow(capsys, state, "-ws")
    assert code == 0
    block = out.split('* WRITER "Cluster Shared Volume VSS Writer"')[1].split("\n")
    assert block[1] == failed
    assert block[2] == "   - Writer Failure code: 0x800423f3 (VSS_E_WRITERERROR_RETRYABLE)"
    assert out.count(failed) == 1
    code, out = vshadow(capsys, state, "-ws", node=B)
    assert out.split('* WRITER "Microsoft Hyper-V VSS Writer"')[1].split("\n")[1] == failed
    code, out = vshadow(capsys, state, VOLUME)
    assert code == 0, out
    code, out = vshadow(capsys, state, "-ws")
    assert failed not in out
    code, out = vshadow(capsys, state, "-ws", node=B)
    assert failed not in out
