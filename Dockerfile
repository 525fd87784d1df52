# microdc-pipeline application image: the `microdc` CLI (simulator, topic creation, and the
# workers, landing and models as they land). Multi-stage: build a wheel, install it in a slim
# runtime, run as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 microdc
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY schemas /opt/microdc/schemas
COPY sql /opt/microdc/sql
USER microdc
WORKDIR /home/microdc
# The lake derives its Arrow schemas from the contracts in schemas/.
ENV PYTHONUNBUFFERED=1 MICRODC_SCHEMAS_DIR=/opt/microdc/schemas
HEALTHCHECK --interval=30s --timeout=5s CMD ["microdc", "--help"]
ENTRYPOINT []
CMD ["microdc", "--help"]
