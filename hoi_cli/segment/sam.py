"""segment-anything backend: load a local checkpoint, prompt with boxes and hand keypoints.

No weights are downloaded. The checkpoint is a state dict as published by segment-anything
(``sam_vit_b_01ec64.pth``, ``sam_vit_h_4b8939.pth``, ...). The architecture is read from the
state dict (the image encoder's width picks the config in `SAM_CONFIGS`), so a file renamed by
the user still loads, and tests can register a tiny config and save a tiny model in the same
format.

Prompts (`segment_object_sam`): per frame, the object box, plus negative points on the hand
keypoints that fall inside the box (the fingers holding the object), plus, from the second
frame on, the previous mask's low-resolution logits where the box has not moved much.
Hands (`segment_hands_sam`): the hand box with the wrist/knuckle/fingertip keypoints as
positive points.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from ..errors import BadInputError

# encoder width -> architecture (segment_anything.build_sam's three published models)
SAM_CONFIGS: dict[str, dict] = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn=(7, 15, 23, 31)),
}
_DEFAULTS = dict(img_size=1024, patch_size=16, prompt_dim=256, window_size=14, mlp_dim=2048,
                 decoder_depth=2, decoder_heads=8, iou_head_dim=256)


def build_sam(cfg: dict):
    """A `segment_anything.modeling.Sam` with the architecture ``cfg`` (untrained)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    c = {**_DEFAULTS, **cfg}
    emb = c["img_size"] // c["patch_size"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=c["depth"], embed_dim=c["embed_dim"], img_size=c["img_size"], mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c["num_heads"],
            patch_size=c["patch_size"], qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=tuple(c["global_attn"]), window_size=c["window_size"],
            out_chans=c["prompt_dim"]),
        prompt_encoder=PromptEncoder(embed_dim=c["prompt_dim"], image_embedding_size=(emb, emb),
                                     input_image_size=(c["img_size"], c["img_size"]), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=c["decoder_depth"], embedding_dim=c["prompt_dim"],
                                          mlp_dim=c["mlp_dim"], num_heads=c["decoder_heads"]),
            transformer_dim=c["prompt_dim"], iou_head_depth=3, iou_head_hidden_dim=c["iou_head_dim"]),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    )


def _config_for(state: dict, model_type: str = "auto") -> dict:
    if model_type != "auto":
        if model_type not in SAM_CONFIGS:
            raise BadInputError(f"unknown SAM model type {model_type!r}", f"known: auto, {', '.join(SAM_CONFIGS)}")
        return SAM_CONFIGS[model_type]
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state:
        raise BadInputError("the SAM checkpoint has no image encoder weights",
                            "pass a segment-anything checkpoint (sam_vit_b_01ec64.pth or sam_vit_h_4b8939.pth)")
    width = int(state[key].shape[0])
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    for cfg in SAM_CONFIGS.values():
        if cfg["embed_dim"] == width and cfg["depth"] == depth:
            return cfg
    raise BadInputError(f"unrecognised SAM checkpoint (encoder width {width}, depth {depth})",
                        f"known: {', '.join(SAM_CONFIGS)}; or set sam_model_type")


def load_sam(checkpoint: str | Path, model_type: str = "auto", device: str = "cpu"):
    """Load a segment-anything checkpoint (a state dict) into a `Sam` on ``device``, in eval mode."""
    import torch

    path = Path(checkpoint)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or not a torch file
        raise BadInputError(f"cannot read SAM checkpoint {path}: {exc}", "check the file (re-copy it)") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    model = build_sam(_config_for(state, model_type))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # size mismatches
        missing, unexpected = ["(shapes differ)"], []
    if missing or unexpected:
        raise BadInputError(f"SAM checkpoint {path.name} does not match the architecture "
                            f"({len(missing)} missing, {len(unexpected)} unexpected keys)",
                            "set sam_model_type to the checkpoint's type (vit_b, vit_l, vit_h)")
    return model.to(device).eval()


