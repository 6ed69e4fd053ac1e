"""The diffusers backend: any text-to-image `DiffusionPipeline` from a hub id or folder.

Weights load only from safetensors (`use_safetensors=True`) and remote code is never
run. One `torch.Generator` on the CPU per image, seeded with the image's own seed, so an
image does not depend on the others in its batch (up to floating-point rounding of the
batched computation) and can be drawn again alone.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from biasamp.errors import BiasampError

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str) -> str:
    import torch

    dev = (device or "auto").lower()
    kind = dev.split(":")[0]
    if kind not in DEVICES:
        raise BiasampError(f"unknown device {device!r}", hint="use auto, cpu, cuda, cuda:N or mps")
    if kind == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise BiasampError(f"device {device!r} requested but CUDA is not available here", hint="use --device cpu (slow) or run on a machine with a GPU")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise BiasampError("device 'mps' requested but Apple MPS is not available here", hint="use --device cpu")
    return dev


def resolve_dtype(dtype: str, device: str) -> str:
    d = (dtype or "auto").lower()
    if d == "auto":
        return "float16" if device.startswith(("cuda", "mps")) else "float32"
    if d not in DTYPES:
        raise BiasampError(f"unknown dtype {dtype!r}", hint="use auto, float32, float16 or bfloat16")
    return DTYPES[d]


def _dtype_keyword() -> str:
    """diffusers renamed from_pretrained's `torch_dtype` to `dtype`; use the one it knows."""
    try:
        from diffusers.utils import deprecation_utils

        return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"
    except ImportError:
        return "torch_dtype"


@contextmanager
def _quiet_loading():
    """No per-component progress bars or info chatter while a pipeline loads."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    d_level, t_level = dlog.get_verbosity(), tlog.get_verbosity()
    d_bar = dlog.is_progress_bar_enabled()
    t_bar = tlog.is_progress_bar_enabled()
    dlog.set_verbosity_error()
    tlog.set_verbosity_error()
    dlog.disable_progress_bar()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        dlog.set_verbosity(d_level)
        tlog.set_verbosity(t_level)
        if d_bar:
            dlog.enable_progress_bar()
        if t_bar:
            tlog.enable_progress_bar()




def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit of `repo_id` at `revision` (default: main) in the local hub cache, after
    loading; None where it cannot be told (then the revision is recorded as given)."""
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, revision=revision, local_files_only=True)
    except Exception:
        return None
    name = Path(path).name
    return name if len(name) == 40 and all(c in "0123456789abcdef" for c in name) else None

