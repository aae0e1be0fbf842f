#!/bin/sh
# Worker process. Identical pods scale out; GIM_WORKER_QUEUES picks the queues this pool serves
# (default: all), GIM_WORKER_CONCURRENCY its size. Extra arguments go to `celery worker`.
set -e
exec celery -A gim_tasks.runtime.celery_app worker \
  --loglevel "${GIM_LOG_LEVEL:-INFO}" \
  --queues "${GIM_WORKER_QUEUES:-etl,aggregate,maintenance,stats,export,notify}" \
  --concurrency "${GIM_WORKER_CONCURRENCY:-2}" \
  --hostname "worker@%h" \
  "$@"
