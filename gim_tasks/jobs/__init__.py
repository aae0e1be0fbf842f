"""Job bodies: one module per job. A body takes a :class:`~gim_tasks.jobs.base.JobContext`
(connections, options, a stop token, a progress callback, counters) and knows nothing of
Celery, so the worker, ``gim run --local`` and tests share it."""
