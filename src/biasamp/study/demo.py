"""The end-to-end demo: every stage of a real study, offline on CPU.

Real: a caption corpus made by `biasamp.corpus.synthetic` (labelled synthetic captions in
LAION-2B-en's schema), the caption query, selection with the offline MiniLM model,
generation with a tiny random diffusion pipeline, the face filter on its images, the
measurement and the report. Simulated, and marked so in the report: the perceived gender
of training images (none can be downloaded offline) and of generated images (a random
model draws no faces) — see `biasamp.study.simulated`.
"""

from __future__ import annotations

from pathlib import Path

from biasamp.study.config import StudyConfig, load_config

DEMO_OCCUPATIONS = ["engineer", "nurse", "pilot", "teacher", "chef", "librarian", "carpenter", "receptionist",
                    "doctor", "hairdresser", "plumber", "secretary"]


def write_demo_inputs(out: str | Path, *, n_captions: int = 12_000, seed: int = 0) -> Path:
    """Write the demo's corpus, occupations, tiny model and config into `out/inputs`;
    return the config path. Re-running reuses what is there."""
    from biasamp.corpus.synthetic import make_corpus
    from biasamp.generate.testing import build_pipeline_folder, tiny_components

    out = Path(out).resolve()
    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    occ_file = inputs / "occupations.txt"
    if not occ_file.exists():
        occ_file.write_text("\n".join(DEMO_OCCUPATIONS) + "\n")
    corpus_dir = inputs / "corpus"
    if not any(corpus_dir.glob("*.parquet")):
        corpus_dir.mkdir(exist_ok=True)
        make_corpus(n_captions, seed=seed, occupations=DEMO_OCCUPATIONS, occupation_rate=0.5, out=corpus_dir,
                    rows_per_file=max(1, n_captions // 2))
    model_dir = inputs / "tiny-sd"
    if not (model_dir / "model_index.json").exists():
        # 32 px images: a random model draws no faces at any size, so keep it cheap
        build_pipeline_folder(model_dir, tiny_components(seed, sample_size=16))
    config = inputs / "demo.toml"
    config.write_text(DEMO_CONFIG.format(out=str(out)))
    return config


DEMO_CONFIG = """\
# The demo study: real query, selection, generation and face filter; simulated labels.
[study]
name = "demo (simulated labels)"
out = "{out}"
seed = 0
threads = 1          # tiny models run fastest on one CPU thread
simulated = true

[corpus]
paths = ["corpus/*.parquet"]
occupations = "occupations.txt"
lexicon = "paper"

[selection]
conditions = ["keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators"]
n = 80
k = 60
templates = ["study"]
embedder = "minilm"

[[models]]
name = "tiny-random-sd"
id = "tiny-sd"
dtype = "float32"
device = "cpu"
steps = 2
width = 32
height = 32
images_per_prompt = 60
images_per_caption = 1
batch_size = 32

[classify]
face_detector = "dlib"
classifier = "dlib-onnx"

[measure]
n_boot = 1000

[simulation]
model_amplification = 0.0
"""


def demo_config(out: str | Path, **kwargs) -> StudyConfig:
    return load_config(write_demo_inputs(out, **kwargs))


def run_pipeline_demo(out: str | Path = "runs/demo", *, seed: int = 0, show_progress: bool = True):
    """Write the demo inputs and run the whole study on them; returns the RunResult."""
    from biasamp.study import run_study

    cfg = demo_config(out, seed=seed)
    return run_study(cfg, show_progress=show_progress)
