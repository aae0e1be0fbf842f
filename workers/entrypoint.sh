#!/bin/sh
# Worker process. Identical pods scale out; GIM_WORKER_QUEUES picks the queues this pool serves
# (default: all), GIM_WORKER_CONCURRENCY its size. Extra arguments go to `celery worker`.
# SIGTERM: warm shutdown, the current batch finishes and the run ends (or is handed back).
set -e
exec gim worker \
  --queues "${GIM_WORKER_QUEUES:-etl,aggregate,maintenance,stats,export,backfill,notify}" \
  --concurrency "${GIM_WORKER_CONCURRENCY:-2}" \
  --hostname "worker@%h" \
  "$@"
