"""The one naming scheme of a materialized run's folders and files.

Every path a materialized run makes comes from :class:`MaterializedNames`::

    DIR/csvs/<NN>-<CSV slug>/                           a CSV's volume (engine.Volume root)
    DIR/diff-areas/<NN>-<CSV slug>/                     its diff area
    DIR/csvs/<NN>-<CSV slug>/<NNNN>-<VM slug>/<j>-<file slug>          disk j of a VM
    DIR/backups/<NNNN>-<VM slug>/disk<j>/<seq>-<kind>.vhdx             one backup of it
    DIR/backups/manifest.json

A slug is the name with each run of characters outside ``[A-Za-z0-9._-]`` replaced by one ``-``
(cut to :data:`SLUG_MAX` characters). Slugs alone collide — ``VM-A`` and ``VM A`` have one slug,
and NTFS, which these names stand for, folds case (``vm-a`` is ``VM-A``) — so every folder and
disk file name starts with the object's position in the scenario (CSV ``NN``, VM ``NNNN``, disk
``j``): two objects never share a name, case folded or not, whatever their names. On top of that
every path is claimed once, case folded, in one registry: a collision the scheme did not foresee
is refused (:class:`~vssim.errors.MaterializeError` naming both owners and the path) before any
file is made, never an overwrite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vssim.errors import MaterializeError
from vssim.scenario import Csv, Scenario, Vm

#: Characters a slug keeps as they are; runs of any other become one "-".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: A slug's length at most (model choice: short enough that the longest path stays far under
#: Linux's 255-byte file names and 4,096-byte paths, long enough to read the name).
SLUG_MAX = 48
MANIFEST = "manifest.json"


def slug(name: str) -> str:
    """A readable file-name part for ``name`` (a cluster name holds spaces, backslashes,
    colons): never empty, never ``.``/``..``, never starting with a dot."""
    s = _UNSAFE.sub("-", name).strip("-.")[:SLUG_MAX].rstrip("-.")
    return s or "_"


def _width(n: int, least: int) -> int:
    return max(least, len(str(n)))


@dataclass
class MaterializedNames:
    """Every folder and file name of one scenario's materialized run (see the module doc)."""

    scenario: Scenario
    #: Case-folded path → what claimed it ("VM 'VM-A' disk 0").
    _claimed: dict[str, str] = field(default_factory=dict)
    _csv_dir: dict[str, str] = field(default_factory=dict)
    _vm_dir: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sc = self.scenario
        cw = _width(len(sc.csvs), 2)
        for i, c in enumerate(sc.csvs, 1):
            d = f"{i:0{cw}d}-{slug(c.name)}"
            _unique(self._csv_dir, c.name, "CSV", sc)
            self._claim(f"csvs/{d}", f"CSV {c.name!r}")
            self._claim(f"diff-areas/{d}", f"CSV {c.name!r}'s diff area")
            self._csv_dir[c.name] = d
        vw = _width(len(sc.vms), 4)
        for i, vm in enumerate(sc.vms, 1):
            d = f"{i:0{vw}d}-{slug(vm.name)}"
            _unique(self._vm_dir, vm.name, "VM", sc)
            self._vm_dir[vm.name] = d
            self._claim(f"backups/{d}", f"VM {vm.name!r}'s backups")
            for j in range(len(vm.disks)):
                self._claim(f"csvs/{self._csv_dir[vm.csv]}/{self.disk_file(vm, j)}", _disk(vm, j))

    def _claim(self, path: str, owner: str) -> None:
        key = path.casefold()
        if key in self._claimed:
            raise MaterializeError(
                f"{self.scenario.path}: {owner} and {self._claimed[key]} would both be {path} "
                "in the materialize folder (names compared as NTFS does, case folded); "
                "nothing was made"
            )
        self._claimed[key] = owner

    def csv_dir(self, csv: Csv | str) -> str:
        """The folder of a CSV's volume under ``csvs/`` (and of its diff area under
        ``diff-areas/``)."""
        return self._csv_dir[csv if isinstance(csv, str) else csv.name]

    def vm_dir(self, vm: Vm | str) -> str:
        """A VM's folder: on its CSV's volume, and under ``backups/``."""
        return self._vm_dir[vm if isinstance(vm, str) else vm.name]

    def disk_file(self, vm: Vm, j: int) -> str:
        """Disk ``j`` of ``vm``, relative to its CSV's volume root."""
        return f"{self.vm_dir(vm)}/{j}-{slug(vm.disks[j].file)}"

    def backup_file(self, vm: str, disk: int, seq: int, kind: str) -> str:
        """A backup file, relative to the backup store (``backups/``)."""
        return f"{self.vm_dir(vm)}/disk{disk}/{seq:04d}-{kind}.vhdx"


def _unique(seen: dict[str, str], name: str, what: str, sc: Scenario) -> None:
    # Folders are found by name: two objects of one name (the loader refuses them; a Scenario
    # built by hand may not) would share one entry.
    if name in seen:
        raise MaterializeError(f"{sc.path}: two {what}s are named {name!r}; nothing was made")


def _disk(vm: Vm, j: int) -> str:
    return f"VM {vm.name!r} disk {j} ({vm.disks[j].file})"
