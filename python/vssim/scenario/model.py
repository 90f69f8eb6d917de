"""The cluster a scenario describes: frozen dataclasses, built and validated by
:mod:`vssim.scenario.load`. Sizes are bytes, bandwidths bytes per second, times seconds."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from vssim.scenario.guids import derive_guid

#: Cluster limits vssim enforces (spec §8): nodes per cluster, VMs per node, VMs per cluster.
MAX_NODES = 64
MAX_VMS_PER_NODE = 1024
MAX_VMS_PER_CLUSTER = 8000
#: volsnap's smallest shadow storage (spec §9).
MIN_DIFF_AREA = 320 * 1024 * 1024


class OsProfile(StrEnum):
    """Which Windows Server the cluster runs; decides the VSS/CSV behaviour (vssim.vss.profiles)."""

    WS2008R2 = "ws2008r2"
    WS2012 = "ws2012"


class ChangeTracking(StrEnum):
    """How the backup product knows which blocks an incremental reads. Windows Server 2008 R2
    and 2012 have no change tracking of their own for VMs (Resilient Change Tracking came with
    Windows Server 2016), so "each vendor had to implement their own filesystem filter that
    would track the blocks that changed between backups" (John Savill, *Mastering Hyper-V 2016*,
    ch. 7; Aidan Finn, "Windows Server Technical Preview – Resilient Change Tracking",
    aidanfinn.com/?p=17505)."""

    #: The product's file-system filter driver tracks changed blocks (the default, both
    #: profiles: what 2012-era products shipped).
    FILTER = "filter"
    #: None: an incremental reads the VM's whole files, as a product without one must.
    NONE = "none"


class DiskType(StrEnum):
    """A virtual disk's type, as Hyper-V names it: a fixed disk holds its whole size from the
    start; dynamic and differencing disks grow as the guest writes new blocks."""

    DYNAMIC = "dynamic"
    FIXED = "fixed"
    DIFFERENCING = "differencing"


class ProviderKind(StrEnum):
    """The provider that makes a CSV's snapshots: volsnap (system) or an array (hardware)."""

    SYSTEM = "system"
    HARDWARE = "hardware"


@dataclass(frozen=True)
class Node:
    name: str
    #: The node's cluster-network NIC bandwidth.
    nic_bandwidth: float


@dataclass(frozen=True)
class Csv:
    name: str
    #: ``C:\\ClusterStorage\\Volume1`` (no trailing backslash).
    mount_point: str
    volume_guid: uuid.UUID
    #: The coordinator (owner) node at the start of the scenario.
    coordinator: str
    size: int
    diff_area_limit: int | None
    provider: ProviderKind
    #: Storage bandwidth of the LUN behind the CSV.
    bandwidth: float
    #: Where volsnap keeps the CSV's diff area (shadow storage): None on the CSV itself (the
    #: default; it takes the CSV's free space), else the other volume's path (not charged here).
    diff_area_volume: str | None = None

    @property
    def diff_area_on_volume(self) -> bool:
        """The diff area takes this CSV's own free space."""
        return self.diff_area_volume is None

    @cached_property
    def volume_name(self) -> str:
        """``\\\\?\\Volume{guid}\\``: the unique volume name VSS uses (worked out once: each
        provider step names it)."""
        return f"\\\\?\\Volume{{{self.volume_guid}}}\\"

    @property
    def display_name(self) -> str:
        """``C:\\ClusterStorage\\Volume1\\``: the mount point as vshadow prints it."""
        return self.mount_point + "\\"


#: A node's "System Reserved" partition and its system volume (model choice: a 2012-era BIOS/MBR
#: server installed with Windows' defaults has both; sizes are the installer's 350 MB partition
#: and a 127 GiB system disk).
SYSTEM_RESERVED_SIZE = 350 * 1024 * 1024
SYSTEM_VOLUME_SIZE = 127 * 1024**3


