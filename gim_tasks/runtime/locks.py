"""PostgreSQL advisory-lock keys of the runtime (no imports: the command line reads them)."""

#: Serialises admission decisions of the beat (beat.carry_out) and of manual starts
#: (manager.request_run, manager.readmit): neither acts on a stale view of the runs (M0, S2).
ADMISSION_LOCK_KEY = 0x67696D5F61646D  # "gim_adm"
