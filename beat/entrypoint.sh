#!/bin/sh
# Beat process: the gim-tasks RedBeat scheduler driving the firing engine. Run two for high
# availability; the RedBeat lock keeps one active and the other on standby. Extra arguments go
# to `celery beat`.
set -e
exec gim beat "$@"
