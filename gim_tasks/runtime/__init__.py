"""The distributed runtime: Celery app, beat scheduler, locks, runs, manager operations."""
