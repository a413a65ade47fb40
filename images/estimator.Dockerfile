# The PPA estimator's gRPC server (analytical accelerator model + onnxruntime on CPU).
# CPU-only torch (to build ONNX from an architecture); no CUDA.
#   docker build -f images/estimator.Dockerfile -t ghcr.io/gen5nas/estimator:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY workloads/ workloads/
COPY operator/ operator/
RUN pip install --no-cache-dir --prefix=/install \
      --extra-index-url https://download.pytorch.org/whl/cpu ".[workloads]"

FROM python:3.11-slim
COPY --from=build /install /usr/local
USER 65532:65532
ENV PYTHONUNBUFFERED=1
EXPOSE 50051
# Kubernetes probes it with its gRPC health service (grpc: {port}).
ENTRYPOINT ["gen5nas", "estimator", "serve"]
CMD ["--port", "50051"]
