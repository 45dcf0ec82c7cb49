"""The flow family (DiT-style on pixels): noised images in, velocity / x0 out."""
from __future__ import annotations


import torch

from ..objectives.flow import build_objective
from ..objectives.labels import drop_labels
from ..rng import step_generator


class FlowFamily:
    # default sampling batch: 1,000 samples at L=4 take 26 s at 500 vs 30 s at 128 (2-core CPU, bf16, CFG)
    SAMPLE_BATCH = 500

    def __init__(self, cfg):
        self.cfg = cfg
        self.process = build_objective(cfg.objective)

    def prepare(self, data, run_dir, dist, progress: bool = True) -> None:
        """Nothing to prepare: the flow family trains on pixels or on the codes of a code folder as stored."""

    def batch(self, step: int, idx: torch.Tensor, data, rank_slice: slice, null_label: int, device) -> dict:
        """This rank's part of global batch `step` (global indices `idx`): noised images (or latents) and targets."""
        t = self.cfg.train
        B = len(idx)
        g = step_generator(t.seed, step)
        noise = torch.randn(B, *data.image_shape, generator=g)  # (B, C, *S): images, clips or latents
        u = torch.randn(B, generator=g)
        items, labels = data.get_batch(idx[rank_slice])  # uint8 pixels, or codes from a code folder
        labels = drop_labels(labels, t.label_dropout, null_label, g, B, rank_slice)  # g's third draw, (b,)
        if getattr(data, "kind", None) == "moments":  # a VAE posterior: a fresh sample every step (g's 4th draw)
            eps = torch.randn(B, *data.image_shape, generator=g)[rank_slice]
            x0 = data.model_inputs(items.to(device), eps.to(device))  # (b, C, *S) scaled latents
        else:
            x0 = data.model_inputs(items.to(device))  # (b, C, *S): pixels in [-1, 1], or latents as stored
        x_t, tt, target, weight = self.process.training_inputs(x0, noise[rank_slice].to(device),
                                                               u[rank_slice].to(device))
        return {"x_t": x_t, "t": tt, "y": labels.to(device), "target": target, "weight": weight}

    def forward(self, net, b: dict, loops: int, exits, latents: int | None = None) -> list[torch.Tensor]:
        budget = {} if latents is None else {"latents": latents}  # plain models are called as before
        return net(b["x_t"], b["t"], b["y"], loops=loops, exits=exits, **budget)

    def forward_flops(self, loops: int, exits, latents: int | None = None) -> int:
        """Analytic matmul FLOPs per sample of one `forward` call to `exits` at `latents` (None: J_max)."""
        from ..bench.flops import analytic_forward_flops, flow_arch

        return analytic_forward_flops(flow_arch(self.cfg.model, self.cfg.model_blocks, loops, len(exits), latents))

    def gt_loss(self, pred: torch.Tensor, b: dict) -> torch.Tensor:
        return self.process.gt_loss(pred, b["target"], b["weight"])

    def dist_loss(self, student: torch.Tensor, teacher: torch.Tensor, b: dict) -> torch.Tensor:
        return self.process.dist_loss(student, teacher, b["weight"])

    def sampler(self, model, run_dir=None):
        """A Sampler: sampler(SampleRequest) or sampler(labels, loops, steps, guidance, seed, batch_size,
        progress, precision) -> uint8 (N, H, W, C); batch_size None = SAMPLE_BATCH."""
        from ..sampling.flow import sample_images
        from ..sampling.request import Sampler

        data = getattr(self.cfg, "data", None)  # a family built from a partial config has no data section
        decode = None if data is None else vae_decoder(data.name, next(model.parameters()).device)

        def run(r):
            return sample_images(model, self.process, r.labels, r.loops, r.steps, r.guidance, r.seed,
                                 r.batch_size or self.SAMPLE_BATCH, r.progress, r.precision, uncond=r.uncond,
                                 first_index=r.first_index, to_pixels=decode, halt=r.halt, trace=r.trace)
        return Sampler(run)


def vae_decoder(data_name: str, device):
    """For a run trained on VAE moments (`elt data latents`): the VAE decoder its samples go through, from the
    folder recorded in the data's meta.json; None for any other data (samples are the model's outputs)."""
    from pathlib import Path

    from ..data.codes import is_code_folder, read_meta

    root = Path(str(data_name)).expanduser()
    folder = next((f for f in (root, root / "train") if is_code_folder(f)), None)
    if folder is None:
        return None
    meta = read_meta(folder)
    if meta.kind != "moments":
        return None
    from ..data.vae import VaeDecoder

    return VaeDecoder(meta.vae, device)
