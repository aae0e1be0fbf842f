"""Operator options (SPEC §2): the registry, typed values, storage, and the configuration
check (SPEC §3)."""