@dataclass(frozen=True)
class LocalVolume:
    """One of a node's own volumes (not shared with the cluster): the system volume ``C:`` (the
    in-box writers' files) or the "System Reserved" partition (boot manager and BCD; no drive
    letter). Their ids derive from the scenario seed and the node."""

    node: str
    #: "System Reserved" or "C:".
    label: str
    #: ``C:`` (no trailing backslash), or "" for a volume without a mount point.
    mount_point: str
    volume_guid: uuid.UUID
    size: int

    @cached_property
    def volume_name(self) -> str:
        return f"\\\\?\\Volume{{{self.volume_guid}}}\\"

    @property
    def display_name(self) -> str:
        """``C:\\`` — or "" for System Reserved, which has no mount point."""
        return self.mount_point + "\\" if self.mount_point else ""

    @property
    def key(self) -> str:
        """``E8920-ND1\\C:``: the volume a shadow copy of it records (``ShadowCopy.csv``) and
        its provider's name in a snapshot set — never a CSV's name."""
        return f"{self.node}\\{self.label}"


@dataclass(frozen=True)
class Disk:
    #: File name inside the VM's ``Virtual Hard Disks`` folder (``W808-Build8370-02.vhdx``).
    file: str
    virtual_size: int
    #: Bytes allocated at the start (a fixed disk: all of them).
    allocated_size: int
    type: DiskType = DiskType.DYNAMIC


@dataclass(frozen=True)
class Workload:
    """What a VM does while it is backed up. The defaults are the ``server`` class's
    (:mod:`vssim.scenario.workload_classes`: Windows infrastructure and application servers),
    each with its source or marked a model choice; the README's calibration table lists them."""

    #: The workload class the VM's keys started from (:data:`~.workload_classes.CLASSES`).
    workload_class: str = "server"
    #: Guest writes per second: 30 IOPS × 30 % writes (Dell BP1024, infrastructure and
    #: application servers).
    write_iops: float = 9.0
    #: The guest's own VSS sequence (integration services → guest writers prepare and freeze) at
    #: no load: the median of its draw, which grows with the writes (model choice;
    #: :mod:`vssim.sim.guest_freeze`).
    guest_vss_seconds: float = 3.0
    #: Bytes the Hyper-V writer rolls back inside the shadow copy at PostSnapshot (auto-recovery).
    auto_recovery_bytes: int = 64 * 1024 * 1024
    #: Guest memory: what a saved-state backup writes, and reads back on resume, at the CSV's
    #: storage rate (model choice: 4 GiB; saved-state time = memory / storage write rate).
    memory_bytes: int = 4 * 1024**3
    #: Bytes the guest writes to its VHDX while it takes its own snapshot (seed step ⑤).
    guest_snapshot_bytes: int = 32 * 1024 * 1024
    # The I/O stream the engine generates for the VM in modelled runs (vssim.scale): reads are
    # ``read_fraction`` of all operations, so the VM issues ``write_iops / (1 - read_fraction)``.
    #: 70/30 reads/writes (Live Optics' global average; Dell BP1024's servers).
    read_fraction: float = 0.7
    #: Where writes land, inside the disk's data: "uniform", "hotspot", "zipf" or "log".
    locality: str = "hotspot"
    #: The hot spot's share of the data — used only without ``daily_change`` (which sizes it).
    hot_fraction: float = 0.1
    #: Writes that land in the hot spot (model choice: 1 % land anywhere in the data).
    hot_share: float = 0.99
    theta: float = 0.99
    region_fraction: float = 0.05
    #: Request sizes (bytes, multiples of 512) and their weights; empty: the engine's typical mix.
    #: 8 KiB (Dell BP1024's servers).
    sizes: tuple[int, ...] = (8192,)
    weights: tuple[float, ...] = (1.0,)
    #: Rate follows the day when > 0: ``1 + amplitude × cos(2π (t − peak) / period)``.
    diurnal_amplitude: float = 0.0
    diurnal_period_s: float = 86400.0
    diurnal_peak_s: float = 50400.0
    #: New data a day, as a fraction of the data (model choice: 0.05 %, about 20 % a year),
    #: appended at the disk's allocation frontier; nothing else grows a dynamic disk.
    growth_per_day: float = 0.0005
    #: The fraction of the data a day's writes change at the change-tracking granularity: the
    #: engine sizes the hot spot to reach it (None: ``hot_fraction`` as given). 3 %, inside the
    #: typical 2–5 % (Veeam Best Practices).
    daily_change: float | None = 0.03

    @property
    def iops(self) -> float:
        """Operations per second, reads and writes."""
        return self.write_iops / (1.0 - self.read_fraction)

    @cached_property
    def mean_write_bytes(self) -> float:
        """The mean request size of the size mix (writes and reads share it; computed once: the
        simulator asks for it at every rate it works out)."""
        if not self.sizes:
            from vssim import engine

            return engine.WorkloadSpec().mean_size
        return sum(s * w for s, w in zip(self.sizes, self.weights, strict=True)) / sum(self.weights)

    @cached_property
    def write_bytes_per_s(self) -> float:
        """Bytes a second the guest writes: its write rate times the mix's mean size (computed
        once: every set's flush and every CSV's load asks)."""
        return self.write_iops * self.mean_write_bytes


