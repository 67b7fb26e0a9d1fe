# One image for the user-code server, the webserver and the daemon.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DAGSTER_HOME=/opt/dagster/home
# Build with --build-arg TORCH_PIP_ARGS="--index-url <a CPU-only torch wheel index>" to keep the
# image small; without it pip takes torch from the default index (a CUDA build on x86_64).
ARG TORCH_PIP_ARGS=""
RUN pip install torch==2.13.0 ${TORCH_PIP_ARGS}
COPY pyproject.toml constraints.txt README.md ./
COPY ops_pipelines ./ops_pipelines
RUN pip install -c constraints.txt . && mkdir -p $DAGSTER_HOME
COPY deploy/dagster.postgres.yaml $DAGSTER_HOME/dagster.yaml
COPY deploy/workspace.grpc.yaml /app/workspace.yaml
COPY docs ./docs
