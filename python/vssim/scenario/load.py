"""Load and validate a scenario file (TOML, read with :mod:`tomllib`).

Layout::

    [cluster]   name, os = "ws2008r2" | "ws2012", seed, start (TOML datetime),
                change_tracking = "filter" | "none" (the backup product's; default "filter")
    [links]     nic_bandwidth, csv_bandwidth, backup_target_bandwidth   ("10 Gbit/s", "400 MB/s")
    [[nodes]]   name, nic_bandwidth?
    [[csvs]]    name, mount_point = 'C:\\ClusterStorage\\VolumeN', coordinator, size,
                diff_area_limit?, provider = "system" | "hardware", volume_guid?, bandwidth?,
                diff_area_volume? (where volsnap keeps the diff area: absent, or the CSV's own
                mount point, keeps it on the CSV and charges its free space; another volume's
                path, e.g. 'D:\\', puts it off the CSV — not another CSV of the scenario)
    [[vms]]     name, node, csv, guid?, integration_services = true, running = true,
                disks = [{ file?, size, allocated, type = "dynamic" | "fixed" |
                "differencing" }] (a fixed disk is allocated whole),
                workload = { class?, write_iops, … }
    [workloads] mix = { server = 0.5, file = 0.2, … } (classes by share, for the VMs whose
                workload names none); [workloads.<class>] overrides of a class's keys
    [target]    compression = 1.0 (bytes read per byte stored: 2.0 is Veeam's typical 2:1)
    [generate]  nodes, vms, csvs, mix, … (see :mod:`vssim.scenario.generate`)
    [[faults]]  kind, node?, writer?, phase?, hresult?, seconds?
    [plan]      read by ``vssim plan`` only (:mod:`vssim.report.strategies`); ignored here

A VM's workload is its class's keys (:mod:`.workload_classes`; default ``server``), then the
scenario's overrides of that class, then its own keys. ``daily_change`` sizes the hot spot; an
explicit ``hot_fraction`` (without ``daily_change``) or another locality turns it off (an explicit
``daily_change`` with another locality is an error). ``diurnal = true`` is the default daily
curve: ±50 % around the mean, peaking at 14:00 of the scenario's clock (model choice).

Every problem raises :class:`~vssim.errors.ScenarioError` naming the file, the key path
(``vms[2].node``), the bad value and what was expected. Unknown keys are errors too (typos would
otherwise be silently ignored). Ids not given are derived from the seed (:mod:`.guids`). What
loads but would worry an administrator — a CSV overcommitted by its VMs' virtual sizes, or
starting below Hyper-V's free-space levels — is a :class:`~vssim.scenario.model.ScenarioWarning`
in ``Scenario.warnings`` (:mod:`.capacity`).
"""

from __future__ import annotations

import datetime as dt
import math
import ntpath
import re
import tomllib
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vssim.errors import ScenarioError
from vssim.hresults import HResult
from vssim.scenario.capacity import capacity_warnings
from vssim.scenario.generate import GENERATE_KEYS, generate
from vssim.scenario.guids import derive_guid
from vssim.scenario.limits import (
    CSV_SIZE_SOURCE,
    DISK_SIZE_SOURCE,
    MAX_BANDWIDTH,
    MAX_CSV_SIZE,
    MAX_DISK_SIZE,
    MAX_PERIOD_S,
    MAX_STEP_S,
    MAX_VM_MEMORY,
    MIN_BANDWIDTH,
    VM_MEMORY_SOURCE,
)
from vssim.scenario.model import (
    MAX_NODES,
    MAX_VMS_PER_CLUSTER,
    MAX_VMS_PER_NODE,
    MIN_DIFF_AREA,
    ChangeTracking,
    Csv,
    Disk,
    DiskType,
    Fault,
    FaultKind,
    Links,
    Node,
    OsProfile,
    ProviderKind,
    Scenario,
    Target,
    Vm,
    Workload,
)
from vssim.scenario.workload_classes import CLASSES, DEFAULT_CLASS, assign
from vssim.units import parse_rate, parse_size, size_text

T = TypeVar("T")

MOUNT_POINT = re.compile(r"^C:\\ClusterStorage\\Volume[0-9]*$", re.IGNORECASE)
#: Phases a fault may name (writer events, provider calls, requester steps).
FAULT_PHASES = (
    "identify",
    "prepare_backup",
    "prepare_snapshot",
    "freeze",
    "thaw",
    "post_snapshot",
    "backup_complete",
    "begin_prepare",
    "end_prepare",
    "pre_commit",
    "flush",
    "commit",
    "post_commit",
    "pre_final_commit",
    "post_final_commit",
    "copy",
)
DEFAULT_LINKS = {
    "nic_bandwidth": "10 Gbit/s",
    "csv_bandwidth": "800 MB/s",
    "backup_target_bandwidth": "400 MB/s",
}


