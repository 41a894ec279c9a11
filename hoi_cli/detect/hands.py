"""Hand detection over a clip: MediaPipe's bundled hand model, with tracking and re-detection.

Off the shelf, MediaPipe's legacy hand solution finds a hand in well under half the frames of
small, blurry, partly occluded hand-object clips. This module raises recall with:

1. full-frame passes of ``mp.solutions.hands`` in tracking (video) mode, forward and
   backward in time, on frames padded with a replicated border (hands cut by the frame edge);
2. re-detection in crops around a hand's box in a neighbouring frame, propagated forward and
   backward in time: the crop (square, upscaled to the landmark model's 224 px input) is run
   through MediaPipe's own landmark model (``hand_landmark_full.tflite``, shipped in the
   mediapipe wheel, run with ``ai-edge-litert``) at the hand's last orientation, at four
   rotations, and mirrored; the variant with the highest hand-presence score wins;
   (the hand's own orientation is tried first and accepted at once when its presence is
   >= ``early_accept``);
3. optional (``palm_seed``, off by default; its decoding is MediaPipe's: [0, 1] input, SSD
   anchors 8/16/16/16 px, sigmoid scores; checked on 243: its boxes land on the hand, scored
   0.08-0.93 on the padded frame; but on the hard clips its best boxes are clutter, forearms,
   necks): MediaPipe's palm detector
   (``palm_detection_full.tflite``) on the padded frame and on upscaled tiles of frames still
   lacking hands, each palm checked by the landmark model in the crop MediaPipe would take;
   tracks that start only from such seeds must last ``palm_min_track`` frames;
4. exhaustive seed search (``seed_search``, on; runs only in clips where >= ``seed_when_missing``
   of the frames still have no hand, e.g. a small dark hand behind a mug, or a pointing hand
   cut by the image edge, which neither MediaPipe's palm detector nor its tracking ever
   starts on): on up to ``seed_key_frames`` key frames without hands, a multi-scale sliding
   window (``seed_sizes``, step ``seed_step``, edge-reaching, ``seed_rotations``) through the
   lite landmark model; each window with presence >= ``seed_scan_presence`` is confirmed
   twice by the full model (crop re-detection, the hand's own orientation first, then the
   usual rotations/mirror; presence >= ``seed_min_presence``, the two boxes overlapping), then
   propagated by crop re-detection (in such clips also at crop scales
   ``seed_extend_scales`` and 8 rotations); a track started only by seeds must last
   ``seed_min_track`` frames. Costs ~1-1.5 s per scanned key frame, none in other clips;
5. linking detections into tracks, one handedness vote per track (so a track never swaps
   left/right between frames), the two slots resolved jointly (coexisting tracks must differ;
   when their votes are about equal, the horizontal order decides, see
   `_horizontal_tie_break`), and short-gap interpolation, flagged in ``hand_interpolated``;
6. following (``track_boxes``, on; `hoi_cli.detect.track`): each slot's hand is carried into
   the frames where it has none, forward from the frame before each empty run and backward
   from the frame after it, by median-flow box tracking with re-detection (a full-frame
   detection on the predicted box, else the landmark model in a crop around it); where
   neither finds the hand the tracked box is kept without keypoints ("box-only", at most
   ``track_max_box_only`` frames in a row); the follow stops where the flow loses the box or
   the box leaves the frame or runs into the other hand;
7. hand prompts (``hand_prompts``, at most two boxes, each on its frame): the prompted hands
   are followed through the whole clip in both directions together, with exclusive
   identities (no box-only limit; `hoi_cli.detect.track.follow_together`: in each frame the
   detections near the two predicted boxes are assigned jointly by overlap, keypoint
   continuity and handedness, and a hand hidden behind the other keeps a box held in place);
   runs of the automatic result that land on one prompted hand join it (keypoints before
   box-only; a run on both alike goes with its automatic slot's hand), its slot is the
   landmark model's handedness vote where it was found, else the image side; hands no
   prompt reaches are dropped. A follow from a weak detection (< 0.8) keeps box-only boxes
   only where they move (a weak detection beside static red cups was followed back over them).

Everything is deterministic (no random numbers; fixed order of passes).

Convention (outputs, see DESIGN.md "artifact contract"):
    ``hand_keypoints (T,2,21,3)``: x, y in px at the frames' resolution and a score (the hand's
    presence score, repeated per joint; MediaPipe gives no per-joint confidence);
    ``hand_world (T,2,21,3)``: MediaPipe world landmarks, metres, origin near the hand's centre,
    axes of the (unrotated, unmirrored) image: x right, y down;
    ``hand_score (T,2)``; ``hand_interpolated (T,2)`` bool; ``hand_boxes (T,2,4)`` tight xyxy
    around the 21 keypoints; ``hand_boxes_square (T,2,4)`` Re-HOLD's fixed-size square boxes.
    ``hand_box_only (T,2)`` bool: True where the hand has a box but no keypoints (a tracked
    box, steps 6-7, or a prompt box the landmark model never confirmed): ``hand_boxes`` is the
    tracked box (clipped to the frame), ``hand_boxes_square`` its square, ``hand_score`` the
    track confidence in (0, 1] (flow quality x 0.95 per frame since the last keypoints; 1 for
    an unconfirmed prompt box), ``hand_keypoints`` and ``hand_world`` are NaN.
    Slot 0 = the person's left hand, 1 = right, not mirrored; missing = NaN. No hand found
    anywhere: every array is NaN (``hand_box_only`` False); `detect_hands` never raises for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..conventions import LEFT, RIGHT, box_from_points, box_iou, empty_boxes, mediapipe_label_to_slot, square_box
from ..params import typed

LANDMARK_INPUT = 224


@typed
class HandDetectorConfig:
    """Options of `detect_hands` (all have defaults tuned on the InterDyn clips)."""

    min_detection_confidence: float = 0.5  # palm detector threshold of the full-frame passes
    min_tracking_confidence: float = 0.5  # MediaPipe's own tracking threshold
    min_presence: float = 0.5  # landmark-model hand presence to accept a crop re-detection
    min_presence_tiles: float = 0.8  # ... and a detection found only in a tile
    model_complexity: int = 1  # 0 = lite, 1 = full landmark model
    # "tiles" (multi-scale tiles) raises recall a little but adds false hands and time: opt-in
    full_frame_passes: tuple[str, ...] = ("forward", "backward", "static")
    tile_overlap: float = 0.5  # "tiles" pass: overlapping square tiles ...
    tile_scales: tuple[float, ...] = (1.0, 0.67, 0.5)  # ... of these fractions of the shorter side
    tile_stride: int = 2  # ... on every n-th frame (re-detection propagates to the others)
    tile_min_detection_confidence: float = 0.3
    rescore: bool = False  # re-score every full-frame detection with the landmark model's presence
    pad_fraction: float = 0.15  # border (fraction of the longer side) added for edge-cut hands
    redetect: bool = True  # crop re-detection around neighbouring frames' boxes
    redetect_rotations: tuple[float, ...] = (0.0, 90.0, 180.0, 270.0)
    redetect_flip: bool = True
    crop_scale: float = 2.0  # crop side = crop_scale * longer side of the seed box
    max_redetect_rounds: int = 4  # forward+backward sweeps until nothing new is found
    max_gap: int = 3  # interpolate gaps of at most this many frames inside a track
    max_hands: int = 2
    min_track_score: float = 0.6  # tracks whose best score is below this are dropped
    min_track_length: int = 2  # ...and tracks shorter than this whose best score < 0.8
    square_size: float = 0.0  # Re-HOLD square side in px; 0 = auto (see `auto_square_size`)
    square_scale: float = 1.2  # auto square side = square_scale * median longer box side
    num_threads: int = 1
    # palm-detector seeding (MediaPipe's palm_detection_full.tflite on upscaled tiles) for frames
    # that the passes above leave without two hands; a seed is accepted when the landmark model
    # confirms it (presence >= palm_min_presence) and the track it starts lasts >= palm_min_track
    slot_tie_margin: float = 0.1  # coexisting tracks whose votes differ less: horizontal order decides
    left_hand_on_image_left: bool = True  # ... in this sense (see `_horizontal_tie_break`)
    early_accept: float = 0.9  # crop re-detection: stop trying variants at this presence
    palm_seed: bool = False  # opt-in: on the InterDyn clips it adds false hands (forearms) for little recall
    palm_min_score: float = 0.5
    palm_min_presence: float = 0.85
    palm_min_track: int = 6
    palm_stride: int = 3  # ... on every n-th frame lacking hands
    palm_tile_scales: tuple[float, ...] = (0.5,)
    palm_tile_overlap: float = 0.25
    palm_max_candidates: int = 4
    # exhaustive seed search (opt-in): when a clip is mostly without hands after the passes
    # above, a multi-scale sliding-window scan of the landmark model on a few key frames; a
    # window is a seed when the full model confirms it twice at its own orientation
    # (>= seed_min_presence), and the track it starts lasts >= seed_min_track frames
    seed_search: bool = True  # see the module docstring, step 4
    seed_when_missing: float = 0.3  # run only if this fraction of the frames has no hand
    seed_key_frames: int = 4  # key frames scanned (at most), spread over the frames without hands
    seed_sizes: tuple[float, ...] = (0.25, 0.4, 0.65, 1.0)  # window sides, fractions of min(H, W)
    seed_step: float = 0.5  # grid step, fraction of the window side
    seed_rotations: tuple[float, ...] = (0.0, 90.0, 270.0)
    seed_scan_complexity: int = 0  # landmark model of the scan (0 = lite, faster)
    seed_scan_presence: float = 0.5
    seed_min_presence: float = 0.85
    seed_min_track: int = 8
    seed_max_per_frame: int = 4
    # ... and in such clips, crop re-detection is retried at these extra crop scales and
    # rotations (tracks of hard hands end where the default crop loses them)
    seed_extend_scales: tuple[float, ...] = (1.5, 2.6)
    seed_extend_rotations: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
    # follow each found hand (box tracking + crop re-detection, `hoi_cli.detect.track`) into the
    # frames where the passes above lose it; at most this many box-only frames in a row
    track_boxes: bool = True
    track_max_box_only: int = 12


@dataclass
class _Det:
    """One hand found in one frame (pixel coordinates of the unpadded frame)."""

    kp: np.ndarray  # (21, 2) px
    world: np.ndarray  # (21, 3) m
    score: float  # presence (re-detection) or handedness-classifier confidence (full frame)
    p_right: float  # probability that it is the person's RIGHT hand (slot 1)
    source: str
    origin: str = ""  # the pass that found the track's seed (propagated by crop re-detection)
    box: np.ndarray = field(init=False)

    def __post_init__(self):
        self.box = box_from_points(self.kp)
        self.origin = self.origin or self.source


# ----------------------------------------------------------------- MediaPipe wrappers
def _mp_modules_dir() -> Path:
    import mediapipe as mp

    return Path(os.path.dirname(mp.__file__)) / "modules"


def landmark_model_path(model_complexity: int = 1) -> Path:
    name = "hand_landmark_full.tflite" if model_complexity else "hand_landmark_lite.tflite"
    return _mp_modules_dir() / "hand_landmark" / name


class LandmarkModel:
    """MediaPipe's hand landmark model run directly on a 224x224 crop (ai-edge-litert)."""

    def __init__(self, model_complexity: int = 1, num_threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - depends on the environment
            Interpreter = None
        self.available = Interpreter is not None
        if not self.available:
            return
        path = landmark_model_path(model_complexity)
        self.interp = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interp.allocate_tensors()
        self.input_index = self.interp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.interp.get_output_details()}
        # Identity: screen landmarks (63), Identity_1: presence, Identity_2: handedness
        # (probability of MediaPipe's mirrored label "Left"), Identity_3: world landmarks (63).
        self.out = [outs["Identity"], outs["Identity_1"], outs["Identity_2"], outs["Identity_3"]]

    def __call__(self, crop_rgb: np.ndarray):
        x = crop_rgb[None].astype(np.float32) / 255.0
        self.interp.set_tensor(self.input_index, x)
        self.interp.invoke()
        lm = self.interp.get_tensor(self.out[0]).reshape(21, 3)
        presence = float(self.interp.get_tensor(self.out[1]).ravel()[0])
        handed_mp_left = float(self.interp.get_tensor(self.out[2]).ravel()[0])
        world = self.interp.get_tensor(self.out[3]).reshape(21, 3)
        return lm, presence, handed_mp_left, world


