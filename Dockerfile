# microdc-pipeline application image: the `microdc` CLI (stream workers, lander, simulator, topic
# creation, SQL models). Used by docker-compose.kafka.yml; on its own, e.g.:
#
#   docker build -t microdc-pipeline .
#   docker run --rm microdc-pipeline --help
#   docker run --rm -e MICRODC_KAFKA_BOOTSTRAP=broker:9092 -p 6066:6066 microdc-pipeline \
#       worker --web-bind 0.0.0.0 --data-dir /var/lib/microdc/worker
#
# Two stages: `builder` makes a virtual environment at /opt/venv from pip wheels; `runtime` copies
# only that venv into a clean python:3.11-slim and runs as an unprivileged user with a fixed uid.
# The contracts (schemas/), SQL models (sql/), templates and demo fleet ship inside the package; mount
# your own fleet file read-only and point MICRODC_FLEET at it.

FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# Same base image and path as the runtime stage, so the venv's interpreter links stay valid.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every code edit. Binary wheels are preferred; the slim image has no compiler.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install --prefer-binary --requirement /tmp/requirements.txt
# Then the package itself (a regular, non-editable install into the venv).
COPY README.md ./
COPY pipeline ./pipeline
RUN pip install --no-deps . \
 && pip check \
 && microdc --help > /dev/null

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="microdc-pipeline" \
      org.opencontainers.image.description="Streaming analytics for micro data centers: energy, cost, carbon and SLOs per request." \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed uid/gid (10001), so volume ownership and Kubernetes' runAsNonRoot work. The state
# directories exist in the image owned by that user: Docker seeds a new named volume mounted on
# them with this ownership, so the lake, worker state and warehouse volumes are writable.
RUN groupadd --gid 10001 microdc \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/microdc --no-create-home \
        --shell /usr/sbin/nologin microdc \
 && mkdir -p /var/lib/microdc/lake /var/lib/microdc/worker /var/lib/microdc/warehouse \
 && chown -R 10001:10001 /var/lib/microdc
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GX_ANALYTICS_ENABLED=false \
    MICRODC_LAKE=/var/lib/microdc/lake
USER 10001:10001
WORKDIR /var/lib/microdc
# The worker's web server (GET /health, GET /metrics); start it with --web-bind 0.0.0.0.
EXPOSE 6066
# Probes a worker on its default web port: healthy once it has joined the consumer group and is
# not rebalancing ({"status": "ok"}). Other commands (lander, one-shot jobs) override or disable
# this in docker-compose.kafka.yml; a worker on another --web-port needs its own probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=4 \
    CMD ["python", "-c", "import json, sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=4); sys.exit(0 if json.load(r).get('status') == 'ok' else 1)"]
ENTRYPOINT ["microdc"]
CMD ["--help"]
