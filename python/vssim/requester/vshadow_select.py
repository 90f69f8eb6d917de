"""vshadow's component selection (``select.cpp``), step by step and with its messages.

For a backup (``SelectComponentsForBackup``):

1. *Directly excluded*: a writer named by ``-wx`` (name, ``{writer id}`` or ``{instance id}``,
   ignoring case) is left out silently; a component named ``<writer>:<full path>`` is excluded;
   a writer left with no component that is not excluded is left out (the sample's message
   speaks of restore even here).
2. *Outside the shadow set*: a component with an affected volume that is not in the set.
3. *Excluded ancestors*: a component with an excluded descendent.
4. *Excluded writers*: a writer with no component that could be explicitly included (a selectable
   one, or a top-level one, not excluded), or with an excluded top-level non-selectable component
   — its other components cannot go without that one.
5. *Explicitly included*: every component that could be, and has no ancestor that could be.
6. ``-wi`` items are **verified, not enforced** (the readme's "Important note"): a component must
   be explicitly included or have an explicitly included ancestor; a writer must be there with
   none of its components excluded. A failed check stops vshadow (``E_INVALIDARG``, exit 2). The
   backup still gets every explicitly included component of every writer — so ``-wi`` of one
   remote VM through the CSV VSS Writer backs up all the CSV's VMs (what vshadow does), and a
   truly selective backup of one VM is a requester's choice: ``vssim run --backup selective -wi``
   and the Python requester (:mod:`vssim.requester.backups`) make it.
7. ``AddComponent`` for each explicitly included component.

For a restore (``SelectComponentsForRestore``): step 1 on the components of the backup components
document, writers that do not support restore events left out, ``-wi`` verified, and every
remaining component selected.

Component look-ups use each writer's path index instead of the sample's pairwise scans (a CSV
writer reports thousands of components); the order of the messages is the sample's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vssim.scenario.guids import braced
from vssim.vss.metadata import Component, VolumeOf, WriterMetadata, prefixes

E_INVALIDARG = 0x80070057

#: A unique volume name → its shortest mount point ("" if none), or None if the node has no such
#: volume (``GetDisplayNameForVolumeNoThrow``).
VolumeDisplay = Callable[[str], str | None]


class SelectionError(Exception):
    """vshadow threw ``E_INVALIDARG`` while selecting; ``lines`` is everything it printed."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.hresult = E_INVALIDARG
        super().__init__("\n".join(lines))


@dataclass
class Comp:
    """``VssComponent``'s selection state."""

    c: Component
    top_level: bool
    excluded: bool = False
    explicit: bool = False

    @property
    def full_path(self) -> str:
        return self.c.full_path

    def can_be_explicitly_included(self) -> bool:
        return not self.excluded and (self.c.selectable or self.top_level)


@dataclass
class Writer:
    """``VssWriter``'s selection state."""

    doc: WriterMetadata
    comps: list[Comp] = field(default_factory=list)
    excluded: bool = False

    def __post_init__(self) -> None:
        self._by_path = {c.full_path.lower(): c for c in self.comps}
        self._descendents: dict[int, list[Comp]] = {}
        for c in self.comps:
            for p in prefixes(c.full_path):
                anc = self._by_path.get(p)
                if anc is not None:
                    self._descendents.setdefault(id(anc), []).append(c)

    @classmethod
    def of(cls, doc: WriterMetadata, components: Sequence[Component] | None = None) -> Writer:
        comps = list(doc.components if components is None else components)
        paths = {c.full_path.lower() for c in comps}
        return cls(
            doc,
            [Comp(c, not any(p in paths for p in prefixes(c.full_path))) for c in comps],
        )

    @property
    def id(self) -> str:
        return braced(self.doc.writer_id)

    @property
    def instance_id(self) -> str:
        return braced(self.doc.instance_id)

    def ancestors(self, c: Comp) -> list[Comp]:
        return [a for p in prefixes(c.full_path) if (a := self._by_path.get(p)) is not None]

    def descendents(self, c: Comp) -> list[Comp]:
        return self._descendents.get(id(c), [])

    def names(self, c: Comp) -> tuple[str, str, str]:
        return (
            f"{self.doc.name}:{c.full_path}",
            f"{self.id}:{c.full_path}",
            f"{self.instance_id}:{c.full_path}",
        )


def _in(text: str, items: Sequence[str]) -> bool:
    """``FindStringInList``: case-insensitive."""
    t = text.lower()
    return any(t == i.lower() for i in items)


@dataclass
class Selection:
    writers: list[Writer]
    lines: list[str]

    def explicitly_included(self) -> list[tuple[Writer, Comp]]:
        return [(w, c) for w in self.writers if not w.excluded for c in w.comps if c.explicit]


def _directly_excluded(writers: list[Writer], excluded: Sequence[str], out: list[str]) -> None:
    out.append("Discover directly excluded components ...")
    for w in writers:
        if _in(w.doc.name, excluded) or _in(w.id, excluded) or _in(w.instance_id, excluded):
            w.excluded = True
            continue
        for c in w.comps:
            if any(_in(n, excluded) for n in w.names(c)):
                out.append(
                    f"- Component '{c.full_path}' from writer '{w.doc.name}' is explicitly "
                    "excluded from backup "
                )
                c.excluded = True
        if all(c.excluded for c in w.comps):
            out.append(
                f"- Excluding writer '{w.doc.name}' since it has no selected components for "
                "restore."
            )
            w.excluded = True


