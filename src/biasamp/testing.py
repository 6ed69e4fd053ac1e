"""Helpers that build tiny random models offline, for tests, benchmarks and the demo.

Nothing here downloads anything: `write_byte_level_clip_tokenizer` writes a CLIP tokenizer
(one token per byte, no merges) and `build_tiny_clip` a random CLIP built from a config,
both saved with `save_pretrained` and loadable through `from_pretrained`, the path users
take with a real model. Heavy libraries (torch, transformers) are imported only when called.
"""

from __future__ import annotations

import json
from pathlib import Path

#: CLIP's context length (the text encoder's token limit).
CLIP_MAX_TOKENS = 77
#: Size of the byte-level vocabulary: 256 bytes, the same with `</w>`, start and end tokens.
BYTE_VOCAB_SIZE = 514
#: Ids of `<|startoftext|>` and `<|endoftext|>` in the byte-level vocabulary.
BOS_ID, EOS_ID = BYTE_VOCAB_SIZE - 2, BYTE_VOCAB_SIZE - 1


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable unicode character map (so a byte-level
    vocabulary is plain text)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_byte_level_clip_tokenizer(folder: str | Path, *, model_max_length: int = CLIP_MAX_TOKENS):
    """Write a CLIP tokenizer that needs no download: one token per byte, no merges.

    Vocabulary: the 256 byte symbols, the same with the end-of-word mark `</w>`,
    `<|startoftext|>` and `<|endoftext|>` (514 entries); an empty merges file.
    Returns the loaded `CLIPTokenizer`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder))


def tiny_clip_config(
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden: int = 32,
    intermediate: int = 37,
    layers: int = 2,
    heads: int = 2,
    projection_dim: int = 16,
    vocab_size: int = BYTE_VOCAB_SIZE,
    bos_token_id: int = BOS_ID,
    eos_token_id: int = EOS_ID,
    text: dict | None = None,
    vision: dict | None = None,
):
    """A `CLIPConfig` with the same small width, depth and heads in both towers; `text` and
    `vision` override either tower's settings (e.g. for a full-sized model)."""
    from transformers import CLIPConfig

    tower = dict(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads)
    text_config = dict(tower, vocab_size=vocab_size, max_position_embeddings=CLIP_MAX_TOKENS,
                       bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=eos_token_id)
    vision_config = dict(tower, image_size=image_size, patch_size=patch_size)
    return CLIPConfig(text_config={**text_config, **(text or {})}, vision_config={**vision_config, **(vision or {})},
                      projection_dim=projection_dim)


def clip_image_processor(image_size: int):
    """CLIP's preprocessing (resize the shortest edge, centre crop) at `image_size`."""
    try:
        from transformers import CLIPImageProcessorPil as Proc
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as Proc
    return Proc(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


def build_tiny_clip(
    folder: str | Path,
    *,
    seed: int = 0,
    processor: bool = True,
    device: str = "cpu",
    dtype: str | None = None,
    **config,
) -> Path:
    """Save a random CLIP (byte-level tokenizer, model and, with `processor`, CLIP's image
    preprocessing) to `folder` and return it.

    `config` is `tiny_clip_config`'s keywords (image_size=32, patch_size=8, hidden=32,
    layers=2, heads=2, projection_dim=16, text=…, vision=…); the text tower's vocabulary is
    at least the tokenizer's. Load it back with `CLIPModel.from_pretrained(folder)` /
    `CLIPTokenizer.from_pretrained(folder)` or any biasamp `clip` backend. Same arguments ->
    same weights. `device` is where the model is built (a large one builds faster on a GPU);
    `dtype` (e.g. "float16") is the dtype it is saved in.
    """
    import torch
    from transformers import CLIPModel

    folder = Path(folder)
    tok = write_byte_level_clip_tokenizer(folder)
    text = dict(config.pop("text", None) or {})
    text["vocab_size"] = max(len(tok), text.get("vocab_size", 0))
    cfg = tiny_clip_config(text=text, **config)
    torch.manual_seed(seed)
    with torch.device(device):
        model = CLIPModel(cfg).eval()
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if processor:
        clip_image_processor(cfg.vision_config.image_size).save_pretrained(folder)
    del model
    return folder


def write_tar(path: str | Path, members: dict[str, bytes]) -> Path:
    """A tar of `members` (name -> bytes) in the given order: a webdataset shard when names
    are `key.ext` (tests of the readers of tars)."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return Path(path)
