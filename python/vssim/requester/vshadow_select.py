"""vshadow's component selection (spec §6; ``select.cpp`` of the SDK sample), with its messages.

1. ``-wx`` items are excluded (a writer by name, ``{id}`` or instance id; a component as
   ``<writer>:<full path>``); a writer left with no component is excluded.
2. Components with an affected volume outside the shadow set are excluded.
3. Ancestors of excluded components are excluded.
4. Writers with nothing includable (no selectable or top-level component left) are excluded.
5. Components that are selectable or top level with no includable ancestor are *explicitly
   included*: these get ``AddComponent`` (and ``SetBackupSucceeded``).
6. Each ``-wi`` must name an included writer or component, else vshadow stops (exit 1).

**Model choice — the seed's reading of ``-wi``.** The SDK sample only *verifies* ``-wi`` items and
still adds every includable component on the shadowed volumes; the seed (footnote 2) describes
``-wi`` as taking the snapshot *of* the writer or component given, and its experiment backs up one
VM that way. vssim follows the seed: when ``-wi`` items are given, only they (a writer: all its
included components) are added. Without ``-wi`` the sample's behaviour is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from vssim.scenario import Csv, Scenario
from vssim.scenario.guids import braced
from vssim.vss.jobs import Selected
from vssim.vss.metadata import Component, VolumeOf, WriterMetadata, affected_volumes


class SelectionError(Exception):
    """vshadow refuses the selection; ``lines`` is what it printed."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


@dataclass
class _W:
    doc: WriterMetadata
    excluded: bool = False
    comps: dict[str, Component] = field(default_factory=dict)
    comp_excluded: dict[str, bool] = field(default_factory=dict)
    explicit: dict[str, bool] = field(default_factory=dict)


def _eq(a: str, b: str) -> bool:
    return a.lower() == b.lower()


def _in(text: str, items: Sequence[str]) -> bool:
    return any(_eq(text, i) for i in items)


def _keys(w: WriterMetadata, c: Component) -> tuple[str, str, str]:
    return (
        f"{w.name}:{c.full_path}",
        f"{braced(w.writer_id)}:{c.full_path}",
        f"{braced(w.instance_id)}:{c.full_path}",
    )


def volume_resolver(scenario: Scenario) -> VolumeOf:
    """Path → (unique volume name, mount point) for the scenario's CSVs."""
    mounts = sorted(scenario.csvs, key=lambda c: -len(c.mount_point))

    def volume_of(path: str) -> tuple[str, str] | None:
        p = path.lower()
        for c in mounts:
            if p.startswith(c.mount_point.lower() + "\\"):
                return c.volume_name, c.display_name
        return None

    return volume_of


