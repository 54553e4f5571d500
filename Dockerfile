# syntax=docker/dockerfile:1
# The image the Helm chart runs (deploy/helm/switchboard): every role is this image with
# another command. Build: docker build -t REGION-docker.pkg.dev/PROJECT/switchboard/switchboard:TAG .
# tests/deploy/test_image.py checks these steps against the lock file, the package list and
# the chart (user id, ports, log format); docs/deploy.md has the build and push commands.

# Build stage: resolve the locked runtime dependencies into a virtualenv.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml requirements.lock README.md ./
# Runtime deps only: drop the dev/test pins from the lock.
RUN grep -vE '^(pytest|pytest-asyncio|pytest-timeout|freezegun|hypothesis|ruff|mypy|mypy-extensions|librt|types-[a-z-]+|langgraph-checkpoint-conformance|langgraph-checkpoint-sqlite|langgraph-checkpoint-postgres|iniconfig|pluggy|pathspec|playwright|pyee|kubernetes-validate|importlib-resources|sqlite-vec)==' requirements.lock > runtime.lock \
 && pip install -r runtime.lock
COPY switchboard ./switchboard
COPY bot ./bot
COPY skills ./skills
COPY scheduler ./scheduler
COPY storage ./storage
COPY evals ./evals
COPY sandbox ./sandbox
RUN pip install --no-deps .

# Final stage: slim, non-root (uid/gid 10001, as the chart's securityContext), only the venv.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0 PORT=3000 \
    SWITCHBOARD_LOG_FORMAT=json
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --create-home switchboard
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"3000\")}/healthz', timeout=2)"]
CMD ["switchboard", "serve"]
