"""saekit: sparse autoencoders on real model activations — harvest, train, analyse, steer, measure."""
from saekit.sae import SAE, SAEConfig, build, load_sae, save_sae

__version__ = "0.1.0"


def load(path, device=None) -> SAE:
    """Load a native saekit SAE folder (`config.json` + `model.safetensors`)."""
    return load_sae(path, device=device)


__all__ = ["SAE", "SAEConfig", "build", "load", "load_sae", "save_sae", "__version__"]
