"""The SimPy driver: virtual time and the cluster's shared links, carrying out the protocol.

:mod:`.backup_run` runs one backup as a process, composed of :mod:`.writer_driver` (writer
events), :mod:`.csv_access` (ownership, redirected access) and :mod:`.provider_steps` (provider
calls, flush-and-hold) around one :mod:`.run_scope`; what a run does with data is its
:mod:`.data_path` (an interface, implemented above this package) and every byte moves through
its :mod:`.links`. :mod:`.costs` holds the step durations; :mod:`.records` the plain results the
metric tables are built from.
"""
