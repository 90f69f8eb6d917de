"""Writer metadata documents (WMD), as writers report them at Identify, and their two renderings:
XML (vshadow ``-wm3``, ``IVssExamineWriterMetadata::SaveAsXML``) and vshadow's ``-wm``/``-wm2``
listing (spec §5; the seed's figure 3 is this listing for the CSV writer).

A component's *full path* is ``\\`` + logical path + ``\\`` + name (``\\name`` when the logical path
is empty); it is *top level* when no other component's full path is a prefix of it followed by
``\\``. Affected paths are its file descriptors' paths (with a final backslash), sorted; affected
volumes are the volumes those paths live on, printed ``<unique name> [<mount point>]``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from xml.sax.saxutils import quoteattr

from vssim.scenario.guids import braced
from vssim.vss.enums import ComponentType, RestoreMethod, WriterRestore

#: Maps a path to ``(unique volume name, mount point with final backslash)``, or None.
VolumeOf = Callable[[str], tuple[str, str] | None]


@dataclass(frozen=True)
class FileDescriptor:
    path: str
    filespec: str
    recursive: bool = False

    @property
    def expanded_path(self) -> str:
        return self.path if self.path.endswith("\\") else self.path + "\\"


@dataclass(frozen=True)
class Dependency:
    writer_id: uuid.UUID
    logical_path: str
    component_name: str

    @property
    def full_path(self) -> str:
        return _full_path(self.logical_path, self.component_name)


@dataclass(frozen=True)
class Component:
    name: str
    logical_path: str = ""
    caption: str = ""
    type: ComponentType = ComponentType.FILEGROUP
    selectable: bool = True
    notify_on_backup_complete: bool = False
    files: tuple[FileDescriptor, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    #: What the component stands for in the cluster (a VM GUID), for the simulation; not in XML.
    vm_guid: uuid.UUID | None = None

    @property
    def full_path(self) -> str:
        return _full_path(self.logical_path, self.name)

    def is_ancestor_of(self, other: Component) -> bool:
        mine, theirs = self.full_path, other.full_path
        if len(theirs) <= len(mine):
            return False
        return (theirs + "\\").lower().startswith(mine.rstrip("\\").lower() + "\\")

    @property
    def affected_paths(self) -> list[str]:
        return sorted({f.expanded_path for f in self.files})


def prefixes(full_path: str) -> list[str]:
    """The full paths of every possible ancestor of ``full_path`` (``\\a\\b\\c`` →
    ``\\a``, ``\\a\\b``), lower-cased: an ancestor is a component whose full path is a prefix
    followed by ``\\``."""
    parts = full_path.lower().split("\\")
    return ["\\".join(parts[:i]) for i in range(2, len(parts))]


def _full_path(logical_path: str, name: str) -> str:
    full = (
        logical_path + "\\" if logical_path and not logical_path.endswith("\\") else logical_path
    ) + name
    return full if full.startswith("\\") else "\\" + full


@dataclass(frozen=True)
class WriterMetadata:
    """One writer instance's metadata document."""

    name: str
    writer_id: uuid.UUID
    instance_id: uuid.UUID
    restore_method: RestoreMethod
    restore_conditions: WriterRestore
    reboot_required: bool = False
    usage: str = "VSS_UT_USERDATA"
    source: str = "VSS_ST_OTHER"
    excluded: tuple[FileDescriptor, ...] = ()
    components: tuple[Component, ...] = field(default=())
    #: The node whose writer this is.
    node: str = ""

    @property
    def supports_restore_events(self) -> bool:
        return self.restore_conditions is not WriterRestore.NEVER

    @cached_property
    def paths(self) -> dict[str, Component]:
        """Components by lower-cased full path."""
        return {c.full_path.lower(): c for c in self.components}

    def ancestors(self, c: Component) -> list[Component]:
        return [self.paths[p] for p in prefixes(c.full_path) if p in self.paths]

    def top_level(self, c: Component) -> bool:
        return not self.ancestors(c)

    def component(self, full_path: str) -> Component | None:
        return self.paths.get(full_path.lower())

    def matches(self, text: str) -> bool:
        """vshadow's writer match: name, ``{writer id}`` or instance id (any case)."""
        t = text.lower()
        return t in (self.name.lower(), braced(self.writer_id), braced(self.instance_id))


def _b(flag: bool) -> str:
    return "TRUE" if flag else "FALSE"


