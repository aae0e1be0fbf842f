"""A site job added exactly by the README's recipe ("Adding a job"): a body module
(``check_mart_body``), this catalogue row with its option rows, and
``GIM_JOB_MODULES=tests.recipe.check_mart`` in every process's environment. The row's module
imports nothing but ``gim_tasks.schedule.spec`` (the catalogue loads it while it is being
built); the body is imported by the worker that runs it. ``tests/integration/
test_job_recipe.py`` loads it and finds it in the plan, the ledger, the Scheduled list, the API
and a real run."""

from __future__ import annotations

from gim_tasks.schedule.spec import JobSpec, OptionRow

NAME = "Job_CheckMartGIM"


JOBS = (
    JobSpec(
        NAME,
        "Checks",
        "export",
        manual=True,
        enabled_by="run-check-mart",
        description="Counts the interaction facts: a site's own check.",
        scheduled_by=("timezone", "run-scheduler", "run-check-mart", "check-mart-schedule"),
        exclusivity="export",
        body="tests.recipe.check_mart_body:run",
        words=lambda options: (
            f"{options.value('check-mart-schedule').describe()}, {options.timezone}"
        ),
        stream=lambda options: options.value("check-mart-schedule"),
        launched="check-mart schedule",
        ledger="check-mart",
        options=(
            OptionRow("run-check-mart", "boolean", "false", f"Launch {NAME} on its schedule."),
            OptionRow("check-mart-schedule", "cron", "45 5", f"Cron of {NAME}."),
        ),
    ),
)
