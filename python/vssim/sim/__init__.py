"""The SimPy layer: virtual time and the cluster's shared resources. :mod:`.backup` runs one backup
as a process, :mod:`.resources` models NICs, CSV storage and the backup target, :mod:`.timeline`
records every step, :mod:`.costs` holds the step durations."""
