"""Fixtures: a tiny SAE and a tiny activation store written in the documented shard format."""

import json

import pytest
import torch
from safetensors.torch import save_file

from saekit.sae import SAEConfig, build

torch.set_num_threads(2)


def write_store(folder, acts, doc_id, position, token_id, shard_rows=70):
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, s in enumerate(range(0, acts.shape[0], shard_rows)):
        e = min(s + shard_rows, acts.shape[0])
        name = f"shard_{i:05d}.safetensors"
        save_file(
            {
                "acts": acts[s:e].contiguous(),
                "doc_id": doc_id[s:e].int().contiguous(),
                "position": position[s:e].int().contiguous(),
                "token_id": token_id[s:e].int().contiguous(),
            },
            str(folder / name),
        )
        shards.append({"file": name, "count": e - s})
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "complete": True,
                "model": "tiny",
                "hook_point": "model.layers.0",
                "d": acts.shape[1],
                "count": acts.shape[0],
                "dtype": "float32",
                "shards": shards,
            }
        )
    )
    return folder


@pytest.fixture
def tiny_store(tmp_path):
    g = torch.Generator().manual_seed(0)
    n, d = 300, 8
    acts = torch.randn(n, d, generator=g)
    doc_id = torch.arange(n) // 50
    position = torch.arange(n) % 50
    token_id = torch.randint(0, 20, (n,), generator=g)
    return write_store(tmp_path / "store", acts, doc_id, position, token_id), acts, doc_id, token_id


@pytest.fixture(params=["topk", "relu"])
def tiny_sae(request):
    k = 3 if request.param == "topk" else None
    return build(SAEConfig(d_in=8, d_sae=16, arch=request.param, k=k), seed=0).eval()


WORDS = [
    "the",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "a",
    "big",
    "red",
    "ran",
    "to",
    "house",
    "and",
    "then",
    "it",
    "was",
    "happy",
    "sad",
    "green",
    "tree",
]


@pytest.fixture(scope="session")
def tiny_lm_folder(tiny_lm, tmp_path_factory):
    """The suite's tiny Llama (tests/conftest.py, d=32) saved as a local transformers folder with a
    word-level tokenizer over WORDS, so commands can load it by path."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_lm")
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(folder)
    tiny_lm.model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_store(tiny_lm_folder, tmp_path_factory):
    """Activations of the tiny LM at model.layers.0 for 12 random 'documents' of 16 tokens."""
    from transformers import LlamaForCausalLM

    from saekit.hooks import capture

    model = LlamaForCausalLM.from_pretrained(tiny_lm_folder).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, len(WORDS) + 1, (12, 16), generator=g)
    with torch.no_grad(), capture(model, ["model.layers.0"], stop_after_last=True) as cap:
        model(input_ids=ids)
    acts = cap.activations["model.layers.0"].reshape(-1, model.config.hidden_size).float()
    folder = tmp_path_factory.mktemp("lm_store") / "store"
    write_store(
        folder, acts, torch.arange(12).repeat_interleave(16), torch.arange(16).repeat(12), ids.reshape(-1)
    )
    import json

    man = json.loads((folder / "manifest.json").read_text())
    man["model"] = str(tiny_lm_folder)
    (folder / "manifest.json").write_text(json.dumps(man))
    return folder
