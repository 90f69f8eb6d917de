"""Layers point one way (``../shared/DESIGN.md``): every import of every module under
``python/vssim`` — at the top, inside functions, under ``TYPE_CHECKING`` — read with ``ast`` and
checked against the layer map below, and the protocol core (``vssim.vss``) imports nothing that
does I/O and calls no ``open``.

    base (engine, errors, units, hresults)  <-  scenario  <-  vss  <-  sim
        <-  {scale, requester}  <-  metrics  <-  {report, cli}  <-  the vssim package itself

A module may import its own group and any lower rank; of two groups of one rank, only the pairs
in :data:`SIDEWAYS` (the CLI drives the report), never the other way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "vssim"

#: Module prefix → (group, rank). The longest prefix wins (``vssim`` itself only exactly); every
#: module must match one.
GROUPS: dict[str, tuple[str, int]] = {
    "vssim._engine": ("base", 0),
    "vssim.engine": ("base", 0),
    "vssim.errors": ("base", 0),
    "vssim.units": ("base", 0),
    "vssim.hresults": ("base", 0),
    "vssim.scenario": ("scenario", 1),
    "vssim.vss": ("vss", 2),
    "vssim.sim": ("sim", 3),
    "vssim.scale": ("scale", 4),
    "vssim.requester": ("requester", 4),
    "vssim.metrics": ("metrics", 5),
    "vssim.report": ("report", 6),
    "vssim.benchreport": ("report", 6),
    "vssim.cli": ("cli", 6),
    "vssim.__main__": ("cli", 6),
    "vssim": ("package", 7),
}
#: Imports allowed between two groups of one rank: (from, to).
SIDEWAYS = {("cli", "report")}
#: What the sans-I/O core may import from outside vssim (top-level names, or exact modules).
CORE_ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "enum",
    "functools",
    "itertools",
    "math",
    "typing",
    "uuid",
    "xml.sax.saxutils",
    "numpy",
    "polars",
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether ``name`` is a module or package of vssim (a compiled one counts)."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    return (
        base.with_suffix(".py").exists()
        or (base / "__init__.py").exists()
        or any(base.parent.glob(base.name + ".*.so"))
        or base.with_suffix(".pyi").exists()
    )


def imports(source: str, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """Every module ``source`` imports: (line, absolute module name)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join([*here[: len(here) - node.level + 1], node.module or ""])
                base = base.rstrip(".")
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if base.startswith("vssim") and is_module(sub) else base


def group_of(name: str) -> tuple[str, int] | None:
    best = None
    for prefix in GROUPS:
        below = prefix != "vssim" and name.startswith(prefix + ".")
        if (name == prefix or below) and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else GROUPS[best]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The arrows of ``module`` (whose text is ``source``) that point against the layers."""
    mine = group_of(module)
    if mine is None:
        return [f"{module}: in no layer (add it to GROUPS)"]
    out = []
    for line, target in imports(source, module, is_package):
        if mine[0] == "vss" and not target.startswith("vssim"):
            top = target.split(".")[0]
            if target not in CORE_ALLOWED and top not in CORE_ALLOWED:
                out.append(f"{module}:{line}: the sans-I/O core imports {target}")
        if not target.startswith("vssim"):
            continue
        theirs = group_of(target)
        if theirs is None:
            out.append(f"{module}:{line}: imports {target}, which is in no layer")
        elif theirs[0] != mine[0] and not (theirs[1] < mine[1] or (mine[0], theirs[0]) in SIDEWAYS):
            out.append(
                f"{module}:{line}: {mine[0]} (rank {mine[1]}) imports {target} "
                f"({theirs[0]}, rank {theirs[1]})"
            )
    if mine[0] == "vss":
        for node in ast.walk(ast.parse(source)):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Name) and func.id in ("open", "print", "input"):
                out.append(f"{module}:{func.lineno}: the sans-I/O core calls {func.id}")
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_package_has_modules() -> None:
    assert len(MODULES) > 60
    assert {group_of(module_name(p)) for p in MODULES} == set(GROUPS.values())


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_every_import_points_down(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert violations(source, module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize(
    ("module", "source", "expect"),
    [
        ("vssim.vss.writers", "import vssim.sim\n", "vss (rank 2) imports vssim.sim"),
        ("vssim.vss.writers", "from vssim.sim import costs\n", "imports vssim.sim.costs"),
        (
            "vssim.vss.writers",
            "def f():\n    from vssim.scale.runner import simulate\n",
            "imports vssim.scale.runner",
        ),
        (
            "vssim.scenario.load",
            "if TYPE_CHECKING:\n    from vssim.vss import enums\n",
            "scenario (rank 1) imports vssim.vss.enums",
        ),
        ("vssim.scale.runner", "from vssim.requester import run_backup\n", "scale (rank 4)"),
        ("vssim.metrics.tables", "from vssim.scale.runner import simulate\n", ""),
        ("vssim.scale.runner", "from vssim.metrics import build_tables\n", "scale (rank 4)"),
        ("vssim.report.html", "from vssim.cli import main\n", "report (rank 6)"),
        ("vssim.cli.plan", "from vssim.report import capacity_plan\n", ""),
        ("vssim.vss.cluster_state", "import json\n", "the sans-I/O core imports json"),
        ("vssim.vss.machine", "import simpy\n", "the sans-I/O core imports simpy"),
        ("vssim.vss.machine", "import subprocess\n", "the sans-I/O core imports subprocess"),
        ("vssim.vss.machine", "x = open('f')\n", "the sans-I/O core calls open"),
        ("vssim.vss.snapshot_set", "from . import limits\n", ""),
        ("vssim.vss.snapshot_set", "from ..sim import costs\n", "imports vssim.sim.costs"),
        ("vssim.newthing", "", "in no layer"),
    ],
)
def test_the_check_catches_an_arrow_against_the_layers(
    module: str, source: str, expect: str
) -> None:
    found = violations(source, module)
    if expect:
        assert any(expect in v for v in found), found
    else:
        assert found == []
