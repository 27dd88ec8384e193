# janusq: one image for every role; the command picks it.
#   docker build -t janusq .
#   docker run janusq janusq serve | janusq worker [--queues generate,understand] | janusq migrate
#
# Torch: the pin in pyproject.toml (torch==2.13.0) resolved from the default index gives, on
# Linux x86_64, the CUDA build (it pulls the nvidia-* runtime wheels, several GB), which is what
# the GPU workers need; the host only needs an NVIDIA driver and the container toolkit.
# To choose the build explicitly, name a PyTorch wheel index, e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128   (a given CUDA version)
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu     (small, CPU only)
# Only torch (and its own dependencies) come from that index; the version stays the pinned one.

# ---- the project as a wheel, so no source tree is left in the runtime image ----
FROM python:3.11-slim AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY janusq/ janusq/
COPY api/ api/
COPY worker/ worker/
COPY janus_model/ janus_model/
COPY jobs/ jobs/
COPY migrations/ migrations/
RUN pip wheel --no-deps --wheel-dir /wheels .

# ---- runtime ----
FROM python:3.11-slim
ARG TORCH_INDEX_URL=""
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies first, from pyproject.toml alone: this big layer (torch) is rebuilt only when
# the dependency pins change, not on every source edit.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import re, tomllib; \
deps = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']; \
name = lambda d: re.split(r'[\[=<>!~; ]', d, maxsplit=1)[0].lower(); \
open('/tmp/torch.txt', 'w').write('\n'.join(d for d in deps if name(d) == 'torch')); \
open('/tmp/requirements.txt', 'w').write('\n'.join(deps))" \
 && if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" -r /tmp/torch.txt; fi \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/pyproject.toml /tmp/torch.txt /tmp/requirements.txt

COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

# A fixed uid so that volumes keep their ownership across rebuilds. The data dir (tiny model,
# local storage when no S3 is configured) and the Hugging Face cache are created here, owned
# by that user, so named volumes mounted on them start out writable.
RUN useradd --system --create-home --uid 10001 --home-dir /home/janus janus \
 && mkdir -p /var/lib/janus /cache/huggingface \
 && chown janus:janus /var/lib/janus /cache/huggingface

# Defaults only; database, broker and storage URLs and all credentials come from the
# environment at run time (see docker-compose.yml). Without them the service falls back to
# SQLite, a local queue and local files under JANUS_DATA_DIR, as `make run` does.
ENV JANUS_HOST=0.0.0.0 \
    JANUS_PORT=8000 \
    JANUS_DATA_DIR=/var/lib/janus \
    HF_HOME=/cache/huggingface

USER janus
WORKDIR /var/lib/janus
EXPOSE 8000
CMD ["janusq", "serve"]
