"""The VSS protocol, sans-I/O (spec ``vss-csv.md``): no clock, no files, no processes.

Modules: :mod:`.enums` (names and values), :mod:`.well_known_ids` (writer/provider ids),
:mod:`.limits` (the protocol's windows and counts), :mod:`.metadata` (writer metadata, XML and
vshadow listings), the roles as tables — :mod:`.backup_state` (requester call order),
:mod:`.writer_state`, :mod:`.provider_state` — and the snapshot set's joint rules
(:mod:`.snapshot_set`); :mod:`.writers` (Hyper-V and CSV writers), :mod:`.providers` (system,
hardware, CSV providers; :class:`~vssim.vss.providers.SnapshotBackend`), :mod:`.profiles`
(ws2008r2, ws2012); pure data: :mod:`.cluster_state` (the cluster between backups),
:mod:`.jobs` (what a backup is asked and what it yields), :mod:`.timeline` (its steps).

The SimPy driver (:mod:`vssim.sim`) feeds events in and carries out the actions; the requester
functions and the vshadow front end that run backups live above it, in :mod:`vssim.requester`.
"""
