"""GPU benchmark: CLIP zero-shot gender classification with a ViT-L/14-sized model.

Builds a CLIP with `openai/clip-vit-large-patch14`'s shape from a config (random weights:
speed does not depend on them, and nothing is downloaded), saves it with a byte-level
tokenizer and CLIP's preprocessing config, loads it back through biasamp's `clip`
classifier, then measures, each separately:

1. decode + preprocess throughput on the CPU (512×512 JPEGs → 224×224 crops, thread pool);
2. model throughput per batch size (uint8 crops already in host memory → P(female));
3. end to end (`Labeler`: decoding in a thread pool, overlapped with the GPU).

Target: ≥ 1,000 images/s on one H200, with decoding not the bottleneck (decode throughput
above the model's). Exit 1 if missed (unless --report-only); exit 2 without CUDA.

    python benchmarks/gpu_clip.py                       # on a CUDA machine
    python benchmarks/gpu_clip.py --tiny --device cpu   # the logic, on a CPU, in seconds

Needs biasamp importable (pip install -e ., or polars + this repo's src/ on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


VIT_L14 = dict(
    text=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77),
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14),
    projection_dim=768, image_size=224,
)
TINY = dict(
    text=dict(vocab_size=514, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=77),
    vision=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                image_size=224, patch_size=14),
    projection_dim=16, image_size=224,
)


def build_model(folder: Path, spec: dict, device: str) -> tuple[Path, int]:
    """A random CLIP of `spec`'s shape, saved (fp16 on GPU) with tokenizer + preprocessing;
    returns the folder and the model's parameter count."""
    from math import prod

    from safetensors import safe_open

    from biasamp.testing import build_tiny_clip

    build_tiny_clip(folder, text=spec["text"], vision=spec["vision"], projection_dim=spec["projection_dim"],
                    device=device, dtype="float16" if device.startswith("cuda") else None)
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
    n_params = 0
    for part in folder.glob("*.safetensors"):  # one file, or shards
        with safe_open(str(part), framework="numpy") as f:
            n_params += sum(prod(f.get_slice(k).get_shape()) for k in f.keys())
    return folder, n_params


def make_jpegs(folder: Path, n: int) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_classify import make_images

    return make_images(folder, n)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model (checks the logic on a CPU)")
    ap.add_argument("--batch-sizes", default="32,64,128,256,512")
    ap.add_argument("--n-images", type=int, default=2048, help="distinct JPEGs for the decode and end-to-end runs")
    ap.add_argument("--model-images", type=int, default=4096, help="images per batch size in the model sweep")
    ap.add_argument("--decode-workers", type=int, default=None, help="threads (default: CPU count)")
    ap.add_argument("--target", type=float, default=1000.0)
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"CUDA is not available (torch {torch.__version__}): this benchmark needs a GPU. "
              "Run with --tiny --device cpu to check its logic on a CPU.", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from biasamp.classify import Labeler
    from biasamp.classify.decode import decode_image
    from biasamp.classify.models import ClipZeroShot
    from biasamp.classify.sources import Item

    spec = TINY if args.tiny else VIT_L14
    workers = args.decode_workers or os.cpu_count() or 1
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    res: dict = {"device": args.device, "tiny": args.tiny, "workers": workers, "target": args.target, "load": os.getloadavg()}
    if args.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "model").mkdir()
        (tmp / "jpg").mkdir()
        t = time.perf_counter()
        folder, n_params = build_model(tmp / "model", spec, args.device)
        res["params"] = n_params
        print(f"model: {n_params / 1e6:.0f} M parameters, built in {time.perf_counter() - t:.1f} s", flush=True)
        clf = ClipZeroShot(str(folder), device=args.device)
        jpegs = make_jpegs(tmp / "jpg", args.n_images)
        datas = [p.read_bytes() for p in jpegs]

        # 1. decode + preprocess on the CPU
        def front(data):
            return clf.prepare(decode_image(data).array, None)

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(front, datas[: min(64, len(datas))]))
            t = time.perf_counter()
            crops = list(pool.map(front, datas))
            dt = time.perf_counter() - t
        res["decode_images_per_s"] = len(datas) / dt
        print(f"decode+preprocess ({workers} threads): {res['decode_images_per_s']:.0f} images/s", flush=True)

        # 2. model throughput per batch size
        sweep = {}
        pool_crops = [crops[i % len(crops)] for i in range(max(sizes))]
        for bs in sizes:
            batch = pool_crops[:bs]
            clf.predict(batch)  # warm-up (kernels, allocator)
            reps = max(1, args.model_images // bs)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(reps):
                p, _ = clf.predict(batch)  # returns numpy: synchronised
            dt = time.perf_counter() - t
            sweep[bs] = reps * bs / dt
            print(f"model, batch {bs:4d}: {sweep[bs]:8.0f} images/s", flush=True)
        res["model_images_per_s"] = sweep
        best_bs = max(sweep, key=sweep.get)

        # 3. end to end: decode in the pool, overlapped with the model
        lab = Labeler("clip", face_detector="none", workers=workers, device=args.device,
                      classifier_options={"model": str(folder)})
        items = [Item(f"{i}", data=d) for i, d in enumerate(datas)]
        batches = [items[i : i + best_bs] for i in range(0, len(items), best_bs)]
        list(lab.label_stream(batches[:2]))
        t = time.perf_counter()
        n = sum(len(df) for df, _ in lab.label_stream(batches))
        dt = time.perf_counter() - t
        lab.close()
        res["end_to_end_images_per_s"] = n / dt
        res["end_to_end_batch"] = best_bs
        print(f"end to end (batch {best_bs}, {workers} decode threads): {res['end_to_end_images_per_s']:.0f} images/s")

    best = sweep[best_bs]
    res["decode_is_bottleneck"] = res["decode_images_per_s"] < best
    res["ratio_end_to_end_vs_model"] = res["end_to_end_images_per_s"] / best
    print(f"best model throughput {best:.0f} images/s at batch {best_bs}; decode {res['decode_images_per_s']:.0f} "
          f"images/s ({'IS' if res['decode_is_bottleneck'] else 'not'} the bottleneck); end to end = "
          f"{res['ratio_end_to_end_vs_model']:.2f} x model-only; load {res['load']}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    ok = args.tiny or (best >= args.target and res["end_to_end_images_per_s"] >= args.target
                       and not res["decode_is_bottleneck"])
    if not ok:
        print(f"TARGET MISSED: need ≥ {args.target:.0f} images/s end to end with decoding not the bottleneck")
    return 0 if ok or args.report_only else 1


if __name__ == "__main__":
    sys.exit(main())
