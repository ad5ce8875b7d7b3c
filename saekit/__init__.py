"""saekit: sparse autoencoders on real model activations — harvest, train, analyse, steer, measure."""

from saekit.sae import SAE, SAEConfig, build, load_sae, save_sae

__version__ = "0.1.0"


def load(path, device=None, **options) -> SAE:
    """Load an SAE: a native saekit folder, or a SAELens / sparsify / dictionary_learning checkpoint
    (detected from its files and converted; see `saekit.formats.load_any` for `options`)."""
    from saekit.formats import load_any

    return load_any(path, device=device, **options)


__all__ = ["SAE", "SAEConfig", "build", "load", "load_sae", "save_sae", "__version__"]
