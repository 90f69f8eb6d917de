"""The volumes of one node as the Win32 calls vshadow makes see them (``util.h``): a node has its
System Reserved partition (no mount point), its system volume ``C:\\`` and every CSV, mounted at
``C:\\ClusterStorage\\VolumeN\\`` on every node. Each call answers as Windows would on that node:

* ``IsVolume``: a path on a CSV (``ClusterIsPathOnSharedVolume``) is a volume if it exists
  (``PathFileExists``: the CSV's mount point, a VM's folders and files); any other path only if it
  is a mount point or a volume GUID path (``GetVolumeNameForVolumeMountPoint``). ``C:``, ``C:\\``,
  ``\\\\?\\Volume{…}\\`` and ``C:\\ClusterStorage\\Volume1\\VM1`` are volumes; ``C:\\Windows`` and
  ``D:`` (no such drive) are not.
* ``GetVolumePathName``: the longest mount point (or volume GUID path) a path starts with; a
  relative path lives on the current directory's volume (``C:\\``).
* ``GetVolumePathNamesForVolumeName``: a volume's mount points; vshadow prints the shortest.

A path that names no volume of the node fails the way ``GetVolumeNameForVolumeMountPoint`` fails
on it (``ERROR_FILE_NOT_FOUND``, 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from vssim.scenario import Csv, Scenario
from vssim.scenario.model import LocalVolume
from vssim.vss.writers import hyperv_component

#: ``GetLastError()`` of a path that names nothing on the node.
ERROR_FILE_NOT_FOUND = 2


@dataclass(frozen=True)
class NodeVolume:
    unique_name: str
    #: With their final backslash; empty for a volume with no mount point.
    mount_points: tuple[str, ...]
    csv: Csv | None = None
    local: LocalVolume | None = None

    @property
    def display_name(self) -> str:
        """``GetDisplayNameForVolume``: the shortest mount point ("" when it has none)."""
        return min(self.mount_points, key=len) if self.mount_points else ""


def append_backslash(text: str) -> str:
    return text if text.endswith("\\") else text + "\\"


def is_unc_path(path: str) -> bool:
    """``IsUNCPath`` (``util.h``): ``\\\\?\\UNC\\…`` or ``\\\\server\\…``, but not ``\\\\?\\…``."""
    p = path.lower()
    if p.startswith("\\\\?\\unc\\"):
        return True
    if p.startswith("\\\\?\\"):
        return False
    return p.startswith("\\\\")


class NodeNamespace:
    """The volumes, mount points and CSV paths ``node`` sees."""

    def __init__(self, scenario: Scenario, node: str) -> None:
        self.sc = scenario
        self.node = scenario.node(node).name
        reserved, system = scenario.local_volumes(self.node)
        self.volumes: list[NodeVolume] = [
            NodeVolume(reserved.volume_name, (), local=reserved),
            NodeVolume(system.volume_name, (system.display_name,), local=system),
        ]
        self.volumes += [NodeVolume(c.volume_name, (c.display_name,), csv=c) for c in scenario.csvs]

    @cached_property
    def _by_name(self) -> dict[str, NodeVolume]:
        return {v.unique_name.lower(): v for v in self.volumes}

    @cached_property
    def _by_mount(self) -> dict[str, NodeVolume]:
        return {m.lower(): v for v in self.volumes for m in v.mount_points}

    @cached_property
    def _csv_entries(self) -> set[str]:
        """Every directory and file a CSV holds (lower case, directories with their backslash)."""
        out: set[str] = set()
        for vm in self.sc.vms:
            mount = append_backslash(self.sc.csv_of(vm).mount_point).lower()
            for f in hyperv_component(self.sc, vm).files:
                folder = append_backslash(f.path).lower()
                out.add(folder + f.filespec.lower())
                while folder.startswith(mount) and len(folder) > len(mount):
                    out.add(folder)
                    folder = folder[: folder.rstrip("\\").rfind("\\") + 1]
        return out

    def volume(self, unique_name: str) -> NodeVolume | None:
        return self._by_name.get(append_backslash(unique_name).lower())

    def is_path_on_shared_volume(self, path: str) -> bool:
        """``ClusterIsPathOnSharedVolume``."""
        p = append_backslash(path).lower()
        return any(p.startswith(m) for m, v in self._by_mount.items() if v.csv is not None)

    def path_exists(self, path: str) -> bool:
        """``PathFileExists`` for a path on a CSV."""
        p = path.lower()
        return p in self._by_mount or p in self._csv_entries or p.rstrip("\\") in self._csv_entries

    def volume_name_for_mount_point(self, path: str) -> str | None:
        """``GetVolumeNameForVolumeMountPoint``: ``path`` must be a mount point or a volume GUID
        path (with its final backslash)."""
        p = append_backslash(path).lower()
        v = self._by_mount.get(p) or self._by_name.get(p)
        return v.unique_name if v else None

    def is_volume(self, arg: str) -> bool:
        """``IsVolume`` (``util.h``)."""
        p = append_backslash(arg)
        if self.is_path_on_shared_volume(p):
            return self.path_exists(p)
        return self.volume_name_for_mount_point(p) is not None

    def volume_path_name(self, path: str) -> str:
        """``GetVolumePathName``: the root of the volume ``path`` is on (lexically: the longest
        known mount point or GUID path it starts with; a relative path is on ``C:\\``; an unknown
        drive is its own root)."""
        p = append_backslash(path)
        lower = p.lower()
        roots = [*self._by_mount, *self._by_name]
        best = max((r for r in roots if lower.startswith(r)), key=len, default=None)
        if best is not None:
            return p[: len(best)]
        if len(p) >= 2 and p[1] == ":":
            return p[:2] + "\\"
        if lower.startswith("\\\\?\\volume{"):
            return p[: p.find("}") + 2] if "}" in p else p
        return "C:\\"

    def unique_name_for_path(self, path: str) -> str | None:
        """``GetUniqueVolumeNameForPathNoThrow`` (without the CSV preparation of a backup)."""
        return self.volume_name_for_mount_point(self.volume_path_name(path))

    def display_name(self, unique_name: str) -> str | None:
        """``GetDisplayNameForVolumeNoThrow``: the shortest mount point, "" for a volume without
        one, None for a name that is not one of the node's volumes."""
        v = self.volume(unique_name)
        return None if v is None else v.display_name

    def volume_of(self, expanded_path: str) -> tuple[str, str | None]:
        """What vshadow keeps as a file descriptor's affected volume, and how it shows it: the
        volume's unique name and mount point — or, for a path on no volume of the node, the path
        itself, "not valid for local machine"."""
        name = self.unique_name_for_path(expanded_path)
        if name is None:
            return expanded_path, None
        return name, self.display_name(name)
