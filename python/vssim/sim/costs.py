"""How long each protocol step takes in simulated seconds — the one home of these model figures.
Data movement (guest snapshot writes, saved state, copies) is timed from bytes and the scenario's
bandwidths instead (:mod:`vssim.sim.links`); the protocol's windows and limits (freeze window,
flush-and-hold) are :mod:`vssim.vss.limits`."""

from __future__ import annotations

#: A writer's OnIdentify, plus per component it reports.
IDENTIFY_S = 0.05
IDENTIFY_PER_COMPONENT_S = 0.000_2
#: One cluster RPC (CSV writer ↔ another node's Hyper-V writer; CSV provider ↔ helper).
RPC_S = 0.002
ADD_COMPONENT_S = 0.000_1
PREPARE_BACKUP_S = 0.05
#: Hyper-V writer → integration services: the backup request into the guest (seed step ③).
IS_REQUEST_S = 0.2
#: Provider calls.
BEGIN_PREPARE_S = 0.1
END_PREPARE_S = 0.1
PRE_COMMIT_S = 0.1
FLUSH_S = 0.5
COMMIT_SYSTEM_S = 0.3
COMMIT_HARDWARE_S = 1.0
POST_COMMIT_S = 0.1
FINAL_COMMIT_S = 0.05
DELETE_S = 0.05
#: 2008 R2: ClusterPrepareSharedVolumeForBackup moving a CSV to the backup node.
OWNERSHIP_MOVE_S = 2.0
#: Turning redirected access on or off.
REDIRECT_SWITCH_S = 0.5
#: A CSV failing over to another node when its coordinator goes down.
FAILOVER_S = 5.0
BACKUP_COMPLETE_S = 0.05
SHUTDOWN_S = 0.01
