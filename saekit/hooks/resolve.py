"""Find the module a hook point names, with helpful suggestions when the path is wrong."""

from __future__ import annotations

import difflib

from torch import nn

from saekit.errors import HookPointError
from saekit.hooks.hookpoint import HookPoint


def resolve_module(model: nn.Module, hp: HookPoint | str) -> nn.Module:
    """Return the submodule at `hp.module` ("" = the model itself).

    Raises HookPointError naming the closest existing module paths (difflib), because a typo such as
    `model.layer.15` should cost the user seconds, not a trip through `print(model)`.
    """
    hp = HookPoint.parse(hp)
    if hp.module == "":
        return model
    modules = dict(model.named_modules())
    found = modules.get(hp.module)
    if found is not None:
        return found
    names = [n for n in modules if n]
    close = difflib.get_close_matches(hp.module, names, n=5, cutoff=0.6)
    if not close:
        # fall back to names sharing the longest existing prefix, so deep typos still get a hint
        parts = hp.module.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut]) + "."
            close = [n for n in names if n.startswith(prefix) and n.count(".") == prefix.count(".")][:5]
            if close:
                break
    hint = (
        f" Did you mean: {', '.join(close)}?"
        if close
        else f" Top-level modules: {', '.join(n for n in names if '.' not in n)[:300]}"
    )
    raise HookPointError(
        f"hook point {str(hp)!r}: the model ({type(model).__name__}) has no module {hp.module!r}.{hint} "
        f"List all with `[n for n, _ in model.named_modules()]`."
    )
