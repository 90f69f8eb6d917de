"""Writer metadata documents (WMD), as writers report them at Identify, and their two renderings:
XML in the shape ``IVssExamineWriterMetadata::SaveAsXML`` gives (vshadow ``-wm3``) and vshadow's
``-wm``/``-wm2`` listing (``writer.cpp``; spec §5, the seed's figure 3 is this listing for the CSV
writer).

A component's *full path* is ``\\`` + logical path + ``\\`` + name (``\\name`` when the logical path
is empty); it is *top level* when no other component's full path is a prefix of it followed by
``\\``. vshadow reads a component's file descriptors in a fixed order — file lists, then database
files, then database log files — and derives from them:

* *affected paths*: each descriptor's path with its environment variables expanded
  (``ExpandEnvironmentStrings``), kept once each (compared ignoring case), sorted. The sample
  appends a backslash to a string it had already padded with NULs, so the backslash never shows:
  a path prints as the writer wrote it, expanded.
* *affected volumes*: the volume each expanded path lives on (its unique name, or the path itself
  when no volume holds it), kept once each, in descriptor order, printed
  ``<volume> [<its shortest mount point>]`` or ``[Not valid for local machine]``.

Two quirks of the sample are the tool's behaviour and are kept: a descriptor's *recursive* flag and
*alternate location* are read but never stored, so ``-wm2`` never prints ``, Recursive`` or
``, Alternate Location = …``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from vssim.scenario.guids import braced
from vssim.vss.enums import ComponentType, RestoreMethod, SourceType, UsageType, WriterRestore

#: An expanded path → (the affected volume vshadow keeps for it, the volume's shortest mount point
#: — "" when it has none — or None when the volume is not one of this machine's).
VolumeOf = Callable[[str], tuple[str, str | None]]

#: A machine's environment, as ``ExpandEnvironmentStrings`` sees it.
Environment = Mapping[str, str]

#: Where a Windows Server 2008 R2 / 2012 node keeps its system (model choice: a default install).
NODE_ENVIRONMENT: Environment = {
    "SYSTEMDRIVE": "C:",
    "SYSTEMROOT": "C:\\Windows",
    "WINDIR": "C:\\Windows",
    "PROGRAMDATA": "C:\\ProgramData",
    "ALLUSERSPROFILE": "C:\\ProgramData",
    "PROGRAMFILES": "C:\\Program Files",
}


def expand_environment(path: str, env: Environment = NODE_ENVIRONMENT) -> str:
    """``ExpandEnvironmentStrings``: ``%NAME%`` replaced by the variable's value (names compared
    ignoring case); an unknown variable, or a lone ``%``, is left as it is."""
    upper = {k.upper(): v for k, v in env.items()}
    out, rest = [], path
    while "%" in rest:
        before, _, after = rest.partition("%")
        name, closed, tail = after.partition("%")
        if not closed:
            break
        out.append(before)
        if name and name.upper() in upper:
            out.append(upper[name.upper()])
            rest = tail
        else:
            # Not a variable: keep the first % and look for one starting at the second.
            out.append("%")
            rest = after
    return "".join(out) + rest


class DescriptorKind(Enum):
    """``VSS_DESCRIPTOR_TYPE`` of the sample (``writer.h``); the value is how ``-wm2`` names it."""

    EXCLUDE = "Exclude"
    FILE_LIST = "File List"
    DATABASE = "Database"
    DATABASE_LOG = "Database Log"


#: The order vshadow gathers a component's descriptors in (``VssComponent::Initialize``).
_GATHER_ORDER = (DescriptorKind.FILE_LIST, DescriptorKind.DATABASE, DescriptorKind.DATABASE_LOG)
#: The element each descriptor kind is in a writer metadata document.
_ELEMENT = {
    DescriptorKind.EXCLUDE: "EXCLUDE_FILES",
    DescriptorKind.FILE_LIST: "FILE_LIST",
    DescriptorKind.DATABASE: "DATABASE_FILES",
    DescriptorKind.DATABASE_LOG: "DATABASE_LOGFILES",
}
#: ``VSS_FSBT_ALL_BACKUP_REQUIRED | VSS_FSBT_ALL_SNAPSHOT_REQUIRED`` (0xF0F): the default
#: ``filespecBackupType`` writers report (the in-box writers page's NTDS example shows 3855).
DEFAULT_FILESPEC_BACKUP_TYPE = 0xF0F


@dataclass(frozen=True)
class FileDescriptor:
    path: str
    filespec: str
    recursive: bool = False
    alternate_path: str = ""
    kind: DescriptorKind = DescriptorKind.FILE_LIST

    def expanded(self, env: Environment = NODE_ENVIRONMENT) -> str:
        return expand_environment(self.path, env)


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
    restore_metadata: bool = False
    files: tuple[FileDescriptor, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    #: What the component stands for in the cluster (a VM GUID), for the simulation; not in XML.
    vm_guid: uuid.UUID | None = None

    @property
    def full_path(self) -> str:
        return _full_path(self.logical_path, self.name)

    def is_ancestor_of(self, other: Component) -> bool:
        """``VssComponent::IsAncestorOf``: the other's full path is longer and starts with this
        one's followed by a backslash (ignoring case)."""
        mine, theirs = self.full_path, other.full_path
        if len(theirs) <= len(mine):
            return False
        prefix = _append_backslash(mine)
        return _append_backslash(theirs)[: len(prefix)].lower() == prefix.lower()

    @property
    def descriptors(self) -> list[FileDescriptor]:
        """The file descriptors in the order vshadow gathers them."""
        return [f for kind in _GATHER_ORDER for f in self.files if f.kind is kind]

    def affected_paths(self, env: Environment = NODE_ENVIRONMENT) -> list[str]:
        seen: list[str] = []
        for f in self.descriptors:
            p = f.expanded(env)
            if not any(p.lower() == s.lower() for s in seen):
                seen.append(p)
        return sorted(seen)

    def affected_volumes(
        self, volume_of: VolumeOf, env: Environment = NODE_ENVIRONMENT
    ) -> list[tuple[str, str | None]]:
        """``(volume, display)`` per volume the component's files live on, once each (compared
        ignoring case), in descriptor order."""
        seen: list[tuple[str, str | None]] = []
        for f in self.descriptors:
            vol = volume_of(f.expanded(env))
            if not any(vol[0].lower() == s[0].lower() for s in seen):
                seen.append(vol)
        return seen