def _palm_anchors() -> np.ndarray:
    """SSD anchors of MediaPipe's 192 px palm detector (strides 8, 16, 16, 16; fixed size)."""
    out = []
    for stride, n in ((8, 2), (16, 6)):
        g = 192 // stride
        for y in range(g):
            for x in range(g):
                out.extend([((x + 0.5) / g, (y + 0.5) / g)] * n)
    return np.asarray(out, dtype=np.float64)


class PalmModel:
    """MediaPipe's palm detector (``palm_detection_full.tflite``) on a square RGB image.

    Returns ``(score, cx, cy, size, angle)`` per palm in the image's pixels, where ``angle`` is
    the rotation (deg, cv2 sense) that turns the wrist->middle-finger direction up, as
    `hand_up_angle` does for landmarks."""

    SIZE = 192

    def __init__(self, num_threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover
            Interpreter = None
        self.available = Interpreter is not None
        if not self.available:
            return
        path = _mp_modules_dir() / "palm_detection" / "palm_detection_full.tflite"
        self.interp = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interp.allocate_tensors()
        self.input_index = self.interp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self.interp.get_output_details()}
        self.reg_index, self.cls_index = outs["Identity"], outs["Identity_1"]
        self.anchors = _palm_anchors()

    def __call__(self, img_rgb: np.ndarray, min_score: float = 0.5) -> list[tuple[float, ...]]:
        import cv2

        side = img_rgb.shape[0]
        x = cv2.resize(img_rgb, (self.SIZE, self.SIZE), interpolation=cv2.INTER_AREA if side > self.SIZE
                       else cv2.INTER_LINEAR).astype(np.float32) / 255.0
        self.interp.set_tensor(self.input_index, x[None])
        self.interp.invoke()
        reg = self.interp.get_tensor(self.reg_index)[0].astype(np.float64)
        logit = np.clip(self.interp.get_tensor(self.cls_index)[0, :, 0].astype(np.float64), -50, 50)
        score = 1.0 / (1.0 + np.exp(-logit))
        idx = np.nonzero(score >= min_score)[0]
        if not len(idx):
            return []
        idx = idx[np.argsort(-score[idx], kind="stable")]
        cxy = (reg[idx, :2] / self.SIZE + self.anchors[idx]) * side
        wh = reg[idx, 2:4] / self.SIZE * side
        k0 = (reg[idx, 4:6] / self.SIZE + self.anchors[idx]) * side  # wrist
        k2 = (reg[idx, 8:10] / self.SIZE + self.anchors[idx]) * side  # middle finger base
        out, kept = [], []
        for i in range(len(idx)):
            size = float(max(wh[i]))
            if size < 4 or any(np.hypot(*(cxy[i] - cxy[j])) < 0.5 * max(size, float(max(wh[j]))) for j in kept):
                continue
            kept.append(i)
            v = k2[i] - k0[i]
            out.append((float(score[idx[i]]), float(cxy[i, 0]), float(cxy[i, 1]), size,
                        float(np.degrees(np.arctan2(v[0], -v[1])))))
        return out