class _Reader:
    """Typed access to the parsed TOML, raising ScenarioError with the key path."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, value: object, expected: str) -> ScenarioError:
        return ScenarioError(self.file, key, value, expected)

    def table(self, parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(path, value, "a table")
        return value

    def array(self, parent: dict[str, Any], key: str, path: str) -> list[dict[str, Any]]:
        value = parent.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(path, value, "an array of tables")
        return value

    def known(self, table: dict[str, Any], path: str, keys: tuple[str, ...]) -> None:
        for k in table:
            if k not in keys:
                where = f"{path}.{k}" if path else k
                raise self.fail(where, table[k], f"no such key; known keys: {', '.join(keys)}")

    def get(
        self,
        table: dict[str, Any],
        key: str,
        path: str,
        conv: Callable[[object], T | None],
        expected: str,
        default: T | None = None,
    ) -> T:
        where = f"{path}.{key}" if path else key
        if key not in table:
            if default is None:
                raise self.fail(where, None, f"{expected} (the key is required)")
            return default
        value = conv(table[key])
        if value is None:
            raise self.fail(where, table[key], expected)
        return value


def _str(v: object) -> str | None:
    return v if isinstance(v, str) and v else None


def _bool(v: object) -> bool | None:
    return v if isinstance(v, bool) else None


def _int(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _nonneg_float(v: object) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
        f = float(v) if v < 1e300 else math.inf
        return f if math.isfinite(f) else None
    return None


def _seconds(limit: float) -> Callable[[object], float | None]:
    """Seconds from 0 to ``limit``."""
    return lambda v: _le(_nonneg_float(v), limit)


def _size_in(least: int, most: int) -> Callable[[object], int | None]:
    def inner(v: object) -> int | None:
        n = parse_size(v)
        return n if n is not None and least <= n <= most else None

    return inner


def _size_range(least: int, most: int, source: str, example: str) -> str:
    low = "0" if least == 0 else "1 byte"
    return f"a size from {low} to {size_text(most)} ({source}), e.g. {example!r}"


#: A CSV's size, a VM disk's, bytes a guest writes into its disk, a guest's memory.
_CSV_SIZE = (_size_in(1, MAX_CSV_SIZE), _size_range(1, MAX_CSV_SIZE, CSV_SIZE_SOURCE, "2 TiB"))
_DISK_SIZE = (
    _size_in(1, MAX_DISK_SIZE),
    _size_range(1, MAX_DISK_SIZE, DISK_SIZE_SOURCE, "127 GiB"),
)
_DISK_BYTES = (
    _size_in(0, MAX_DISK_SIZE),
    _size_range(0, MAX_DISK_SIZE, DISK_SIZE_SOURCE, "64 MiB"),
)
_MEMORY = (_size_in(0, MAX_VM_MEMORY), _size_range(0, MAX_VM_MEMORY, VM_MEMORY_SOURCE, "4 GiB"))
_BANDWIDTH = "a bandwidth from 1 Mbit/s to 1 Tbit/s, e.g. '400 MB/s'"


def _guid(v: object) -> uuid.UUID | None:
    if not isinstance(v, str):
        return None
    try:
        return uuid.UUID(v.strip("{}"))
    except ValueError:
        return None


def _positive_rate(v: object) -> float | None:
    r = parse_rate(v)
    return r if r is not None and MIN_BANDWIDTH <= r <= MAX_BANDWIDTH else None


def _datetime(v: object) -> dt.datetime | None:
    return v if isinstance(v, dt.datetime) else None


def load_scenario(path: str | Path) -> Scenario:
    """Read, expand (``[generate]``) and validate the scenario file at ``path``."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(p), "(file)", str(exc), "valid TOML") from None
    return parse_scenario(raw, p)


