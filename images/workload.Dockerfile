# The workload image: train, search and export (`gen5nas <step> -f spec.yaml`), CUDA torch,
# torchrun for multi-GPU / multi-node training.
#   docker build -f images/workload.Dockerfile -t ghcr.io/gen5nas/workload:0.1.0 .
ARG CUDA_TORCH=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${CUDA_TORCH}
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY workloads/ workloads/
COPY operator/ operator/
# torch comes from the base image (CUDA build); pip keeps it since it satisfies the extra.
RUN pip install --no-cache-dir ".[workloads]" && rm -rf /src
WORKDIR /work
# The operator's pods run as 65532 on a read-only root with an emptyDir at /tmp as $HOME; the
# image says the same, so a plain `docker run` is not root either.
USER 65532:65532
ENV PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4 HOME=/tmp
ENTRYPOINT []
CMD ["gen5nas", "--help"]
