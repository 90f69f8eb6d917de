"""What each Windows Server version lets a backup do on a CSV (spec §8).

``ws2008r2``: the requester sees only its own node's Hyper-V writer (only local VMs can be
chosen); ``ClusterPrepareSharedVolumeForBackup`` moves the CSV's ownership to the backup node and
puts it in redirected access (every other node's I/O to it crosses the network to the
coordinator, counted) — *for the whole backup* with the system (software) provider, only while
the snapshot is taken with a hardware provider (spec §8, Veeam's documentation:
:func:`redirected_for_whole_backup`); the CSV is "backup in progress" and a second backup of it
fails with ``0x8007173D``.

``ws2012``: the CSV writer and CSV providers; any node backs up any VM; no ownership move; I/O is
redirected only while the snapshot is being taken; several backups of one CSV may overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

from vssim.scenario import OsProfile, ProviderKind


@dataclass(frozen=True)
class Profile:
    os: OsProfile
    #: The CSV VSS Writer runs on every node (and relays to other nodes' Hyper-V writers).
    csv_writer: bool
    #: Snapshots of CSVs go through the CSV Shadow Copy Provider and its helper.
    csv_providers: bool
    #: The CSV's ownership moves to the backup node before the backup.
    move_ownership: bool
    #: Redirected access lasts the whole backup when the system provider makes the snapshot
    #: (else, and with a hardware provider, only while the snapshot is taken).
    redirect_whole_backup: bool
    #: One backup per CSV at a time (the second fails with 0x8007173D).
    exclusive_csv_backup: bool


PROFILES = {
    OsProfile.WS2008R2: Profile(
        os=OsProfile.WS2008R2,
        csv_writer=False,
        csv_providers=False,
        move_ownership=True,
        redirect_whole_backup=True,
        exclusive_csv_backup=True,
    ),
    OsProfile.WS2012: Profile(
        os=OsProfile.WS2012,
        csv_writer=True,
        csv_providers=True,
        move_ownership=False,
        redirect_whole_backup=False,
        exclusive_csv_backup=False,
    ),
}


def profile_for(os: OsProfile) -> Profile:
    return PROFILES[os]


def redirected_for_whole_backup(profile: Profile, provider: ProviderKind) -> bool:
    """Whether a CSV stays in redirected access from the backup's prepare to its end, rather than
    only while the snapshot is taken: on 2008 R2 with the system provider, whose copy-on-write
    runs on the coordinator for the snapshot's whole life; a hardware provider's snapshot lives
    in the array, so the CSV goes back to direct I/O once it is made (spec §8)."""
    return profile.redirect_whole_backup and provider is ProviderKind.SYSTEM