class SamSegmenter:
    """One `SamPredictor`; each frame's image embedding is computed once for all its prompts."""

    def __init__(self, model):
        from segment_anything import SamPredictor

        self.predictor = SamPredictor(model)
        self._frame_id = None

    def set_image(self, image: np.ndarray, frame_id=None) -> None:
        if frame_id is None or frame_id != self._frame_id:
            self.predictor.set_image(np.ascontiguousarray(image, dtype=np.uint8), image_format="RGB")
            self._frame_id = frame_id

    def predict(self, box=None, pos=None, neg=None, mask_logits=None) -> tuple[np.ndarray, np.ndarray]:
        """Best mask ``(H, W)`` bool and its low-res logits ``(1, 256, 256)``."""
        pts, labels = [], []
        for arr, lab in ((pos, 1), (neg, 0)):
            if arr is not None and len(arr):
                pts.append(np.asarray(arr, np.float32).reshape(-1, 2))
                labels.append(np.full(len(pts[-1]), lab, np.int32))
        kwargs = {}
        if pts:
            kwargs["point_coords"] = np.concatenate(pts)
            kwargs["point_labels"] = np.concatenate(labels)
        if box is not None:
            kwargs["box"] = np.asarray(box, np.float32).reshape(4)
        if mask_logits is not None:
            kwargs["mask_input"] = mask_logits
        multi = box is None and len(kwargs.get("point_labels", [])) <= 1
        masks, scores, logits = self.predictor.predict(multimask_output=multi, **kwargs)
        i = int(np.argmax(scores))
        return masks[i].astype(bool), logits[i:i + 1]


def _points_in_box(kps: np.ndarray, box, min_score: float = 0.2) -> np.ndarray:
    k = np.asarray(kps, np.float64).reshape(-1, 3)
    ok = np.isfinite(k[:, :2]).all(1) & (np.nan_to_num(k[:, 2]) >= min_score)
    if box is not None:
        b = np.asarray(box, float)
        ok &= (k[:, 0] >= b[0]) & (k[:, 0] <= b[2]) & (k[:, 1] >= b[1]) & (k[:, 1] <= b[3])
    return k[ok, :2]


FINGER_POINTS = (0, 5, 9, 13, 17, 4, 8, 12, 16, 20)  # wrist, knuckles, fingertips


def segment_object_sam(seg: SamSegmenter, frames: np.ndarray, boxes: np.ndarray,
                       hand_keypoints: np.ndarray | None = None, hand_masks: np.ndarray | None = None,
                       progress=None) -> np.ndarray:
    """Object masks ``(T, H, W)`` from boxes ``(T, 4)`` (NaN = none) and hand keypoints ``(T, 2, 21, 3)``."""
    T, H, W = frames.shape[:3]
    out = np.zeros((T, H, W), bool)
    for t in range(T):
        box = boxes[t]
        if np.all(np.isfinite(box)):
            seg.set_image(frames[t], t)
            neg = None
            if hand_keypoints is not None:
                neg = _points_in_box(hand_keypoints[t][:, list(FINGER_POINTS)], box)
            m, _ = seg.predict(box=box, neg=neg)
            if hand_masks is not None:
                m &= ~hand_masks[t]
            out[t] = m
        if progress:
            progress(t + 1, T)
    return out


def segment_hands_sam(seg: SamSegmenter, frames: np.ndarray, hand_boxes: np.ndarray,
                      hand_keypoints: np.ndarray, progress=None) -> np.ndarray:
    """Hand masks ``(T, H, W)`` (both hands merged) from hand boxes ``(T, 2, 4)`` and keypoints."""
    T, H, W = frames.shape[:3]
    out = np.zeros((T, H, W), bool)
    for t in range(T):
        for h in range(hand_boxes.shape[1]):
            box = hand_boxes[t, h]
            if not np.all(np.isfinite(box)):
                continue
            seg.set_image(frames[t], t)
            pos = _points_in_box(hand_keypoints[t, h, list(FINGER_POINTS)], None)
            m, _ = seg.predict(box=box, pos=pos)
            out[t] |= m
        if progress:
            progress(t + 1, T)
    return out