def _append_backslash(text: str) -> str:
    """``AppendBackslash`` (``util.h``): ``\\`` for an empty string."""
    return text if text.endswith("\\") else text + "\\"


def prefixes(full_path: str) -> list[str]:
    """The full paths of every possible ancestor of ``full_path`` (``\\a\\b\\c`` →
    ``\\a``, ``\\a\\b``), lower-cased: an ancestor is a component whose full path is a prefix
    followed by ``\\``."""
    parts = full_path.lower().split("\\")
    return ["\\".join(parts[:i]) for i in range(2, len(parts))]


def _full_path(logical_path: str, name: str) -> str:
    full = _append_backslash(logical_path) + name if logical_path else name
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
    usage: UsageType = UsageType.USERDATA
    source: SourceType = SourceType.OTHER
    #: ``RESTORE_METHOD``'s service (VSS_RME_STOP_RESTORE_START) and user procedure (CUSTOM).
    service: str = ""
    user_procedure: str = ""
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


def list_writer(
    wmd: WriterMetadata,
    volume_of: VolumeOf,
    detailed: bool,
    env: Environment = NODE_ENVIRONMENT,
) -> list[str]:
    """The lines vshadow ``-wm`` (``detailed=False``) or ``-wm2`` prints for one writer
    (``writer.cpp``: ``VssWriter::Print``, ``VssComponent::Print``, ``VssFileDescriptor::Print``,
    ``VssDependency::Print``)."""
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
    out += [_descriptor_line(DescriptorKind.EXCLUDE, f) for f in wmd.excluded]
    for c in wmd.components:
        out += _component_lines(wmd, c, volume_of, detailed, env)
    return out


def _descriptor_line(kind: DescriptorKind, f: FileDescriptor) -> str:
    # The recursive flag and alternate location are never stored by the sample (module doc).
    return f"       - {kind.value}: Path = {f.path}, Filespec = {f.filespec}"


