"""Transcript cases of ``vssim vshadow`` for the golden tests: each case is a sequence of vshadow
invocations on one cluster state, one per command family (listing, status, query, creation with
and without writers, ``-wi``/``-wx`` on both profiles, deletion, ``-exec``, bad options,
failures, restore, break/expose/import/revert/resync).

Arguments may name values known only at run time: ``{remote}`` (the CSV VSS Writer component of
W808-Build8370-02, seen from node 1), ``{local2}`` (the Hyper-V writer component of that VM on
its own node 2), ``{reserved}`` (node 1's System Reserved volume), and ``{set}``/``{snap}`` (the
last shadow copy set and shadow copy an earlier step listed).
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scenarios import EXAMPLES, SEED
from vssim.cli import main
from vssim.scenario import load_scenario
from vssim.vss.writers import csv_component_name, hyperv_component

SEED_2008 = EXAMPLES / "seed-ws2008r2.toml"
ND1, ND2 = "E8920-ND1", "E8920-ND2"
CSV = "C:\\ClusterStorage\\Volume"


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    node: str = ND1
    stdin: str = ""


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    scenario: Path = SEED
    #: TOML appended to the scenario (faults).
    extra: str = ""
    #: Files the case needs in its folder: name → (text, executable).
    files: dict[str, tuple[str, bool]] = field(default_factory=dict)


def s(*args: str, node: str = ND1, stdin: str = "") -> Step:
    return Step(tuple(args), node, stdin)


OK_SH = ("#!/bin/sh\necho 'exec: backup script ran'\n", True)
FAIL_SH = ("#!/bin/sh\necho 'exec: failing on purpose'\nexit 3\n", True)
FREEZE_FAULT = (
    '\n[[faults]]\nkind = "writer_fail"\nnode = "E8920-ND2"\nwriter = "hyperv"\n'
    'phase = "freeze"\nhresult = "VSS_E_WRITERERROR_RETRYABLE"\n'
)
IDENTIFY_FAULT = (
    '\n[[faults]]\nkind = "writer_fail"\nnode = "E8920-ND1"\nwriter = "csv"\nphase = "identify"\n'
)
COMMIT_FAULT = (
    '\n[[faults]]\nkind = "provider_error"\nphase = "commit"\n'
    'hresult = "VSS_E_UNEXPECTED_PROVIDER_ERROR"\n'
)

CASES = [
    Case("listing-ws2012", (s("-wm"), s("-wm2"))),
    Case("listing-xml-ws2008r2", (s("-wm3"),), scenario=SEED_2008),
    Case("status-ws2012", (s("-ws"), s("/WS", node=ND2))),
    Case("status-identify-failure", (s("-ws"), s("-wm")), extra=IDENTIFY_FAULT),
    Case(
        "query-and-delete",
        (
            s("-q"),
            s("-p", "-nw", CSV),
            s("-q"),
            s("-qx={set}", node=ND2),
            s("-s={snap}"),
            s("-p", CSV + "\\"),
            s("-do=" + CSV),
            s("-dx={set}"),
            s("-p", "-nw", CSV),
            s("-da", stdin="n\n"),
            s("-da", stdin="y\n"),
            s("-q"),
            s("-ds={snap}"),
            s("-s=7a2d4362-80b4-533a-b598-09e976068be3"),
            s("-qx={{not-a-guid}}"),
        ),
    ),
    Case("seed-experiment-ws2012", (s("-wi={remote}", CSV),)),
    Case("seed-experiment-ws2008r2", (s("-wi={remote}", CSV),), scenario=SEED_2008),
    Case(
        "local-vm-ws2008r2",
        (s("/WI={local2}", CSV, node=ND2), s("-wi={local2}", CSV)),
        scenario=SEED_2008,
    ),
    Case(
        "include-and-exclude",
        (
            s("-wx=Cluster Shared Volume VSS Writer", CSV),
            s("-wi=Microsoft Hyper-V VSS Writer", CSV),
            s(
                "-wx=Microsoft Hyper-V VSS Writer:\\Initial Store",
                "-wi=Microsoft Hyper-V VSS Writer",
                CSV,
            ),
            s("-wi=No Such Writer", CSV),
        ),
    ),
    Case("no-writers", (s("-nw", CSV), s("-nw", "C:"))),
    Case(
        "node-volumes",
        (s("C:"), s("{reserved}", "C:\\"), s("-nar", CSV + "\\W808-Build8370-01")),
    ),
    Case(
        "exec-script-bc",
        (
            s("-exec=ok.sh", "-script=set.cmd", "-bc=bc.xml", CSV),
            s("-exec=fail.sh", CSV),
            s("-exec=missing.sh", CSV),
        ),
        files={"ok.sh": OK_SH, "fail.sh": FAIL_SH},
    ),
    Case(
        "bad-options",
        (s("/frob"), s("C:\\Windows"), s(CSV, "D:"), s("-?"), s(), s(CSV, "-p")),
    ),
    Case("writer-fails-at-freeze", (s("-wi={remote}", CSV),), extra=FREEZE_FAULT),
    Case("provider-fails-at-commit", (s("-nw", CSV),), extra=COMMIT_FAULT),
    Case(
        "add-to-snapshot-set-refusals",
        (s(CSV, CSV + "\\"), s("-t=t.xml", CSV), s("-ap", "-nw", "C:")),
    ),
    Case(
        "restore",
        (
            s("-bc=bc.xml", CSV),
            s("-rs=bc.xml"),
            s("-exec=ok.sh", "-r=bc.xml", node=ND2),
            s("-wx=Microsoft Hyper-V VSS Writer", "-wi=Microsoft Hyper-V VSS Writer", "-r=bc.xml"),
            s("-r=missing.xml"),
            s("-r=ok.sh"),
        ),
        files={"ok.sh": OK_SH},
    ),
    Case(
        "break-expose-revert-resync",
        (
            s("-p", "-nw", CSV),
            s("-b={set}"),
            s("-el={snap},X:"),
            s("-el={snap},Y:"),
            s("-p", "-nw", CSV),
            s("-el={snap},c:"),
            s("-el={snap},C:\\mount"),
            s("-el={snap}," + CSV + "\\W808-Build8370-01"),
            s("-er={snap},share1,W808-Build8370-01"),
            s("-q"),
            s("-revert={snap}"),
            s("-addresync={snap}", "-resync=missing.xml"),
        ),
    ),
    Case(
        "transportable-ws2008r2",
        (
            s("-p", "-t=t.xml", CSV, node=ND2),
            s("-i=t.xml"),
            s("-q"),
            s("-mask", "-bex={set}"),
            s("-q"),
        ),
        scenario=SEED_2008,
    ),
]


@dataclass
class Invocation:
    node: str
    args: list[str]
    code: int
    out: str


def values(scenario: Path) -> dict[str, str]:
    sc = load_scenario(scenario)
    vm = next(v for v in sc.vms if v.name == "W808-Build8370-02")
    return {
        "remote": f"Cluster Shared Volume VSS Writer:\\{csv_component_name(sc, vm)}",
        "local2": f"Microsoft Hyper-V VSS Writer:{hyperv_component(sc, vm).full_path}",
        "reserved": sc.local_volumes(ND1)[0].volume_name,
    }


_SET = re.compile(r"   - Shadow copy Set: (\{[0-9a-f-]+\})")
_SNAP = re.compile(r"\* SNAPSHOT ID = (\{[0-9a-f-]+\})")


def run_case(case: Case, folder: Path, capture: Callable[[], str]) -> list[Invocation]:
    """Run ``case`` in ``folder`` (the current directory while it runs); ``capture`` returns
    what was printed since it was last called."""
    scenario = case.scenario
    if case.extra:
        scenario = folder / scenario.name
        scenario.write_text(case.scenario.read_text(encoding="utf-8") + case.extra)
    for name, (text, executable) in case.files.items():
        p = folder / name
        p.write_text(text)
        if executable:
            p.chmod(0o755)
    known = values(scenario)
    state = folder / "state.json"
    out: list[Invocation] = []
    old_cwd, old_stdin = Path.cwd(), sys.stdin
    os.chdir(folder)
    try:
        for step in case.steps:
            args = [a.format(**known) for a in step.args]
            sys.stdin = io.StringIO(step.stdin)
            ours = ["--scenario", str(scenario), "--node", step.node, "--state", str(state)]
            code = main(["vshadow", *ours, *args])
            text = capture()
            out.append(Invocation(step.node, args, code, text))
            sets, snaps = _SET.findall(text), _SNAP.findall(text)
            if sets:
                known["set"] = sets[-1]
            if snaps:
                known["snap"] = snaps[-1]
                known["snap2"] = snaps[0]
    finally:
        os.chdir(old_cwd)
        sys.stdin = old_stdin
    return out
