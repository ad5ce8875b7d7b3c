"""Train (or load from the output folder's cache) the flow model and the digit classifier."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import load_file
from tqdm import tqdm

from saekit.atomic import save_tensors_atomic
from saekit.testbed.classifier import DigitClassifier, accuracy, augment
from saekit.testbed.config import TestbedConfig
from saekit.testbed.data import DigitSplits, load_digit_splits, patchify
from saekit.testbed.flow import flow_loss
from saekit.testbed.model import NULL_CLASS, FlowTransformer


class TrainedModels(NamedTuple):
    model: FlowTransformer
    classifier: DigitClassifier
    data: DigitSplits
    classifier_test_acc: float
    final_flow_loss: float
    cached: bool


def cache_key(cfg: TestbedConfig) -> str:
    blob = json.dumps(cfg.model_key(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _cosine_lr(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_flow(cfg: TestbedConfig, data: DigitSplits) -> tuple[FlowTransformer, float]:
    """Rectified-flow training with class dropout to the null class (for CFG)."""
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = FlowTransformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    x_all = patchify(data.train_x, cfg.patch)
    y_all = data.train_y
    ema = None
    model.train()
    for step in tqdm(range(cfg.train_steps), desc="flow model", disable=cfg.quiet):
        idx = torch.randint(0, len(y_all), (cfg.batch_size,), generator=g)
        y = y_all[idx].clone()
        y[torch.rand(cfg.batch_size, generator=g) < cfg.cfg_dropout] = NULL_CLASS
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, cfg.train_steps, cfg.lr)
        loss = flow_loss(model, x_all[idx], y, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = float(loss.detach())
        ema = lv if ema is None else 0.98 * ema + 0.02 * lv
    model.eval()
    return model, float(ema or 0.0)


def train_classifier(cfg: TestbedConfig, data: DigitSplits) -> tuple[DigitClassifier, float]:
    g = torch.Generator().manual_seed(cfg.seed + 1)
    torch.manual_seed(cfg.seed + 1)
    clf = DigitClassifier()
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=1e-4)
    for step in tqdm(range(cfg.classifier_steps), desc="classifier", disable=cfg.quiet):
        clf.train()
        idx = torch.randint(0, len(data.train_y), (128,), generator=g)
        for group in opt.param_groups:
            group["lr"] = _cosine_lr(step, cfg.classifier_steps, 2e-3, warmup=50)
        loss = torch.nn.functional.cross_entropy(clf(augment(data.train_x[idx], g)), data.train_y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    clf.eval()
    return clf, accuracy(clf, data.test_x, data.test_y)


def train_or_load(cfg: TestbedConfig, out_dir: str | Path | None) -> TrainedModels:
    """Train both models once; with `out_dir`, cache them there as safetensors keyed by the config."""
    data = load_digit_splits(seed=cfg.seed)
    path = None if out_dir is None else Path(out_dir) / "models" / f"testbed_{cache_key(cfg)}.safetensors"
    if path is not None and path.exists():
        tensors = load_file(str(path))
        model, clf = FlowTransformer(cfg), DigitClassifier()
        model.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("flow.")})
        clf.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("clf.")})
        model.eval()
        clf.eval()
        meta = json.loads(path.with_suffix(".json").read_text())
        return TrainedModels(
            model, clf, data, accuracy(clf, data.test_x, data.test_y), meta["final_flow_loss"], True
        )
    model, loss = train_flow(cfg, data)
    clf, acc = train_classifier(cfg, data)
    if path is not None:
        tensors = {f"flow.{k}": v for k, v in model.state_dict().items()}
        tensors.update({f"clf.{k}": v for k, v in clf.state_dict().items()})
        save_tensors_atomic(path, tensors, metadata={"config": json.dumps(cfg.model_key())})
        from saekit.atomic import write_json_atomic

        write_json_atomic(
            path.with_suffix(".json"),
            {"config": cfg.model_key(), "final_flow_loss": loss, "classifier_test_acc": acc},
        )
    return TrainedModels(model, clf, data, acc, loss, False)