def parse_scenario(raw: dict[str, Any], path: Path) -> Scenario:
    """Build a :class:`Scenario` from parsed TOML (``path`` names it in errors)."""
    r = _Reader(str(path))
    r.known(
        raw,
        "",
        (
            "cluster",
            "links",
            "target",
            "nodes",
            "csvs",
            "vms",
            "workloads",
            "generate",
            "faults",
            "plan",
        ),
    )
    cluster = r.table(raw, "cluster", "cluster")
    r.known(cluster, "cluster", ("name", "os", "seed", "start", "change_tracking"))
    name = r.get(cluster, "name", "cluster", _str, "a non-empty string", "cluster")
    os_value = cluster.get("os", "ws2012")
    if os_value not in tuple(o.value for o in OsProfile):  # (a list is unhashable)
        raise r.fail("cluster.os", os_value, "one of 'ws2008r2', 'ws2012'")
    os = OsProfile(os_value)
    seed = r.get(cluster, "seed", "cluster", _int, "an integer", 0)
    tracking = cluster.get("change_tracking", ChangeTracking.FILTER.value)
    if tracking not in {c.value for c in ChangeTracking}:
        raise r.fail("cluster.change_tracking", tracking, "'filter' or 'none'")
    start = r.get(
        cluster, "start", "cluster", _datetime, "a TOML datetime", dt.datetime(2012, 6, 1, 9, 0)
    )

    links_t = r.table(raw, "links", "links")
    r.known(links_t, "links", tuple(DEFAULT_LINKS))
    lk = {
        k: r.get(links_t, k, "links", _positive_rate, _BANDWIDTH, parse_rate(d))
        for k, d in DEFAULT_LINKS.items()
    }
    links = Links(**lk)
    target_t = r.table(raw, "target", "target")
    r.known(target_t, "target", ("compression",))
    target = Target(
        compression=r.get(
            target_t,
            "compression",
            "target",
            lambda v: _le(_nonneg_float(v), float("inf")) if _ge_one(v) else None,
            "a ratio >= 1 (bytes read per byte stored; 2.0 for 2:1)",
            Target().compression,
        )
    )

    raw_nodes = r.array(raw, "nodes", "nodes")
    raw_csvs = r.array(raw, "csvs", "csvs")
    raw_vms = r.array(raw, "vms", "vms")
    catalog = _catalog(r, r.table(raw, "workloads", "workloads"), start)
    written = len(raw_vms)
    gen = r.table(raw, "generate", "generate")
    if gen:
        r.known(gen, "generate", GENERATE_KEYS)
        raw_nodes, raw_csvs, raw_vms = generate(
            gen, seed, raw_nodes, raw_csvs, raw_vms, r.fail, catalog.mix
        )
    raw_vms = catalog.assign(raw_vms[:written], seed) + raw_vms[written:]

    nodes = _nodes(r, raw_nodes, links)
    node_names = {n.name.lower(): n.name for n in nodes}
    csvs = _csvs(r, raw_csvs, node_names, seed, links)
    vms = _vms(r, raw_vms, node_names, {c.name: c for c in csvs}, seed, written, catalog)
    faults = _faults(r, r.array(raw, "faults", "faults"), node_names, vms)
    _check_ids(r, csvs, vms)
    _check_disk_paths(r, csvs, vms)
    warnings = capacity_warnings(str(path), csvs, vms)
    return Scenario(
        path=path,
        name=name,
        seed=seed,
        os=os,
        start=start,
        nodes=tuple(nodes),
        csvs=tuple(csvs),
        vms=tuple(vms),
        links=links,
        faults=tuple(faults),
        change_tracking=ChangeTracking(tracking),
        target=target,
        warnings=tuple(warnings),
    )


def _nodes(r: _Reader, raw: list[dict[str, Any]], links: Links) -> list[Node]:
    if not raw:
        raise r.fail("nodes", raw, "at least one node")
    if len(raw) > MAX_NODES:
        raise r.fail("nodes", f"{len(raw)} nodes", f"at most {MAX_NODES} nodes per cluster")
    out: list[Node] = []
    seen: set[str] = set()
    for i, t in enumerate(raw):
        path = f"nodes[{i}]"
        r.known(t, path, ("name", "nic_bandwidth"))
        name = r.get(t, "name", path, _str, "a non-empty string")
        if name.lower() in seen:
            raise r.fail(f"{path}.name", name, "a node name not used before")
        seen.add(name.lower())
        bw = r.get(t, "nic_bandwidth", path, _positive_rate, _BANDWIDTH, links.nic_bandwidth)
        out.append(Node(name=name, nic_bandwidth=bw))
    return out


