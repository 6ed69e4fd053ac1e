"""Generator backends, by name. A backend draws images for a batch of prompts and seeds.

A backend object offers:
- `describe() -> dict`: backend, model, revision, scheduler, dtype, device (recorded per image)
- `default_size() -> (height, width)`
- `token_limit -> int | None` and `count_tokens(text) -> int` (for prompt truncation)
- `generate(prompts, seeds, *, steps, guidance, height, width, negative_prompt)
   -> (uint8 array N x H x W x 3, list of NSFW flags or None)`

Register another with `GENERATORS.register("name", factory)`; the factory takes the
model id and keyword options.
"""

from __future__ import annotations

from biasamp.registry import Registry, lazy

GENERATORS: Registry = Registry("generator backend")
GENERATORS.register(
    "diffusers",
    lazy("biasamp.generate.diffusers_backend", "DiffusersGenerator"),
    doc="any diffusers text-to-image pipeline, from a hub id or a local folder (safetensors only)",
)


def load_backend(name: str, model: str, **options):
    """Instantiate backend `name` for `model`."""
    return GENERATORS.get(name)(model, **options)
