"""How linear is SmolLM2's layer-8 MLP? Linear baselines for the transcoder table, on held-out tokens.

Fits the best affine map from the MLP's input to its output (least squares on the paired training store),
then measures on the held-out tokens `saekit eval` uses (same corpus end, context length and token count):
the FVU of that map, and the FVU of the skip transcoder's linear part alone (`x_n W_skip + b_dec`,
latents switched off). Run from the repository root after the README's commands:

    python docs/results/transcoder/linear_baseline.py
"""

import torch

import saekit
from saekit.data.corpus import load_corpus
from saekit.data.paired import PairedRows, split_pair
from saekit.data.store import ActivationStore
from saekit.eval import eval_positions
from saekit.eval.evaluate import heldout_tokens
from saekit.hooks import capture
from saekit.models import load_model
from saekit.train.metrics import reconstruction_metrics

torch.set_num_threads(1)
TOKENS, CONTEXT = 4096, 128

store = ActivationStore.open("runs/transcoder/mlp8")
rows = PairedRows(store).sample(len(store), 0)
x_tr, y_tr = split_pair(rows, store.d)
xa = torch.cat([x_tr, torch.ones(len(x_tr), 1)], 1).double()  # normal equations in float64
w = torch.linalg.solve(xa.T @ xa, xa.T @ y_tr.double()).float()
del xa

lm = load_model("smollm2", dtype=torch.float32, quiet=True)
batch = heldout_tokens(load_corpus("shakespeare"), lm.tokenizer, CONTEXT, TOKENS)
pos = eval_positions(batch.token_id, batch.mask, set(lm.tokenizer.all_special_ids), 1)
n_ctx = int(torch.searchsorted(pos.sum(1).cumsum(0), torch.tensor(TOKENS))) + 1
xs, ys = [], []
HOOKS = ["model.layers.8.mlp:in", "model.layers.8.mlp"]
for lo in range(0, n_ctx, 4):
    ids, mask = batch.token_id[lo : min(lo + 4, n_ctx)], batch.mask[lo : min(lo + 4, n_ctx)]
    with torch.no_grad(), capture(lm.model, HOOKS, stop_after_last=True) as c:
        lm.model(input_ids=ids, attention_mask=mask.long())
    p = pos[lo : min(lo + 4, n_ctx)]
    xs.append(c.activations["model.layers.8.mlp:in"][p])
    ys.append(c.activations["model.layers.8.mlp"][p])
x, y = torch.cat(xs).float(), torch.cat(ys).float()
linear = torch.cat([x, torch.ones(len(x), 1)], 1) @ w
print(f"{len(x)} held-out tokens")
fvu_linear = reconstruction_metrics(y, linear)["fvu"]
print(f"best affine map (least squares on the {len(x_tr)} store rows): FVU {fvu_linear:.4f}")
tc = saekit.load("runs/transcoder/skip_transcoder").eval()
with torch.no_grad():
    x_n = tc.normalize_input(x)
    skip_only = (x_n @ tc.W_skip + tc.b_dec) / tc.output_scale
    full = tc.reconstruct(x)
fvu_skip = reconstruction_metrics(y, skip_only)["fvu"]
print(f"skip transcoder, linear part only (latents off): FVU {fvu_skip:.4f}")
print(f"skip transcoder, whole prediction: FVU {reconstruction_metrics(y, full)['fvu']:.4f}")