@dataclass(frozen=True)
class Vm:
    name: str
    guid: uuid.UUID
    node: str
    csv: str
    disks: tuple[Disk, ...]
    integration_services: bool
    running: bool
    workload: Workload

    @cached_property
    def component_name(self) -> str:
        """The Hyper-V writer's component name: the VM GUID in upper case (spec §7; worked out
        once: each VM's writer components and files name it several times)."""
        return str(self.guid).upper()

    @cached_property
    def allocated_bytes(self) -> int:
        return sum(d.allocated_size for d in self.disks)

    @property
    def online_backup(self) -> bool:
        """A child-partition-snapshot backup needs the VM running with integration services."""
        return self.running and self.integration_services


@dataclass(frozen=True)
class Links:
    nic_bandwidth: float
    csv_bandwidth: float
    backup_target_bandwidth: float


#: The data-reduction ratio vssim assumes at the backup target unless told (model choice: 1.0,
#: none — the product and its settings decide it, so a plan stores what it reads). Veeam
#: finds "Data reduction thanks to compression and deduplication is usually 2:1 or more" (Veeam
#: Best Practices, "Repository storage"): a typical figure to try, not a default.
DEFAULT_COMPRESSION = 1.0


@dataclass(frozen=True)
class Target:
    """The backup target (``[target]``)."""

    #: Bytes read from the snapshot per byte written to the target (compression and
    #: deduplication on the way): what crosses the target's link shrinks by it, what is read
    #: from the CSV does not.
    compression: float = DEFAULT_COMPRESSION


@dataclass(frozen=True)
class ScenarioWarning:
    """Something a scenario loads with but a Windows administrator would be warned about (shown
    by ``vssim run``, ``vssim plan`` and the report)."""

    file: str
    #: The key path it concerns (``csvs[0]``).
    where: str
    #: A short name of what it is (``overcommit``, ``low space``).
    kind: str
    message: str
    #: The figure behind it (the overcommit ratio; the share free).
    value: float = 0.0

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


