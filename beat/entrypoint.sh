#!/bin/sh
# Beat process: the RedBeat-backed scheduler. Run two for high availability; the RedBeat lock
# keeps one active and the other on standby. Extra arguments go to `celery beat`.
set -e
exec celery -A gim_tasks.runtime.celery_app beat \
  --scheduler redbeat.RedBeatScheduler \
  --loglevel "${GIM_LOG_LEVEL:-INFO}" \
  --max-interval "${GIM_BEAT_MAX_INTERVAL:-5}" \
  "$@"
