# The trainer image run by the daily Cloud Run job (terraform/trainer.tf):
# `python -m velocast.retrain` with the offline extras. Built by `make trainer-image`.
# Pinned base: python 3.12 like the functions' runtime (python312), slim Debian 12.
FROM python:3.12-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Cloud Run gives the job 2 vCPUs by default (trainer_resources); more OpenMP
    # threads than cores made HistGradientBoosting 10x slower here (tests/conftest.py).
    OMP_NUM_THREADS=2

WORKDIR /app
COPY pyproject.toml ./
COPY shared ./shared
RUN pip install ".[train]" && useradd --system --uid 10001 trainer
USER 10001

ENTRYPOINT ["python", "-m", "velocast.retrain"]
