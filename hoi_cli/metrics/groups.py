"""The metric groups of `hoi eval`, one class each (see `hoi_cli.metrics.registry`).

Their order here is the order of the metrics in metrics.json and per_clip.csv. The numeric
code lives in the metric-family modules (`pixel`, `fid`, `fvd`, `hands`, `temporal`,
`objects`); a group only says what it needs, what it computes per clip and what it reports.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import BadInputError
from .registry import Clip, Metric, MetricGroup, Report, register

_BOTH_MASKS = ("object masks are needed for both clips (--generated-mask and --reference-mask, CSV columns, "
               "or run folders with 03_segment)")


def hoi_boxes(ref_det: dict | None, ref_masks: np.ndarray | None, T: int, H: int, W: int,
              margin: float = 0.1) -> np.ndarray:
    """Per-frame HOI box ``(T, 4)`` xyxy: the union of the reference's hand boxes (detected or
    interpolated) and its object-mask box, grown by ``margin`` times its size on each side,
    clipped to the frame; NaN where the frame has neither."""
    from ..conventions import box_from_mask

    boxes = np.full((T, 4), np.nan)
    for t in range(T):
        parts = []
        if ref_det is not None and t < len(ref_det["hand_boxes"]):
            for b in np.asarray(ref_det["hand_boxes"][t], dtype=np.float64):
                if np.isfinite(b).all():
                    parts.append(b)
        if ref_masks is not None and t < len(ref_masks):
            b = box_from_mask(ref_masks[t]).astype(np.float64)
            if np.isfinite(b).all():
                parts.append(b)
        if not parts:
            continue
        p = np.stack(parts)
        b = np.array([p[:, 0].min(), p[:, 1].min(), p[:, 2].max(), p[:, 3].max()])
        dx, dy = margin * (b[2] - b[0]), margin * (b[3] - b[1])
        boxes[t] = [max(0, b[0] - dx), max(0, b[1] - dy), min(W, b[2] + dx), min(H, b[3] + dy)]
    return boxes


@register
class PSNR(MetricGroup):
    name = "psnr"
    metrics = (Metric("psnr", "dB", True, "per-frame PSNR, uint8 RGB, data range 255; mean over frames, then clips"),)

    def compute(self, clip: Clip) -> None:
        from . import pixel

        clip.metrics["psnr"] = pixel.mean_psnr(self.run.timed("psnr", pixel.psnr_frames, clip.generated,
                                                              clip.reference))


@register
class SSIM(MetricGroup):
    name = "ssim"
    metrics = (Metric("ssim", "", True, "per-frame SSIM (skimage convention: Gaussian 11x11 sigma 1.5, RGB mean), "
                      "mean over frames, then clips"),)

    def compute(self, clip: Clip) -> None:
        from . import pixel

        clip.metrics["ssim"] = float(np.mean(self.run.timed("ssim", pixel.ssim_frames, clip.generated,
                                                            clip.reference)))


@register
class HOICrop(MetricGroup):
    """PSNR / SSIM on the reference's hand-object box, with ``hoi_crop`` and psnr or ssim requested."""

    name = "hoi_crop"
    selectable = False
    metrics = (Metric("psnr_hoi", "dB", True, "PSNR on the hand-object box of the reference (ManiVideo's HOI region)"),
               Metric("ssim_hoi", "", True, "SSIM on the hand-object box of the reference"))
    reads_hands = ("reference",)
    not_computable_reason = "no hand or object box in the reference frames"

    @classmethod
    def active(cls, opts) -> bool:
        return bool(opts.hoi_crop and {"psnr", "ssim"} & set(opts.metrics))

    def compute(self, clip: Clip) -> None:
        from . import pixel

        T, H, W = clip.shape
        boxes = hoi_boxes(clip.reference_hands, clip.reference_masks, T, H, W, self.opts.hoi_margin)
        crops = list(pixel.crop_pairs(clip.generated, clip.reference, boxes))
        clip.record["hoi_frames"] = len(crops)
        m, timed = clip.metrics, self.run.timed
        if not crops:
            m["psnr_hoi"] = m["ssim_hoi"] = math.nan
            return
        if "psnr" in self.opts.metrics:
            m["psnr_hoi"] = float(np.mean([timed("psnr", pixel.psnr_frames, g, r)[0] for _, g, r in crops]))
        if "ssim" in self.opts.metrics:
            m["ssim_hoi"] = float(np.nanmean([timed("ssim", pixel.ssim_frame, g, r) for _, g, r in crops]))

    def finish(self, report: Report) -> None:
        if "psnr_hoi" not in report.entries:
            return
        src = "reference hand boxes (" + (self.run.hand_detector or "?") + ")"
        if any("masks" in c for c in report.clips):
            src += " + reference object-mask boxes"
        for n in ("psnr_hoi", "ssim_hoi"):
            if n in report.entries:
                report.entries[n]["boxes"] = src + f", margin {self.opts.hoi_margin:g} per side"


