"""saekit sets libgomp's spin count before torch loads, and keeps a value the user chose."""

import os
import subprocess
import sys

PROBE = (
    "import sys; import saekit, os; "
    "print(os.environ['GOMP_SPINCOUNT'], 'torch' in sys.modules)"
)


def _run(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | env_extra
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          check=True).stdout.split()  # fmt: skip


def test_default_spin_count_is_set_before_torch_and_user_value_wins():
    from saekit.openmp_env import SPIN

    assert _run({}) == [SPIN, "True"]  # set, and torch was imported after it (by saekit itself)
    assert _run({"GOMP_SPINCOUNT": "7"}) == ["7", "True"]


def test_the_setting_precedes_the_first_torch_import():
    code = (
        "import builtins, os; real = builtins.__import__; seen = []\n"
        "def imp(name, *a, **k):\n"
        "    if name == 'torch' and not seen: seen.append(os.environ.get('GOMP_SPINCOUNT'))\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\nimport saekit\nprint(seen[0])"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "20000"