def select_for_backup(
    docs: Sequence[WriterMetadata],
    shadow_volumes: Sequence[str],
    excluded: Sequence[str],
    included: Sequence[str],
    volume_of: VolumeOf,
    display_of: VolumeDisplay,
) -> Selection:
    """``SelectComponentsForBackup`` on the gathered writers ``docs`` for a set of the volumes
    ``shadow_volumes`` (unique names). Raises :class:`SelectionError` when a ``-wi`` check
    fails."""
    writers = [Writer.of(d) for d in docs]
    out: list[str] = []
    _directly_excluded(writers, excluded, out)
    out.append("Discover components that reside outside the shadow set ...")
    for w in writers:
        if w.excluded:
            continue
        for c in w.comps:
            if c.excluded:
                continue
            for vol, _shown in c.c.affected_volumes(volume_of):
                if _in(vol, shadow_volumes):
                    continue
                where = display_of(vol)
                if where is not None:
                    out.append(
                        f"- Component '{c.full_path}' from writer '{w.doc.name}' is excluded "
                        f"from backup (it requires {where} in the shadow set)"
                    )
                else:
                    out.append(
                        f"- Component '{c.full_path}' from writer '{w.doc.name}' is excluded "
                        "from backup"
                    )
                c.excluded = True
                break
    out.append("Discover all excluded components ...")
    for w in writers:
        if w.excluded:
            continue
        for c in w.comps:
            for d in w.descendents(c):
                if d.excluded:
                    out.append(
                        f"- Component '{c.full_path}' from writer '{w.doc.name}' is excluded "
                        f"from backup (it has an excluded descendent: '{d.c.name}')"
                    )
                    c.excluded = True
                    break
    out.append("Discover excluded writers ...")
    for w in writers:
        if w.excluded:
            continue
        if not any(c.can_be_explicitly_included() for c in w.comps):
            w.excluded = True
            out.append(f"- The writer '{w.doc.name}' is now entirely excluded from the backup:")
            out.append(
                "  (it does not contain any components that can be potentially included in the "
                "backup)"
            )
            continue
        for c in w.comps:
            if c.top_level and not c.c.selectable and c.excluded:
                out.append(f"- The writer '{w.doc.name}' is now entirely excluded from the backup:")
                out.append(
                    f"  (the top-level non-selectable component '{c.full_path}' is an excluded "
                    "component)"
                )
                w.excluded = True
                break
    out.append("Discover explicitly included components ...")
    for w in writers:
        if w.excluded:
            continue
        for c in w.comps:
            if c.can_be_explicitly_included():
                c.explicit = not any(a.can_be_explicitly_included() for a in w.ancestors(c))
    _verify(writers, included, out, during_restore=False)
    out.append("Select explicitly included components ...")
    for w in writers:
        if w.excluded:
            continue
        out.append(f" * Writer '{w.doc.name}':")
        out += [f"   - Add component {c.full_path}" for c in w.comps if c.explicit]
    return Selection(writers, out)


def select_for_restore(
    writers: list[Writer], excluded: Sequence[str], included: Sequence[str]
) -> Selection:
    """``SelectComponentsForRestore`` on the writers of a backup components document that are
    present on the node (each with the document's components)."""
    out: list[str] = []
    _directly_excluded(writers, excluded, out)
    out.append("Exclude writers that do not support restore events ...")
    for w in writers:
        if w.excluded:
            continue
        if not w.doc.supports_restore_events:
            out.append(
                f"- Excluding writer '{w.doc.name}' since it does not support restore events."
            )
            w.excluded = True
    _verify(writers, included, out, during_restore=True)
    out.append("Select components for restore...")
    for w in writers:
        if w.excluded:
            continue
        out.append(f" * Writer '{w.doc.name}':")
        out += [f"   - Select component {c.full_path}" for c in w.comps if not c.excluded]
    return Selection(writers, out)


_REVIEW = [
    "- Please reveiw the component/subcomponent definitions",
    "- Also, please verify list of volumes to be shadow copied.",
]


def _verify(
    writers: list[Writer], included: Sequence[str], out: list[str], during_restore: bool
) -> None:
    out.append("Verifying explicitly specified writers/components ...")
    for item in included:
        if ":" in item:
            _verify_component(writers, item, out, during_restore)
        else:
            _verify_writer(writers, item, out)


def _verify_component(
    writers: list[Writer], item: str, out: list[str], during_restore: bool
) -> None:
    out.append(f'- Verifing component "{item}" ...')
    key = item.lower()
    for w in writers:
        if w.excluded:
            continue
        for c in w.comps:
            if c.excluded or key not in (n.lower() for n in w.names(c)):
                continue
            if during_restore or c.explicit or any(a.explicit for a in w.ancestors(c)):
                out.append(f'  - The component "{item}" is selected')
                return
            out.append(
                f'ERROR: The component "{item}" was not included in the backup! Aborting backup ...'
            )
            raise SelectionError(out + _REVIEW)
    out.append(
        f'ERROR: The component "{item}" was not found in the writer components list! '
        "Aborting backup ..."
    )
    raise SelectionError([*out, "- Please check the syntax of the component name."])


def _verify_writer(writers: list[Writer], item: str, out: list[str]) -> None:
    out.append(f'- Verifing that all components of writer "{item}" are included in backup ...')
    key = item.lower()
    for w in writers:
        # An excluded writer is skipped before it is compared: it is reported "not found".
        if w.excluded or key not in (w.doc.name.lower(), w.id, w.instance_id):
            continue
        for c in w.comps:
            if c.excluded:
                out += [
                    f'ERROR: The writer "{w.doc.name}" has components not included in the '
                    "backup! Aborting backup ...",
                    f'- The component "{c.full_path}" was not included in the backup.',
                ]
                raise SelectionError(out + _REVIEW)
        out.append(f'   - All components from writer "{item}" are selected')
        return
    out.append(f'ERROR: The writer "{item}" was not found! Aborting backup ...')
    raise SelectionError([*out, "- Please check the syntax of the writer name/id."])
