import pytest
import torch

torch.set_num_threads(2)


def make_sae(arch: str = "relu", d_in: int = 6, d_sae: int = 10, k: int | None = None, seed: int = 0,
             dtype: str = "float32", input_scale: float = 1.0, hook_point: str | None = None):
    from saekit.sae import Provenance, SAEConfig, build

    if arch in ("topk", "batchtopk") and k is None:
        k = 3
    cfg = SAEConfig(d_in=d_in, d_sae=d_sae, arch=arch, k=k, dtype=dtype, normalize_decoder=False,
                    init_decoder_norm=1.0, provenance=Provenance(hook_point=hook_point))
    sae = build(cfg, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        # non-unit decoder rows and non-zero biases so unit conversions and b_dec are exercised
        sae.W_dec.mul_(torch.rand(d_sae, 1, generator=g).to(sae.dtype) + 0.5)
        sae.b_dec.copy_((torch.randn(d_in, generator=g) * 0.1).to(sae.dtype))
        sae.b_enc.copy_((torch.randn(d_sae, generator=g) * 0.1).to(sae.dtype))
        sae.input_scale.fill_(input_scale)
    return sae


@pytest.fixture
def sae_factory():
    return make_sae
