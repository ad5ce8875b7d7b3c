"""Suite-wide guards."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _grad_mode_not_leaked():
    """Library code must scope no_grad/inference_mode; a global switch breaks every later training test."""
    assert torch.is_grad_enabled(), "grad mode was already disabled before this test"
    yield
    leaked = not torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    assert not leaked, "this test (or the code it ran) left torch grad mode disabled globally"