@register
class LPIPS(MetricGroup):
    name = "lpips"
    metrics = (Metric("lpips", "", False, "LPIPS v0.1 AlexNet, per frame at full resolution", needs_weights=True),)
    weights = ("alexnet_lpips", "alexnet_weights")

    @classmethod
    def check_weights(cls, opts) -> None:
        from .pixel import lpips_lin_path

        lpips_lin_path(opts.weights_dir)

    def load(self) -> None:
        if self.weights_path is not None:
            from .pixel import LPIPSAlex, lpips_lin_path

            self.net = LPIPSAlex(self.weights_path, lpips_lin_path(self.opts.weights_dir), self.opts.device)

    def compute(self, clip: Clip) -> None:
        if self.weights_path is not None:
            clip.metrics["lpips"] = float(np.mean(self.run.timed("lpips", self.net, clip.generated, clip.reference)))


@register
class FID(MetricGroup):
    """Frames of all clips pooled: features per clip, one distance at the end."""

    name = "fid"
    metrics = (Metric("fid", "", False, "FID, Inception-v3 pool3, frames of all clips pooled", needs_weights=True),)
    weights = ("fid_inception", "fid_weights")
    pooled_lists = ("generated_features", "reference_features")

    @classmethod
    def check_options(cls, opts) -> None:
        from .fid import RESIZE_CONVENTIONS

        if opts.fid_resize not in RESIZE_CONVENTIONS:
            raise BadInputError(f"unknown FID resize convention {opts.fid_resize!r}",
                                f"choose from: {', '.join(RESIZE_CONVENTIONS)}")

    def load(self) -> None:
        self.generated_features: list[np.ndarray] = []
        self.reference_features: list[np.ndarray] = []
        if self.weights_path is not None:
            from .fid import FIDFeatureExtractor

            self.net = FIDFeatureExtractor(self.weights_path, self.opts.fid_resize, self.opts.device,
                                           self.opts.batch_size)

    def compute(self, clip: Clip) -> None:
        if self.weights_path is not None:
            self.generated_features.append(self.run.timed("fid", self.net, clip.generated))
            self.reference_features.append(self.run.timed("fid", self.net, clip.reference))

    def finish(self, report: Report) -> None:
        if self.weights_path is None:
            return
        from .fid import fid_from_features

        fg, fr = np.concatenate(self.generated_features), np.concatenate(self.reference_features)
        conv = {"resize": self.opts.fid_resize, "features": "Inception-v3 pool3 (2048)",
                "weights": Path(self.weights_path).name, "n_frames_generated": len(fg), "n_frames_reference": len(fr)}
        metric = self.metrics[0]
        try:
            report.entry(metric, self.run.timed("fid", fid_from_features, fg, fr), convention=conv)
        except ValueError as exc:
            report.entry(metric, None, convention=conv, status="not_computable", reason=str(exc))
        if len(fg) < 2048:
            report.entries["fid"]["note"] = (f"{len(fg)} frames < 2048 features: covariance is rank-deficient, "
                                             "FID is biased upwards; compare only at equal frame counts")


