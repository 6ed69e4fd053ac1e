"""Human validation of perceived-gender labels: sample images, label them in the browser, export.

- `sample_task(labels, out, n=…, seed=…)`: a stratified, seeded sample of labelled images
  (by source, occupation, predicted label and confidence band), copied into a task folder.
- `serve_task(folder, port=…)`: a local web app that shows one image at a time (occupation
  hidden) and saves every answer to an append-only log as it is given.
- `export_annotations(folder)`: the annotations file the `human` classifier backend reads,
  a validation table (classifier label vs human reference) and inter-annotator agreement.
"""

from biasamp.annotate.agreement import agreement_table, cohen_kappa, fleiss_kappa
from biasamp.annotate.export import AnnotationExport, export_annotations
from biasamp.annotate.log import ANNOTATION_LABELS, LABEL_VALUES, AnnotationLog
from biasamp.annotate.server import AnnotationServer, serve_task
from biasamp.annotate.task import Task, load_task, sample_task

__all__ = [
    "ANNOTATION_LABELS",
    "LABEL_VALUES",
    "AnnotationExport",
    "AnnotationLog",
    "AnnotationServer",
    "Task",
    "agreement_table",
    "cohen_kappa",
    "export_annotations",
    "fleiss_kappa",
    "load_task",
    "sample_task",
    "serve_task",
]
