"""Deterministic identifiers. Every GUID vssim prints derives from the scenario's seed with
UUID version 5, so two runs of one scenario print the same ids (goldens depend on it)."""

from __future__ import annotations

import functools
import uuid

#: vssim's UUID-5 namespace (itself ``uuid5(NAMESPACE_URL, "https://vssim/ids")``).
VSSIM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://vssim/ids")


@functools.lru_cache(maxsize=1 << 16)
def derive_guid(seed: int, *parts: object) -> uuid.UUID:
    """The GUID of the object named by ``parts`` in the scenario seeded ``seed`` (kept: a
    modelled run asks for the same writers' and components' ids once per snapshot set).
    """
    return uuid.uuid5(VSSIM_NAMESPACE, ":".join([str(seed), *(str(p) for p in parts)]))


def braced(guid: uuid.UUID) -> str:
    """``{66841cd4-6ded-4f4b-8f17-fd23f8ddc3de}``: how Windows prints a GUID."""
    return "{" + str(guid) + "}"
