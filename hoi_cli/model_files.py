"""The weight files the toolkit knows by name: one registry, so `hoi env` can list them.

key -> (file name(s) looked up in the weights dirs, what it is for). Alternatives are
separated by ``|``. Modules that load a model look its file name up here.
"""

KNOWN_WEIGHTS: dict[str, tuple[str, str]] = {
    "sam_vit_b": ("sam_vit_b_01ec64.pth", "segment-anything ViT-B (03_segment --backend sam)"),
    "sam_vit_h": ("sam_vit_h_4b8939.pth", "segment-anything ViT-H (03_segment --backend sam)"),
    "mano_right": ("MANO_RIGHT.pkl|MANO_RIGHT.npz", "official MANO right hand (--mano-dir)"),
    "mano_left": ("MANO_LEFT.pkl|MANO_LEFT.npz", "official MANO left hand (--mano-dir)"),
    # hoi eval (hoi_cli/metrics)
    "fid_inception": ("pt_inception-2015-12-05-6726825d.pth",
                      "TF-ported FID Inception-v3, pytorch-fid's file (hoi eval: FID)"),
    "i3d_kinetics400": ("i3d_torchscript.pt", "I3D Kinetics-400 TorchScript, StyleGAN-V's file (hoi eval: FVD)"),
    "dino_vitb16": ("dino_vitbase16_pretrain.pth",
                    "DINO ViT-B/16 (hoi eval: subject consistency, object appearance)"),
    "alexnet_lpips": ("alexnet-owt-7be5be79.pth", "torchvision ImageNet AlexNet (hoi eval: LPIPS)"),
    "amt_s": ("amt-s_torchscript.pt", "AMT-S interpolation, TorchScript export (hoi eval: VBench motion smoothness; optional)"),
}
