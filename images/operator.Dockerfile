# The gen5nas operator: kopf + the torch-free spec models. No torch, no CUDA (~200 MB).
#   docker build -f images/operator.Dockerfile -t ghcr.io/gen5nas/operator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY workloads/ workloads/
COPY operator/ operator/
RUN pip install --no-cache-dir --prefix=/install ".[operator]"

FROM python:3.11-slim
COPY --from=build /install /usr/local
# A fixed non-root UID (the chart sets runAsNonRoot and a read-only root filesystem).
USER 65532:65532
ENV PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["gen5nas-operator"]