def _csvs(
    r: _Reader, raw: list[dict[str, Any]], nodes: dict[str, str], seed: int, links: Links
) -> list[Csv]:
    if not raw:
        raise r.fail("csvs", raw, "at least one CSV")
    out: list[Csv] = []
    names: set[str] = set()
    mounts: set[str] = set()
    keys = (
        "name",
        "mount_point",
        "volume_guid",
        "coordinator",
        "size",
        "diff_area_limit",
        "provider",
        "bandwidth",
        "diff_area_volume",
    )
    for i, t in enumerate(raw):
        path = f"csvs[{i}]"
        r.known(t, path, keys)
        name = r.get(t, "name", path, _str, "a non-empty string")
        if name in names:
            raise r.fail(f"{path}.name", name, "a CSV name not used before")
        names.add(name)
        mount = r.get(t, "mount_point", path, _str, "a path like C:\\ClusterStorage\\Volume1")
        mount = mount.rstrip("\\")
        if not MOUNT_POINT.match(mount):
            raise r.fail(f"{path}.mount_point", mount, "C:\\ClusterStorage\\Volume<N>")
        if mount.lower() in mounts:
            raise r.fail(f"{path}.mount_point", mount, "a mount point not used by another CSV")
        mounts.add(mount.lower())
        coord = r.get(t, "coordinator", path, _str, "a node name")
        if coord.lower() not in nodes:
            raise r.fail(f"{path}.coordinator", coord, f"one of the nodes ({_few(nodes.values())})")
        size = r.get(t, "size", path, *_CSV_SIZE)
        limit: int | None = None
        if "diff_area_limit" in t:
            limit = r.get(t, "diff_area_limit", path, parse_size, "a size ('100 GiB')")
            if not MIN_DIFF_AREA <= limit <= MAX_CSV_SIZE:
                raise r.fail(
                    f"{path}.diff_area_limit",
                    t["diff_area_limit"],
                    f"at least 320 MiB (volsnap's least) and at most {size_text(MAX_CSV_SIZE)} "
                    f"({CSV_SIZE_SOURCE})",
                )
        prov = t.get("provider", "system")
        if prov not in tuple(p.value for p in ProviderKind):
            raise r.fail(f"{path}.provider", prov, "'system' or 'hardware'")
        guid = r.get(t, "volume_guid", path, _guid, "a GUID", derive_guid(seed, "csv", name))
        bw = r.get(t, "bandwidth", path, _positive_rate, _BANDWIDTH, links.csv_bandwidth)
        diff_at: str | None = None
        if "diff_area_volume" in t:
            diff_at = r.get(t, "diff_area_volume", path, _str, "a volume path ('D:\\')")
            ours = {mount.lower(), f"\\\\?\\volume{{{guid}}}".lower()}
            if diff_at.rstrip("\\").lower() in ours:
                diff_at = None  # its own volume: the default
        out.append(
            Csv(
                name,
                mount,
                guid,
                nodes[coord.lower()],
                size,
                limit,
                ProviderKind(prov),
                bw,
                diff_at,
            )
        )
    mounts_of = {c.mount_point.lower(): c.name for c in out}
    for i, c in enumerate(out):
        other = None if c.diff_area_volume is None else c.diff_area_volume.rstrip("\\").lower()
        if other is not None and other in mounts_of:
            raise r.fail(
                f"csvs[{i}].diff_area_volume",
                c.diff_area_volume,
                f"the CSV's own mount point or a volume outside the cluster's CSVs (a diff area "
                f"on {mounts_of[other]!r}, another CSV, is not modelled)",
            )
    return out


#: Keys of a workload table besides the stream's.
WORKLOAD_KEYS = (
    "class",
    "write_iops",
    "guest_vss_seconds",
    "auto_recovery_bytes",
    "memory",
    "guest_snapshot_bytes",
    "growth_per_day",
    "daily_change",
    "diurnal",
)
#: ``diurnal = true``: the amplitude and the hour of the peak (model choice: an office day).
DIURNAL_DEFAULT_AMPLITUDE = 0.5
DIURNAL_DEFAULT_PEAK_HOUR = 14


