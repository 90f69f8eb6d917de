"""The protocol's limits, each defined once (spec §1, §2, §8): the windows VSS gives writers and
file systems, and how many volumes and shadow copies it takes. The protocol's machines, the SimPy
driver, the planner's figures and the report's words and charts import them from here."""

from __future__ import annotations

from vssim.engine import MAX_SNAPSHOTS

#: ``CVssWriter::Initialize``'s default freeze window: a writer that gets no Thaw this long after
#: Freeze fails with ``VSS_E_WRITERERROR_TIMEOUT`` (spec §2).
FREEZE_WINDOW_S = 60.0
#: Flush-and-hold: from the flush of the file systems to the release of the held writes; longer
#: fails the set with ``VSS_E_FLUSH_WRITES_TIMEOUT`` / ``VSS_E_HOLD_WRITES_TIMEOUT`` (spec §2).
FLUSH_AND_HOLD_S = 10.0
#: Volumes in one snapshot set; the 65th ``AddToSnapshotSet`` fails (spec §1, §8).
MAX_VOLUMES_PER_SET = 64
#: 2008 R2: a CSV whose backup's requester died stays "backup in progress" this long
#: (``ClusterClearBackupStateForSharedVolume``; spec §2).
STALE_CSV_BACKUP_S = 30 * 60.0

__all__ = [
    "FLUSH_AND_HOLD_S",
    "FREEZE_WINDOW_S",
    # Shadow copies per volume (a 513th fails): the engine enforces it, vssim.engine names it.
    "MAX_SNAPSHOTS",
    "MAX_VOLUMES_PER_SET",
    "STALE_CSV_BACKUP_S",
]
