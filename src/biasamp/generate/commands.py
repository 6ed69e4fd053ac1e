"""`biasamp generate`: draw images for prompts (templates x occupations, or captions)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        model: str = typer.Option(..., "--model", help="Hub id (from the local cache) or folder of a diffusers text-to-image pipeline."),
        out: Path = typer.Option(..., "--out", help="Output folder: images/, generations/ (Parquet), generate.manifest.json."),
        occupations: str = typer.Option(None, "--occupations", help="File with one occupation per line, or a comma-separated list. Default: the bundled list."),
        templates: list[str] = typer.Option(None, "--templates", help="Template ids or set names (study, prior-work, all), comma-separated, or one text with {a} and {occupation} (taken whole); repeat the option to combine. Default: 'study' unless --captions is given."),
        templates_file: Path = typer.Option(None, "--templates-file", help="File with one template per line."),
        captions: Path = typer.Option(None, "--captions", help="A selection table; its captions are used as prompts."),
        caption_condition: str = typer.Option("captions-as-prompts", "--caption-condition", help="Selection condition(s) whose captions become prompts (comma-separated)."),
        images_per_prompt: int = typer.Option(10, "--images-per-prompt", "-n", help="Images per prompt."),
        steps: int = typer.Option(50, "--steps", help="Denoising steps."),
        guidance: float = typer.Option(7.5, "--guidance", help="Classifier-free guidance scale."),
        height: int = typer.Option(None, "--height", help="Image height (default: the model's)."),
        width: int = typer.Option(None, "--width", help="Image width (default: the model's)."),
        negative_prompt: str = typer.Option(None, "--negative-prompt", help="Negative prompt for every image."),
        scheduler: str = typer.Option(None, "--scheduler", help="Scheduler class name, e.g. DPMSolverMultistepScheduler (default: the model's)."),
        revision: str = typer.Option(None, "--revision", help="Model revision (branch, tag or commit)."),
        dtype: str = typer.Option("auto", "--dtype", help="auto (float16 on GPU, float32 on CPU), float32, float16, bfloat16."),
        device: str = typer.Option("auto", "--device", help="auto, cuda, cuda:N, mps or cpu."),
        safety_checker: bool = typer.Option(False, "--safety-checker/--no-safety-checker", help="Run the model's safety checker (flagged images are recorded in column nsfw)."),
        seed: int = typer.Option(42, "--seed", help="Base seed; each image's seed derives from it, its prompt and its index."),
        batch_size: int = typer.Option(8, "--batch-size", help="Images per model call."),
        shard_size: int = typer.Option(256, "--shard-size", help="Images per shard (the unit of resume)."),
        image_format: str = typer.Option("files", "--format", help="files (PNG per image) or webdataset (one tar per shard)."),
        until_usable: int = typer.Option(None, "--until-usable", help="Draw per prompt until this many images pass --accept (instead of --images-per-prompt)."),
        max_attempts: int = typer.Option(None, "--max-attempts", help="Cap on attempts per prompt with --until-usable (default 5x)."),
        accept: str = typer.Option("not-blank", "--accept", help="Filter for --until-usable: a registered name (not-blank, face, all) or module:function. 'face': exactly one face of at least 0.1 of the image (dlib), as the study kept."),
        backend: str = typer.Option("diffusers", "--backend", help="Generator backend."),
        compile: bool = typer.Option(False, "--compile", help="torch.compile the UNet (GPU; slow first batch)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    ) -> None:
        """Draw images for occupation prompts or captions; resumable (run the same command again)."""
        import polars as pl

        from biasamp import ui
        from biasamp.generate import generate_images
        from biasamp.vocab.prompts import load_templates_file, resolve_templates

        from biasamp.errors import BiasampError

        if templates_file is not None and not Path(templates_file).is_file():
            raise BiasampError(f"--templates-file {templates_file}: no such file", hint="give a UTF-8 text file with one template per line, e.g. 'A photo of {a} {occupation}'")
        if captions is not None and not any(c in str(captions) for c in "*?[") and not Path(captions).exists():
            raise BiasampError(f"--captions {captions}: no such file", hint="give the selection.parquet written by `biasamp select`")
        tpl = None
        if templates:
            tpl = resolve_templates(list(templates))
        if templates_file is not None:
            tpl = (tpl or []) + load_templates_file(str(templates_file))
        options = {"compile": True} if compile else {}
        gens = generate_images(
            out,
            model,
            occupations=occupations,
            templates=tpl,
            captions=captions,
            caption_conditions=[c.strip() for c in caption_condition.split(",") if c.strip()],
            images_per_prompt=images_per_prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            height=height,
            width=width,
            negative_prompt=negative_prompt,
            scheduler=scheduler,
            revision=revision,
            dtype=dtype,
            device=device,
            safety_checker=safety_checker,
            backend=backend,
            backend_options=options,
            batch_size=batch_size,
            shard_size=shard_size,
            image_format=image_format,
            until_usable=until_usable,
            max_attempts=max_attempts,
            accept=accept,
            show_progress=not quiet,
        )
        if not quiet:
            summary = gens.group_by("condition", "occupation", maintain_order=True).agg(
                pl.len().alias("images"), pl.col("group").n_unique().alias("prompts"), pl.col("prompt_truncated").sum().alias("truncated")
            )
            ui.print_table(summary, title=f"{len(gens)} images in {out}")
