#!/usr/bin/env bash
# Set up everything vidloader needs on a fresh machine, idempotently:
# a local virtualenv (.venv) with torch, PyAV, and vidloader installed editable
# with its test and bench extras. Re-running is cheap: it only reinstalls when
# pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "vidloader needs Python >= 3.10 (found: $("$PY" --version 2>&1 || echo none))" >&2
    exit 1
fi
if ! "$PY" -m venv --help >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq python3-venv
    else
        echo "python3 -m venv is missing: install python3-venv" >&2
        exit 1
    fi
fi

# System FFmpeg shared libraries for the optional torchcodec backend (torchcodec 0.13
# loads FFmpeg 4-8, libavcodec 58-62; Debian 12 has FFmpeg 5.1). Best effort:
# without them the torchcodec tests skip with the reason.
if ! { ldconfig -p 2>/dev/null || true; } | grep -E 'libavcodec\.so\.(5[89]|6[012]) ' >/dev/null; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
            || echo "note: could not install ffmpeg (torchcodec backend unavailable)" >&2
    else
        echo "note: FFmpeg shared libraries not found: install ffmpeg for the torchcodec backend" >&2
    fi
fi

stamp=.venv/.vidloader-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && .venv/bin/python -c 'import vidloader, torch, av' 2>/dev/null; then
    exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch: the pinned CPU build is what this project is tested with (any torch >= 2.1 works).
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    .venv/bin/python -m pip install -q "torch==${VIDLOADER_TORCH_VERSION:-2.13.0}" \
        || .venv/bin/python -m pip install -q "torch>=2.1"
fi
.venv/bin/python -m pip install -q -e ".[test,bench]"
touch "$stamp"
