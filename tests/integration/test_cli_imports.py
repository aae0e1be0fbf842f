"""`gim` answers at once: each command imports only what it uses (issue "A command line that
answers at once"). Every case runs the command in a fresh interpreter and reads
``sys.modules`` after it ran; a heavy module loaded by a light command fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Never needed to print a version or help. (pydantic comes with our settings; typer 0.29
#: coerced parameters with it, which is why pyproject keeps typer below 0.29.)
SERVER_STACK = ("sqlalchemy", "psycopg", "pydantic", "pydantic_settings", "redis")
#: The worker and beat side, the web app, the job bodies, password hashing.
WORKER = ("celery", "kombu", "redbeat")
WEB = ("fastapi", "starlette", "uvicorn", "gim_tasks.web.app", "argon2")
BODIES = tuple(
    f"gim_tasks.jobs.{job}"
    for job in ("extract", "transform", "aggregate", "maintain", "update_stats", "export")
)

SCHEDULE_INI = "[schedule]\ntimezone = Europe/Berlin\netl-frequency = 25\n"

CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    ("version", ["version"], SERVER_STACK + WORKER + WEB + BODIES),
    ("help", ["--help"], SERVER_STACK + WORKER + WEB + BODIES),
    ("run help", ["run", "--help"], SERVER_STACK + WORKER + WEB + BODIES),
    (
        "schedule next",
        ["schedule", "next", "--options-file", "{ini}", "--json"],
        SERVER_STACK + WORKER + WEB + BODIES,
    ),
    ("status", ["status", "--json"], WORKER + WEB + BODIES),
    ("jobs", ["jobs", "--json"], ("sqlalchemy", *WORKER, *WEB, *BODIES)),
    ("config show", ["config", "show", "--json"], WORKER + WEB + BODIES),
    ("run (on a worker)", ["run", "Job_TransformGIM"], WEB + BODIES),
]

PROBE = """
import json, sys
from gim_tasks.cli.main import main
code = main(json.loads(sys.argv[1]))
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
sys.exit(code)
"""


@pytest.mark.parametrize(("argv", "heavy"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_light_commands_do_not_import_heavy_modules(
    gim_env: dict[str, str], tmp_path: Path, argv: list[str], heavy: tuple[str, ...]
) -> None:
    ini = tmp_path / "schedule.ini"
    ini.write_text(SCHEDULE_INI)
    args = [a.format(ini=ini) for a in argv]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        env={**os.environ, **gim_env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    modules = json.loads(done.stdout.rsplit("MODULES ", 1)[1])
    loaded = sorted(
        name for name in modules if any(name == h or name.startswith(h + ".") for h in heavy)
    )
    assert loaded == [], f"`gim {' '.join(args)}` loaded {loaded}"
