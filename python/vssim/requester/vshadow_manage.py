"""vshadow's management commands on the simulated cluster: break (``break.cpp``), expose
(``expose.cpp``), import (``create.cpp``'s ``ImportSnapshotSet``), revert (``revert.cpp``) and
LUN resync (``break.cpp``'s ``DoResync``). Each does what the cluster's providers can do and
otherwise fails as the call fails on a system whose providers cannot:

* **break** (``-b``, ``-bw``, ``-bex``): only a hardware provider's shadow copies can be broken into
  plain volumes; VSS then forgets them. The system provider's (and the CSV provider's) refuse with
  ``VSS_E_PROVIDER_VETO``, as ``BreakSnapshotSet`` documents for software shadow copies.
* **expose** (``-el``, ``-er``): a persistent shadow copy can be exposed as an unused drive letter
  or as a share. vssim models no folders on a node's own volumes, so a mount-point folder is
  reported "not a valid directory" (a CSV folder is not empty); a shadow copy that is not
  persistent cannot be exposed locally (``VSS_E_BAD_STATE``).
* **import** (``-i``): a transportable set saved with ``-t`` is surfaced on this node (``Imported``)
  while its shadow copies exist; otherwise ``VSS_E_OBJECT_NOT_FOUND``.
* **revert** (``-revert``): none of the simulated providers reverts a volume (CSVs, ``C:``), so
  ``RevertToSnapshot`` fails with ``VSS_E_VOLUME_NOT_SUPPORTED`` — which the sample reports and
  then exits 0.
* **resync** (``-addresync``, ``-resync``): Windows Server 2008 R2 has no
  ``IVssBackupComponentsEx3`` (``E_NOINTERFACE``); on 2012 a software shadow copy cannot be
  resynced to a LUN (``VSS_E_PROVIDER_VETO``) and the simulated hardware provider does not do LUN
  resync (``VSS_E_LEGACY_PROVIDER``).
"""

from __future__ import annotations

from vssim.requester.vshadow_bcdoc import InvalidDocumentError, parse
from vssim.requester.vshadow_client import ClientBase, ThrownError, braced_id
from vssim.requester.vshadow_text import (
    CALL_ADD_RECOVERY,
    CALL_ADD_RECOVERY_TO,
    CALL_BREAK,
    CALL_BREAK_EX,
    CALL_EXPOSE_LOCAL,
    CALL_EXPOSE_REMOTE,
    CALL_GET_SNAPSHOT_PROPERTIES,
    CALL_INITIALIZE_FOR_BACKUP_XML,
    CALL_QUERY_EX3,
    E_INVALIDARG,
    E_NOINTERFACE,
    WAITING,
    async_error,
    com_error,
)
from vssim.scenario import OsProfile, derive_guid
from vssim.vss.cluster_state import ShadowCopy
from vssim.vss.enums import HResult, SnapshotAttr
from vssim.vss.well_known_ids import HARDWARE_PROVIDER_ID

#: ``VSS_BREAKEX_FLAG_*``.
BREAKEX_MASK_LUNS = 0x1
BREAKEX_MAKE_READ_WRITE = 0x2
BREAKEX_REVERT_IDENTITY_ALL = 0x4
BREAKEX_REVERT_IDENTITY_NONE = 0x8
#: ``VSS_RECOVERY_*``.
RECOVERY_REVERT_IDENTITY_ALL = 0x100
RECOVERY_NO_VOLUME_CHECK = 0x200


def _is_hardware(s: ShadowCopy) -> bool:
    return braced_id(s.provider_id) == "{" + str(HARDWARE_PROVIDER_ID) + "}"


