"""GPU benchmark: images/s of biasamp's generator vs the study's loop.

The study's loop (arXiv 2308.00755, released code): one StableDiffusionPipeline in fp16,
safety checker off, ONE torch.Generator seeded once and reused for every image, batch
size 1, each image saved as PNG. biasamp: the same model, scheduler, steps and image
size through `generate_images` (batches, one generator per image, PNG shards and
Parquet written on a background thread). Both run on a Stable Diffusion 1.5-sized
pipeline built from configs with random weights (speed does not depend on the weights).

    python benchmarks/gpu_generate.py                 # needs CUDA; target: >= 2x
    python benchmarks/gpu_generate.py --report-only   # print, never fail on the target
    python benchmarks/gpu_generate.py --tiny          # the same logic on CPU, tiny model

Exit status: 0 target met (or --report-only), 1 target missed, 2 no CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random pipeline on CPU (checks the script's logic, not GPU speed)")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    ap.add_argument("--dtype", default=None, help="default: float16 (float32 with --tiny)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 50, the study's; 2 with --tiny)")
    ap.add_argument("--prompts", type=int, default=2, help="number of occupation prompts")
    ap.add_argument("--images-per-prompt", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16, help="biasamp's batch size")
    ap.add_argument("--scheduler", default=None, help="scheduler class for both (default: the pipeline's, PNDM as in SD 1.5)")
    ap.add_argument("--compile", action="store_true", help="torch.compile biasamp's UNet")
    ap.add_argument("--target", type=float, default=2.0, help="required speed-up")
    ap.add_argument("--report-only", action="store_true", help="report, do not fail on the target")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--workdir", type=Path, default=None, help="where to build the model and write images (default: a temp dir)")
    return ap.parse_args(argv)


def build_model(folder: Path, tiny: bool, device: str, dtype: str) -> Path:
    import torch

    from biasamp.generate.testing import build_pipeline_folder, sd15_sized_components, tiny_components

    ctx = torch.device(device) if device.startswith("cuda") else torch.device("cpu")
    with ctx:  # initialise the random weights on the GPU: much faster than on the CPU
        comps = tiny_components(0) if tiny else sd15_sized_components(0)
    return build_pipeline_folder(folder, comps, dtype=None if dtype == "float32" else dtype)


def study_loop(model: Path, prompts: list[str], n: int, *, device, dtype, steps, scheduler, height, width, out: Path) -> float:
    """The study's generation loop; returns seconds for all images (after one warm-up call)."""
    import diffusers
    import torch
    from diffusers import StableDiffusionPipeline

    from biasamp.generate.diffusers_backend import _dtype_keyword

    kw = {_dtype_keyword(): getattr(torch, dtype)}
    pipe = StableDiffusionPipeline.from_pretrained(str(model), use_safetensors=True, safety_checker=None, requires_safety_checker=False, **kw)
    if scheduler:
        pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator(device).manual_seed(42)
    pipe(prompts[0], generator=generator, num_inference_steps=steps, guidance_scale=7.5, height=height, width=width)  # warm-up
    _sync(device)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    for p, prompt in enumerate(prompts):
        for i in range(n):
            image = pipe(prompt, generator=generator, num_inference_steps=steps, guidance_scale=7.5, height=height, width=width).images[0]
            image.save(out / f"{p}_{i}.png")
    _sync(device)
    seconds = time.perf_counter() - t
    del pipe
    _free(device)
    return seconds


def biasamp_run(model: Path, occupations: list[str], n: int, *, device, dtype, steps, scheduler, height, width, batch_size, compile, out: Path) -> float:
    from biasamp.generate import build_prompts, generate_images, load_backend

    backend = load_backend("diffusers", str(model), device=device, dtype=dtype, scheduler=scheduler, compile=compile)
    prompts = build_prompts(occupations, "face")
    # warm-up (one full batch; with --compile this is the compilation) in a throwaway folder
    generate_images(out.with_name(out.name + "-warmup"), backend=backend, prompts=prompts.head(1), images_per_prompt=batch_size, batch_size=batch_size,
                    steps=steps, height=height, width=width, show_progress=False)
    _sync(device)
    t = time.perf_counter()
    gens = generate_images(out, backend=backend, prompts=prompts, images_per_prompt=n, batch_size=batch_size, steps=steps, height=height, width=width, show_progress=False)
    _sync(device)
    seconds = time.perf_counter() - t
    assert len(gens) == len(occupations) * n
    del backend
    _free(device)
    return seconds


def _sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free(device):
    import gc

    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main(argv=None) -> int:
    a = parse(argv)
    import torch

    device = a.device or ("cpu" if a.tiny else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_generate: CUDA is not available on this machine. This benchmark measures GPU throughput; "
              "run it on a machine with an NVIDIA GPU, or pass --tiny to check its logic on the CPU.", file=sys.stderr)
        return 2
    dtype = a.dtype or ("float32" if a.tiny else "float16")
    steps = a.steps or (2 if a.tiny else 50)
    occupations = ["engineer", "nurse", "pilot", "chef", "judge", "baker", "tailor", "poet"][: max(1, a.prompts)]
    from biasamp.generate import build_prompts

    prompts = build_prompts(occupations, "face")["text"].to_list()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="biasamp-gpu-bench-"))
    try:
        t0 = time.perf_counter()
        model = build_model(work / "model", a.tiny, device, dtype)
        build_s = time.perf_counter() - t0
        size = 32 if a.tiny else 512
        common = dict(device=device, dtype=dtype, steps=steps, scheduler=a.scheduler, height=size, width=size)
        n_images = len(prompts) * a.images_per_prompt
        study_s = study_loop(model, prompts, a.images_per_prompt, out=work / "study", **common)
        ours_s = biasamp_run(model, occupations, a.images_per_prompt, batch_size=a.batch_size, compile=a.compile, out=work / "biasamp", **common)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    study_ips, ours_ips = n_images / study_s, n_images / ours_s
    ratio = ours_ips / study_ips
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
    figures = dict(device=gpu, model="tiny" if a.tiny else "sd15-sized (random weights)", dtype=dtype, steps=steps, size=size,
                   images=n_images, batch_size=a.batch_size, compile=a.compile, build_s=round(build_s, 2),
                   study_images_per_s=round(study_ips, 4), biasamp_images_per_s=round(ours_ips, 4), speedup=round(ratio, 3), target=a.target,
                   load=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    print(f"device {gpu}  model {figures['model']}  {dtype}  {steps} steps  {size}x{size}  {n_images} images")
    print(f"study loop (batch 1, one generator): {study_ips:.3f} images/s  ({study_s:.1f} s)")
    print(f"biasamp (batch {a.batch_size}, one generator per image): {ours_ips:.3f} images/s  ({ours_s:.1f} s)")
    print(f"speed-up: {ratio:.2f}x  (target >= {a.target:g}x)  load {figures['load']}")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=2) + "\n")
    if ratio < a.target and not a.report_only:
        print("target missed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
