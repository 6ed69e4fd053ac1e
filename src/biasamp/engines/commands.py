"""`biasamp scale …`: run a heavy stage command on an engine (Ray), with all its options.

    biasamp scale --engine ray --address HEAD:6379 captions query s3://bucket/laion/*.parquet --out runs/q
    biasamp scale --engine ray generate --model MODEL --out runs/gen          # a local Ray, started on demand
    biasamp scale --engine ray --num-gpus 1 classify runs/gen --out runs/labels
    biasamp scale engines                                                    # the engines known
"""

from __future__ import annotations

import typer

STAGE_COMMANDS = ("captions query", "embed", "generate", "classify", "fetch")


def _parse_options(items: list[str]) -> dict:
    import json

    from biasamp.errors import BiasampError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BiasampError(f"engine option {item!r} is not KEY=VALUE", hint="e.g. --engine-option max_retries=5")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def register(app: typer.Typer) -> None:
    @app.command(
        "scale",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "allow_interspersed_args": False},
    )
    def scale_cmd(
        ctx: typer.Context,
        engine: str = typer.Option("ray", "--engine", help="local | ray."),
        address: str = typer.Option(None, "--address", "--ray-address", help="Ray cluster to join: HOST:PORT of the head, "
                                    "ray://HOST:10001, or auto. Default: start a local Ray on demand."),
        engine_option: list[str] = typer.Option([], "--engine-option", help="Engine option KEY=VALUE (repeatable): "
                                                "num_cpus, node_ip_address, max_retries, namespace, …"),
        concurrency: int = typer.Option(None, "--concurrency", help="Workers (actors) per stage (default: as many as fit)."),
        num_gpus: float = typer.Option(None, "--num-gpus", help="GPUs per worker for generate/embed/classify "
                                       "(default: 1 where the cluster has GPUs)."),
        num_cpus: float = typer.Option(None, "--num-cpus", help="CPUs per task or worker (default 1)."),
    ) -> None:
        """Run a stage command on an engine: `biasamp scale [OPTIONS] <captions query|embed|generate|classify|fetch> …`.

        Everything after the stage command's name is that command's own options; the output
        is that of the local engine (same rows, images and labels), and runs resume with either engine.
        `biasamp scale engines` lists the engines.
        """
        from biasamp.engines import ENGINES, get_engine
        from biasamp.engines.routing import routed
        from biasamp.errors import BiasampError
        from biasamp.ui import console

        args = list(ctx.args)
        if args[:1] == ["engines"]:
            for name, doc in ENGINES.describe().items():
                console.print(f"{name:8s} {doc}")
            return
        stage = next((s for s in STAGE_COMMANDS if args[: len(s.split())] == s.split()), None)
        if stage is None:
            raise BiasampError(
                f"`biasamp scale` runs one of: {', '.join(STAGE_COMMANDS)} (got {' '.join(args[:2]) or 'nothing'})",
                hint="e.g. biasamp scale --engine ray --address HEAD:6379 generate --model MODEL --out runs/gen",
            )
        eng = get_engine(engine, address, **_parse_options(engine_option))
        per: dict = {}
        res = {k: v for k, v in (("concurrency", concurrency), ("num_gpus", num_gpus), ("num_cpus", num_cpus)) if v is not None}
        for target in ("generate_images", "classify_images", "embed_to_shards"):
            per[target] = dict(res)
        if num_cpus is not None:
            per["query_corpus"] = {"num_cpus": num_cpus}
        if eng.is_local:
            per = {}
        from biasamp.cli import app as main_app

        command = typer.main.get_command(main_app)
        try:
            with routed(eng, per) as used:
                command.main(args, prog_name="biasamp", standalone_mode=False)
        finally:
            eng.close()
        if not used and "--help" not in args:
            raise BiasampError(f"`{stage}` did not run through the {engine} engine",
                               hint="this stage command no longer calls the function biasamp.engines.routing expects")