class Management(ClientBase):
    """``VssClient``'s break, expose, import, revert and resync calls."""

    # --- break --------------------------------------------------------------------------------

    def _set(self, set_id: str) -> list[ShadowCopy]:
        return [s for s in self.snapshots() if braced_id(s.set_id) == set_id]

    def _break_call(self, set_id: str, call: str) -> list[ShadowCopy]:
        snaps = self._set(set_id)
        hr = 0
        if not snaps:
            hr = int(HResult.VSS_E_OBJECT_NOT_FOUND)
        elif not all(_is_hardware(s) for s in snaps):
            hr = int(HResult.VSS_E_PROVIDER_VETO)
        if hr:
            self.con.w(*com_error(call, hr))
            raise ThrownError(hr)
        return snaps

    def _forget(self, snaps: list[ShadowCopy]) -> None:
        for s in snaps:
            self.remove(s)
        self.store.save()

    def snapshot_devices(self, set_id: str) -> list[str]:
        """``GetSnapshotDevices``."""
        devices = []
        for s in self._set(set_id):
            device = f"\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy{s.device}"
            self.con.w(f"- Will convert {device} to read-write ...")
            devices.append(device)
        return devices

    def break_snapshot_set(self, set_id: str, read_write: bool) -> list[str]:
        """``BreakSnapshotSet``; the devices to make read-write (``-bw``)."""
        devices = self.snapshot_devices(set_id) if read_write else []
        self.con.w(f"- Calling BreakSnapshotSet on {set_id} ...")
        self._forget(self._break_call(set_id, CALL_BREAK))
        if not read_write:
            self.con.w("Break done.")
        return devices

    def make_volumes_read_write(self, set_id: str, devices: list[str]) -> None:
        """``MakeVolumesReadWrite`` through VDS: clear each broken LUN's read-only flag and
        dismount it so that it mounts again writable."""
        self.con.w(f"- Making shadow copy devices from {set_id} read-write...")
        for device in devices:
            unique = "\\\\?\\Volume{" + str(derive_guid(self.sc.seed, "broken-lun", device)) + "}\\"
            self.con.w(f"- Clearing read-only flag for volume {unique} [{device}] ...")
            self.con.w(f"- Dismounting volume {device} ...")

    def break_snapshot_set_ex(self, set_id: str, flags: int) -> None:
        self.con.w(f"- Calling BreakSnapshotSetEx on {set_id} ...")
        if not flags & 0xF:
            self.con.w(
                "- No BreakSnapshotSetEx flags, can use -mask, -rw, -forcerevert, or -norevert"
            )
        snaps = self._break_call(set_id, CALL_BREAK_EX)
        self.con.w(WAITING)
        self._forget(snaps)
        self.con.w("BreakEx done.")

    # --- expose -------------------------------------------------------------------------------

    def _exposable(self, snapshot_id: str) -> ShadowCopy:
        s = self.find(snapshot_id)
        if s is None:
            self.con.w("", "ERROR: there is no snapshot with the given ID")
            raise ThrownError(E_INVALIDARG)
        if s.attributes & SnapshotAttr.CLIENT_ACCESSIBLE:
            self.con.w(
                "",
                "ERROR: the snapshot ID identifies a Client Accessible snapshot which cannot be "
                "exposed",
            )
            raise ThrownError(E_INVALIDARG)
        if s.exposed_name or s.exposed_path:
            self.con.w("", "ERROR: Client-accessible (SFSF) snapshots cannot be exposed.")
            raise ThrownError(E_INVALIDARG)
        return s

    def expose_locally(self, snapshot_id: str, path: str) -> None:
        """``ExposeSnapshotLocally``."""
        self.con.w(f"- Exposing shadow copy {snapshot_id} under the path '{path}'")
        s = self._exposable(snapshot_id)
        if len(path) == 2 and path[1] == ":":
            self.con.w(f"- Checking if '{path}' is a valid drive letter ...")
            used = {"C:"} | {
                x.exposed_name[:2].upper()
                for x in self.state.snapshots
                if x.attributes & SnapshotAttr.EXPOSED_LOCALLY and x.service_machine == self.node
            }
            if path.upper() in used:
                self.con.w(
                    "",
                    f"ERROR: the second parameter to -el [{path}] is a drive letter "
                    "already in use!",
                )
                raise ThrownError(E_INVALIDARG)
            exposed = path.upper() + "\\"
        else:
            folder = path if path.endswith("\\") else path + "\\"
            self.con.w(f"- Checking if '{folder}' is a valid empty directory ...")
            on_csv = self.ns.is_path_on_shared_volume(folder) and self.ns.path_exists(folder)
            problem = "not an empty directory" if on_csv else "not a valid directory"
            self.con.w("", f"ERROR: the second parameter to -el [{folder}] is {problem}!")
            raise ThrownError(E_INVALIDARG)
        if not s.attributes & SnapshotAttr.PERSISTENT:
            self.con.w(*com_error(CALL_EXPOSE_LOCAL, HResult.VSS_E_BAD_STATE))
            raise ThrownError(HResult.VSS_E_BAD_STATE)
        s.attributes |= SnapshotAttr.EXPOSED_LOCALLY
        s.exposed_name = exposed
        self.store.save()
        self.con.w(f"- Shadow copy exposed as '{exposed}'")

    def expose_remotely(self, snapshot_id: str, share: str, path: str) -> None:
        """``ExposeSnapshotRemotely``."""
        self.con.w(
            f"- Exposing shadow copy {snapshot_id} under the share '{share}' (path from root: "
            f"'{path}')"
        )
        s = self._exposable(snapshot_id)
        taken = {
            x.exposed_name.lower()
            for x in self.state.snapshots
            if x.attributes & SnapshotAttr.EXPOSED_REMOTELY and x.service_machine == self.node
        }
        if share.lower() in taken:
            self.con.w(*com_error(CALL_EXPOSE_REMOTE, HResult.VSS_E_OBJECT_ALREADY_EXISTS))
            raise ThrownError(HResult.VSS_E_OBJECT_ALREADY_EXISTS)
        s.attributes |= SnapshotAttr.EXPOSED_REMOTELY
        s.exposed_name, s.exposed_path = share, path
        self.store.save()
        self.con.w(f"- Shadow copy exposed as '{share}'")

    # --- import -------------------------------------------------------------------------------

    def initialize_for_import(self, xml: str) -> list[str]:
        """``Initialize(VSS_CTX_ALL, xml)``: ``InitializeForBackup`` with the document, then the
        context line. The document's shadow copy ids."""
        self.store.acquire()
        try:
            doc = parse(xml)
        except InvalidDocumentError:
            self.con.w(
                *com_error(CALL_INITIALIZE_FOR_BACKUP_XML, HResult.VSS_E_INVALID_XML_DOCUMENT)
            )
            raise ThrownError(HResult.VSS_E_INVALID_XML_DOCUMENT) from None
        self.con.w("- Setting the VSS context to: 0xffffffff")
        self.context = 0xFFFFFFFF
        return [d.snapshot_id for d in doc.snapshots]

    def import_snapshot_set(self, ids: list[str]) -> None:
        """``ImportSnapshotSet``."""
        self.imported_live = []
        self.con.w("Importing the transportable snapshot set ... ", WAITING)
        found = [s for i in ids if (s := self.find(i)) is not None]
        if (
            not ids
            or len(found) < len(ids)
            or not all(s.attributes & SnapshotAttr.TRANSPORTABLE for s in found)
        ):
            self.con.w(*async_error(HResult.VSS_E_OBJECT_NOT_FOUND))
            raise ThrownError(HResult.VSS_E_OBJECT_NOT_FOUND)
        for s in found:
            s.attributes |= SnapshotAttr.IMPORTED
            s.service_machine = self.node
            s.device = self.state.new_device()
            if not s.attributes & SnapshotAttr.PERSISTENT:
                self.imported_live.append(s)
        self.store.save()
        self.con.w("Shadow copy set succesfully imported.")

    # --- revert -------------------------------------------------------------------------------

    def revert_to_snapshot(self, snapshot_id: str) -> None:
        """``RevertToSnapshot``: failures are reported and vshadow returns normally."""
        s = self.get_snapshot_properties(snapshot_id, CALL_GET_SNAPSHOT_PROPERTIES)
        self.con.w(
            f"- Reverting to shadow copy {braced_id(s.id)} on {s.volume_name} from provider "
            f"{braced_id(s.provider_id)} [0x{s.attributes & 0xFFFFFFFF:08x}]..."
        )
        self.con.w(f"Revert is not supported on the volume {s.volume_name}")

    # --- resync -------------------------------------------------------------------------------

    def do_resync(self, pairs: dict[str, str]) -> None:
        """``DoResync`` with the ``-addresync`` pairs."""
        if self.sc.os is OsProfile.WS2008R2:
            self.con.w(*com_error(CALL_QUERY_EX3, E_NOINTERFACE))
            raise ThrownError(E_NOINTERFACE)
        for snapshot_id, destination in pairs.items():
            call = CALL_ADD_RECOVERY_TO if destination else CALL_ADD_RECOVERY
            s = self.find(snapshot_id)
            hr = 0
            if s is None:
                hr = int(HResult.VSS_E_OBJECT_NOT_FOUND)
            elif not _is_hardware(s):
                hr = int(HResult.VSS_E_PROVIDER_VETO)
            if hr:
                self.con.w(*com_error(call, hr))
                raise ThrownError(hr)
        hr = int(HResult.VSS_E_BAD_STATE if not pairs else HResult.VSS_E_LEGACY_PROVIDER)
        self.con.w(WAITING)
        self.con.w(*async_error(hr))
        raise ThrownError(hr)