def _component_lines(
    wmd: WriterMetadata, c: Component, volume_of: VolumeOf, detailed: bool, env: Environment
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
        out += [_descriptor_line(f.kind, f) for f in c.descriptors]
    out.append("       - Affected paths by this component:")
    out += [f"         - {p}" for p in c.affected_paths(env)]
    out.append("       - Affected volumes by this component:")
    for name, shown in c.affected_volumes(volume_of, env):
        out.append(
            f"         - {name} [{'Not valid for local machine' if shown is None else shown}]"
        )
    out.append("       - Component Dependencies:")
    # The sample's format has a third %s with no argument behind it (undefined behaviour in C);
    # vssim prints the two fields it was given.
    out += [f'       - Dependency to "{braced(d.writer_id)}:{d.full_path}"' for d in c.dependencies]
    return out


def _attr(name: str, value: str) -> str:
    escaped = (
        value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
    return f' {name}="{escaped}"'


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def to_xml(wmd: WriterMetadata) -> str:
    """The WMD as ``SaveAsXML`` writes it: one ``WRITER_METADATA`` element on one line —
    ``IDENTIFICATION``, ``BACKUP_LOCATIONS`` (``EXCLUDE_FILES``, then each component as
    ``FILE_GROUP`` with ``FILE_LIST`` children or ``DATABASE`` with ``DATABASE_FILES`` and
    ``DATABASE_LOGFILES``), ``RESTORE_METHOD`` — with the real element and attribute names and
    values (GUIDs without braces, ``yes``/``no``, ``USER_DATA``, ``RESTORE_IF_CAN_BE_REPLACED``)."""
    parts = [
        '<WRITER_METADATA xmlns="x-schema:#VssWriterMetadataInfo" version="1.1">',
        "<IDENTIFICATION"
        + _attr("writerId", str(wmd.writer_id))
        + _attr("instanceId", str(wmd.instance_id))
        + _attr("friendlyName", wmd.name)
        + _attr("usage", wmd.usage.xml)
        + _attr("dataSource", wmd.source.xml)
        + "/>",
    ]
    if wmd.excluded or wmd.components:
        parts.append("<BACKUP_LOCATIONS>")
        for f in wmd.excluded:
            parts.append(
                "<EXCLUDE_FILES"
                + _attr("path", f.path)
                + _attr("filespec", f.filespec)
                + _attr("recursive", _yes(f.recursive))
                + "/>"
            )
        for c in wmd.components:
            parts.append(_component_xml(c))
        parts.append("</BACKUP_LOCATIONS>")
    method = _attr("method", wmd.restore_method.xml)
    if wmd.service:
        method += _attr("service", wmd.service)
    if wmd.user_procedure:
        method += _attr("userProcedure", wmd.user_procedure)
    parts.append(
        "<RESTORE_METHOD"
        + method
        + _attr("writerRestore", wmd.restore_conditions.xml)
        + _attr("rebootRequired", _yes(wmd.reboot_required))
        + "/>"
    )
    parts.append("</WRITER_METADATA>")
    return "".join(parts)


def _component_xml(c: Component) -> str:
    element = "DATABASE" if c.type is ComponentType.DATABASE else "FILE_GROUP"
    head = f"<{element}"
    if c.logical_path:
        head += _attr("logicalPath", c.logical_path)
    head += (
        _attr("componentName", c.name)
        + _attr("caption", c.caption)
        + _attr("restoreMetadata", _yes(c.restore_metadata))
        + _attr("notifyOnBackupComplete", _yes(c.notify_on_backup_complete))
        + _attr("selectable", _yes(c.selectable))
        + _attr("selectableForRestore", "no")
        + _attr("componentFlags", "0")
        + ">"
    )
    body = []
    for f in c.files:
        item = f"<{_ELEMENT[f.kind]}" + _attr("path", f.path) + _attr("filespec", f.filespec)
        if f.recursive:
            item += _attr("recursive", "yes")
        if f.alternate_path:
            item += _attr("alternatePath", f.alternate_path)
        body.append(item + _attr("filespecBackupType", str(DEFAULT_FILESPEC_BACKUP_TYPE)) + "/>")
    for d in c.dependencies:
        body.append(
            "<WRITER_DEPENDENCY"
            + _attr("writerId", str(d.writer_id))
            + _attr("logicalPath", d.logical_path)
            + _attr("componentName", d.component_name)
            + "/>"
        )
    return head + "".join(body) + f"</{element}>"


def components_of(docs: Iterable[WriterMetadata]) -> int:
    return sum(len(d.components) for d in docs)