@register
class FVD(MetricGroup):
    """One I3D feature vector per clip; one distance over the clips at the end."""

    name = "fvd"
    metrics = (Metric("fvd", "", False, "FVD, I3D Kinetics-400 logits, one clip = one sample", needs_weights=True),)
    weights = ("i3d_kinetics400", "i3d_weights")
    pooled_lists = ("generated_features", "reference_features", "frames_used")

    def load(self) -> None:
        self.generated_features: list[np.ndarray] = []
        self.reference_features: list[np.ndarray] = []
        self.frames_used: list[int] = []
        if self.weights_path is not None:
            from .fvd import I3DFeatureExtractor

            self.net = I3DFeatureExtractor(self.weights_path, self.opts.device)

    def compute(self, clip: Clip) -> None:
        if self.weights_path is None:
            return
        n = self.opts.fvd_frames
        self.generated_features.append(self.run.timed("fvd", self.net, [clip.generated], n))
        self.reference_features.append(self.run.timed("fvd", self.net, [clip.reference], n))
        self.frames_used.append(min(clip.shape[0], n))

    def finish(self, report: Report) -> None:
        if self.weights_path is None:
            return
        conv = {"frames_per_clip": self.opts.fvd_frames, "frames_used": sorted(set(self.frames_used)),
                "resolution": 224, "features": "I3D logits (400)", "weights": Path(self.weights_path).name,
                "n_clips": len(self.generated_features)}
        if len(self.generated_features) < 2:
            report.entry(self.metrics[0], None, convention=conv, status="not_computable",
                         reason="FVD needs at least 2 clip pairs (a covariance over clips)")
            return
        from .fvd import fvd_from_features

        report.entry(self.metrics[0], fvd_from_features(np.concatenate(self.generated_features),
                                                        np.concatenate(self.reference_features)), convention=conv)


@register
class Hands(MetricGroup):
    """Detections of both clips with one detector; computed first, right after the detections."""

    name = "hands"
    metrics = (
        Metric("hand_agreement", "", True, "mean IoU of generated vs reference hand boxes, matched by handedness; "
               "miss = 0"),
        Metric("hand_fidelity", "", True, "mean generated hand-detection confidence over reference hands; miss = 0"),
        Metric("hand_fidelity_detected", "", True, "mean confidence over hands detected in generated frames"),
        Metric("hand_mpjpe_px", "px", False, "2-D keypoint error of matched hands, mean over 21 joints"),
        Metric("hand_mpjpe_norm", "", False, "keypoint error / longer side of the reference hand box"),
        Metric("hand_miss_rate", "", False, "fraction of reference hands not detected in the generated frame"),
        Metric("hand_extra_rate", "", False, "fraction of generated hands with no reference hand in that frame and "
               "slot"),
    )
    reads_hands = ("reference", "generated")
    computed_first = True
    not_computable_reason = "no hands detected in the reference (or none matched)"

    def compute(self, clip: Clip) -> None:
        from .hands import hand_metrics

        hm = self.run.timed("hands", hand_metrics, clip.generated_hands, clip.reference_hands)
        clip.metrics.update({k: v for k, v in hm.items() if k.startswith("hand_")})
        clip.record["hand_counts"] = {k: v for k, v in hm.items() if k.startswith("n_")}

    def finish(self, report: Report) -> None:
        for metric in self.metrics:
            if metric.name in report.entries:
                report.entries[metric.name]["detector"] = self.run.hand_detector


def _dino(group: MetricGroup):
    """The DINO ViT-B/16 both the subject-consistency and object groups read (loaded once)."""
    from .temporal import DinoFeatures

    return group.run.network("dino", lambda: DinoFeatures(group.weights_path, group.opts.device))


