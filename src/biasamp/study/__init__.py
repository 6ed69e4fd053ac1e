"""A whole study from one config: validation, the stage plan, caching, resume, the report."""

from biasamp.study.config import StudyConfig, load_config, parse_config
from biasamp.study.runner import Runner, RunResult, Stage


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    try:
        import torch
    except ImportError:  # pragma: no cover - torch-free installs run no model stage
        return
    torch.set_num_threads(n)


def run_on_engine(cfg: StudyConfig, runner: Runner, force: tuple[str, ...] = ()) -> RunResult:
    """Run the plan; with `[engine] name = "ray"`, the heavy stages (query, generation,
    classification, download) run on the cluster through `biasamp.engines.routing`."""
    if cfg.engine.name == "local":
        return runner.run(force=force)
    from biasamp import engines
    from biasamp.engines.routing import routed

    engine = engines.engine_from_config(cfg.engine)
    with routed(engine) as used:
        result = runner.run(force=force)
    result.results["engine"] = cfg.engine.name
    result.results["engine_stages"] = sorted(used)
    return result


def plan_study(config: StudyConfig | str):
    """The stage plan of a study config (a Polars table: stage, key, status, reads)."""
    from biasamp.study.pipeline import build_stages

    cfg = load_config(config) if isinstance(config, str) else config
    return Runner(cfg, build_stages(cfg)).plan()


def run_study(config: StudyConfig | str, *, force: tuple[str, ...] = (), show_progress: bool = True) -> RunResult:
    """Run (or resume) every stage of a study; returns what ran, what was cached, and timings."""
    from biasamp.study.pipeline import build_stages

    cfg = load_config(config) if isinstance(config, str) else config
    _set_threads(cfg.study.threads)
    runner = Runner(cfg, build_stages(cfg), show_progress=show_progress)
    unknown = [f for f in force if f not in {s.name for s in runner.stages}]
    if unknown:
        from biasamp.errors import BiasampError

        raise BiasampError(f"--force names unknown stage(s) {unknown}",
                           hint=f"stages: {', '.join(s.name for s in runner.stages)}")
    result = run_on_engine(cfg, runner, force)
    report = cfg.out_dir / "report" / "index.html"
    result.report = report if report.exists() else None
    return result


__all__ = ["Runner", "RunResult", "Stage", "StudyConfig", "load_config", "parse_config", "plan_study", "run_study"]
