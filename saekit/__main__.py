"""`python -m saekit <verb> ...` (what `torchrun ... -m saekit harvest ...` runs on every rank)."""

from saekit.cli import main

raise SystemExit(main())
