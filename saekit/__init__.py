"""saekit: sparse autoencoders on real model activations — harvest, train, analyse, steer, measure."""

import saekit.openmp_env  # noqa: F401, I001 - must run before torch is imported
from saekit.sae import SAE, SAEConfig, build, load_sae, save_sae

__version__ = "0.1.0"


def load(path, device=None, **options) -> SAE:
    """Load any SAE saekit reads: a native folder, or a SAELens / sparsify / dictionary_learning (incl.
    VSAETopK) / re-n-y / gytdau / openai / saev checkpoint, detected from its files or content and
    converted exactly; `hf:ORG/REPO[/PATH][@REVISION]` fetches it from the Hugging Face hub first
    (`saekit.formats.hub`). The one way every verb opens an SAE; see `saekit.formats.load_any` for
    `options`."""
    from saekit.formats import load_any
    from saekit.formats.hub import is_hf_spec, resolve_hf

    if is_hf_spec(path):
        path = resolve_hf(path)
    return load_any(path, device=device, **options)


__all__ = ["SAE", "SAEConfig", "build", "load", "load_sae", "save_sae", "__version__"]
