"""Celery queues: one per job category, so worker pools can be sized per queue."""

QUEUES = ("etl", "aggregate", "maintenance", "stats", "export", "backfill", "notify")

#: H2: the task of one Extract part (runtime/parts.py); routed to the etl queue.
PART_TASK = "Job_ExtractICON.part"
