"""The steering protocol (`saekit sweep`): arms x layers x strengths x concepts x prompts, judged offline,
chosen on train prompts and reported on test prompts with intervals.

What belongs here: the sweep's configuration and presets (`config`), the driver that generates and
judges every arm (`run`), the protocol tables over its records (`protocol`), the markdown/PNG report
(`report`), partial saves of a long run (`partial`) and the merge of per-layer runs (`merge`). Arms,
selections, judges and the train-prompt choice rule come from `saekit.steer.concept`; the sweep may import
`saekit.steer`, never the reverse. Image-generator sweeps belong here too when they arrive.
"""