class DiffusersGenerator:
    """Any diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL, …)."""

    name = "diffusers"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        scheduler: str | None = None,
        safety_checker: bool = False,
        variant: str | None = None,
        channels_last: bool | None = None,
        compile: bool = False,
    ):
        import torch
        from diffusers import DiffusionPipeline

        from biasamp.store import model_reference

        self.model = model_reference(model)
        self.revision = revision
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.safety_checker = bool(safety_checker)
        local = Path(self.model).expanduser()
        if local.exists() and not (local / "model_index.json").is_file():
            raise BiasampError(f"{self.model} is a folder without model_index.json, so it is not a diffusers pipeline", hint="point --model at a folder saved with save_pretrained, or give a hub id")
        if local.exists() and revision:
            raise BiasampError(f"--revision {revision} applies to hub ids, and {model} is a local folder: it would be ignored",
                               hint="drop --revision, or check that revision out into the folder")
        try:
            config = DiffusionPipeline.load_config(self.model, revision=revision)
        except Exception as e:
            raise BiasampError(
                f"cannot find the pipeline {self.model!r}{f' at revision {revision}' if revision else ''}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                hint="give a local folder saved with save_pretrained, or a hub id already in the local cache (hub downloads need network; HF_HUB_OFFLINE=1 forbids them)",
            ) from None
        kwargs: dict = {_dtype_keyword(): getattr(torch, self.dtype), "use_safetensors": True}
        if revision:
            kwargs["revision"] = revision
        if variant:
            kwargs["variant"] = variant
        has_checker = isinstance(config.get("safety_checker"), (list, tuple)) and config["safety_checker"][0] is not None
        if not self.safety_checker and "safety_checker" in config:
            kwargs["safety_checker"] = None
            if "requires_safety_checker" in config:
                kwargs["requires_safety_checker"] = False
        if self.safety_checker and not has_checker:
            raise BiasampError(f"pipeline {self.model} has no safety checker", hint="run with --no-safety-checker")
        try:
            with _quiet_loading():
                pipe = DiffusionPipeline.from_pretrained(self.model, **kwargs)
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else ""
            hint = "biasamp loads safetensors weights only; convert .bin weights with save_pretrained(safe_serialization=True)" if "safetensors" in msg.lower() else "check the model id or folder and that its files are complete"
            raise BiasampError(f"cannot load pipeline {self.model}: {type(e).__name__}: {msg}", hint=hint) from None
        #: the hub commit just loaded (None for a local folder), so that rows name exact weights;
        #: read after loading, when the cache's ref points at what was loaded
        self.resolved_revision = None if local.exists() else _cached_commit(self.model, revision)
        params = inspect.signature(pipe.__call__).parameters
        if "prompt" not in params or ("image" in params and params["image"].default is inspect.Parameter.empty):
            raise BiasampError(f"{self.model} ({type(pipe).__name__}) is not a text-to-image pipeline", hint="use a text-to-image model such as Stable Diffusion")
        self._accepts = params
        if scheduler:
            pipe.scheduler = self._scheduler(pipe, scheduler)
        pipe = pipe.to(self.device)
        if channels_last is None:
            channels_last = self.device.startswith("cuda")
        if channels_last and hasattr(pipe, "unet"):
            pipe.unet.to(memory_format=torch.channels_last)
        if compile and hasattr(pipe, "unet"):
            pipe.unet = torch.compile(pipe.unet)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.options = dict(variant=variant, channels_last=bool(channels_last), compile=bool(compile))

    @staticmethod
    def _scheduler(pipe, name: str):
        import diffusers

        cls = getattr(diffusers, name, None)
        compatible = sorted(c.__name__ for c in getattr(pipe.scheduler, "compatibles", []))
        if cls is None or not hasattr(cls, "from_config"):
            raise BiasampError(f"unknown scheduler {name!r}", hint=f"give a diffusers scheduler class name, e.g. {', '.join(compatible[:8]) or 'DDIMScheduler'}")
        return cls.from_config(pipe.scheduler.config)

    # -- information -------------------------------------------------------------
    def describe(self) -> dict:
        return {
            "backend": self.name,
            "model": self.model,
            "revision": self.revision,
            "scheduler": type(self.pipe.scheduler).__name__,
            "dtype": self.dtype,
            "device": self.device,
            "pipeline": type(self.pipe).__name__,
            "safety_checker": self.safety_checker,
            "resolved_revision": self.resolved_revision,
        }

    def default_size(self) -> tuple[int, int]:
        pipe = self.pipe
        scale = getattr(pipe, "vae_scale_factor", None) or 8
        sample = getattr(pipe, "default_sample_size", None)
        if sample is None and hasattr(pipe, "unet"):
            sample = pipe.unet.config.sample_size
        if isinstance(sample, (list, tuple)):
            return int(sample[0]) * scale, int(sample[1]) * scale
        if sample is None:
            raise BiasampError(f"cannot tell the default image size of {self.model}", hint="pass --height and --width")
        return int(sample) * scale, int(sample) * scale

    @property
    def tokenizer(self):
        return getattr(self.pipe, "tokenizer", None)

    @property
    def token_limit(self) -> int | None:
        tok = self.tokenizer
        n = getattr(tok, "model_max_length", None)
        return int(n) if n and n < 100_000 else None

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False, add_special_tokens=True)["input_ids"])

    # -- drawing -----------------------------------------------------------------
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        *,
        steps: int,
        guidance: float,
        height: int,
        width: int,
        negative_prompt: str | None = None,
    ) -> tuple[np.ndarray, list[bool] | None]:
        import torch

        from biasamp.generate.images import to_uint8

        generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        kwargs = dict(
            prompt=list(prompts),
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            height=int(height),
            width=int(width),
            generator=generators,
            output_type="np",
        )
        if negative_prompt:
            kwargs["negative_prompt"] = [negative_prompt] * len(prompts)
        with torch.inference_mode():
            out = self.pipe(**kwargs)
        images = to_uint8(out.images)
        nsfw = getattr(out, "nsfw_content_detected", None)
        return images, (list(map(bool, nsfw)) if nsfw is not None else None)
