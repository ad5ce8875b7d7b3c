#!/usr/bin/env bash
# Install (idempotent), lint, and run the test suite: everything except tests marked `slow`.
# Real-model tests (marked `realmodel`) run here: they use the embedded SmolLM2 / MiniLM.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
# Lint is part of the suite: a new ruff finding (line length, unused import, bugbear, complexity > 12)
# fails CI like a failing test. `ruff check --fix` repairs the mechanical ones.
python -m ruff check saekit tests benchmarks || { echo "ruff found problems (see above)"; exit 1; }
python -m pytest -q -m "not slow" -p no:cacheprovider "$@"
rc=$?
# pytest exits 5 when it collected no tests: that is a failure of the suite, not a pass.
if [ "$rc" -eq 5 ]; then echo "no tests were collected"; exit 1; fi
exit $rc
