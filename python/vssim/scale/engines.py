"""The two tiers a modelled run can use: which engine counts the guests' writes.

* :attr:`Engine.EXACT`: the per-write engine (:class:`engine.ModelCluster`): every guest write
  generated and fed to copy-on-write, change tracking and the VHDX layout. The only one that can
  put the cluster on real disks (materialized mode), and the one ``vssim run`` uses.
* :attr:`Engine.ESTIMATE`: the estimate tier (:class:`engine.EstimateCluster`): what the
  per-write engine would count, in expectation, in closed form, at a cost that does not grow with
  the writes. ``vssim plan`` uses it; ``vssim plan --verify N`` checks it against the exact
  engine on N VMs.
"""

from __future__ import annotations

from enum import StrEnum

from vssim.errors import InvalidArgumentError


class Engine(StrEnum):
    EXACT = "exact"
    ESTIMATE = "estimate"

    @classmethod
    def of(cls, value: str | Engine) -> Engine:
        """``value`` as an engine, or a precise error naming the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(e.value for e in cls)
            raise InvalidArgumentError(f"engine {value!r}: expected one of {choices}") from None

    @property
    def description(self) -> str:
        """How a report names what made its figures."""
        if self is Engine.ESTIMATE:
            return "the estimate engine (expected counts in closed form)"
        return "the exact engine (every guest write simulated)"


#: The estimate's workload clock: its cost is per window, not per write, and its figures do not
#: depend on where windows are cut (the diff area only grows between deletions, and deletions are
#: found by root-finding inside a window), so the clock steps an hour (model choice: the longest
#: window a modelled run allows).
ESTIMATE_WINDOW_S = 3_600.0
