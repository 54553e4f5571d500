# syntax=docker/dockerfile:1
# Build stage: resolve the locked runtime dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml requirements.lock README.md ./
# Runtime deps only: drop the dev/test pins from the lock.
RUN grep -vE '^(pytest|pytest-asyncio|pytest-timeout|freezegun|ruff|mypy|mypy-extensions|types-|langgraph-checkpoint-conformance|langgraph-checkpoint-sqlite|langgraph-checkpoint-postgres|psycopg|psycopg-binary|psycopg-pool|iniconfig|pluggy|pathspec|playwright|pyee)==' requirements.lock > runtime.lock \
 && pip install -r runtime.lock
COPY bot ./bot
COPY skills ./skills
COPY scheduler ./scheduler
COPY storage ./storage
COPY evals ./evals
COPY sandbox ./sandbox
RUN pip install --no-deps .

# Final stage: slim, non-root, only the virtualenv.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0 PORT=3000
RUN useradd --system --uid 10001 --home-dir /app --create-home switchboard
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER switchboard
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz', timeout=2)" || exit 1
CMD ["switchboard", "serve"]
