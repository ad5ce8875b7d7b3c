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
if [ "$rc" -ne 0 ] || [ "$#" -ne 0 ] || [ "${SAEKIT_SECOND_DISPATCH:-avx2}" = "none" ]; then exit $rc; fi
# The numerics-heavy part once more with the kernels an AVX2-only CPU runs (no AVX-512, no native bf16,
# no AMX): MKL, oneDNN and ATen's own vector code then sum in other orders, so a test whose tolerance
# holds only on the CPU it was written on fails here as well. SAEKIT_SECOND_DISPATCH=none skips it.
echo "== again with AVX2 dispatch (ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2)"
ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 \
  python -m pytest -q -m "not slow" -p no:cacheprovider tests/sae tests/formats tests/train tests/eval
rc=$?
if [ "$rc" -eq 5 ]; then echo "no tests were collected"; exit 1; fi
exit $rc
