"""`saekit info PATH`: describe an SAE folder or an activation store."""

from __future__ import annotations

import json
from pathlib import Path

from saekit.errors import SaekitError


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: saekit info PATH   (an SAE folder or an activation store folder)")
        return 0
    path = Path(argv[0])
    if (path / "config.json").exists():
        from saekit.sae.io import load_sae

        sae = load_sae(path)
        info = {
            "kind": "sae",
            "arch": sae.arch,
            "d_in": sae.d_in,
            "d_sae": sae.d_sae,
            "k": sae.cfg.k,
            "dtype": sae.cfg.dtype,
            "input_scale": float(sae.input_scale),
            "provenance": sae.cfg.to_dict()["provenance"],
        }
    elif (path / "manifest.json").exists():
        info = json.loads((path / "manifest.json").read_text())
        info.pop("shards", None)
        info = {"kind": "activation_store", **info}
    else:
        raise SaekitError(
            f"{path} is neither an SAE folder (config.json) nor an activation store (manifest.json)"
        )
    print(json.dumps(info, indent=2))
    return 0
