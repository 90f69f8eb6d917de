"""``vshadow`` — the Windows SDK's VSS requester sample (the VSS_SERVER build, which the seed's
figure 3 comes from) — on the simulated cluster: ``CommandLineParser::MainRoutine``
(``shadow.cpp``) with its options, its output and its exit codes.

Arguments are taken one by one as the sample does: flags set options (each echoes its
``(Option: …)`` line); the first command runs and ends the process, so anything after it is
ignored; a first argument that is a volume starts a shadow set of it and every following
argument (each must be a volume); anything else is an invalid parameter. Exit codes are the
sample's: **0** done, **1** invalid parameters only (the usage follows), **2** any failure the
tool throws as an HRESULT (a failed COM or Win32 call, a ``-wi`` check, a badly formed GUID, a
writer in a failed state, an ``-exec`` command that failed or does not exist), **3** out of
memory.

Options vssim cannot honour are accepted with the tool's own echo line and a note on standard
error (``-tracing``: no call trace; ``-tr``: no TxF on simulated volumes); ``-ap`` (plex) is
refused as a system without a plex provider refuses it. The VSS calls live in
:mod:`vssim.requester.vshadow_client` and the modules built on it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import TextIO

from vssim.requester.state_file import StateStore
from vssim.requester.vshadow_bcdoc import file_text
from vssim.requester.vshadow_client import Console, ThrownError
from vssim.requester.vshadow_create import Creation, Target
from vssim.requester.vshadow_manage import (
    BREAKEX_MAKE_READ_WRITE,
    BREAKEX_MASK_LUNS,
    BREAKEX_REVERT_IDENTITY_ALL,
    BREAKEX_REVERT_IDENTITY_NONE,
    RECOVERY_NO_VOLUME_CHECK,
    RECOVERY_REVERT_IDENTITY_ALL,
    Management,
)
from vssim.requester.vshadow_restore import Restore
from vssim.requester.vshadow_text import (
    CALL_CLUSTER_PREPARE,
    CALL_CREATE_FILE,
    CALL_CREATE_PROCESS,
    CALL_GET_ROOT_AND_PREFIX,
    E_INVALIDARG,
    E_UNEXPECTED,
    USAGE_LINES,
    VSS_CTX_ALL,
    banner,
    com_error,
    win32_error,
)
from vssim.requester.vshadow_volumes import is_unc_path
from vssim.scenario import OsProfile, Scenario
from vssim.vss.enums import SnapshotAttr
from vssim.vss.jobs import BackupResult

OK, INVALID_PARAMETERS, RUNTIME_ERROR, OUT_OF_MEMORY = 0, 1, 2, 3

#: ``HRESULT_FROM_WIN32(ERROR_BAD_NETPATH)``: no file server on the simulated cluster.
E_BAD_NETPATH = 0x80070035
ERROR_CLUSTER_BACKUP_IN_PROGRESS = 5949
#: ``GetLastError()`` of ``CreateProcess`` on a file that is not a program.
ERROR_BAD_EXE_FORMAT = 193
DASHES = "-----------------------------------------------------"


class VssClient(Creation, Restore, Management):
    """The sample's ``VssClient`` on the simulated cluster."""


def match(arg: str, name: str) -> bool:
    """``MatchArgument(arg, name)``: ``-name`` or ``/name``, any case."""
    return len(arg) > 1 and arg[0] in "-/" and arg[1:].lower() == name.lower()


def match_value(arg: str, name: str) -> str | None:
    """``MatchArgument(arg, name, value)``: ``-name=value`` (``/``, any case); an empty value
    does not match; one pair of enclosing double quotes is removed."""
    if not arg or arg[0] not in "-/" or "=" not in arg:
        return None
    key, _, value = arg[1:].partition("=")
    if key.lower() != name.lower() or not value:
        return None
    if value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    return value


