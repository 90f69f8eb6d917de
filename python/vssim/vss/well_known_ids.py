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

# The in-box writers of a Hyper-V failover cluster node (Microsoft's "In-Box VSS Writers" page;
# the cluster writer's id as Windows lists it). Three are express writers whose instance ids are
# fixed by Windows (the same on every machine, as any `vssadmin list writers` shows).
TASK_SCHEDULER_WRITER_ID = uuid.UUID("d61d61c8-d73a-4eee-8cdd-f6f9786b7124")
TASK_SCHEDULER_WRITER_INSTANCE_ID = uuid.UUID("1bddd48e-5052-49db-9b07-b96f96727e6b")
METADATA_STORE_WRITER_ID = uuid.UUID("75dfb225-e2e4-4d39-9ac9-ffaff65ddf06")
METADATA_STORE_WRITER_INSTANCE_ID = uuid.UUID("088e7a7d-09a8-4cc6-a609-ad90e75ddc93")
PERFORMANCE_COUNTERS_WRITER_ID = uuid.UUID("0bada1de-01a9-4625-8278-69e735f39dd2")
PERFORMANCE_COUNTERS_WRITER_INSTANCE_ID = uuid.UUID("f0086dda-9efc-47c5-8eb6-a944c3d09381")
ASR_WRITER_ID = uuid.UUID("be000cbe-11fe-4426-9c58-531aa6355fc4")
SHADOW_COPY_OPTIMIZATION_WRITER_ID = uuid.UUID("4dc3bdd4-ab48-4d07-adb0-3bee2926fd7f")
BITS_WRITER_ID = uuid.UUID("4969d978-be47-48b0-b100-f328f07ac1e0")
WMI_WRITER_ID = uuid.UUID("a6ad56c2-b509-4e6c-bb19-49d8f43532f0")
CLUSTER_DATABASE_WRITER_ID = uuid.UUID("41e12264-35d8-479b-8e5c-9b23d1dad37e")
COM_REGDB_WRITER_ID = uuid.UUID("542da469-d3e1-473c-9f4f-7847f01fc64f")
