"""Every model file the toolkit can use: one registry for `hoi weights`, `hoi env` and the loaders.

Each entry says what the file is for, its licence, where it officially comes from (a URL, a
Hugging Face repository, or a page to register on) and how a download is checked. A full
sha256 is recorded only where the official source publishes one; files named by torch.hub's
convention (``name-<first 8 hex of the sha256>.pth``, as on download.pytorch.org) are checked
against that prefix; the rest are checked by size only (the server's Content-Length). Sizes
written as ``approx_mb`` are for display, never a check.

Modules that load a model look its file name up here (`KNOWN_WEIGHTS`, key -> (file names, what)).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFile:
    key: str
    filename: str  # looked up in the weights folders; alternatives separated by "|"; a folder for HF repos
    purpose: str
    licence: str
    approx_mb: float
    url: str = ""  # direct download
    hf_repo: str = ""  # Hugging Face repository, fetched whole with huggingface_hub.snapshot_download
    sha256: str = ""  # full digest, only where the official source publishes it
    sha256_prefix: str = ""  # torch.hub naming convention: the file name carries the digest's first hex digits
    manual: str = ""  # how to get it by hand, where no download can be automatic (licence, conversion)
    page: str = ""  # the official page of a file obtained by hand
    env_dir: str = ""  # an environment variable naming the folder this file is used from (searched first)

    @property
    def source(self) -> str:
        if self.hf_repo:
            return f"https://huggingface.co/{self.hf_repo}"
        return self.url or self.page

    @property
    def check(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starts with {self.sha256_prefix} (torch.hub file name)"
        if self.hf_repo:
            return "huggingface_hub (per-file sha256 of the repository's LFS objects)"
        if self.manual:
            return "none (obtained by hand)"
        return "size only (no published sha256)"

    @property
    def expected_name(self) -> str:
        return self.filename.split("|")[0]


_MANO_HOW = ("register at https://mano.is.tue.mpg.de (the MANO licence allows non-commercial research only), "
             "download 'Models & Code', and point --mano-dir (or HOI_MANO_DIR) at its mano_v1_2/models folder "
             "(`hoi mano convert` makes chumpy-free .npz copies); without it the built-in hand is used")

MODEL_FILES: dict[str, ModelFile] = {m.key: m for m in [
    ModelFile("sam_vit_b", "sam_vit_b_01ec64.pth", "segment-anything ViT-B (03_segment --set segment.backend=sam)",
              "Apache-2.0", 375, url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"),
    ModelFile("sam_vit_h", "sam_vit_h_4b8939.pth", "segment-anything ViT-H (03_segment --set segment.backend=sam)",
              "Apache-2.0", 2564, url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth"),
    *[ModelFile(f"sam2.1_hiera_{size}", f"sam2.1_hiera_{size}.pt",
                f"SAM 2.1 Hiera-{size.replace('_', '+')} video segmenter (03_segment, sam2 backend)",
                "Apache-2.0", mb, url=f"https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_{size}.pt")
      for size, mb in (("tiny", 156), ("small", 184), ("base_plus", 323), ("large", 898))],
    ModelFile("mano_right", "MANO_RIGHT.pkl|MANO_RIGHT.npz", "official MANO right hand (--mano-dir)",
              "MANO licence (non-commercial research; registration required)", 3.8, manual=_MANO_HOW,
              page="https://mano.is.tue.mpg.de", env_dir="HOI_MANO_DIR"),
    ModelFile("mano_left", "MANO_LEFT.pkl|MANO_LEFT.npz", "official MANO left hand (--mano-dir)",
              "MANO licence (non-commercial research; registration required)", 3.8, manual=_MANO_HOW,
              page="https://mano.is.tue.mpg.de", env_dir="HOI_MANO_DIR"),
    # hoi eval (hoi_cli/metrics)
    ModelFile("fid_inception", "pt_inception-2015-12-05-6726825d.pth",
              "TF-ported FID Inception-v3, pytorch-fid's file (hoi eval: FID)", "Apache-2.0", 96,
              url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                  "pt_inception-2015-12-05-6726825d.pth"),
    ModelFile("i3d_kinetics400", "i3d_torchscript.pt",
              "I3D Kinetics-400 TorchScript, StyleGAN-V's port (hoi eval: FVD)",
              "Apache-2.0 (DeepMind kinetics-i3d weights)", 50,
              url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"),
    ModelFile("dino_vitb16", "dino_vitbase16_pretrain.pth",
              "DINO ViT-B/16 (hoi eval: subject consistency, object appearance)", "Apache-2.0", 343,
              url="https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth"),
    ModelFile("alexnet_lpips", "alexnet-owt-7be5be79.pth", "torchvision ImageNet AlexNet (hoi eval: LPIPS backbone)",
              "BSD-3-Clause (torchvision)", 244, url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
              sha256_prefix="7be5be79"),
    ModelFile("amt_s", "amt-s_torchscript.pt",
              "AMT-S interpolation, TorchScript export (hoi eval: VBench motion smoothness; optional)", "MIT", 12,
              manual="download amt-s.pth from https://huggingface.co/lalala125/AMT, trace AMT-S with the official "
                     "AMT code as hoi_cli/metrics/temporal.py (AMTInterpolator) describes, and save it as "
                     "amt-s_torchscript.pt in the weights folder (without it a weight-free optical-flow variant is "
                     "reported)", page="https://huggingface.co/lalala125/AMT"),
    # video generation backends (diffusers folders)
    ModelFile("wan2.1_vace_1.3b", "Wan2.1-VACE-1.3B-diffusers", "Wan2.1 VACE 1.3B video editing, diffusers folder",
              "Apache-2.0", 19000, hf_repo="Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
    ModelFile("wan2.1_t2v_1.3b", "Wan2.1-T2V-1.3B-Diffusers", "Wan2.1 text-to-video 1.3B, diffusers folder",
              "Apache-2.0", 18000, hf_repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers"),
]}

# key -> (file name(s), what it is for): what the loaders look up (`weights.find_weights`)
KNOWN_WEIGHTS: dict[str, tuple[str, str]] = {k: (m.filename, m.purpose) for k, m in MODEL_FILES.items()}


def key_for_file(filename: str) -> str | None:
    """The registry key of a file name (or a path ending in one), or None."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    for key, entry in MODEL_FILES.items():
        if name in entry.filename.split("|"):
            return key
    return None
