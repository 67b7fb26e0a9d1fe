# One image for the Dagster user-code server, the webserver and the daemon (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    DAGSTER_HOME=/opt/dagster/home
# Build with --build-arg TORCH_PIP_ARGS="--index-url <a CPU-only torch wheel index>" to keep the
# image small; without it pip takes torch from the default index (a CUDA build on x86_64).
ARG TORCH_PIP_ARGS=""
RUN pip install torch==2.13.0 ${TORCH_PIP_ARGS}
COPY pyproject.toml constraints.txt README.md ./
COPY ops_pipelines ./ops_pipelines
RUN pip install -c constraints.txt .
COPY deploy/dagster.postgres.yaml $DAGSTER_HOME/dagster.yaml
COPY deploy/workspace.grpc.yaml /app/workspace.yaml
COPY docs ./docs
# Not root; storage/ (run logs, shared through a volume) is created here so the volume is owned
# by this user.
RUN useradd --create-home --uid 1000 dagster \
    && mkdir -p $DAGSTER_HOME/storage \
    && chown -R dagster:dagster $DAGSTER_HOME
USER dagster
EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "ops_pipelines.definitions", "--location-name", "ops_pipelines"]
