"""Part segmentation of a MANO-format hand's vertices from its skinning weights (either model).

Convention: labels index `conventions.HAND_PARTS` = (palm, thumb, index, middle, ring, pinky).
A vertex goes to the part whose joints carry most of its skinning weight; the palm part is
the wrist joint (0); each finger part is its three joints (MANO order: 1-3 index, 4-6 middle,
7-9 pinky, 10-12 ring, 13-15 thumb). The thumb's first joint (CMC) moves the thenar
eminence, which MLO-style layers count as thumb.
"""

from __future__ import annotations

import numpy as np

from ..conventions import HAND_PARTS, MANO_JOINT_TO_PART


def part_labels(weights: np.ndarray) -> np.ndarray:
    """(V,) int labels into HAND_PARTS from skinning weights (V,16)."""
    w = np.asarray(weights, dtype=np.float64)
    per_part = np.zeros((len(w), len(HAND_PARTS)))
    for j, p in enumerate(MANO_JOINT_TO_PART):
        per_part[:, p] += w[:, j]
    return per_part.argmax(axis=1)


def face_labels(weights: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) labels: the majority label of each face's vertices (ties: the first vertex's)."""
    v = part_labels(weights)[np.asarray(faces)]
    out = v[:, 0].copy()
    out[(v[:, 1] == v[:, 2])] = v[(v[:, 1] == v[:, 2]), 1]
    return out


def model_part_labels(model) -> np.ndarray:
    """Vertex labels of a `mano_io.HandModel` (or a dict of model arrays)."""
    arrays = model.arrays if hasattr(model, "arrays") else model
    return part_labels(arrays["weights"])