@register
class SubjectConsistency(MetricGroup):
    name = "subject_consistency"
    metrics = (Metric("subject_consistency", "", True, "VBench subject consistency, DINO ViT-B/16, generated clip",
                      needs_weights=True),
               Metric("subject_consistency_reference", "", True, "the same on the reference clip (baseline)"))
    weights = ("dino_vitb16", "dino_weights")

    def load(self) -> None:
        self.net = _dino(self) if self.weights_path is not None else None

    def compute(self, clip: Clip) -> None:
        if self.net is None:
            return
        from .temporal import subject_consistency_from_features

        timed = self.run.timed
        clip.metrics["subject_consistency"] = subject_consistency_from_features(
            timed("subject_consistency", self.net, clip.generated))
        if self.opts.reference_baselines:
            clip.metrics["subject_consistency_reference"] = subject_consistency_from_features(
                timed("subject_consistency", self.net, clip.reference))


@register
class MotionSmoothness(MetricGroup):
    """VBench's AMT variant where its weights are found; the weight-free flow variant always."""

    name = "motion_smoothness"
    metrics = (
        Metric("motion_smoothness", "", True, "VBench motion smoothness, AMT-S interpolation, generated clip",
               needs_weights=True),
        Metric("motion_smoothness_flow", "", True, "motion smoothness, weight-free Farneback-flow interpolation "
               "variant, generated clip"),
        Metric("motion_smoothness_flow_reference", "", True, "the same on the reference clip (baseline)"),
    )
    weights = ("amt_s", "amt_weights")
    weights_optional = True
    skip_label = "motion_smoothness (AMT; the weight-free flow variant is computed instead)"
    skip_reason = "missing weights; the weight-free motion_smoothness_flow is reported instead"

    def load(self) -> None:
        self.net = None
        if self.weights_path is not None:
            from .temporal import AMTInterpolator

            self.net = AMTInterpolator(self.weights_path, self.opts.device)

    def compute(self, clip: Clip) -> None:
        from . import temporal

        m, timed = clip.metrics, self.run.timed
        if self.net is not None:
            m["motion_smoothness"] = timed("motion_smoothness", temporal.motion_smoothness_amt, clip.generated,
                                           self.net)
        m["motion_smoothness_flow"] = timed("motion_smoothness_flow", temporal.motion_smoothness_flow, clip.generated)
        if self.opts.reference_baselines:
            m["motion_smoothness_flow_reference"] = timed("motion_smoothness_flow", temporal.motion_smoothness_flow,
                                                          clip.reference)

    def finish(self, report: Report) -> None:
        if "motion_smoothness_flow" in report.entries:
            report.entries["motion_smoothness_flow"]["variant"] = ("weight-free Farneback optical-flow interpolation "
                                                                   "(not VBench's AMT)")


@register
class Objects(MetricGroup):
    """Object masks of both clips; the DINO appearance only with its weights."""

    name = "objects"
    metrics = (
        Metric("object_mask_iou", "", True, "per-frame IoU of generated vs reference object masks"),
        Metric("object_appearance_colour", "", True, "histogram intersection of RGB colours inside the object masks"),
        Metric("object_appearance_dino", "", True, "DINO cosine similarity of the masked object crops",
               needs_weights=True),
    )
    weights = ("dino_vitb16", "dino_weights")
    weights_optional = True
    skip_label = "object_appearance_dino"

    def load(self) -> None:
        self.net = _dino(self) if self.weights_path is not None else None

    def compute(self, clip: Clip) -> None:
        if clip.generated_masks is None:
            return
        from . import objects

        m, timed = clip.metrics, self.run.timed
        args = (clip.generated, clip.reference, clip.generated_masks, clip.reference_masks)
        m["object_mask_iou"] = timed("objects", objects.mask_iou, *args[2:])["object_mask_iou"]
        m["object_appearance_colour"] = timed("objects", objects.appearance_colour, *args)
        if self.net is not None:
            m["object_appearance_dino"] = timed("objects", objects.appearance_dino, *args, self.net)

    def finish(self, report: Report) -> None:
        if report.computed("object_mask_iou"):
            return
        for metric in self.metrics:
            if report.entries.get(metric.name, {}).get("status") != "skipped":
                report.not_computable(metric, _BOTH_MASKS)
