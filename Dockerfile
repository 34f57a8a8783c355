# syntax=docker/dockerfile:1
# One image for every functions-framework target in main.py: TARGET picks webhook, cron,
# admin or worker. It holds the runtime dependencies and the deployed code only: no CLI
# (typer, rich), no embedded PostgreSQL, no test or lint tools, no hookyard/ package.
#
#   docker build -t hookyard .
#   docker run -p 8080:8080 -e TARGET=webhook -e HOOKYARD_SECRETS=env \
#     -e HOOKYARD_SECRET_WEBHOOK_SECRET_STRIPE=whsec_... hookyard
#
# Migrations run as a one-off job with the same image before a new revision takes traffic
# (the targets only check the revision, in /health/ready):
#   gcloud run jobs create hookyard-migrate --image IMAGE --command python \
#     --args=-m,common.db.migrate --set-env-vars HOOKYARD_CLOUD_SQL_INSTANCE=P:R:I,...
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# The uv the Makefile pins (UV_VERSION), so the image resolves uv.lock exactly as `make` does.
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /src
COPY pyproject.toml uv.lock ./
# [project.dependencies] only: no extras (cli, local), no dependency groups (dev).
RUN uv sync --frozen --no-dev --no-install-project

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/venv/bin:$PATH \
    HOOKYARD_ENV=gcp \
    TARGET=webhook \
    PORT=8080
# Same path as in the builder: a virtual environment's scripts name their interpreter.
COPY --from=builder /venv /venv
WORKDIR /app
COPY main.py ./
COPY common/ common/
COPY composition/ composition/
COPY functions/ functions/
COPY workers/ workers/
COPY handlers/ handlers/
# Bytecode compiled at build time: the code stays root-owned and read-only at run time.
RUN python -m compileall -q /app
USER 10001:10001
EXPOSE 8080
# functions-framework serves through gunicorn (its own workers/threads/timeout defaults, as
# on Cloud Run); exec makes it PID 1, so Cloud Run's SIGTERM reaches it. No HEALTHCHECK:
# Cloud Run probes /health/live and /health/ready itself.
CMD ["/bin/sh", "-c", "exec functions-framework --target \"$TARGET\" --source main.py"]
