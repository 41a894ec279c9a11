"""Evaluation metrics for generated HOI videos, one module per metric family.

- `pixel`: PSNR, SSIM (full frame and HOI-box crops), LPIPS (AlexNet)
- `fid`: Fréchet Inception Distance (Inception-v3 pool3, TF-ported FID weights)
- `fvd`: Fréchet Video Distance (I3D Kinetics-400, TorchScript)
- `hands`: hand agreement, hand fidelity, hand keypoint error (MPJPE), miss rate
- `temporal`: subject consistency (VBench, DINO ViT-B/16), motion smoothness
- `objects`: object mask IoU, object appearance consistency
- `registry`: the metric-group class (weights needed, per-clip compute, aggregate, description)
- `groups`: the metric groups of `hoi eval`, one class each (a new metric is one class there)
- `evaluate`: orchestration over clip pairs, skipped-metric bookkeeping, reports

Importing this package is cheap: torch and the models are imported inside functions.
"""
