"""Perceived-gender classification of images: decode, face filter, NSFW filter, gender
classifier, abstention; validation against reference labels; image-embedding similarity.

    from biasamp.classify import classify_images, validate_labels, image_similarity
"""

from __future__ import annotations

from .decode import Decoded, decode_image
from .faces import FACE_DETECTORS, Face, face_filter, make_face_detector
from .models import CLASSIFIERS, abstain, make_classifier
from .pipeline import Labeler, classify_images, read_labels
from .probe import train_linear_probe
from .similarity import image_similarity, pairwise_similarity
from .validate import cohen_kappa, validate_labels, wilson

__all__ = [
    "CLASSIFIERS",
    "FACE_DETECTORS",
    "Decoded",
    "Face",
    "Labeler",
    "abstain",
    "classify_images",
    "cohen_kappa",
    "decode_image",
    "face_filter",
    "image_similarity",
    "make_classifier",
    "make_face_detector",
    "pairwise_similarity",
    "read_labels",
    "train_linear_probe",
    "validate_labels",
    "wilson",
]
