"""Benchmark: how fast `gim` answers (issue "A command line that answers at once").

Median wall time of 7 cold starts (a new process each) of `gim version`, `gim --help`,
`gim schedule next --options-file F` and `gim jobs --json` against a local database, each as
a ratio to the baseline measured in the same run: `python -c "import typer"` (what any Typer
command line pays before reading its arguments). Targets: version and --help <= 2.5x,
schedule next <= 4x, jobs <= 6x.

Runs its own PostgreSQL and Redis on free ports; stops them at the end.
Run: ./dev bench cli [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import servers
from gim_tasks.db import migrate
from gim_tasks.db.engine import make_engine

BIN = Path(sys.executable).parent
TARGETS = {"version": 2.5, "--help": 2.5, "schedule next": 4.0, "jobs --json": 6.0}


def cold_start(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr or done.stdout}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with servers() as (base, pg, rd):
        url = pg.url("gim")
        migrate.upgrade(make_engine(url))
        ini = base / "schedule.ini"
        ini.write_text("[schedule]\ntimezone = Europe/Berlin\nrun-aggregates = true\n")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIM_")},
            "GIM_DATABASE_URL": url,
            "GIM_REDIS_URL": rd.url(0),
        }
        gim = str(BIN / "gim")
        commands = {
            "version": [gim, "version"],
            "--help": [gim, "--help"],
            "schedule next": [gim, "schedule", "next", "--options-file", str(ini), "--json"],
            "jobs --json": [gim, "jobs", "--json"],
        }
        baseline = cold_start([sys.executable, "-c", "import typer"], env, args.runs)
        print(f'baseline python -c "import typer": median {baseline * 1000:.0f} ms')
        missed = []
        for name, argv in commands.items():
            seconds = cold_start(argv, env, args.runs)
            ratio = seconds / baseline
            verdict = "ok" if ratio <= TARGETS[name] else "MISSED"
            if verdict != "ok":
                missed.append(name)
            print(
                f"gim {name:<14} median {seconds * 1000:5.0f} ms  ratio {ratio:4.1f} "
                f"(target <= {TARGETS[name]}) {verdict}"
            )
        if missed:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