def palm_candidates(frame: np.ndarray, model: PalmModel, cfg: HandDetectorConfig) -> list[tuple[float, ...]]:
    """Palms in a frame: the padded whole frame, then square tiles (upscaled to the detector's
    192 px input, so small hands get bigger); duplicates merged, best score first."""
    import cv2

    H, W = frame.shape[:2]
    pad = int(round(cfg.pad_fraction * max(H, W)))
    side = max(H, W) + 2 * pad
    img = cv2.copyMakeBorder(frame, pad, side - H - pad, pad, side - W - pad, cv2.BORDER_REPLICATE)
    cands = [(s, cx - pad, cy - pad, sz, a) for s, cx, cy, sz, a in model(img, cfg.palm_min_score)]
    for sc in cfg.palm_tile_scales:
        for x0, y0, ts in tile_windows(W, H, cfg.palm_tile_overlap, sc):
            tile = np.ascontiguousarray(frame[y0:y0 + ts, x0:x0 + ts])
            cands += [(s, cx + x0, cy + y0, sz, a) for s, cx, cy, sz, a in model(tile, cfg.palm_min_score)]
    cands.sort(key=lambda c: -c[0])
    out = []
    for c in cands:
        if all(np.hypot(c[1] - o[1], c[2] - o[2]) >= 0.5 * max(c[3], o[3]) for o in out):
            out.append(c)
    return out[:cfg.palm_max_candidates]


def _palm_seed(frame, cand, model: LandmarkModel, cfg: HandDetectorConfig) -> _Det | None:
    """Landmark-model check of a palm candidate: the crop MediaPipe would take (2.6 palm sizes,
    shifted half a palm towards the fingers) at the palm's orientation (plus the usual variants)."""
    score, cx, cy, size, ang = cand
    a = np.radians(ang)
    up = np.array([np.sin(a), -np.cos(a)])  # wrist -> fingers direction in the image
    c = np.array([cx, cy]) + 0.5 * size * up
    half = 2.6 * size / cfg.crop_scale / 2
    box = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
    d = redetect_in_crop(frame, box, model, cfg, angle=ang)
    if d is None or d.score < cfg.palm_min_presence:
        return None
    if np.hypot(*((d.box[:2] + d.box[2:]) / 2 - c)) > 1.5 * size:
        return None
    d.source = d.origin = "palm"
    return d


def seed_windows(W: int, H: int, cfg: HandDetectorConfig) -> list[tuple[float, float, float]]:
    """Square scan windows (cx, cy, side): sides ``cfg.seed_sizes`` * min(W, H) on a grid of
    step ``cfg.seed_step`` * side; centres reach a quarter side from the frame's edges, so a
    hand cut by the edge still fills its window (the crop's border is replicated)."""
    out = []
    for fr in cfg.seed_sizes:
        side = max(48.0, fr * min(W, H))  # smaller windows: hands too small for the model
        step = max(4.0, cfg.seed_step * side)

        def centres(n, side=side, step=step):
            lo, hi = side / 4, n - side / 4
            k = max(1, int(np.ceil((hi - lo) / step)) + 1)
            return np.linspace(lo, hi, k) if hi > lo else np.array([n / 2])

        out += [(float(x), float(y), side) for y in centres(H) for x in centres(W)]
    return out


def _scan_frame(frame, scan_model: LandmarkModel, model: LandmarkModel, cfg: HandDetectorConfig) -> list[_Det]:
    """Seed candidates in one frame: every window of `seed_windows` at ``seed_rotations``
    through the (lite) scan model; windows with presence >= ``seed_scan_presence`` are merged,
    then each is confirmed twice by the full model at the hand's own orientation (crop
    re-detection around the found keypoints, then again around its result): both presences
    >= ``seed_min_presence`` and the two boxes overlapping (IoU >= 0.3)."""
    import cv2

    H, W = frame.shape[:2]
    cands = []
    for cx, cy, side in seed_windows(W, H, cfg):
        for ang in cfg.seed_rotations:
            M = _crop_affine(cx, cy, side, ang, False)
            crop = cv2.warpAffine(frame, M, (LANDMARK_INPUT, LANDMARK_INPUT), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
            lm, presence, _, _ = scan_model(crop)
            if presence < cfg.seed_scan_presence:
                continue
            Minv = cv2.invertAffineTransform(M)
            kp = lm[:, :2] @ Minv[:, :2].T + Minv[:, 2]
            cands.append((presence, kp))
    cands.sort(key=lambda c: -c[0])
    kept: list[tuple[float, np.ndarray]] = []
    for p, kp in cands:
        b = box_from_points(kp)
        if all(box_iou(b, box_from_points(k)) <= 0.3 for _, k in kept):
            kept.append((p, kp))
    out: list[_Det] = []
    for _, kp in kept[:2 * cfg.seed_max_per_frame]:
        b = box_from_points(kp)
        d = redetect_in_crop(frame, b, model, cfg, kp)
        if d is None or d.score < cfg.seed_min_presence:
            continue
        d2 = redetect_in_crop(frame, d.box, model, cfg, d.kp)
        if d2 is None or d2.score < cfg.seed_min_presence or box_iou(d2.box, d.box) < 0.3:
            continue
        if any(box_iou(d2.box, e.box) > 0.2 or _contains(e.box, d2.box, 0.5) for e in out):
            continue
        d2.source = d2.origin = "seed"
        out.append(d2)
        if len(out) >= cfg.seed_max_per_frame:
            break
    return out


def _seed_search(frames, per_frame, model: LandmarkModel, cfg: HandDetectorConfig, tried: set | None = None):
    """Scan up to ``seed_key_frames`` key frames without hands (`_scan_frame`), spread evenly
    over them, one at a time: the seeds of a key frame are propagated by crop re-detection
    before the next key frame is chosen (frames the seeds reached are skipped). Persistence is
    checked later: a track started only by seeds must last ``seed_min_track`` frames
    (`_assign_slots`). Returns the new ``per_frame``."""
    T = len(frames)
    empty = [t for t in range(T) if not per_frame[t]]
    if not empty or len(empty) < cfg.seed_when_missing * T or cfg.seed_key_frames < 1:
        return per_frame
    scan_model = LandmarkModel(cfg.seed_scan_complexity, cfg.num_threads)
    if not scan_model.available:
        return per_frame
    k = min(cfg.seed_key_frames, len(empty))
    # spread order: middle first, then the halves' middles, ... (deterministic)
    keys = [empty[int(round(i))] for i in np.linspace(0, len(empty) - 1, k)]
    order, spans = [], [(0, len(keys))]
    while spans:
        a, b = spans.pop(0)
        if a >= b:
            continue
        m = (a + b) // 2
        order.append(keys[m])
        spans += [(a, m), (m + 1, b)]
    import dataclasses

    extend = [dataclasses.replace(cfg, crop_scale=sc, redetect_rotations=cfg.seed_extend_rotations,
                                  redetect_flip=False)
              for sc in cfg.seed_extend_scales]
    for t in order:
        if per_frame[t]:
            continue  # reached by an earlier seed
        seeds = _scan_frame(frames[t], scan_model, model, cfg)
        if not seeds:
            continue
        per_frame[t].extend(seeds)
        if cfg.redetect:
            per_frame = _redetect_sweeps(frames, per_frame, model, cfg, tried)
    if cfg.redetect:
        for v in extend:  # longer tracks: other crop scales, finer rotations
            per_frame = _redetect_sweeps(frames, per_frame, model, v, set())
    return per_frame


def _slot_prob_right(label: str, score: float) -> float:
    """P(person's right hand) from MediaPipe's (mirrored) label and its score."""
    return score if mediapipe_label_to_slot(label) == RIGHT else 1.0 - score


def tile_windows(W: int, H: int, overlap: float = 0.5, scale: float = 1.0) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) of side scale*min(W, H) covering the frame with ``overlap``."""
    side = max(16, int(round(scale * min(W, H))))
    step = max(1, int(side * (1 - overlap)))
    def starts(n):
        if n <= side:
            return [0]
        out = list(range(0, n - side, step)) + [n - side]
        return sorted(set(out))
    return [(x, y, side) for y in starts(H) for x in starts(W)]


def _tiles_pass(frames, cfg: HandDetectorConfig) -> list[list[_Det]]:
    """``mp.solutions.hands`` (static) on overlapping square tiles: small hands get ~2x bigger
    at the palm detector's 192 px input."""
    import mediapipe as mp

    T = len(frames)
    H, W = frames[0].shape[:2]
    wins = [w for sc in cfg.tile_scales for w in tile_windows(W, H, cfg.tile_overlap, sc)]
    out: list[list[_Det]] = [[] for _ in range(T)]
    if len(wins) < 2:
        return out
    with mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=cfg.max_hands,
                                  model_complexity=cfg.model_complexity,
                                  min_detection_confidence=cfg.tile_min_detection_confidence) as hands:
        for t in range(0, T, max(1, cfg.tile_stride)):
            for x0, y0, side in wins:
                tile = np.ascontiguousarray(frames[t][y0:y0 + side, x0:x0 + side])
                res = hands.process(tile)
                if not res.multi_hand_landmarks:
                    continue
                for lm, wl, hd in zip(res.multi_hand_landmarks, res.multi_hand_world_landmarks,
                                      res.multi_handedness):
                    kp = np.array([[p.x * side + x0, p.y * side + y0] for p in lm.landmark], dtype=np.float64)
                    world = np.array([[p.x, p.y, p.z] for p in wl.landmark], dtype=np.float64)
                    c = hd.classification[0]
                    out[t].append(_Det(kp, world, float(c.score), _slot_prob_right(c.label, float(c.score)),
                                       "mp_tiles"))
    return out


