"""Celery queues: one per job category, so worker pools can be sized per queue."""

QUEUES = ("etl", "aggregate", "maintenance", "stats", "export", "backfill", "notify")
