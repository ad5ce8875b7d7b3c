"""`saekit <verb> ...` — a thin dispatcher. Each verb lives in `saekit/commands/<verb>.py`.

Verbs are imported lazily so `saekit --help` is instant and a verb's heavy dependencies (diffusers,
matplotlib) load only when used.
"""

from __future__ import annotations

import importlib
import sys

VERBS: dict[str, tuple[str, str]] = {
    "demo": (
        "saekit.commands.demo",
        "the whole loop on the embedded default: harvest, train, eval, analyse, steer",
    ),
    "harvest": ("saekit.commands.harvest", "collect activations from a model at a hook point into a store"),
    "train": ("saekit.commands.train", "train an SAE on an activation store"),
    "eval": (
        "saekit.commands.eval",
        "FVU, L0, dead %, CE loss recovered and KL of an SAE spliced into its model",
    ),
    "bench": (
        "saekit.commands.bench",
        "compare SAEs: core metrics, sparse probing, feature absorption, with 95% intervals",
    ),
    "analyze": ("saekit.commands.analyze", "what features mean: `analyze real|synthetic|compare`"),
    "scale": ("saekit.commands.scale", "measure activation scales at the hook point for steering strengths"),
    "steer": ("saekit.commands.steer", "steer generation with SAE features; side-by-side output"),
    "sweep": ("saekit.commands.sweep", "methods x layers x strengths x features, scored offline"),
    "testbed": (
        "saekit.commands.testbed",
        "`testbed build`: train a small FluxPipeline with known factors; `testbed lora`: a factor LoRA on it",
    ),
    "info": ("saekit.commands.info", "describe an SAE folder or activation store"),
    "export": ("saekit.commands.export", "write an SAE for SAELens, sparsify or dictionary_learning"),
    "browse": ("saekit.commands.browse", "build (and serve) the static HTML feature browser of an analysis"),
}


RENAMED_FLAGS: dict[str, dict[str, str]] = {
    "steer": {"--hook": "--hook-point", "--judge": "--verify"},
    "harvest": {"--hook": "--hook-point"},
    "eval": {"--hook": "--hook-point"},
    "demo": {"--hook": "--hook-point"},
    "analyze": {"--model-dtype": "--dtype"},
}
"""verb -> {old spelling: new spelling}. One flag name per meaning across verbs: `--hook-point` names a
hook point, `--dtype` a model dtype. The old spellings still work in 0.1.x, with a deprecation
message on stderr; drop an entry one release after it was added."""


def renamed_flags(verb: str, argv: list[str]) -> list[str]:
    """`argv` with deprecated flag spellings of `verb` replaced by the current ones (`--old VALUE` and
    `--old=VALUE`, hyphens or underscores), each reported once on stderr; everything after `--` is
    left alone."""
    renames = RENAMED_FLAGS.get(verb, {})
    out: list[str] = []
    warned: set[str] = set()
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        name, eq, value = arg.partition("=")
        new = renames.get(name.replace("_", "-")) if name.startswith("--") else None
        if new is not None:
            if name not in warned:
                print(f"saekit {verb}: {name} is deprecated; use {new}", file=sys.stderr)
                warned.add(name)
            arg = new + eq + value
        out.append(arg)
    return out


def _usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: saekit <verb> [flags]   (saekit <verb> --help for a verb's flags)", "", "verbs:"]
    lines += [f"  {v.ljust(width)}  {desc}" for v, (_, desc) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] in ("--version", "-V"):
        from saekit import __version__

        print(f"saekit {__version__}")
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        import difflib

        close = difflib.get_close_matches(verb, VERBS, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        print(f"saekit: unknown verb {verb!r}{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = VERBS[verb][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            print(f"saekit: verb {verb!r} is not available in this build", file=sys.stderr)
            return 2
        raise
    from saekit.errors import SaekitError

    try:
        return int(module.main(renamed_flags(verb, rest)) or 0)
    except SaekitError as exc:
        print(f"saekit {verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nsaekit {verb}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
