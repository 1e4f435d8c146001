"""The native engine: persistent Ray workers, trials as data."""
