# One image for beat, workers, Flower and the migrate step. They must agree exactly on task
# names, options and schema revision; one image built from one uv.lock guarantees it, and the
# process role is chosen by the command (see compose.yaml, beat/ and workers/).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PATH=/app/.venv/bin:$PATH

RUN pip install --no-cache-dir uv==0.13.9 \
 && useradd --system --create-home --home-dir /home/gim --uid 10001 gim

WORKDIR /app
# Dependencies first (cached layer), exactly as locked; then the project itself.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY gim_tasks ./gim_tasks
COPY beat/entrypoint.sh /usr/local/bin/gim-beat
COPY workers/entrypoint.sh /usr/local/bin/gim-worker
RUN uv sync --frozen --no-dev && chmod +x /usr/local/bin/gim-beat /usr/local/bin/gim-worker

USER gim
CMD ["gim", "status"]