def _full_frame_pass(frames, cfg: HandDetectorConfig, mode: str) -> list[list[_Det]]:
    """``mp.solutions.hands`` over (padded) frames; mode forward/backward (tracking) or static."""
    import mediapipe as mp

    if mode == "tiles":
        return _tiles_pass(frames, cfg)

    T = len(frames)
    H, W = frames[0].shape[:2]
    pad = int(round(cfg.pad_fraction * max(H, W)))
    order = range(T - 1, -1, -1) if mode == "backward" else range(T)
    out: list[list[_Det]] = [[] for _ in range(T)]
    with mp.solutions.hands.Hands(static_image_mode=(mode == "static"), max_num_hands=cfg.max_hands,
                                  model_complexity=cfg.model_complexity,
                                  min_detection_confidence=cfg.min_detection_confidence,
                                  min_tracking_confidence=cfg.min_tracking_confidence) as hands:
        for t in order:
            img = frames[t]
            if pad:
                import cv2

                img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            res = hands.process(np.ascontiguousarray(img))
            if not res.multi_hand_landmarks:
                continue
            ph, pw = img.shape[:2]
            for lm, wl, hd in zip(res.multi_hand_landmarks, res.multi_hand_world_landmarks, res.multi_handedness):
                kp = np.array([[p.x * pw - pad, p.y * ph - pad] for p in lm.landmark], dtype=np.float64)
                world = np.array([[p.x, p.y, p.z] for p in wl.landmark], dtype=np.float64)
                c = hd.classification[0]
                out[t].append(_Det(kp, world, float(c.score), _slot_prob_right(c.label, float(c.score)),
                                   f"mp_{mode}"))
    return out


