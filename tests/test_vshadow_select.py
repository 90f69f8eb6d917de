"""vshadow's component selection rules (select.cpp), on small writers made for the purpose."""

from __future__ import annotations

import uuid

import pytest

from vssim.requester.vshadow_select import Selection, SelectionError, select_for_backup
from vssim.vss.enums import RestoreMethod, WriterRestore
from vssim.vss.metadata import Component, FileDescriptor, WriterMetadata

ON = "\\\\?\\Volume{11111111-1111-1111-1111-111111111111}\\"
OFF = "\\\\?\\Volume{22222222-2222-2222-2222-222222222222}\\"


def volume_of(path: str) -> tuple[str, str | None]:
    return (ON, "E:\\") if path.startswith("E:") else (OFF, "F:\\")


def display_of(name: str) -> str | None:
    return {ON: "E:\\", OFF: "F:\\"}.get(name)


def comp(name: str, logical: str = "", selectable: bool = True, on: bool = True) -> Component:
    drive = "E:" if on else "F:"
    return Component(
        name=name,
        logical_path=logical,
        selectable=selectable,
        files=(FileDescriptor(f"{drive}\\{name}", "*"),),
    )


def writer(name: str, *components: Component) -> WriterMetadata:
    return WriterMetadata(
        name,
        uuid.uuid5(uuid.NAMESPACE_URL, name),
        uuid.uuid5(uuid.NAMESPACE_URL, name + "/instance"),
        restore_method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
        restore_conditions=WriterRestore.ALWAYS,
        components=components,
    )


def select(
    docs: list[WriterMetadata], exclude: tuple[str, ...] = (), include: tuple[str, ...] = ()
) -> Selection:
    return select_for_backup(docs, [ON], exclude, include, volume_of, display_of)


def test_a_component_off_the_set_excludes_its_ancestors_and_the_root_is_added() -> None:
    w = writer(
        "W",
        comp("db"),
        comp("log", "db", selectable=False, on=False),
        comp("other"),
        comp("child", "other", selectable=False),
    )
    sel = select([w])
    assert (
        "- Component '\\db\\log' from writer 'W' is excluded from backup (it requires F:\\ in the "
        "shadow set)"
    ) in sel.lines
    assert (
        "- Component '\\db' from writer 'W' is excluded from backup (it has an excluded "
        "descendent: 'log')"
    ) in sel.lines
    # \other is explicitly included; its child only implicitly.
    assert [c.full_path for _, c in sel.explicitly_included()] == ["\\other"]
    sel = select([w], include=("W:\\other\\child",))
    assert '  - The component "W:\\other\\child" is selected' in sel.lines
    with pytest.raises(SelectionError) as e:
        select([w], include=("W:\\db",))
    assert e.value.lines[-2].startswith('ERROR: The component "W:\\db" was not found')


def test_writer_items_by_name_id_or_instance_any_case() -> None:
    w = writer("Some Writer", comp("a"))
    for item in (
        "some writer",
        "{" + str(w.writer_id).upper() + "}",
        "{" + str(w.instance_id) + "}",
    ):
        sel = select([w], include=(item,))
        assert f'   - All components from writer "{item}" are selected' in sel.lines
    # Without braces it is not an id vshadow knows.
    with pytest.raises(SelectionError):
        select([w], include=(str(w.writer_id),))


def test_an_excluded_writer_is_not_found_by_wi() -> None:
    w = writer("W", comp("a"))
    with pytest.raises(SelectionError) as e:
        select([w], exclude=("W",), include=("W",))
    assert 'ERROR: The writer "W" was not found! Aborting backup ...' in e.value.lines


def test_top_level_non_selectable_excluded_component_takes_its_writer() -> None:
    w = writer("W", comp("free"), comp("pinned", selectable=False, on=False))
    sel = select([w])
    i = sel.lines.index("- The writer 'W' is now entirely excluded from the backup:")
    assert sel.lines[i + 1] == (
        "  (the top-level non-selectable component '\\pinned' is an excluded component)"
    )
    assert sel.explicitly_included() == []
    nothing = writer("Empty")
    sel = select([nothing])
    assert (
        "- Excluding writer 'Empty' since it has no selected components for restore." in sel.lines
    )