class FaultKind(StrEnum):
    #: A writer fails an event (``node``, ``writer`` = hyperv | csv, ``phase``, ``hresult``), or
    #: only one VM's part of it (``vm``).
    WRITER_FAIL = "writer_fail"
    #: A protocol step takes ``seconds`` longer (``phase`` = pre_commit | flush | commit | …).
    DELAY = "delay"
    #: ``node`` goes down when the backup reaches ``phase``.
    NODE_DOWN = "node_down"
    #: The provider fails ``phase`` (begin_prepare … post_final_commit).
    PROVIDER_ERROR = "provider_error"


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    node: str | None = None
    writer: str | None = None
    phase: str | None = None
    hresult: int | None = None
    seconds: float = 0.0
    #: writer_fail only: the one VM whose part fails (its Hyper-V writer then fails the set).
    vm: str | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole cluster. Look-ups by name are dictionaries built once."""

    path: Path
    name: str
    seed: int
    os: OsProfile
    start: dt.datetime
    nodes: tuple[Node, ...]
    csvs: tuple[Csv, ...]
    vms: tuple[Vm, ...]
    links: Links
    faults: tuple[Fault, ...] = field(default=())
    change_tracking: ChangeTracking = ChangeTracking.FILTER
    target: Target = field(default=Target())
    #: What the loader warned about (:mod:`vssim.scenario.capacity`).
    warnings: tuple[ScenarioWarning, ...] = field(default=())

    @cached_property
    def faults_at(self) -> dict[tuple[FaultKind, str | None], tuple[tuple[int, Fault], ...]]:
        """The faults by kind and phase, each with its index in :attr:`faults` (the protocol
        asks at every step)."""
        out: dict[tuple[FaultKind, str | None], list[tuple[int, Fault]]] = {}
        for i, f in enumerate(self.faults):
            out.setdefault((f.kind, f.phase), []).append((i, f))
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def node_by_name(self) -> dict[str, Node]:
        return {n.name.lower(): n for n in self.nodes}

    @cached_property
    def csv_by_name(self) -> dict[str, Csv]:
        return {c.name: c for c in self.csvs}

    @cached_property
    def vms_by_node(self) -> dict[str, list[Vm]]:
        out: dict[str, list[Vm]] = {n.name: [] for n in self.nodes}
        for vm in self.vms:
            out[vm.node].append(vm)
        return out

    @cached_property
    def vms_by_csv(self) -> dict[str, list[Vm]]:
        out: dict[str, list[Vm]] = {c.name: [] for c in self.csvs}
        for vm in self.vms:
            out[vm.csv].append(vm)
        return out

    @cached_property
    def allocated_by_csv(self) -> dict[str, int]:
        """Per CSV: its VMs' allocated bytes (every snapshot of it asks)."""
        return {c: sum(vm.allocated_bytes for vm in vms) for c, vms in self.vms_by_csv.items()}

    @cached_property
    def running_vms_by_csv(self) -> dict[str, list[Vm]]:
        """Per CSV: its VMs that run (as the scenario starts them), in the CSV's VM order."""
        return {c: [vm for vm in vms if vm.running] for c, vms in self.vms_by_csv.items()}

    @cached_property
    def running_write_rate_by_csv(self) -> dict[str, float]:
        """Per CSV: the bytes a second its running VMs' guests write, summed in the CSV's VM
        order (every set's host flush asks)."""
        return {
            c: sum(vm.workload.write_bytes_per_s for vm in vms)
            for c, vms in self.running_vms_by_csv.items()
        }

    def node(self, name: str) -> Node:
        """The node called ``name`` (case-insensitive, as Windows computer names are)."""
        try:
            return self.node_by_name[name.lower()]
        except KeyError:
            raise KeyError(f"no node {name!r} in {self.path}") from None

    def csv_for_path(self, path: str) -> Csv | None:
        """The CSV a vshadow volume argument names: its mount point (with or without the final
        backslash, any case) or its unique volume name."""
        key = path.rstrip("\\").lower()
        for c in self.csvs:
            if key in (c.mount_point.lower(), c.volume_name.rstrip("\\").lower()):
                return c
        return None

    def local_volumes(self, node: str) -> tuple[LocalVolume, LocalVolume]:
        """``node``'s System Reserved partition and its system volume ``C:``."""
        name = self.node(node).name
        return (
            LocalVolume(
                name,
                "System Reserved",
                "",
                derive_guid(self.seed, "local-volume", name.lower(), "system-reserved"),
                SYSTEM_RESERVED_SIZE,
            ),
            LocalVolume(
                name,
                "C:",
                "C:",
                derive_guid(self.seed, "local-volume", name.lower(), "c"),
                SYSTEM_VOLUME_SIZE,
            ),
        )

    def csv_of(self, vm: Vm) -> Csv:
        return self.csv_by_name[vm.csv]

    def vm_folder(self, vm: Vm) -> str:
        """``C:\\ClusterStorage\\Volume\\W808-Build8370-02``: where the VM's files live."""
        return f"{self.csv_of(vm).mount_point}\\{vm.name}"
