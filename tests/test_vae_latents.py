"""`elt data latents` (an image folder -> VAE posterior moments, with a tiny random diffusers AutoencoderKL saved
in a temp folder, the same code path as the SD-VAE), the flow family training on them, and samples decoded
through the same VAE; the ADM centre crop against guided-diffusion's own code; the bad-input rows."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import assert_one_clear_line
from elt.cli import main
from elt.data import CodeDataset
from elt.data.vae import adm_center_crop
from elt.hashing import file_sha256

diffusers = pytest.importorskip("diffusers")

SIZE = 64  # images; the tiny VAE downsamples 8x like the SD-VAE -> 8x8x4 latents


def guided_diffusion_center_crop_arr(pil_image, image_size):
    """guided-diffusion's image_datasets.center_crop_arr, verbatim (the reference the ADM crop must match)."""
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size]


@pytest.mark.parametrize("w,h,size", [(1000, 600, 256), (300, 200, 64), (64, 100, 64), (97, 131, 32)])
def test_adm_crop_matches_guided_diffusion(w, h, size):
    img = Image.fromarray(np.random.default_rng(w).integers(0, 255, (h, w, 3), dtype=np.uint8))
    assert np.array_equal(adm_center_crop(img, size), guided_diffusion_center_crop_arr(img, size))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny random AutoencoderKL saved like sd-vae-ft-mse, and 2 classes x 5 RGB images of mixed shapes."""
    root = tmp_path_factory.mktemp("vae_world")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 4,
                                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 16, 16),
                                  layers_per_block=1, norm_num_groups=4, sample_size=SIZE, scaling_factor=0.18215)
    vae.save_pretrained(root / "vae")
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / "imgs" / c).mkdir(parents=True)
        for i in range(5):
            w, h = (80, 64) if i % 2 else (64, 100)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "imgs" / c / f"{i}.png")
    assert main(["data", "latents", str(root / "imgs"), "--vae", str(root / "vae"), "--size", str(SIZE),
                 "--out", str(root / "lat"), "--flip", "--device", "cpu"]) == 0
    return root, vae.eval()


def test_latent_folder_holds_each_images_posterior(world):
    root, vae = world
    ds = CodeDataset(root / "lat")
    meta = json.loads((root / "lat" / "meta.json").read_text())
    assert meta["kind"] == "moments" and meta["shape"] == [20, 8, 8, 8] and meta["dtype"] == "float16"
    assert ds.image_shape == (4, 8, 8) and ds.labels.tolist() == ([0] * 5 + [1] * 5) * 2
    info = meta["vae"]
    assert info["sha256"] == file_sha256(root / "vae" / "diffusion_pytorch_model.safetensors")
    assert (info["scaling_factor"], info["downsample"], info["crop"], info["size"], info["flip"]) == \
        (0.18215, 8, "adm-center-crop", SIZE, True)
    img = Image.open(root / "imgs" / "dog" / "3.png").convert("RGB")  # item 8 (dog, 4th), its mirror item 18
    x = torch.from_numpy(adm_center_crop(img, SIZE)).permute(2, 0, 1)[None].float() / 127.5 - 1
    for item, inp in ((8, x), (18, x.flip(3))):
        with torch.no_grad():
            post = vae.encode(inp).latent_dist
        codes = ds.get_batch([item])[0]
        torch.testing.assert_close(codes[:, :4], post.mean, atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(codes[:, 4:], post.std, atol=2e-3, rtol=2e-3)
    # the model sees a posterior sample, scaled: (mean + std·ε)·0.18215; the mean when no ε is given
    codes = ds.get_batch([0, 1])[0]
    eps = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(ds.model_inputs(codes, eps), (codes[:, :4] + codes[:, 4:] * eps) * 0.18215)
    torch.testing.assert_close(ds.model_inputs(codes), codes[:, :4] * 0.18215)


def test_training_on_latents_and_samples_decoded_by_the_vae(world, tmp_path):
    root, _ = world
    cfg = {"family": "flow", "objective": {"kind": "diffusion"}, "data": {"name": str(root / "lat")},
           "model": {"image_size": 8, "channels": 4, "patch": 2, "dim": 32, "heads": 2, "blocks": 2,
                     "mlp_ratio": 2.0, "num_classes": 2},
           "train": {"loops": 2, "steps": 2, "batch_size": 4, "lr": 0.01, "warmup_steps": 1, "precision": "fp32",
                     "log_every": 1, "sample_every": 0, "ckpt_every": 2},
           "sample": {"steps": 3, "cfg": 1.0}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert main(["sample", str(tmp_path / "run"), "--per-class", "2", "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as z:
        assert z["arr_0"].shape == (4, SIZE, SIZE, 3) and z["arr_0"].dtype == np.uint8  # pixels, not latents


def _copy_vae(root, tmp, edit=None, drop=None):
    import shutil

    d = tmp / "vae"
    shutil.copytree(root / "vae", d)
    if edit:
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(edit)
        (d / "config.json").write_text(json.dumps(cfg))
    if drop:
        (d / drop).unlink()
    return d


def _latents(root, vae, out, *extra):
    return ["data", "latents", root / "imgs", "--vae", vae, "--size", str(SIZE), "--out", out, "--device", "cpu",
            *extra]


ROWS = [
    ("no VAE folder", lambda r, t: _latents(r, t / "nowhere", t / "o"),
     r"VAE folder \S*nowhere does not exist: pass --vae DIR holding config.json"),
    ("no config.json", lambda r, t: _latents(r, _copy_vae(r, t, drop="config.json"), t / "o"),
     r"config.json is missing: a VAE folder holds config.json and diffusion_pytorch_model.safetensors"),
    ("no weights", lambda r, t: _latents(r, _copy_vae(r, t, drop="diffusion_pytorch_model.safetensors"), t / "o"),
     r"has config.json but no weights"),
    ("not an AutoencoderKL", lambda r, t: _latents(r, _copy_vae(r, t, {"_class_name": "UNet2DModel"}), t / "o"),
     r"describes a 'UNet2DModel', not an AutoencoderKL"),
    ("scaling factor missing", lambda r, t: _latents(r, _copy_vae(r, t, {"scaling_factor": None}), t / "o"),
     r"scaling_factor must be a number > 0 \(0\.18215 for the SD VAE\), got None"),
    ("latent channels 0", lambda r, t: _latents(r, _copy_vae(r, t, {"latent_channels": 0}), t / "o"),
     r"latent_channels must be an integer >= 1, got 0"),
    ("size not a multiple of 8", lambda r, t: ["data", "latents", r / "imgs", "--vae", r / "vae", "--size", "60",
                                               "--out", t / "o", "--device", "cpu"],
     r"--size 60 is not a multiple of the VAE's downsampling factor 8"),
    ("size 0", lambda r, t: ["data", "latents", r / "imgs", "--vae", r / "vae", "--size", "0", "--out", t / "o",
                             "--device", "cpu"],
     r"--size must be >= 1, got 0"),
    ("batch size 0", lambda r, t: _latents(r, r / "vae", t / "o", "--batch-size", "0"),
     r"--batch-size must be >= 1, got 0"),
    ("out not empty", lambda r, t: _latents(r, r / "vae", r / "lat"),
     r"--out \S*lat is not empty: choose a new folder, or pass --force"),
    ("missing --vae", lambda r, t: ["data", "latents", r / "imgs", "--out", t / "o"],
     r"elt data latents needs --vae: elt data latents ROOT --vae DIR"),
    ("latent flags on mnist", lambda r, t: ["data", "mnist", "--vae", r / "vae"],
     r"--vae are for `elt data latents`; `elt data mnist` takes only --force"),
]


@pytest.mark.parametrize("build,message", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_latent_input_gets_one_clear_line(world, build, message, tmp_path, capsys):
    root, _ = world
    assert_one_clear_line(build(root, tmp_path), message, (root, tmp_path), capsys)
