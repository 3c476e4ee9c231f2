# Mirrors the Makefile's install (not built on the development machine: no Docker engine there).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      make chromium dataset-fashion-mnist libgl1 libglib2.0-0 nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
# torch==2.13.0 must resolve to a CPU build; on a plain PyPI mirror point pip at the CPU index:
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv .venv \
 && .venv/bin/pip install --no-cache-dir -r requirements.txt \
 && .venv/bin/pip install --no-cache-dir --no-deps -r requirements-nodeps.txt
# onnxruntime-web for the export's web bundle, at the version package-lock.json pins
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts --loglevel=error

COPY . .
ENV GRADIO_ANALYTICS_ENABLED=False DS_HOST=0.0.0.0
EXPOSE 7860
# Inside a container the studio must listen on all interfaces to be reachable through -p 7860:7860.
CMD ["sh", "-c", ".venv/bin/python -m engine data sample --count 101 --seed 0 --out data/sample && .venv/bin/python app.py --host 0.0.0.0 --port 7860"]