# ----------------------------------------------------------------- crop re-detection
def _crop_affine(cx: float, cy: float, side: float, angle_deg: float, flip: bool) -> np.ndarray:
    """2x3 affine: frame px -> crop px (224), rotating by ``angle_deg`` (counter-clockwise
    image rotation as cv2.getRotationMatrix2D) about the centre and mirroring x if ``flip``."""
    import cv2

    s = LANDMARK_INPUT / side
    M = cv2.getRotationMatrix2D((cx, cy), angle_deg, s)
    M[:, 2] += [LANDMARK_INPUT / 2 - cx, LANDMARK_INPUT / 2 - cy]
    if flip:
        F = np.array([[-1.0, 0.0, LANDMARK_INPUT], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        M = (F @ np.vstack([M, [0, 0, 1]]))[:2]
    return M


def hand_up_angle(kp: np.ndarray) -> float:
    """Rotation (deg, cv2 sense) that turns the wrist->middle-MCP direction to point up."""
    v = kp[9] - kp[0]
    return float(np.degrees(np.arctan2(v[0], -v[1])))


def redetect_in_crop(frame: np.ndarray, seed_box: np.ndarray, model: LandmarkModel,
                     cfg: HandDetectorConfig, seed_kp: np.ndarray | None = None,
                     return_best: bool = False, angle: float | None = None) -> _Det | None:
    """Best landmark-model detection in a square crop around ``seed_box`` over rotations/flip."""
    import cv2

    x0, y0, x1, y1 = [float(v) for v in seed_box]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(cfg.crop_scale * max(x1 - x0, y1 - y0), 24.0)
    angles = list(cfg.redetect_rotations)
    if seed_kp is not None and np.isfinite(seed_kp).all():
        angles = [hand_up_angle(seed_kp)] + angles
    elif angle is not None:
        angles = [float(angle)] + angles
    flips = (False, True) if cfg.redetect_flip else (False,)
    best = None
    own = len(angles) > len(cfg.redetect_rotations)  # first variant: the seed's own orientation
    for flip in flips:
        for ang in angles:
            M = _crop_affine(cx, cy, side, ang, flip)
            crop = cv2.warpAffine(frame, M, (LANDMARK_INPUT, LANDMARK_INPUT), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
            lm, presence, handed_mp_left, world = model(crop)
            if best is not None and presence <= best[0]:
                continue
            Minv = cv2.invertAffineTransform(M)
            kp = lm[:, :2] @ Minv[:, :2].T + Minv[:, 2]
            lin = Minv[:, :2] / np.sqrt(abs(np.linalg.det(Minv[:, :2])))  # rotation (+ mirror)
            w = world.astype(np.float64).copy()
            w[:, :2] = w[:, :2] @ lin.T
            p_right = handed_mp_left  # MediaPipe "Left" (mirrored) = person's right
            if flip:
                p_right = 1.0 - p_right
            best = (presence, kp, w, p_right, seed_kp is not None and ang == angles[0] and not flip)
            if own and presence >= cfg.early_accept:
                break  # the seed's own orientation is convincing: skip the other variants
            own = False
        if best is not None and best[0] >= cfg.early_accept and len(angles) > len(cfg.redetect_rotations):
            break
    if best is None or (best[0] < cfg.min_presence and not return_best):
        return None
    return _Det(best[1], best[2], best[0], best[3], "crop")


# ----------------------------------------------------------------- merging and tracking
def _nms(dets: list[_Det], iou_thr: float = 0.3) -> list[_Det]:
    """Merge duplicates of one hand found by several passes: keep the highest score, pool votes."""
    dets = sorted(dets, key=lambda d: -d.score)
    kept: list[_Det] = []
    votes: list[list[tuple[float, float]]] = []
    for d in dets:
        for k, kd in enumerate(kept):
            if box_iou(d.box, kd.box) > iou_thr or _contains(kd.box, d.box) or _contains(d.box, kd.box):
                votes[k].append((d.p_right, d.score))
                break
        else:
            kept.append(d)
            votes.append([(d.p_right, d.score)])
    for kd, v in zip(kept, votes):
        w = np.array([s for _, s in v])
        kd.p_right = float(np.sum(w * np.array([p for p, _ in v])) / max(w.sum(), 1e-9))
    return kept


def _contains(outer: np.ndarray, inner: np.ndarray, frac: float = 0.8) -> bool:
    ix = max(0.0, min(outer[2], inner[2]) - max(outer[0], inner[0]))
    iy = max(0.0, min(outer[3], inner[3]) - max(outer[1], inner[1]))
    area = max((inner[2] - inner[0]) * (inner[3] - inner[1]), 1e-9)
    return ix * iy / area >= frac


def _link_tracks(per_frame: list[list[_Det]], max_skip: int = 3, min_iou: float = 0.1) -> list[dict[int, _Det]]:
    """Greedy frame-to-frame linking by box IoU (or centre distance), deterministic order."""
    tracks: list[dict[int, _Det]] = []
    for t, dets in enumerate(per_frame):
        pairs = []
        for di, d in enumerate(dets):
            for ti, tr in enumerate(tracks):
                last = max(tr)
                if last >= t or t - last > max_skip:
                    continue
                lb = tr[last].box
                iou = float(box_iou(d.box, lb))
                size = max(lb[2] - lb[0], lb[3] - lb[1], 1.0)
                dist = np.hypot(*(((d.box[:2] + d.box[2:]) - (lb[:2] + lb[2:])) / 2)) / size
                if iou >= min_iou or dist < 0.5:
                    pairs.append((-(iou - 0.1 * dist), di, ti))
        pairs.sort()
        used_d, used_t = set(), set()
        for _, di, ti in pairs:
            if di in used_d or ti in used_t:
                continue
            tracks[ti][t] = dets[di]
            used_d.add(di)
            used_t.add(ti)
        for di, d in enumerate(dets):
            if di not in used_d:
                tracks.append({t: d})
    return tracks


def _track_vote(tr: dict[int, _Det]) -> float:
    """Score-weighted mean of (P(right) - 0.5) over a track: > 0 means the right hand."""
    w = np.array([d.score for d in tr.values()])
    p = np.array([d.p_right for d in tr.values()])
    return float(np.sum(w * (p - 0.5)) / max(w.sum(), 1e-9))


def _horizontal_tie_break(tracks, votes, cfg: HandDetectorConfig) -> dict[int, int]:
    """Slots forced on pairs of coexisting tracks whose handedness votes say the same hand with
    about the same strength (MediaPipe labels CG hands, or hands seen from the back, "Right"
    twice): the two must differ, and the horizontal order decides which is which, a weak cue
    (``cfg.left_hand_on_image_left``: True for egocentric or over-the-shoulder views, where the
    person's left hand is on the image's left; a person facing the camera is the opposite)."""
    forced: dict[int, int] = {}
    for i in range(len(tracks)):
        for j in range(i + 1, len(tracks)):
            if i in forced or j in forced or (votes[i] > 0) != (votes[j] > 0):
                continue
            if abs(abs(votes[i]) - abs(votes[j])) >= cfg.slot_tie_margin:
                continue
            shared = sorted(set(tracks[i]) & set(tracks[j]))
            if len(shared) < cfg.min_track_length:
                continue
            xi = np.mean([(tracks[i][t].box[0] + tracks[i][t].box[2]) / 2 for t in shared])
            xj = np.mean([(tracks[j][t].box[0] + tracks[j][t].box[2]) / 2 for t in shared])
            left_first = (xi < xj) == cfg.left_hand_on_image_left
            forced[i], forced[j] = (LEFT, RIGHT) if left_first else (RIGHT, LEFT)
    return forced


def _assign_slots(tracks: list[dict[int, _Det]], cfg: HandDetectorConfig,
                  n_frames: int | None = None) -> list[tuple[int, dict[int, _Det]]]:
    """One slot per track by its handedness vote; resolve tracks that claim the same slot.

    The minimum track lengths are capped at the clip's length ``n_frames``: a 6-frame clip can
    hold no 8-frame track, and its hands were dropped as "no hand found" before.
    """
    cap = n_frames if n_frames else 1 << 30
    min_len, palm_len, seed_len = (min(v, cap) for v in (cfg.min_track_length, cfg.palm_min_track,
                                                          cfg.seed_min_track))
    tracks = [tr for tr in tracks
              if max(d.score for d in tr.values()) >= cfg.min_track_score
              and (len(tr) >= min_len or max(d.score for d in tr.values()) >= 0.8)
              # palm-detector seeds must persist: a track started only by them needs length
              and (len(tr) >= palm_len or any(d.origin != "palm" for d in tr.values()))
              # ... and so must tracks started only by the exhaustive seed search
              and (len(tr) >= seed_len or any(d.origin != "seed" for d in tr.values()))]
    votes = [_track_vote(tr) for tr in tracks]
    forced = _horizontal_tie_break(tracks, votes, cfg)
    # strongest evidence first: length * confidence of the vote
    order = sorted(range(len(tracks)), key=lambda i: (-len(tracks[i]) * abs(votes[i]), i))
    occupied = {LEFT: set(), RIGHT: set()}
    out = []
    for i in order:
        tr = tracks[i]
        pref = forced.get(i, RIGHT if votes[i] > 0 else LEFT)
        frames = set(tr)
        slot = None
        for s in (pref, 1 - pref):
            if not (frames & occupied[s]):
                slot = s
                break
        if slot is None:  # both slots taken somewhere: keep the frames where its preferred slot is free
            free = {t: d for t, d in tr.items() if t not in occupied[pref]}
            if not free:
                continue
            tr, slot = free, pref
        occupied[slot] |= set(tr)
        out.append((slot, tr))
    return out


# ----------------------------------------------------------------- main entry
def detect_hands(frames, cfg: HandDetectorConfig | None = None, progress=None,
                 hand_prompts: list[tuple[int, tuple[float, float, float, float]]] | None = None) -> dict[str, np.ndarray]:
    """Detect up to two hands per frame of ``frames`` (list or (T,H,W,3) uint8 RGB).

    ``hand_prompts``: at most two ``(frame_index, (x0, y0, x1, y1))`` boxes in the pixels of
    ``frames``, one per hand; each is followed through the whole clip in both directions
    (`hoi_cli.detect.track`) and the output holds the prompted hands only.

    Returns the contract arrays (see module docstring) plus ``hand_source`` (T,2) strings
    (which pass found each detection; not part of the on-disk contract). Never raises
    because no hand was found: the arrays are then all NaN.
    """
    cfg = cfg or HandDetectorConfig()
    frames = [np.ascontiguousarray(f[..., :3], dtype=np.uint8) for f in frames]
    T = len(frames)
    prompts = _check_prompts(hand_prompts, T)
    if T == 0:
        return _slots_to_arrays([{}, {}], 0, (0, 0), cfg)
    per_frame: list[list[_Det]] = [[] for _ in range(T)]
    n_steps = len(cfg.full_frame_passes) + (1 if cfg.redetect else 0)
    for k, mode in enumerate(cfg.full_frame_passes):
        for t, dets in enumerate(_full_frame_pass(frames, cfg, mode)):
            per_frame[t].extend(dets)
        if progress:
            progress(k + 1, n_steps)
    need_model = cfg.redetect or cfg.rescore or cfg.track_boxes or bool(prompts)
    model = LandmarkModel(cfg.model_complexity, cfg.num_threads) if need_model and T else None
    if cfg.rescore and model is not None and model.available:
        per_frame = [[r for r in (_rescore(frames[t], d, model, cfg) for d in dets)
                      if r.score >= (cfg.min_presence_tiles if r.source == "mp_tiles" else cfg.min_presence)]
                     for t, dets in enumerate(per_frame)]
    per_frame = [_nms(d) for d in per_frame]
    tried: set = set()
    if cfg.redetect and T:
        if model.available:
            per_frame = _redetect_sweeps(frames, per_frame, model, cfg, tried)
        if progress:
            progress(n_steps, n_steps)
    if cfg.palm_seed and T and model is not None and model.available:
        palm = PalmModel(cfg.num_threads)
        if palm.available:
            # frames without any hand: every palm_stride-th; with one hand: 3x sparser
            st = max(1, cfg.palm_stride)
            none = [t for t in range(T) if not per_frame[t]][::st]
            one = [t for t in range(T) if 0 < len(per_frame[t]) < cfg.max_hands][::3 * st]
            added = 0
            for t in sorted(none + one):
                for cand in palm_candidates(frames[t], palm, cfg):
                    if len(per_frame[t]) >= cfg.max_hands:
                        break
                    if any(e.box[0] <= cand[1] <= e.box[2] and e.box[1] <= cand[2] <= e.box[3]
                           for e in per_frame[t]):
                        continue  # a hand we already have
                    d = _palm_seed(frames[t], cand, model, cfg)
                    if d is None or any(box_iou(d.box, e.box) > 0.2 or _contains(e.box, d.box, 0.5)
                                        for e in per_frame[t]):
                        continue
                    per_frame[t].append(d)
                    added += 1
            if added and cfg.redetect:
                per_frame = _redetect_sweeps(frames, per_frame, model, cfg, tried)
    if cfg.seed_search and T and model is not None and model.available:
        per_frame = _seed_search(frames, per_frame, model, cfg, tried)
    hw = frames[0].shape[:2] if T else (0, 0)
    usable = model is not None and model.available
    slotted = _assign_slots(_link_tracks(per_frame), cfg, n_frames=len(per_frame))
    slots = _interpolate_slots(_slots_from_tracks(slotted), cfg)
    if cfg.track_boxes and usable and T and not prompts:
        slots = _extend_slots(frames, per_frame, slots, model, cfg, prompted=False)
    if prompts and usable:
        slots = _follow_prompts(frames, per_frame, prompts, slots, model, cfg)
        slots = _extend_slots(frames, per_frame, slots, model, cfg, prompted=True)
    return _slots_to_arrays(slots, T, hw, cfg)


def _check_prompts(hand_prompts, T: int) -> list[tuple[int, np.ndarray]]:
    """Validated prompts: at most two, frame inside the clip, a box with positive area."""
    out = []
    for t, box in list(hand_prompts or [])[:2]:
        b = np.asarray(box, dtype=np.float64).ravel()
        if not (0 <= int(t) < T) or b.size != 4 or not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
            raise ValueError(f"bad hand prompt {t}, {tuple(b)}: need a frame in 0..{T - 1} and x0 < x1, y0 < y1")
        out.append((int(t), b))
    return out


def _rescore(frame, d: _Det, model: LandmarkModel, cfg: HandDetectorConfig) -> _Det:
    """Re-run the landmark model in an upscaled crop around a full-frame detection (its own
    orientation, four rotations, mirrored) and keep the best variant: a uniform hand-presence
    score for every detection, and better landmarks for small hands."""
    r = redetect_in_crop(frame, d.box, model, cfg, d.kp, return_best=True)
    d.score = r.score
    d.p_right = 0.5 * (d.p_right + r.p_right)
    return d


def _redetect_sweeps(frames, per_frame, model, cfg, tried: set | None = None):
    """Propagate hands to neighbouring frames by crop re-detection, forward then backward,
    repeated until a sweep finds nothing new."""
    T = len(frames)
    for _ in range(cfg.max_redetect_rounds):
        found = 0
        for direction in (1, -1):
            rng = range(1, T) if direction == 1 else range(T - 2, -1, -1)
            for t in rng:
                src = t - direction
                for d in list(per_frame[src]):
                    # already present in frame t?
                    if any(box_iou(d.box, e.box) > 0.2 or _contains(e.box, d.box, 0.5) for e in per_frame[t]):
                        continue
                    if len(per_frame[t]) >= cfg.max_hands:
                        break
                    key = (id(d), t)
                    if tried is not None:
                        if key in tried:
                            continue
                        tried.add(key)
                    new = redetect_in_crop(frames[t], d.box, model, cfg, d.kp)
                    if new is None:
                        continue
                    new.origin = d.origin
                    # must stay near the seed and not land on another hand
                    size = max(d.box[2] - d.box[0], d.box[3] - d.box[1], 1.0)
                    shift = np.hypot(*(((new.box[:2] + new.box[2:]) - (d.box[:2] + d.box[2:])) / 2)) / size
                    if shift > 0.75 or any(box_iou(new.box, e.box) > 0.2 for e in per_frame[t]):
                        continue
                    new.source = "crop_fwd" if direction == 1 else "crop_bwd"
                    per_frame[t].append(new)
                    found += 1
        if not found:
            break
    return per_frame


def auto_square_size(boxes: np.ndarray, scale: float = 1.2, minimum: float = 16.0) -> float:
    """Re-HOLD square side: ``scale`` * median over detections of the tight box's longer side."""
    b = boxes.reshape(-1, 4)
    b = b[np.isfinite(b).all(axis=1)]
    if len(b) == 0:
        return float("nan")
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    return float(max(scale * np.median(side), minimum))


def _slots_from_tracks(slotted) -> list[dict]:
    """Per slot, {t: TrackStep} from the slotted tracks of detections."""
    from .track import TrackStep

    slots: list[dict] = [{}, {}]
    for slot, tr in slotted:
        for t, d in tr.items():
            slots[slot][t] = TrackStep(np.asarray(d.box, float), float(d.score), d)
    return slots


def _interpolate_slots(slots: list[dict], cfg: HandDetectorConfig) -> list[dict]:
    """Short gaps (<= ``max_gap`` frames) between keypoint frames of a slot: linear
    interpolation of keypoints and world landmarks (``hand_interpolated``)."""
    from .track import TrackStep

    for s in range(2):
        idx = sorted(t for t, st in slots[s].items() if st.det is not None)
        for a, b in zip(idx[:-1], idx[1:]):
            gap = b - a - 1
            if not 0 < gap <= cfg.max_gap or any(t in slots[s] for t in range(a + 1, b)):
                continue
            da, db = slots[s][a].det, slots[s][b].det
            ca, cb = da.kp.mean(0), db.kp.mean(0)
            size = max(np.ptp(da.kp[:, 0]), np.ptp(da.kp[:, 1]), 1.0)
            if np.hypot(*(cb - ca)) > 1.5 * size * (gap + 1):  # a jump: not the same hand
                continue
            for t in range(a + 1, b):
                w = (t - a) / (b - a)
                d = _Det((1 - w) * da.kp + w * db.kp, (1 - w) * da.world + w * db.world,
                         0.5 * min(da.score, db.score), (1 - w) * da.p_right + w * db.p_right, "interp")
                slots[s][t] = TrackStep(d.box.copy(), d.score, d)
    return slots


def _follow_config(cfg: HandDetectorConfig, prompted: bool):
    from .track import FollowConfig

    return FollowConfig(max_box_only=(10 ** 9 if prompted else cfg.track_max_box_only))


def _make_redetect(frames, per_frame, model, cfg: HandDetectorConfig, fcfg, blocked=None):
    """Finder of the followed hand in frame t near a predicted box: a detection of the
    full-frame passes that overlaps it (IoU >= 0.3 or >= 60% inside it), else the landmark
    model in a crop around it (presence >= ``min_presence``, near the prediction); never one
    on the other hand (``blocked(t, box)``, or ``exclude(box)`` given per call)."""
    from .track import consistent

    def redetect(t, pred, seed_kp, exclude=None):
        def off(box):  # on the other hand
            return (blocked is not None and blocked(t, box)) or (exclude is not None and exclude(box))

        best, best_iou = None, 0.0
        for d in per_frame[t]:
            if off(d.box):
                continue
            iou = float(box_iou(d.box, pred))
            if (iou >= 0.3 or _contains(pred, d.box, 0.6)) and max(iou, 0.3) > best_iou:
                best, best_iou = d, max(iou, 0.3)
        if best is not None:
            return best
        d = redetect_in_crop(frames[t], pred, model, cfg, seed_kp)
        if d is None or not consistent(d.box, pred, fcfg) or off(d.box):
            return None
        d.source = d.origin = "follow"
        return d

    return redetect


def _blocked_by(slots: list[dict], slot: int):
    """A followed box runs into the other slot's hand (IoU >= 0.3 or mostly inside it)."""
    other = slots[1 - slot]

    def blocked(t, box):
        st = other.get(t)
        return st is not None and (box_iou(box, st.box) >= 0.3 or _contains(st.box, box, 0.6)
                                   or _contains(box, st.box, 0.6))

    return blocked


def _extend_slots(frames, per_frame, slots: list[dict], model, cfg: HandDetectorConfig,
                  prompted: bool = False) -> list[dict]:
    """Carry each slot's hand into the frames where it has none, by following it (box tracking
    plus re-detection, `hoi_cli.detect.track.follow`) forward from the frame before each empty
    run and backward from the frame after it."""
    from .track import follow, gray_frames

    T = len(frames)
    if not any(slots):
        return slots
    grays = gray_frames(frames)
    fcfg = _follow_config(cfg, prompted=prompted)

    def anchor(st):  # how sure the start is a hand: its keypoints' score; a prompted hand's box: sure
        return float(st.det.score) if st.det is not None else (1.0 if prompted else float(st.score))

    for s in range(2):
        if not slots[s]:
            continue
        blocked = _blocked_by(slots, s)
        redetect = _make_redetect(frames, per_frame, model, cfg, fcfg, blocked)
        runs, t = [], 0
        while t < T:  # empty runs [a, b)
            if t in slots[s]:
                t += 1
                continue
            a = t
            while t < T and t not in slots[s]:
                t += 1
            runs.append((a, t))
        for a, b in runs:
            reached_to = a
            if a > 0 and (a - 1) in slots[s]:
                st = slots[s][a - 1]
                got = follow(frames, grays, a - 1, st.box, st.det.kp if st.det is not None else None, +1,
                             redetect, fcfg, stop_at=b, blocked=blocked, start_score=anchor(st))
                slots[s].update(got)
                reached_to = max(got) + 1 if got else a
            if b < T and b in slots[s] and reached_to < b:
                st = slots[s][b]
                got = follow(frames, grays, b, st.box, st.det.kp if st.det is not None else None, -1,
                             redetect, fcfg, stop_at=reached_to - 1, blocked=blocked, start_score=anchor(st))
                slots[s].update(got)
    return slots


def _segments(steps: dict) -> list[dict]:
    """Runs of consecutive frames of one slot's {t: TrackStep}."""
    out: list[dict] = []
    for t in sorted(steps):
        if out and t - 1 in out[-1]:
            out[-1][t] = steps[t]
        else:
            out.append({t: steps[t]})
    return out


def _same_hand(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(box_iou(a, b) >= 0.2 or _contains(a, b, 0.5) or _contains(b, a, 0.5))


def _overlaps(steps: dict, seg: dict) -> int:
    """Frames where a run of automatic detections lands on the followed hand (same frame)."""
    return sum(1 for t, st in seg.items() if t in steps and _same_hand(steps[t].box, st.box))


def _near(steps: dict, seg: dict, max_dt: int = 2) -> bool:
    """Within ``max_dt`` frames, a run's box centre is within 0.75 of the larger box side of the
    followed hand's (a follow lost at once, e.g. from a sliver of a hand entering at the edge)."""
    for t, st in seg.items():
        for u in range(t - max_dt, t + max_dt + 1):
            o = steps.get(u)
            if o is None:
                continue
            side = max(o.box[2] - o.box[0], o.box[3] - o.box[1], st.box[2] - st.box[0], st.box[3] - st.box[1])
            if np.hypot(*((o.box[:2] + o.box[2:] - st.box[:2] - st.box[2:]) / 2)) <= 0.75 * side:
                return True
    return False


def _owner(tracks: list[dict], seg: dict) -> tuple[int | None, bool]:
    """The prompted hand a run of automatic detections belongs to: the most same-frame overlaps
    (a clear winner), else the only one it is near. Returns (hand or None, ambiguous): None
    and ambiguous where it is on (or near) both equally, None alone where it is on none."""
    n = [_overlaps(steps, seg) for steps in tracks]
    if max(n, default=0) > 0:
        best = [k for k, v in enumerate(n) if v == max(n)]
        return (best[0], False) if len(best) == 1 else (None, True)
    near = [k for k, steps in enumerate(tracks) if _near(steps, seg)]
    return (near[0], False) if len(near) == 1 else (None, len(near) > 1)


def _join_auto_runs(tracks: list[dict], auto_slots: list[dict]) -> None:
    """Runs of the automatic result join the prompted hand they land on (`_owner`), keypoints
    before box-only, never in a frame where the other prompted hand holds that hand with
    keypoints. A run on both prompted hands alike (overlapping hands) goes with its automatic
    slot's hand: the prompted hand that owns most of that slot's other runs, where the two
    slots map to different prompted hands (the automatic slots keep one identity per hand by
    their handedness votes)."""
    runs = [(s, g) for s in range(2) for g in _segments(auto_slots[s])]
    owners = [_owner(tracks, g) for _, g in runs]
    slot_hand: dict[int, int] = {}
    for s in range(2):
        frames_of = [sum(len(g) for (s2, g), (k2, _) in zip(runs, owners) if s2 == s and k2 == k)
                     for k in range(len(tracks))]
        if max(frames_of, default=0) > 0 and frames_of.count(max(frames_of)) == 1:
            slot_hand[s] = int(np.argmax(frames_of))
    if len(slot_hand) == 2 and slot_hand[0] == slot_hand[1]:
        slot_hand = {}  # both slots on one prompted hand: no identity to borrow
    for (s, seg), (k, ambiguous) in zip(runs, owners):
        if k is None and ambiguous:
            k = slot_hand.get(s)
        if k is None:  # on no prompted hand
            continue
        steps = tracks[k]
        others = [tr for j, tr in enumerate(tracks) if j != k]
        for t, st in seg.items():
            if any(t in o and o[t].det is not None and _same_hand(o[t].box, st.box) for o in others):
                continue  # the other prompted hand holds it
            if t not in steps or (steps[t].det is None and st.det is not None):
                steps[t] = st


def _follow_prompts(frames, per_frame, prompts, auto_slots: list[dict], model, cfg: HandDetectorConfig) -> list[dict]:
    """The prompted hands followed through the clip from their frames, both directions, with
    exclusive identities (`hoi_cli.detect.track.follow_together`: in each frame a detection
    goes to one prompted hand, the one it continues best); runs of the automatic result
    (``auto_slots``) that land on a prompted hand join it (`_join_auto_runs`; so a follow lost
    early, e.g. from a sliver of a hand entering at the frame edge, picks the hand up again);
    hands no prompt reaches are dropped. A prompted hand's slot: the landmark model's
    handedness where it found the hand, else the image side."""
    from .track import follow_together, gray_frames

    H, W = frames[0].shape[:2]
    grays = gray_frames(frames)
    fcfg = _follow_config(cfg, prompted=True)
    redetect = _make_redetect(frames, per_frame, model, cfg, fcfg)
    starts = [(t0, _prompt_start(frames[t0], per_frame[t0], box, model, cfg)) for t0, box in prompts]
    tracks = [{t0: st} for t0, st in starts]
    for direction in (+1, -1):
        for steps, got in zip(tracks, follow_together(frames, grays, starts, direction, redetect, fcfg)):
            for t, st in got.items():
                steps.setdefault(t, st)
    _join_auto_runs(tracks, auto_slots)
    # slots: handedness vote over the frames with keypoints; no keypoints: the image side
    votes = []
    for steps in tracks:
        dets = {t: st.det for t, st in steps.items() if st.det is not None}
        if dets:
            votes.append(_track_vote(dets))
        else:
            t0 = min(steps, key=lambda t: abs(t - prompts[len(votes)][0]))
            cx = (steps[t0].box[0] + steps[t0].box[2]) / 2
            on_left = cx < W / 2
            votes.append(-0.01 if on_left == cfg.left_hand_on_image_left else 0.01)
    slots: list[dict] = [{}, {}]
    if len(tracks) == 1:
        slots[RIGHT if votes[0] > 0 else LEFT] = tracks[0]
    elif len(tracks) == 2:
        pref = [RIGHT if v > 0 else LEFT for v in votes]
        if pref[0] == pref[1]:  # both claim one slot: the weaker vote, or the horizontal order, yields
            if abs(abs(votes[0]) - abs(votes[1])) >= cfg.slot_tie_margin:
                weak = 0 if abs(votes[0]) < abs(votes[1]) else 1
                pref[weak] = 1 - pref[weak]
            else:
                xs = [np.mean([(st.box[0] + st.box[2]) / 2 for st in tr.values()]) for tr in tracks]
                left_first = (xs[0] < xs[1]) == cfg.left_hand_on_image_left
                pref = [LEFT, RIGHT] if left_first else [RIGHT, LEFT]
        for k in (0, 1):
            slots[pref[k]] = tracks[k]
        # two boxes of one kind on one hand (the two directions' follows met there): the better
        # one stays; a box-only box on a hand with keypoints is the other hand, hidden behind it
        for t in set(tracks[0]) & set(tracks[1]):
            a, b = slots[LEFT][t], slots[RIGHT][t]
            if box_iou(a.box, b.box) >= 0.5 and (a.det is None) == (b.det is None):
                del slots[RIGHT if a.score >= b.score else LEFT][t]
    return slots


def _prompt_start(frame, dets, box: np.ndarray, model, cfg: HandDetectorConfig):
    """The prompted hand in its own frame: a detection of the full-frame passes inside the
    box, else the landmark model in crops around it (several crop scales, the best presence,
    its keypoint box mostly inside the prompt); else the box alone (score 1, the user's word)."""
    import dataclasses

    from .track import TrackStep

    def inside(d):
        return _contains(box, d.box, 0.6) or box_iou(d.box, box) >= 0.3

    cands = [d for d in dets if inside(d)]
    for scale in (1.5, 2.0, 2.6):
        d = redetect_in_crop(frame, box, model, dataclasses.replace(cfg, crop_scale=scale))
        if d is not None and inside(d):
            d.source = d.origin = "prompt"
            cands.append(d)
    if cands:
        best = max(cands, key=lambda d: d.score)
        return TrackStep(np.asarray(best.box, float), float(best.score), best)
    return TrackStep(np.asarray(box, float), 1.0, None)


def _to_arrays(slotted, T: int, hw, cfg: HandDetectorConfig) -> dict[str, np.ndarray]:
    """Contract arrays from slotted tracks of detections, short gaps interpolated (no following)."""
    return _slots_to_arrays(_interpolate_slots(_slots_from_tracks(slotted), cfg), T, hw, cfg)


def _slots_to_arrays(slots: list[dict], T: int, hw, cfg: HandDetectorConfig) -> dict[str, np.ndarray]:
    """Contract arrays from per-slot {t: TrackStep} (keypoints where ``det``, else box-only)."""
    kp = np.full((T, 2, 21, 3), np.nan, dtype=np.float32)
    world = np.full((T, 2, 21, 3), np.nan, dtype=np.float32)
    score = np.full((T, 2), np.nan, dtype=np.float32)
    interp = np.zeros((T, 2), dtype=bool)
    box_only = np.zeros((T, 2), dtype=bool)
    source = np.full((T, 2), "", dtype=object)
    boxes = empty_boxes(T, 2)
    for s in range(2):
        for t, st in slots[s].items():
            score[t, s] = st.score
            if st.det is not None:
                d = st.det
                kp[t, s, :, :2] = d.kp
                kp[t, s, :, 2] = d.score
                world[t, s] = d.world
                source[t, s] = d.source
                interp[t, s] = d.source == "interp"
                boxes[t, s] = box_from_points(d.kp)
            else:
                box_only[t, s] = True
                source[t, s] = "box_track"
                boxes[t, s] = st.box
    size = cfg.square_size or auto_square_size(boxes[~box_only], cfg.square_scale)
    if not np.isfinite(size) and box_only.any():
        size = auto_square_size(boxes, cfg.square_scale)
    squares = square_box(boxes, size) if np.isfinite(size) else empty_boxes(T, 2)
    return {
        "hand_keypoints": kp,
        "hand_world": world,
        "hand_score": score,
        "hand_interpolated": interp,
        "hand_boxes": boxes,
        "hand_boxes_square": squares.astype(np.float32),
        "hand_box_only": box_only,
        "hand_source": source,
        "square_size": np.float32(size),
    }
