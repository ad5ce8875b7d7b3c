"""`saekit bench`: SAEBench-style metrics of several SAEs on one model, offline, every figure with a
bootstrap 95% interval.

- core (`core.py`): `saekit eval`'s FVU (with and without norm outliers), L0, never-firing and dense
  latents, CE / KL with the SAE spliced in, CE recovered against zero and mean ablation;
- sparse probing (`probing.py` on `tasks.py`): k-sparse probes on mean-pooled latents for tasks built
  from the embedded Bible and Shakespeare, against probes on the raw activations;
- feature absorption (`absorption.py`): first-letter identification of the vocabulary's words;
- seed groups (`seeds.py`): the spread of every figure across SAEs trained with different seeds.

The model passes that do not depend on an SAE (`activations.py`, `core_inputs`, `probe_data`,
`letter_probe`) run once per bench; each SAE then costs its own encoder passes and, for the core
metrics, one pass of the layers after the hook. `run.run_bench` drives it, `report.py` and `plot.py`
write bench.json, bench.md and bench.png.
"""

from saekit.bench.config import BenchConfig
from saekit.bench.run import run_bench

__all__ = ["BenchConfig", "run_bench"]
