"""Training images: download what was selected (img2dataset), use an image store already on
disk, or label from LAION's precomputed CLIP embeddings; report attrition.

    from biasamp.images import fetch_training_images, attrition_table
"""

from biasamp.images.attrition import attrition_table
from biasamp.images.compare import Comparison, cohen_kappa, compare_embedding_labels
from biasamp.images.fetch import SOURCES, FetchResult, fetch_training_images
from biasamp.images.schema import DOWNLOADS, STATUSES

__all__ = [
    "DOWNLOADS",
    "SOURCES",
    "STATUSES",
    "Comparison",
    "FetchResult",
    "attrition_table",
    "cohen_kappa",
    "compare_embedding_labels",
    "fetch_training_images",
]
