"""The study config: one TOML file, validated on load with one clear message per problem.

Every setting of a study lives here (nothing is a constant in source). Paths are resolved
relative to the config file's folder. `load_config` raises `BiasampError` naming the key
(`[models.0] steps`), what was wrong and how to fix it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from biasamp.errors import BiasampError

CONDITIONS = ("keyword", "captions-as-prompts", "nearest", "nearest-no-indicators", "no-indicators")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StudySection(_Section):
    name: str = "study"
    out: str = "runs/study"
    seed: int = 0
    #: CPU threads for torch (None: torch's default). 1 is fastest for tiny models or a busy machine.
    threads: Annotated[int, Field(gt=0)] | None = None
    simulated: bool = Field(False, description="set by the demo: labels partly come from the simulator")


class CorpusSection(_Section):
    paths: list[str] = Field(default_factory=list)
    format: Literal["auto", "parquet", "csv", "tsv", "jsonl", "webdataset"] = "auto"
    occupations: str = "default"
    lexicon: Literal["paper", "extended"] = "paper"
    names: bool = False
    skip_bad_files: bool = False

    @field_validator("paths")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("give at least one caption file, glob or URL")
        return v


class SelectionSection(_Section):
    conditions: list[str] = Field(default_factory=lambda: list(CONDITIONS))
    n: Annotated[int, Field(gt=0)] = 500
    k: Annotated[int, Field(gt=0)] = 100
    templates: list[str] = Field(default_factory=lambda: ["study"])
    embedder: str = "minilm"
    embedder_model: str | None = None
    pooling: str | None = None

    @field_validator("conditions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in CONDITIONS]
        if bad:
            raise ValueError(f"unknown condition(s) {bad}; known: {', '.join(CONDITIONS)}")
        if not v:
            raise ValueError("list at least one condition")
        return v


class ModelSection(_Section):
    name: str
    id: str = Field(description="hub id or local folder of a diffusers text-to-image pipeline")
    backend: str = "diffusers"
    revision: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = "float16"
    device: str = "cuda"
    scheduler: str | None = None
    steps: Annotated[int, Field(gt=0)] = 50
    guidance: float = 7.5
    width: Annotated[int, Field(gt=0, multiple_of=8)] = 512
    height: Annotated[int, Field(gt=0, multiple_of=8)] = 512
    negative_prompt: str | None = None
    safety_checker: bool = False
    images_per_prompt: Annotated[int, Field(gt=0)] = 100
    images_per_caption: Annotated[int, Field(gt=0)] = 1
    batch_size: Annotated[int, Field(gt=0)] = 8


class TrainingImagesSection(_Section):
    source: Literal["download", "local", "embeddings", "simulated"] = "download"
    options: dict[str, Any] = Field(default_factory=dict)


class ClassifySection(_Section):
    face_detector: str = "dlib"
    classifier: str = "clip"
    model: str | None = None
    female_threshold: Annotated[float, Field(ge=0, le=1)] = 0.9
    male_threshold: Annotated[float, Field(ge=0, le=1)] = 0.1
    min_face_fraction: Annotated[float, Field(ge=0, le=1)] = 0.1
    nsfw_filter: bool = False
    batch_size: Annotated[int, Field(gt=0)] = 32
    embeddings: bool = False
    #: CLIP model whose image embeddings are saved (for training↔generated similarity);
    #: default: the classifier's own model when it is a CLIP
    embed_model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _thresholds(self) -> ClassifySection:
        if self.male_threshold >= self.female_threshold:
            raise ValueError(
                f"male_threshold ({self.male_threshold}) must be below female_threshold ({self.female_threshold})"
            )
        return self


class MeasureSection(_Section):
    n_boot: Annotated[int, Field(gt=0)] = 2000
    ci: Annotated[float, Field(gt=0, lt=1)] = 0.95
    reflected_band: Annotated[float, Field(ge=0, le=1)] = 0.04
    validation: str | None = None
    sensitivity: Annotated[float, Field(gt=0, le=1)] | None = None
    specificity: Annotated[float, Field(gt=0, le=1)] | None = None


class SimulationSection(_Section):
    """How the demo simulates what cannot be real offline (used only when `[study] simulated`).

    An image's perceived gender follows its caption: captions with female words show women
    with probability `female_word_share`, with male words `male_word_share`, with both 0.5,
    with none the occupation's own share, drawn once per occupation from Beta(a, b) or
    Beta(b, a) (a skew either way). The model draws from the captions without gender words,
    shifted towards the majority by `model_amplification`. The classifier errs at the given
    rates and abstains on `abstain_rate` of images.
    """

    female_word_share: Annotated[float, Field(ge=0, le=1)] = 0.9
    male_word_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    skew_a: Annotated[float, Field(gt=0)] = 2.0
    skew_b: Annotated[float, Field(gt=0)] = 6.0
    model_amplification: Annotated[float, Field(ge=-0.5, le=0.5)] = 0.0
    sensitivity: Annotated[float, Field(gt=0.5, le=1)] = 0.97
    specificity: Annotated[float, Field(gt=0.5, le=1)] = 0.97
    abstain_rate: Annotated[float, Field(ge=0, lt=1)] = 0.08


class EngineSection(_Section):
    name: Literal["local", "ray"] = "local"
    address: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class StudyConfig(_Section):
    study: StudySection = Field(default_factory=StudySection)
    corpus: CorpusSection
    selection: SelectionSection = Field(default_factory=SelectionSection)
    models: list[ModelSection]
    training_images: TrainingImagesSection = Field(default_factory=TrainingImagesSection)
    classify: ClassifySection = Field(default_factory=ClassifySection)
    measure: MeasureSection = Field(default_factory=MeasureSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    simulation: SimulationSection = Field(default_factory=SimulationSection)

    #: folder of the config file; relative paths are resolved against it
    _base_dir: Path = PrivateAttr(default=Path("."))
    #: the config file's text, kept for the report and the manifest
    _source_text: str | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    @base_dir.setter
    def base_dir(self, value: Path) -> None:
        self._base_dir = Path(value)

    @property
    def source_text(self) -> str | None:
        return self._source_text

    @source_text.setter
    def source_text(self, value: str | None) -> None:
        self._source_text = value

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[ModelSection]) -> list[ModelSection]:
        if not v:
            raise ValueError("list at least one [[models]] entry")
        names = [m.name for m in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique; repeated: {dup}")
        return v

    def resolve(self, p: str) -> str:
        """A path from the config, relative to the config file's folder (URLs untouched)."""
        if "://" in p or Path(p).is_absolute():
            return p
        return str((self.base_dir / p).resolve())

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Backend options with relative paths made relative to the config file: a string
        that starts with ./ or ../, or names something that exists beside the config."""
        out = {}
        for k, v in options.items():
            if isinstance(v, str) and "://" not in v and not Path(v).is_absolute() and (
                v.startswith(("./", "../")) or (self.base_dir / v).exists()
            ):
                v = str((self.base_dir / v).resolve())
            out[k] = v
        return out

    @property
    def out_dir(self) -> Path:
        return Path(self.resolve(self.study.out))

    def section_hash(self, *names: str, extra: Any = None) -> str:
        """A short hash of some sections' settings (for stage caches)."""
        d = self.model_dump(mode="json")
        payload = {n: d[n] for n in names}
        if extra is not None:
            payload["_extra"] = extra
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _loc(loc: tuple) -> str:
    parts = [str(x) for x in loc]
    if not parts:
        return "(top level)"
    head, rest = parts[0], parts[1:]
    if head == "models" and rest and rest[0].isdigit():
        head, rest = f"models.{rest[0]}", rest[1:]
    return f"[{head}]" + (f" {'.'.join(rest)}" if rest else "")


