"""Feature analysis: what fires a feature in real data (real), what could fire it (synthetic), and both.

Modules, one idea each: `features` (selection specs), `topk_merge` (exact running top-N), `stats`
(streaming frequency / quantile sketch), `real` (one pass over a store), `logits` (decoder -> vocab),
`synthetic` (feature maximisation), `compare` (real vs synthetic), `report` (the JSON document).
"""
