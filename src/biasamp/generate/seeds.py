"""One seed per image, derived from (base seed, prompt, image index).

The seed is the first 63 bits of SHA-256 over the three values, so it fits an Int64
column, does not depend on the order or batch in which images are drawn, and any single
image can be drawn again alone: `torch.Generator("cpu").manual_seed(derive_seed(...))`.
"""

from __future__ import annotations

import hashlib

SEED_BITS = 63


def derive_seed(base_seed: int, prompt: str, index: int) -> int:
    """A 63-bit seed for image `index` of `prompt` in a run seeded with `base_seed`."""
    h = hashlib.sha256(f"{int(base_seed)}\x1f{prompt}\x1f{int(index)}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") & ((1 << SEED_BITS) - 1)
