"""The FluxPipeline testbed (`saekit testbed build`): a small diffusers FluxPipeline trained from scratch
on captioned renders of sklearn's digits with known content, style and composition, and the factor
judges that read those back from pixels.

One idea per module: `render` (data, captions, splits), `tokenizer` (the word-level tokenizer),
`components` (the untrained models), `train` (VAE and flow matching), `judges` (ground truth),
`build` (the whole build and the scoring of generations), `report` (JSON, markdown, sample sheets),
`config` (the one configuration dataclass, also the command's flags).
"""