def select_for_backup(
    scenario: Scenario,
    docs: list[WriterMetadata],
    volumes: Sequence[Csv],
    excluded: Sequence[str],
    included: Sequence[str],
) -> tuple[list[Selected], list[str]]:
    """The components vshadow adds, and the lines it prints while choosing them. Raises
    :class:`SelectionError` when a ``-wi`` item is not found or not included."""
    volume_of = volume_resolver(scenario)
    in_set = {c.volume_name.lower() for c in volumes}
    ws = [_W(d, comps={c.full_path: c for c in d.components}) for d in docs]
    out = ["Discover directly excluded components ..."]
    for w in ws:
        d = w.doc
        if (
            _in(d.name, excluded)
            or _in(braced(d.writer_id), excluded)
            or _in(braced(d.instance_id), excluded)
        ):
            w.excluded = True
            continue
        for p, c in w.comps.items():
            w.comp_excluded[p] = False
            if any(_in(k, excluded) for k in _keys(d, c)):
                out.append(
                    f"- Component '{p}' from writer '{d.name}' is explicitly excluded from backup "
                )
                w.comp_excluded[p] = True
        if not any(not x for x in w.comp_excluded.values()):
            out.append(
                f"- Excluding writer '{d.name}' since it has no selected components for restore."
            )
            w.excluded = True
    out.append("Discover components that reside outside the shadow set ...")
    for w in ws:
        if w.excluded:
            continue
        for p, c in w.comps.items():
            if w.comp_excluded[p]:
                continue
            for name, mount in affected_volumes(c, volume_of):
                if name.lower() not in in_set:
                    where = mount or name
                    out.append(
                        f"- Component '{p}' from writer '{w.doc.name}' is excluded from backup "
                        f"(it requires {where} in the shadow set)"
                    )
                    w.comp_excluded[p] = True
                    break
    out.append("Discover all excluded components ...")
    for w in ws:
        if w.excluded:
            continue
        for q, desc in w.comps.items():
            if not w.comp_excluded[q]:
                continue
            for anc in w.doc.ancestors(desc):
                p = anc.full_path
                if not w.comp_excluded[p]:
                    out.append(
                        f"- Component '{p}' from writer '{w.doc.name}' is excluded from backup "
                        f"(it has an excluded descendent: '{desc.name}')"
                    )
                    w.comp_excluded[p] = True
    out.append("Discover excluded writers ...")

    def includable(w: _W, p: str) -> bool:
        c = w.comps[p]
        return not w.comp_excluded[p] and (c.selectable or w.doc.top_level(c))

    for w in ws:
        if w.excluded:
            continue
        if not any(includable(w, p) for p in w.comps):
            out.append(f"- The writer '{w.doc.name}' is now entirely excluded from the backup:")
            out.append(
                "  (it does not contain any components that can be potentially included "
                "in the backup)"
            )
            w.excluded = True
    out.append("Discover explicitly included components ...")
    for w in ws:
        if w.excluded:
            continue
        for p, c in w.comps.items():
            w.explicit[p] = includable(w, p) and not any(
                includable(w, a.full_path) for a in w.doc.ancestors(c)
            )
    out.append("Verifying explicitly specified writers/components ...")
    wanted: set[tuple[int, str]] = set()
    for item in included:
        if ":" in item:
            out.append(f'- Verifing component "{item}" ...')
            hit = _verify_component(ws, item, out)
            wanted.add(hit)
        else:
            out.append(
                f'- Verifing that all components of writer "{item}" are included in backup ...'
            )
            wanted |= _verify_writer(ws, item, out)
    out.append("Select explicitly included components ...")
    selected: list[Selected] = []
    by_guid = {vm.guid: vm for vm in scenario.vms}
    for i, w in enumerate(ws):
        if w.excluded:
            continue
        adds = [p for p in w.comps if w.explicit.get(p) and (not included or (i, p) in wanted)]
        if not adds:
            continue
        out.append(f" * Writer '{w.doc.name}':")
        for p in adds:
            out.append(f"   - Add component {p}")
            c = w.comps[p]
            if c.vm_guid is not None:
                selected.append(Selected(w.doc, c, by_guid[c.vm_guid]))
    return selected, out


def _verify_component(ws: list[_W], item: str, out: list[str]) -> tuple[int, str]:
    for i, w in enumerate(ws):
        if w.excluded:
            continue
        for p, c in w.comps.items():
            if w.comp_excluded.get(p):
                continue
            if any(_eq(k, item) for k in _keys(w.doc, c)):
                ok = w.explicit.get(p, False) or any(
                    w.explicit.get(a.full_path, False) for a in w.doc.ancestors(c)
                )
                if ok:
                    out.append(f'  - The component "{item}" is selected')
                    return i, p
                out += [
                    f'ERROR: The component "{item}" was not included in the backup! '
                    "Aborting backup ...",
                    "- Please reveiw the component/subcomponent definitions",
                    "- Also, please verify list of volumes to be shadow copied.",
                ]
                raise SelectionError(out)
    out += [
        f'ERROR: The component "{item}" was not found in the writer components list! '
        "Aborting backup ...",
        "- Please check the syntax of the component name.",
    ]
    raise SelectionError(out)


def _verify_writer(ws: list[_W], item: str, out: list[str]) -> set[tuple[int, str]]:
    for i, w in enumerate(ws):
        if w.excluded or not w.doc.matches(item):
            continue
        for p in w.comps:
            if w.comp_excluded.get(p):
                out += [
                    f'ERROR: The writer "{w.doc.name}" has components not included in the '
                    "backup! Aborting backup ...",
                    f'- The component "{p}" was not included in the backup.',
                    "- Please reveiw the component/subcomponent definitions",
                    "- Also, please verify list of volumes to be shadow copied.",
                ]
                raise SelectionError(out)
        out.append(f'   - All components from writer "{item}" are selected')
        return {(i, p) for p in w.comps}
    out += [
        f'ERROR: The writer "{item}" was not found! Aborting backup ...',
        "- Please check the syntax of the writer name/id.",
    ]
    raise SelectionError(out)