class _Catalog:
    """The scenario's ``[workloads]``: class shares and its overrides of the classes' keys."""

    def __init__(
        self,
        mix: dict[str, float] | None,
        overrides: dict[str, dict[str, Any]],
        start: dt.datetime,
    ) -> None:
        self.mix = mix
        self.overrides = overrides
        self.start = start

    def assign(self, raw_vms: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        """``raw_vms`` with a class given by the mix to each whose workload names none."""
        if self.mix is None:
            return raw_vms
        open_ = [i for i, v in enumerate(raw_vms) if "class" not in (v.get("workload") or {})]
        classes = assign(len(open_), self.mix, seed)
        out = list(raw_vms)
        for i, cls in zip(open_, classes, strict=True):
            wl = out[i].get("workload")
            out[i] = {**out[i], "workload": {**(wl if isinstance(wl, dict) else {}), "class": cls}}
        return out


def _mix(r: _Reader, mix: object, path: str) -> dict[str, float]:
    """A table of class shares (summing to 1), checked."""
    names = ", ".join(CLASSES)
    if not isinstance(mix, dict) or not mix:
        raise r.fail(path, mix, f"a table of class shares ({names})")
    out: dict[str, float] = {}
    for k, v in mix.items():
        if k not in CLASSES:
            raise r.fail(f"{path}.{k}", v, f"a workload class ({names})")
        share = _nonneg_float(v)
        if share is None or share > 1:
            raise r.fail(f"{path}.{k}", v, "a share between 0 and 1")
        out[k] = share
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise r.fail(path, mix, f"shares summing to 1 (they sum to {sum(out.values()):g})")
    return out


def _catalog(r: _Reader, t: dict[str, Any], start: dt.datetime) -> _Catalog:
    mix = _mix(r, t["mix"], "workloads.mix") if "mix" in t else None
    overrides: dict[str, dict[str, Any]] = {}
    for k, v in t.items():
        if k == "mix":
            continue
        if k not in CLASSES:
            raise r.fail(f"workloads.{k}", v, f"mix, or a workload class ({', '.join(CLASSES)})")
        if not isinstance(v, dict) or "class" in v:
            raise r.fail(f"workloads.{k}", v, "a table of workload keys (without 'class')")
        overrides[k] = v
    catalog = _Catalog(mix, overrides, start)
    for k in overrides:
        _workload(r, {"class": k}, f"workloads.{k}", catalog)  # its keys, checked once
    return catalog


def _workload(r: _Reader, t: object, path: str, catalog: _Catalog) -> Workload:
    """A VM's workload: its class's keys, the scenario's overrides of them, its own keys."""
    if t is None:
        t = {}
    if not isinstance(t, dict):
        raise r.fail(path, t, "a table")
    r.known(t, path, (*WORKLOAD_KEYS, *STREAM_KEYS))
    cls = t.get("class", DEFAULT_CLASS)
    if cls not in CLASSES:
        raise r.fail(f"{path}.class", cls, f"a workload class ({', '.join(CLASSES)})")
    own = {k: v for k, v in t.items() if k != "class"}
    override = catalog.overrides.get(cls, {})
    # The path a key's error names: the table the key came from.
    where = {k: f"workloads.{cls}" for k in override} | {k: path for k in own}
    merged = {**CLASSES[cls].keys, **override, **own}
    explicit = set(override) | set(own)
    for layer in (override, own):
        if "sizes" in layer and "weights" not in layer:
            merged.pop("weights", None)  # new sizes, equal weights (not a class's others)
    d = Workload()

    def get(key: str, conv: Callable[[object], T | None], expected: str, default: T) -> T:
        return r.get(merged, key, where.get(key, f"classes.{cls}"), conv, expected, default)

    stream = _stream(r, merged, where, cls, d)
    daily: float | None = d.daily_change
    if "daily_change" in merged:
        daily = get("daily_change", _fraction(False, False), "a fraction in (0, 1)", 0.5)
    if "hot_fraction" in explicit and "daily_change" not in explicit:
        daily = None  # the hot spot's size as given
    if stream["locality"] != "hotspot":
        if "daily_change" in explicit:
            raise r.fail(
                f"{where['daily_change']}.daily_change",
                merged["daily_change"],
                f"no daily_change with locality {stream['locality']!r} (it sizes a hot spot)",
            )
        daily = None
    diurnal = get("diurnal", _bool, "true or false", False)
    if diurnal and "diurnal_amplitude" not in explicit:
        stream["diurnal_amplitude"] = DIURNAL_DEFAULT_AMPLITUDE
        if "diurnal_peak_s" not in explicit:
            t0 = catalog.start
            midnight = t0.replace(hour=0, minute=0, second=0, microsecond=0)
            peak = midnight + dt.timedelta(hours=DIURNAL_DEFAULT_PEAK_HOUR)
            stream["diurnal_peak_s"] = (peak - t0).total_seconds() % 86400.0
    return Workload(
        workload_class=cls,
        write_iops=get("write_iops", _nonneg_float, "a number >= 0", d.write_iops),
        guest_vss_seconds=get(
            "guest_vss_seconds",
            _seconds(MAX_STEP_S),
            f"seconds from 0 to {MAX_STEP_S:,.0f} (a day)",
            d.guest_vss_seconds,
        ),
        auto_recovery_bytes=get("auto_recovery_bytes", *_DISK_BYTES, d.auto_recovery_bytes),
        memory_bytes=get("memory", *_MEMORY, d.memory_bytes),
        guest_snapshot_bytes=get("guest_snapshot_bytes", *_DISK_BYTES, d.guest_snapshot_bytes),
        growth_per_day=get(
            "growth_per_day", _fraction(True), "a fraction in [0, 1]", d.growth_per_day
        ),
        daily_change=daily,
        **stream,
    )


#: Workload keys that shape the engine's I/O stream (modelled runs).
STREAM_KEYS = (
    "read_fraction",
    "locality",
    "hot_fraction",
    "hot_share",
    "theta",
    "region_fraction",
    "sizes",
    "weights",
    "diurnal_amplitude",
    "diurnal_period_s",
    "diurnal_peak_s",
)
LOCALITIES = ("uniform", "hotspot", "zipf", "log")


def _fraction(zero_ok: bool, one_ok: bool = True) -> Callable[[object], float | None]:
    def inner(v: object) -> float | None:
        f = _nonneg_float(v)
        if f is None or f > 1 or (f == 0 and not zero_ok) or (f == 1 and not one_ok):
            return None
        return f

    return inner


def _stream(
    r: _Reader, t: dict[str, Any], where: dict[str, str], cls: str, d: Workload
) -> dict[str, Any]:
    """The I/O-stream keys of a merged workload table, validated as the engine will check them
    (``where``: the table each key came from, for errors; a class's own keys are valid)."""

    def at(key: str) -> str:
        return f"{where.get(key, f'classes.{cls}')}.{key}"

    locality = t.get("locality", d.locality)
    if locality not in LOCALITIES:
        raise r.fail(at("locality"), locality, f"one of {', '.join(LOCALITIES)}")
    sizes = t.get("sizes", list(d.sizes))
    if not isinstance(sizes, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 and s % 512 == 0 for s in sizes
    ):
        raise r.fail(at("sizes"), sizes, "a list of request sizes, positive multiples of 512")
    weights = t.get("weights", [1.0] * len(sizes))
    if (
        not isinstance(weights, list)
        or len(weights) != len(sizes)
        or not all(_nonneg_float(w) is not None for w in weights)
        or (weights and sum(weights) <= 0)
    ):
        raise r.fail(at("weights"), weights, f"{len(sizes)} weights >= 0 (one per size), sum > 0")
    frac = "a fraction in (0, 1]"

    def get(key: str, conv: Callable[[object], T | None], expected: str, default: T) -> T:
        return r.get(t, key, at(key).rsplit(".", 1)[0], conv, expected, default)

    return {
        "read_fraction": get(
            "read_fraction",
            _fraction(True, False),
            "a fraction in [0, 1)",
            d.read_fraction,
        ),
        "locality": locality,
        "hot_fraction": get("hot_fraction", _fraction(False), frac, d.hot_fraction),
        "hot_share": get("hot_share", _fraction(True), "a fraction in [0, 1]", d.hot_share),
        "theta": get("theta", lambda v: _le(_nonneg_float(v), 5.0), "0 to 5", d.theta),
        "region_fraction": get("region_fraction", _fraction(False), frac, d.region_fraction),
        "sizes": tuple(sizes),
        "weights": tuple(float(w) for w in weights),
        "diurnal_amplitude": get(
            "diurnal_amplitude", _fraction(True), "0 to 1", d.diurnal_amplitude
        ),
        "diurnal_period_s": get(
            "diurnal_period_s",
            lambda v: _le(_nonneg_float(v), MAX_PERIOD_S, True),
            f"a period > 0 seconds, at most {MAX_PERIOD_S:,.0f} (a week)",
            d.diurnal_period_s,
        ),
        "diurnal_peak_s": get(
            "diurnal_peak_s",
            _seconds(MAX_PERIOD_S),
            f"seconds from 0 to {MAX_PERIOD_S:,.0f} (a week)",
            d.diurnal_peak_s,
        ),
    }


def _ge_one(v: object) -> bool:
    f = _nonneg_float(v)
    return f is not None and f >= 1.0


def _le(v: float | None, limit: float, positive: bool = False) -> float | None:
    if v is None or v > limit or (positive and v == 0):
        return None
    return v


def _vms(
    r: _Reader,
    raw: list[dict[str, Any]],
    nodes: dict[str, str],
    csvs: dict[str, Csv],
    seed: int,
    written: int,
    catalog: _Catalog,
) -> list[Vm]:
    out: list[Vm] = []
    names: set[str] = set()
    per_node: Counter[str] = Counter()
    per_csv: Counter[str] = Counter()
    if len(raw) > MAX_VMS_PER_CLUSTER:
        raise r.fail("vms", f"{len(raw)} VMs", f"at most {MAX_VMS_PER_CLUSTER} VMs per cluster")
    keys = ("name", "guid", "node", "csv", "integration_services", "running", "disks", "workload")
    for i, t in enumerate(raw):
        # A VM [generate] made is named by where its values came from.
        path = f"vms[{i}]" if i < written else f"generate (vms[{i}])"
        r.known(t, path, keys)
        name = r.get(t, "name", path, _str, "a non-empty string")
        if name.lower() in names:
            raise r.fail(f"{path}.name", name, "a VM name not used before")
        names.add(name.lower())
        node = r.get(t, "node", path, _str, "a node name")
        if node.lower() not in nodes:
            raise r.fail(f"{path}.node", node, f"one of the nodes ({_few(nodes.values())})")
        node = nodes[node.lower()]
        per_node[node] += 1
        if per_node[node] > MAX_VMS_PER_NODE:
            raise r.fail(f"{path}.node", node, f"a node with fewer than {MAX_VMS_PER_NODE} VMs")
        csv = r.get(t, "csv", path, _str, "a CSV name")
        if csv not in csvs:
            raise r.fail(f"{path}.csv", csv, f"one of the CSVs ({_few(csvs)})")
        raw_disks = t.get("disks", [{"size": "40 GiB", "allocated": "10 GiB"}])
        if not isinstance(raw_disks, list) or not raw_disks:
            raise r.fail(f"{path}.disks", raw_disks, "a non-empty array of disks")
        disks: list[Disk] = []
        for j, dt_ in enumerate(raw_disks):
            dpath = f"{path}.disks[{j}]"
            if not isinstance(dt_, dict):
                raise r.fail(dpath, dt_, "a table { size, allocated, type }")
            r.known(dt_, dpath, ("file", "size", "allocated", "type"))
            default_file = f"{name}.vhdx" if j == 0 else f"{name}_{j}.vhdx"
            file = r.get(
                dt_,
                "file",
                dpath,
                _file_name,
                'a file name (at most 255 characters, none of \\ / : * ? " < > |)',
                default_file,
            )
            size = r.get(dt_, "size", dpath, *_DISK_SIZE)
            kind = dt_.get("type", DiskType.DYNAMIC.value)
            if kind not in tuple(k.value for k in DiskType):
                raise r.fail(f"{dpath}.type", kind, "'dynamic', 'fixed' or 'differencing'")
            alloc = r.get(dt_, "allocated", dpath, parse_size, "a size", size)
            if alloc > size or alloc < 0:
                raise r.fail(f"{dpath}.allocated", dt_.get("allocated"), f"0 .. size ({size})")
            if kind == DiskType.FIXED and alloc != size:
                raise r.fail(
                    f"{dpath}.allocated",
                    dt_.get("allocated"),
                    f"the disk's size ({size}) or no key: a fixed disk is allocated whole",
                )
            disks.append(Disk(file, size, alloc, DiskType(kind)))
        per_csv[csv] += sum(d.allocated_size for d in disks)
        if per_csv[csv] > csvs[csv].size:
            raise r.fail(
                f"{path}.disks",
                raw_disks,
                f"allocated bytes that fit CSV {csv!r} "
                f"({csvs[csv].size} bytes; VMs so far need {per_csv[csv]})",
            )
        out.append(
            Vm(
                name=name,
                guid=r.get(t, "guid", path, _guid, "a GUID", derive_guid(seed, "vm", name)),
                node=node,
                csv=csv,
                disks=tuple(disks),
                integration_services=r.get(
                    t, "integration_services", path, _bool, "true or false", True
                ),
                running=r.get(t, "running", path, _bool, "true or false", True),
                workload=_workload(r, t.get("workload"), f"{path}.workload", catalog),
            )
        )
    return out


def _faults(
    r: _Reader, raw: list[dict[str, Any]], nodes: dict[str, str], vms: list[Vm]
) -> list[Fault]:
    out: list[Fault] = []
    vm_names = {v.name.lower(): v for v in vms}
    for i, t in enumerate(raw):
        path = f"faults[{i}]"
        r.known(t, path, ("kind", "node", "writer", "phase", "hresult", "seconds", "vm"))
        vm: str | None = None
        if "vm" in t:
            vm_name = r.get(t, "vm", path, _str, "a VM name")
            if vm_name.lower() not in vm_names or t.get("kind") != "writer_fail":
                raise r.fail(f"{path}.vm", vm_name, "the name of a VM (kind = 'writer_fail')")
            vm = vm_names[vm_name.lower()].name
            t = {**t, "node": t.get("node", vm_names[vm_name.lower()].node)}
        kind = t.get("kind")
        if kind not in tuple(k.value for k in FaultKind):
            raise r.fail(f"{path}.kind", kind, f"one of {', '.join(k.value for k in FaultKind)}")
        node: str | None = None
        if "node" in t:
            raw_node = r.get(t, "node", path, _str, "a node name")
            if raw_node.lower() not in nodes:
                raise r.fail(f"{path}.node", raw_node, f"one of the nodes ({_few(nodes.values())})")
            node = nodes[raw_node.lower()]
        writer = t.get("writer")
        if writer is not None and writer not in ("hyperv", "csv"):
            raise r.fail(f"{path}.writer", writer, "'hyperv' or 'csv'")
        phase = t.get("phase")
        if phase is not None and phase not in FAULT_PHASES:
            raise r.fail(f"{path}.phase", phase, f"one of {', '.join(FAULT_PHASES)}")
        hr: int | None = None
        if "hresult" in t:
            name = t["hresult"]
            if not isinstance(name, str) or name not in HResult.__members__:
                raise r.fail(f"{path}.hresult", name, "a VSS HRESULT name (VSS_E_…)")
            hr = int(HResult[name])
        seconds = r.get(
            t, "seconds", path, _seconds(MAX_STEP_S), f"seconds from 0 to {MAX_STEP_S:,.0f}", 0.0
        )
        fk = FaultKind(kind)
        if fk in (FaultKind.WRITER_FAIL, FaultKind.NODE_DOWN) and node is None:
            raise r.fail(f"{path}.node", None, f"a node (required for kind = {kind!r})")
        if phase is None:
            raise r.fail(f"{path}.phase", None, f"one of {', '.join(FAULT_PHASES)}")
        out.append(Fault(fk, node, writer, phase, hr, seconds, vm))
    return out


def _check_ids(r: _Reader, csvs: list[Csv], vms: list[Vm]) -> None:
    seen: dict[uuid.UUID, str] = {}
    for i, c in enumerate(csvs):
        if c.volume_guid in seen:
            raise r.fail(
                f"csvs[{i}].volume_guid",
                str(c.volume_guid),
                f"a GUID not already used by {seen[c.volume_guid]}",
            )
        seen[c.volume_guid] = f"csvs[{i}]"
    for i, v in enumerate(vms):
        if v.guid in seen:
            raise r.fail(
                f"vms[{i}].guid", str(v.guid), f"a GUID not already used by {seen[v.guid]}"
            )
        seen[v.guid] = f"vms[{i}]"


#: Characters a Windows file name cannot hold (and the path separators).
_NOT_IN_FILE_NAME = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def _file_name(v: object) -> str | None:
    """A plain Windows file name: no folder part, nothing NTFS refuses in a name."""
    if not isinstance(v, str) or v in ("", ".", "..") or len(v) > 255:
        return None
    return None if _NOT_IN_FILE_NAME.search(v) or v[-1] in " ." else v


def _check_disk_paths(r: _Reader, csvs: list[Csv], vms: list[Vm]) -> None:
    """Every disk is its own file: no two disks of one CSV resolve to one path
    (``<mount>\\<VM>\\Virtual Hard Disks\\<file>``, compared as NTFS does, case folded)."""
    mounts = {c.name: c.mount_point for c in csvs}
    seen: dict[str, tuple[str, int]] = {}
    for i, vm in enumerate(vms):
        for j, d in enumerate(vm.disks):
            path = ntpath.normpath(f"{mounts[vm.csv]}\\{vm.name}\\Virtual Hard Disks\\{d.file}")
            key = path.casefold()
            if key in seen:
                other, k = seen[key]
                raise r.fail(
                    f"vms[{i}].disks[{j}].file",
                    d.file,
                    f"a file of its own: VM {vm.name!r} disk {j} and VM {other!r} disk {k} "
                    f"would both be {path} on CSV {vm.csv!r}",
                )
            seen[key] = (vm.name, j)


def _few(names: object) -> str:
    items = list(names)  # type: ignore[call-overload]
    shown = ", ".join(str(n) for n in items[:5])
    return shown + (f", … ({len(items)} in all)" if len(items) > 5 else "")