def list_writer(wmd: WriterMetadata, volume_of: VolumeOf, detailed: bool) -> list[str]:
    """The lines vshadow ``-wm`` (``detailed=False``) or ``-wm2`` prints for one writer."""
    out = [
        "",
        f'* WRITER "{wmd.name}"',
        f"    - WriterId   = {braced(wmd.writer_id)}",
        f"    - InstanceId = {braced(wmd.instance_id)}",
        f"    - Supports restore events = {_b(wmd.supports_restore_events)}",
        f"    - Writer restore conditions = {wmd.restore_conditions}",
        f"    - Restore method = {wmd.restore_method}",
        f"    - Requires reboot after restore = {_b(wmd.reboot_required)}",
        "",
        "    - Excluded files:",
    ]
    for f in wmd.excluded:
        out.append(_descriptor_line("Exclude", f))
    for c in wmd.components:
        out += _component_lines(wmd, c, volume_of, detailed)
    return out


def _descriptor_line(kind: str, f: FileDescriptor) -> str:
    rec = ", Recursive" if f.recursive else ""
    return f"       - {kind}: Path = {f.path}, Filespec = {f.filespec}{rec}"


def _component_lines(
    wmd: WriterMetadata, c: Component, volume_of: VolumeOf, detailed: bool
) -> list[str]:
    out = [
        f'    - Component "{wmd.name}:{c.full_path}"',
        f"       - Name: '{c.name}'",
        f"       - Logical Path: '{c.logical_path}'",
        f"       - Full Path: '{c.full_path}'",
        f"       - Caption: '{c.caption}'",
        f"       - Type: {c.type} [{int(c.type)}]",
        f"       - Is Selectable: '{_b(c.selectable)}'",
        f"       - Is top level: '{_b(wmd.top_level(c))}'",
        f"       - Notify on backup complete: '{_b(c.notify_on_backup_complete)}'",
    ]
    if detailed:
        out.append("       - Components:")
        out += [_descriptor_line("File List", f) for f in c.files]
    out.append("       - Affected paths by this component:")
    out += [f"         - {p}" for p in c.affected_paths]
    out.append("       - Affected volumes by this component:")
    for name, mount in affected_volumes(c, volume_of):
        shown = mount if mount else "Not valid for local machine"
        out.append(f"         - {name} [{shown}]")
    out.append("       - Component Dependencies:")
    out += [f'       - Dependency to "{braced(d.writer_id)}:{d.full_path}"' for d in c.dependencies]
    return out


def affected_volumes(c: Component, volume_of: VolumeOf) -> list[tuple[str, str]]:
    """``(unique volume name, mount point)`` for each volume the component's files live on, in
    file order, once each (a path on no known volume stands for itself, no mount point)."""
    seen: list[tuple[str, str]] = []
    for f in c.files:
        vol = volume_of(f.expanded_path) or (f.expanded_path, "")
        if vol not in seen:
            seen.append(vol)
    return seen


def to_xml(wmd: WriterMetadata) -> str:
    """The WMD as XML, in the shape of ``SaveAsXML`` (a ``WRITER_METADATA`` document)."""
    a = quoteattr
    lines = [
        '<WRITER_METADATA xmlns="x-schema:#VssWriterMetadataInfo" version="1.1">',
        f"<IDENTIFICATION writerId={a(str(wmd.writer_id))} instanceId={a(str(wmd.instance_id))} "
        f"friendlyName={a(wmd.name)} usage={a(wmd.usage.removeprefix('VSS_UT_'))} "
        f"dataSource={a(wmd.source.removeprefix('VSS_ST_'))}/>",
        f"<RESTORE_METHOD method={a(wmd.restore_method.name)} "
        f"writerRestore={a(wmd.restore_conditions.name)} "
        f"rebootRequired={a('yes' if wmd.reboot_required else 'no')}/>",
    ]
    for f in wmd.excluded:
        lines.append(f"<EXCLUDE_FILES path={a(f.path)} filespec={a(f.filespec)}/>")
    for c in wmd.components:
        lines.append(
            f"<COMPONENT logicalPath={a(c.logical_path)} componentName={a(c.name)} "
            f"caption={a(c.caption)} componentType={a(c.type.name.lower())} "
            f"selectable={a('yes' if c.selectable else 'no')} "
            f"notifyOnBackupComplete={a('yes' if c.notify_on_backup_complete else 'no')}>"
        )
        for f in c.files:
            lines.append(
                f"<FILE_LIST path={a(f.path)} filespec={a(f.filespec)} "
                f"recursive={a('yes' if f.recursive else 'no')}/>"
            )
        for d in c.dependencies:
            lines.append(
                f"<WRITER_DEPENDENCY writerId={a(str(d.writer_id))} "
                f"logicalPath={a(d.logical_path)} componentName={a(d.component_name)}/>"
            )
        lines.append("</COMPONENT>")
    lines.append("</WRITER_METADATA>")
    return "\n".join(lines)


def components_of(docs: Iterable[WriterMetadata]) -> int:
    return sum(len(d.components) for d in docs)
