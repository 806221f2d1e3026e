"""Stand-in models and drawn scans for the tests of reading and choosing a string."""

from __future__ import annotations

import cv2
import numpy as np

from trainer import strings
from worker.reading.inference import Prediction


class Shapes:
    """A stand-in classifier: a piece framed taller than wide is a confident 7, anything wider
    (such as two digits squeezed into one frame) a doubtful 0, as a model with a "not one digit"
    class would have it."""

    version = 1
    judges_cuts = True
    reads_lines = False

    def predict(self, images: np.ndarray) -> list[Prediction]:
        tall = [np.count_nonzero(image.max(axis=1) > 0.1) >= 19 for image in images]
        return [Prediction(7, 0.99) if t else Prediction(0, 0.3) for t in tall]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """The same, as softmax rows: the rest of the probability spread over the others."""
        rows = []
        for p in self.predict(images):
            row = np.full(11, (1 - p.confidence) / 10)
            row[p.label] = p.confidence
            rows.append(row)
        return np.array(rows)


class Spelling(Shapes):
    """Shapes, with a string reader that reads every line as `text`, surely."""

    reads_lines = True

    def __init__(self, text: str) -> None:
        self.text = text

    def read_lines(self, lines: np.ndarray) -> np.ndarray:
        logits = np.zeros((len(lines), strings.WIDTH // strings.STEP, 11), np.float32)
        logits[:, :, 0] = 20.0  # blank everywhere but one step per digit, spread out
        for i, digit in enumerate(self.text):
            step = 4 + i * 8
            logits[:, step, 0], logits[:, step, int(digit) + 1] = 0.0, 20.0
        return logits


def png(ink: np.ndarray) -> bytes:
    return cv2.imencode(".png", (255 - 200 * ink).astype(np.uint8))[1].tobytes()


def touching_sevens() -> bytes:
    ink = np.zeros((120, 200), np.float32)
    for x in (40, 84):  # two 7s whose bars touch
        points = np.int32([[x, 30], [x + 46, 30], [x + 16, 90]])
        cv2.polylines(ink, [points], False, 1.0, 5, cv2.LINE_AA)
    return png(ink)