class VShadow:
    """One vshadow process on ``node`` of ``scenario``."""

    def __init__(
        self,
        scenario: Scenario,
        node: str,
        state_path: Path,
        out: TextIO,
        stdin: TextIO | None = None,
        err: TextIO | None = None,
    ) -> None:
        self.sc = scenario
        self.node = scenario.node(node).name
        self.con = Console(out, err if err is not None else sys.stderr, stdin)
        self.store = StateStore(scenario, state_path)
        self.client = VssClient(scenario, self.node, self.store, self.con)
        self.persistent = False
        self.with_writers = True
        self.wait = False
        self.args: list[str] = []

    @property
    def result(self) -> BackupResult | None:
        """The simulated run of the shadow set this process created (None if it made none)."""
        return self.client.result

    def main(self, args: list[str]) -> int:
        """``wmain``: the banner, the main routine, and the exit code."""
        self.args = list(args)
        self.con.w(*banner(self.sc.os.value, self.sc.name, self.node))
        try:
            return self.main_routine(self.args)
        except ThrownError:
            return RUNTIME_ERROR
        except MemoryError:
            self.con.w("ERROR: Memory allocation error")
            return OUT_OF_MEMORY
        finally:
            self._exit()

    def _exit(self) -> None:
        """The destructors: ``-wait`` asks for ENTER while the shadow copies still exist, then
        the backup components object goes and takes the non-persistent ones with it."""
        try:
            if self.store.held:
                self.store.release()
            if self.wait:
                self.con.w("", "Press <ENTER> to continue...")
                self.con.read_line()
            self.client.close_live_window()
            imported = self.client.imported_live
            if imported:
                state = self.store.acquire()
                gone = {s.id for s in imported}
                state.snapshots[:] = [s for s in state.snapshots if s.id not in gone]
                self.store.save()
        finally:
            self.store.release()
            self.con.out.flush()

    # --- the main routine ---------------------------------------------------------------------

    def main_routine(self, args: list[str]) -> int:
        context = 0
        excluded: list[str] = []
        included: list[str] = []
        script = exec_cmd = xml_doc = ""
        break_flags = resync_flags = 0
        resync_pairs: dict[str, str] = {}
        w = self.con.w
        for i, arg in enumerate(args):
            # --- flags ---
            if match(arg, "p"):
                w("(Option: Persistent shadow copy)")
                self.persistent = True
                continue
            if match(arg, "nw"):
                w("(Option: No-writers option detected)")
                self.with_writers = False
                continue
            if match(arg, "nar"):
                w("(Option: No-auto-recovery option detected)")
                context |= SnapshotAttr.NO_AUTORECOVERY
                continue
            if match(arg, "tr"):
                w("(Option: TxF-recover option detected)")
                self.con.note("-tr: the simulated volumes have no TxF; the flag has no effect")
                context |= SnapshotAttr.TXF_RECOVERY
                continue
            if (v := match_value(arg, "t")) is not None:
                w(f"(Option: Transportable shadow set. Saving xml to file '{v}')")
                xml_doc = v
                context |= SnapshotAttr.TRANSPORTABLE
                continue
            if (v := match_value(arg, "bc")) is not None:
                w(f"(Option: Saving xml to file '{v}')")
                xml_doc = v
                continue
            if match(arg, "ad"):
                w("(Option: Creating differential HW shadow copies)")
                context |= SnapshotAttr.DIFFERENTIAL
                continue
            if match(arg, "ap"):
                w("(Option: Creating plex HW shadow copies)")
                context |= SnapshotAttr.PLEX
                continue
            if match(arg, "scsf"):
                w("(Option: Creating Shadow Copies for Shared Folders - Client Accessible)")
                context = 0x1D
                continue
            if (v := match_value(arg, "wx")) is not None:
                w(f"(Option: Excluding writer/component '{v}')")
                excluded.append(v)
                continue
            if (v := match_value(arg, "wi")) is not None:
                w(f"(Option: Verifying inclusion of writer/component '{v}')")
                included.append(v)
                continue
            if match(arg, "wait"):
                w("(Option: Wait on finish)")
                self.wait = True
                continue
            if (v := match_value(arg, "script")) is not None:
                w(f"(Option: Generate SETVAR script '{v}')")
                script = v
                continue
            if (v := match_value(arg, "exec")) is not None:
                w(f"(Option: Execute binary/script after shadow creation '{v}')")
                if not Path(v).is_file():
                    w(
                        f"ERROR: the parameter '{v}' must be an existing file!",
                        "- Note: the -exec command cannot have parameters!",
                    )
                    raise ThrownError(E_INVALIDARG)
                exec_cmd = v
                continue
            if match(arg, "tracing"):
                w("(Option: Enable tracing)")
                self.con.note("-tracing: the simulation has no C++ call trace to show")
                continue
            if match(arg, "mask"):
                w("(Option: Mask shadow copy luns)")
                break_flags |= BREAKEX_MASK_LUNS
                continue
            if match(arg, "rw"):
                w("(Option: make readwrite)")
                break_flags |= BREAKEX_MAKE_READ_WRITE
                continue
            if match(arg, "forcerevert"):
                w("(Option: force disk identity revert)")
                break_flags |= BREAKEX_REVERT_IDENTITY_ALL
                continue
            if match(arg, "norevert"):
                w("(Option: no disk identity revert)")
                break_flags |= BREAKEX_REVERT_IDENTITY_NONE
                continue
            # --- operations ---
            if match(arg, "?"):
                break
            code = self._operation(arg, context, excluded, included, exec_cmd, break_flags)
            if code is not None:
                return code
            if (v := match_value(arg, "addresync")) is not None:
                parts = v.split(",")
                snapshot_id = self.guid(parts[0])
                if len(parts) == 1:
                    w(
                        "(Option: Add snapshot Id for resync to original volume location specified "
                        "in BCD)"
                    )
                elif len(parts) == 2:
                    w(f"(Option: Add snapshot Id for resync to location: {parts[1]})")
                else:
                    raise ThrownError(E_INVALIDARG)
                if snapshot_id in resync_pairs:
                    w("Already added.  Ignoring")
                else:
                    resync_pairs[snapshot_id] = parts[1] if len(parts) == 2 else ""
                    w("Added.")
                continue
            if match(arg, "revertsig"):
                w("(Option: Resync will revert destination to the original disk's signature)")
                resync_flags |= RECOVERY_REVERT_IDENTITY_ALL
                continue
            if match(arg, "novolcheck"):
                w("(Option: novolcheck flag used. Resync will not check for unselected volumes)")
                resync_flags |= RECOVERY_NO_VOLUME_CHECK
                continue
            if (v := match_value(arg, "resync")) is not None:
                if resync_flags & RECOVERY_REVERT_IDENTITY_ALL:
                    w("Resyncing using source signature as the final disk signature")
                else:
                    w("Resyncing using target signature as the final disk signature")
                xml = self.read_file(v)
                self.client.initialize_for_restore(xml)
                self.client.do_resync(resync_pairs)
                return OK
            if self._volume(arg):
                return self._create(
                    args[i:], context, xml_doc, excluded, included, script, exec_cmd
                )
            w("", f"ERROR: invalid parameter '{arg}'", "")
            self.print_usage()
            return INVALID_PARAMETERS
        self.print_usage()
        return OK

    def print_usage(self) -> None:
        self.con.w(*USAGE_LINES)

    def final_context(self, context: int) -> int:
        """``UpdateFinalContext``."""
        if self.persistent:
            return context | (0x9 if self.with_writers else 0x19)
        return context | (0x0 if self.with_writers else 0x10)

    def guid(self, text: str) -> str:
        """``WString2Guid`` (``CLSIDFromString``): a GUID in braces, or the tool stops."""
        inner = text[1:-1] if len(text) == 38 and text[0] == "{" and text[-1] == "}" else ""
        try:
            if len(inner) != 36 or inner.count("-") != 4:
                raise ValueError(text)
            return "{" + str(uuid.UUID(inner)) + "}"
        except ValueError:
            self.con.w(f"ERROR: The string '{text}' is not formatted as a GUID!")
            raise ThrownError(E_INVALIDARG) from None

    def read_file(self, name: str) -> str:
        """``ReadFileContents``."""
        self.con.w(f"Reading the file '{name}' ...")
        try:
            return file_text(Path(name).read_bytes())
        except OSError as exc:
            error = 2 if isinstance(exc, FileNotFoundError) else 5
            self.con.w(*win32_error(CALL_CREATE_FILE, error))
            raise ThrownError(0x80070000 | error) from None

    # --- commands -----------------------------------------------------------------------------

    def _operation(
        self,
        arg: str,
        context: int,
        excluded: list[str],
        included: list[str],
        exec_cmd: str,
        break_flags: int,
    ) -> int | None:
        """The command ``arg`` names, run to its end (its exit code), or None."""
        w, c = self.con.w, self.client
        if match(arg, "q"):
            w("(Option: Query all shadow copies)")
            c.initialize(VSS_CTX_ALL)
            c.query_snapshot_set(None)
            return OK
        if (v := match_value(arg, "qx")) is not None:
            w("(Option: Query shadow copy set)")
            set_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.query_snapshot_set(set_id)
            return OK
        if (v := match_value(arg, "s")) is not None:
            w("(Option: Query shadow copy)")
            snapshot_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.print_snapshot(snapshot_id)
            return OK
        if match(arg, "da"):
            w("(Option: Delete all shadow copies)")
            self.con.write("This will delete all shadow copies in the system. Are you sure? [Y/N] ")
            if self.con.read_token() not in ("Y", "y"):
                return OK
            self.con.write("\n")
            c.initialize(VSS_CTX_ALL)
            c.delete_all()
            return OK
        if (v := match_value(arg, "dx")) is not None:
            w("(Option: Delete a shadow copy set)")
            set_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.delete_set(set_id)
            return OK
        if (v := match_value(arg, "ds")) is not None:
            w("(Option: Delete a shadow copy)")
            snapshot_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.delete_one(snapshot_id)
            return OK
        for name, echo, detailed in (
            ("wm", "(Option: List writer metadata)", False),
            ("wm2", "(Option: List extended writer metadata)", True),
        ):
            if match(arg, name):
                w(echo)
                c.initialize(self.final_context(context))
                c.gather_writer_metadata()
                c.list_writer_metadata(detailed)
                return OK
        if match(arg, "wm3"):
            w("(Option: List writer metadata in XML)")
            c.initialize(self.final_context(context))
            c.gather_writer_metadata_to_screen()
            return OK
        if match(arg, "ws"):
            w("(Option: List writer status)")
            c.initialize(self.final_context(context))
            c.gather_writer_metadata()
            c.gather_writer_status()
            c.list_writer_status()
            return OK
        if (v := match_value(arg, "do")) is not None:
            w(f"(Option: Delete the oldest shadow copy for {v})")
            c.initialize(VSS_CTX_ALL)
            c.delete_oldest(v)
            return OK
        if (v := match_value(arg, "revert")) is not None:
            w("(revert a shadow copy)")
            snapshot_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.revert_to_snapshot(snapshot_id)
            return OK
        if (v := match_value(arg, "b")) is not None:
            w("(Option: Break shadow copy set)")
            set_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.break_snapshot_set(set_id, read_write=False)
            return OK
        if (v := match_value(arg, "bw")) is not None:
            w("(Option: Break shadow copy set as writable)")
            set_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            devices = c.break_snapshot_set(set_id, read_write=True)
            if exec_cmd:
                self.exec_command(exec_cmd)
            if self.wait:
                self.store.release()
                w("", "Press <ENTER> to make the volumes writable...")
                self.con.read_line()
                self.wait = False
            c.make_volumes_read_write(set_id, devices)
            return OK
        if (v := match_value(arg, "bex")) is not None:
            w("(Option: Break shadow copy set using BreakSnapshotSetEx)")
            set_id = self.guid(v)
            c.initialize(VSS_CTX_ALL)
            c.break_snapshot_set_ex(set_id, break_flags)
            return OK
        if (v := match_value(arg, "el")) is not None:
            w("(Option: Expose a shadow copy)")
            parts = v.split(",")
            if len(parts) != 2:
                w(
                    "ERROR: the -el arguments must contain a GUID and a local path separated by a "
                    "comma."
                )
                raise ThrownError(E_INVALIDARG)
            snapshot_id = self.guid(parts[0])
            c.initialize(VSS_CTX_ALL)
            c.expose_locally(snapshot_id, parts[1])
            return OK
        if (v := match_value(arg, "er")) is not None:
            w("(Option: Expose a shadow copy)")
            parts = v.split(",")
            if len(parts) not in (2, 3):
                w(
                    "ERROR: the -er arguments must contain a GUID, a share name and an optional "
                    "local path separated by a comma."
                )
                raise ThrownError(E_INVALIDARG)
            snapshot_id = self.guid(parts[0])
            c.initialize(VSS_CTX_ALL)
            c.expose_remotely(snapshot_id, parts[1], parts[2] if len(parts) == 3 else "")
            return OK
        if (v := match_value(arg, "i")) is not None:
            w(f"(Option: Import shadow copy set from file '{v}')")
            ids = c.initialize_for_import(self.read_file(v))
            c.import_snapshot_set(ids)
            if exec_cmd:
                self.exec_command(exec_cmd)
            return OK
        if (v := match_value(arg, "r")) is not None:
            w("(Option: Perform a restore)")
            self._restore(v, excluded, included, exec_cmd, simulated=False)
            return OK
        if (v := match_value(arg, "rs")) is not None:
            w("(Option: Perform a Simulated restore)")
            self._restore(v, excluded, included, exec_cmd, simulated=True)
            return OK
        return None

    def _restore(
        self, path: str, excluded: list[str], included: list[str], exec_cmd: str, simulated: bool
    ) -> None:
        c = self.client
        c.initialize_for_restore(self.read_file(path))
        c.gather_writer_metadata()
        c.gather_writer_status()
        c.list_writer_status()
        c.initialize_writer_components_for_restore()
        c.select_components_for_restore(excluded, included)
        if simulated:
            self.con.w("", "Restore simulation done.")
            return
        c.pre_restore()
        try:
            c.check_selected_writer_status()
            if exec_cmd:
                self.exec_command(exec_cmd)
        except ThrownError:
            c.set_file_restore_status()
            c.post_restore()
            raise
        c.set_file_restore_status()
        c.post_restore()
        c.check_selected_writer_status()
        self.con.w("", "Restore done.")

    # --- shadow set creation ------------------------------------------------------------------

    def _volume(self, arg: str) -> bool:
        """``IsVolume(arg) || IsUNCPath(arg)``."""
        return bool(arg) and (self.client.ns.is_volume(arg) or is_unc_path(arg))

    def _target(self, arg: str) -> Target:
        """``GetUniqueVolumeNameForPath(arg, true)``: a CSV is prepared for backup (2008 R2: one
        backup at a time); a UNC path needs a file server the simulated cluster does not have."""
        ns = self.client.ns
        if is_unc_path(arg):
            self.con.w(*com_error(CALL_GET_ROOT_AND_PREFIX, E_BAD_NETPATH))
            raise ThrownError(E_BAD_NETPATH)
        if ns.is_path_on_shared_volume(arg):
            csv_root = ns.volume_path_name(arg)
            unique = ns.volume_name_for_mount_point(csv_root)
            assert unique is not None
            vol = ns.volume(unique)
            assert vol is not None
            assert vol.csv is not None
            if self.sc.os is OsProfile.WS2008R2:
                state = self.store.acquire()
                if state.csv_backup_holder(vol.csv.name, state.clock) is not None:
                    self.con.w(*win32_error(CALL_CLUSTER_PREPARE, ERROR_CLUSTER_BACKUP_IN_PROGRESS))
                    raise ThrownError(0x80070000 | ERROR_CLUSTER_BACKUP_IN_PROGRESS)
            return Target(vol.unique_name, vol.display_name, csv=vol.csv)
        unique = ns.unique_name_for_path(arg)
        assert unique is not None
        vol = ns.volume(unique)
        assert vol is not None
        return Target(vol.unique_name, vol.display_name, csv=vol.csv, local=vol.local)

    def command_line(self) -> str:
        """``GetCommandLine()`` as the user would have typed it."""
        quoted = [f'"{a}"' if " " in a or not a else a for a in self.args]
        return " ".join(["vshadow", *quoted])

    def _create(
        self,
        volume_args: list[str],
        context: int,
        xml_doc: str,
        excluded: list[str],
        included: list[str],
        script: str,
        exec_cmd: str,
    ) -> int:
        w, c = self.con.w, self.client
        w("(Option: Create shadow copy set)")
        targets = [self._target(volume_args[0])]
        for arg in volume_args[1:]:
            if not self._volume(arg):
                w(
                    "",
                    f"ERROR: invalid parameters {self.command_line()}",
                    f"- Parameter {arg} is expected to be a volume or a file share path!  "
                    "(shadow copy creation is assumed)",
                    "- Example: VSHADOW C:",
                )
                self.print_usage()
                return INVALID_PARAMETERS
            targets.append(self._target(arg))
        context = self.final_context(context)
        c.initialize(context)
        c.create_snapshot_set(targets, xml_doc, excluded, included)
        try:
            if script:
                c.generate_setvar_script(script)
            if exec_cmd:
                self.exec_command(exec_cmd)
        except ThrownError:
            if c.with_writers:
                c.backup_complete(False)
            raise
        if c.with_writers:
            c.backup_complete(True)
        w("", "Snapshot creation done.")
        return OK

    def exec_command(self, command: str) -> None:
        """``ExecCommand`` (``util.h``): the file runs with no parameters between two dashed
        lines; a non-zero exit code stops vshadow. The state is saved and unlocked while it runs,
        so it may run vshadow itself."""
        w = self.con.w
        w(f"- Executing command '{command}' ...", DASHES)
        if self.store.held:
            self.store.save()
            self.store.release()
        self.con.out.flush()
        try:
            done = subprocess.run(
                [str(Path(command).resolve())], stdout=subprocess.PIPE, check=False
            )
        except OSError as exc:
            error = ERROR_BAD_EXE_FORMAT if exc.errno == 8 else 5
            w(*win32_error(CALL_CREATE_PROCESS, error))
            raise ThrownError(0x80070000 | error) from None
        finally:
            self.store.acquire()
        self.con.write(done.stdout.decode("utf-8", errors="replace"))
        w(DASHES)
        if done.returncode != 0:
            w(
                f"ERROR: Command line '\"{command}\"' failed!. Aborting the backup...",
                f"- Returned error code: {done.returncode}",
            )
            raise ThrownError(E_UNEXPECTED)
