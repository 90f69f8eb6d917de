"""Well-known VSS identities (spec §4): the one home of every fixed writer and provider id."""

from __future__ import annotations

import uuid

HYPERV_WRITER_ID = uuid.UUID("66841cd4-6ded-4f4b-8f17-fd23f8ddc3de")
HYPERV_WRITER_NAME = "Microsoft Hyper-V VSS Writer"
CSV_WRITER_ID = uuid.UUID("1072ae1c-e5a7-4ea1-9e4a-6f7964656570")
CSV_WRITER_NAME = "Cluster Shared Volume VSS Writer"
SYSTEM_WRITER_ID = uuid.UUID("e8132975-6f93-4464-a53e-1050253ae220")
REGISTRY_WRITER_ID = uuid.UUID("afbab4a2-367d-4d15-a586-71dbb18f8485")

SYSTEM_PROVIDER_ID = uuid.UUID("b5946137-7b9f-4925-af80-51abd60b20d5")
SYSTEM_PROVIDER_NAME = "Microsoft Software Shadow Copy provider 1.0"
HARDWARE_PROVIDER_ID = uuid.UUID("2f900f90-00e9-440e-873a-96ca5eb079e5")
HARDWARE_PROVIDER_NAME = "Microsoft iSCSI Target VSS Hardware Provider"
# Model choice (spec §4): the CSV providers' ids are not public; these were generated once as
# uuid5(NAMESPACE_URL, "https://vssim/csv-shadow-copy-provider[-helper]") and are vssim's own.
CSV_PROVIDER_ID = uuid.UUID("68c1c421-01d9-513f-b9c7-707bd0340f4d")
CSV_PROVIDER_NAME = "Microsoft CSV Shadow Copy Provider"
CSV_HELPER_PROVIDER_ID = uuid.UUID("c57175ff-9277-5e09-a3f2-3d986b0d720e")
CSV_HELPER_PROVIDER_NAME = "Microsoft CSV Shadow Copy Helper Provider"
