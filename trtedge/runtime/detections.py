"""The one result type every backend and NMS form turns into."""

from typing import Any, Dict, List, NamedTuple, Sequence

import numpy as np


class Detections(NamedTuple):
    """Detections of one frame.

    ``boxes`` float32 [n, 4] x1, y1, x2, y2 in frame pixels; ``scores``
    float32 [n]; ``class_ids`` int32 [n] (0-based into the engine's labels);
    ``labels`` the label name of each row. Rows are sorted by score.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: Sequence[str]

    def __len__(self) -> int:  # type: ignore[override]
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), ())

    def to_json(self) -> List[Dict[str, Any]]:
        """``[{"label", "class_id", "score", "box": [x1, y1, x2, y2]}, ...]``"""
        return [
            {
                "label": str(self.labels[i]),
                "class_id": int(self.class_ids[i]),
                "score": round(float(self.scores[i]), 5),
                "box": [round(float(v), 2) for v in self.boxes[i]],
            }
            for i in range(len(self))
        ]

    def select(self, keep: np.ndarray) -> "Detections":
        """Rows where ``keep`` (a boolean mask or index array) holds."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)
        return Detections(self.boxes[idx], self.scores[idx], self.class_ids[idx],
                          tuple(self.labels[i] for i in idx))