def _format_errors(path: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        where = _loc(e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            msg = f"{where}: unknown key; remove it or check its spelling (see `biasamp init` for all keys)"
        elif kind == "missing":
            msg = f"{where}: required key is missing; add it"
        else:
            got = e.get("input")
            got_s = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            msg = f"{where}: {e['msg']}{got_s}"
        lines.append(msg)
    return f"invalid study config {path}:\n  " + "\n  ".join(lines)


def _check_files(cfg: StudyConfig, path: str) -> None:
    problems = []
    for i, p in enumerate(cfg.corpus.paths):
        r = cfg.resolve(p)
        if "://" not in r and not glob.glob(r, recursive=True):
            problems.append(f"[corpus] paths.{i}: no file matches {p!r} (resolved to {r})")
    if cfg.corpus.occupations != "default" and not Path(cfg.resolve(cfg.corpus.occupations)).exists():
        problems.append(f"[corpus] occupations: file {cfg.corpus.occupations!r} not found; use \"default\" or a file with one occupation per line")
    for i, m in enumerate(cfg.models):
        looks_local = m.id.startswith((".", "/", "~")) or Path(cfg.resolve(m.id)).exists()
        if looks_local and not Path(cfg.resolve(m.id)).is_dir():
            problems.append(f"[models.{i}] id: local model folder {m.id!r} not found")
    if cfg.measure.validation and not Path(cfg.resolve(cfg.measure.validation)).exists():
        problems.append(f"[measure] validation: file {cfg.measure.validation!r} not found")
    if (cfg.measure.sensitivity is None) != (cfg.measure.specificity is None):
        problems.append("[measure] sensitivity/specificity: give both or neither")
    if problems:
        raise BiasampError(f"invalid study config {path}:\n  " + "\n  ".join(problems))


def parse_config(data: dict, *, path: str = "<config>", base_dir: Path | None = None, check_files: bool = True) -> StudyConfig:
    try:
        cfg = StudyConfig.model_validate(data)
    except ValidationError as e:
        raise BiasampError(_format_errors(path, e), hint="fix the keys named above") from None
    cfg.base_dir = (base_dir or Path(".")).resolve()
    if check_files:
        _check_files(cfg, path)
    return cfg


def load_config(path: str | Path, *, check_files: bool = True) -> StudyConfig:
    """Read and validate a study config TOML."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise BiasampError(f"cannot read study config {p}: {e.strerror}", hint="run `biasamp init study.toml` to get an example") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BiasampError(f"study config {p} is not valid TOML: {e}") from None
    cfg = parse_config(data, path=str(p), base_dir=p.parent)
    cfg.source_text = raw.decode("utf-8")
    return cfg


def example_text() -> str:
    """The commented example config that `biasamp init` writes."""
    from importlib import resources

    return resources.files("biasamp.study").joinpath("example.toml").read_text(encoding="utf-8")
