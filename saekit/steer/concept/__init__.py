"""Choosing what to steer for a concept, and steering toward it (`saekit steer --concept`).

What belongs here: the concepts and prompts the protocol uses (`concepts.py` and the bundled `data/`
files), concept evidence and the four feature selections (`evidence`, `select`, `output_score`,
`diffmean`), arms (selection x method, `arms`), the offline judges of steered text (`judges`,
`judging`), the recipes that say which arm and strength to use per concept and the train-prompt choice
rule that makes them (`recipes`), the strength ladder (`ladder`), the concept-steer logic itself
(`steering`) and the prompt/feature explanations (`explain`). It builds on `saekit.steer` (methods,
strengths, application to a language model) and never imports `saekit.sweep`: the sweep measures arms
defined here, not the other way round.
"""
