"""Run the class-to-class study (saekit.testbed.c2c) and write study.json + study.md into --out.

python scripts/testbed_c2c_study.py --cache /work/data/layers/testbed --out docs/results/testbed_c2c
"""

from __future__ import annotations

import argparse
from pathlib import Path

from saekit.atomic import write_json_atomic, write_text_atomic
from saekit.testbed.c2c import format_c2c, run_c2c_study
from saekit.testbed.config import TestbedConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cache", required=True, help="testbed cache folder (models/, saes/)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--harvest-images", type=int, default=200)
    ap.add_argument("--sae-steps", type=int, default=300)
    args = ap.parse_args()
    cfg = TestbedConfig(harvest_images=args.harvest_images, sae_steps=args.sae_steps, threads=1)
    res = run_c2c_study(cfg, args.cache)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "study.json", res)
    text = format_c2c(res)
    write_text_atomic(out / "study.md", text + f"\n\n{res['seconds']:.0f} s\n")
    print(text)


if __name__ == "__main__":
    main()
