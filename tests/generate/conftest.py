import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared, loaded CPU, two spinning OpenMP threads make the
    tiny pipeline tens of times slower. Subprocesses get OMP_NUM_THREADS=1 too."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random Stable Diffusion pipeline saved with save_pretrained (safetensors)."""
    pytest.importorskip("diffusers")
    from biasamp.generate.testing import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", seed=0)


@pytest.fixture(scope="session")
def tiny_backend(tiny_model):
    """The tiny pipeline loaded through biasamp's diffusers backend (CPU, float32)."""
    from biasamp.generate import load_backend

    return load_backend("diffusers", str(tiny_model), device="cpu")
