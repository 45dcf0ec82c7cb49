"""Behaviour of the masked family that the MaskGIT recipe fixes, read back from what the code actually does.

Decoding is driven by stub models (logits chosen by the test) and scripted noise sources (the uniforms the
sampler turns into Gumbel noise), so temperatures, choice-noise scales and re-mask choices can be observed
from the tokens the sampler feeds back into the model. Every expected number is written out by hand.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from elt.config import load_config
from elt.family.masked import MaskedFamily
from elt.sampling.masked import DecodeSettings, NoiseSource, maskgit_decode, remask_counts, sample_tokens
from elt.train import Trainer, batch_indices

from conftest import NUM_CLASSES, SIDE, flatten_overrides

# T = 16 tokens, K = 4 steps, MaskGIT defaults: temperature 0.5 + 0.8·(1 − (k+1)/K), choice noise 4.5·(1 − (k+1)/K);
# tokens still masked after step k = ⌊16·cos(π(k+1)/8)⌋ = ⌊14.78⌋, ⌊11.31⌋, ⌊6.12⌋, 0
MASKED_AFTER_16_4 = [14, 11, 6, 0]
TEMPERATURES_4 = [1.1, 0.9, 0.7, 0.5]
CHOICE_SCALES_4 = [3.375, 2.25, 1.125, 0.0]


# ---- stubs ---------------------------------------------------------------------------------------------------

class StubModel(torch.nn.Module):
    """A stand-in generator: `logits_fn(call, tokens) -> (B, T, V)` decides the logits; every call's input
    tokens and returned logits are recorded."""

    def __init__(self, tokens: int, vocab: int, logits_fn, num_classes: int = 3):
        super().__init__()
        grid = math.isqrt(tokens)
        self.cfg = SimpleNamespace(tokens=tokens, grid=grid, codebook_size=vocab)
        self.sample_shape = (grid, grid)
        self.mask_id, self.null_label = vocab, num_classes
        self.logits_fn = logits_fn
        self.inputs, self.logits = [], []
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # sample_tokens reads the device from a parameter

    def forward(self, tokens, y, loops):
        out = self.logits_fn(len(self.inputs), tokens).float()
        self.inputs.append(tokens.clone())
        self.logits.append(out.clone())
        return out


def uniform_for(g: torch.Tensor) -> torch.Tensor:
    """The uniform u whose Gumbel transform −log(−log u) is g."""
    return torch.exp(-torch.exp(-g.double())).float()


def gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u.double()))


class ScriptedNoise:
    """A noise source whose draws come from `fn(k) -> (token uniforms (B, T, V), choice uniforms (B, T))`;
    every draw is recorded."""

    def __init__(self, fn):
        self.fn, self.draws = fn, []

    def draw(self, k):
        tok, choice = self.fn(k)
        self.draws.append((tok.clone(), choice.clone()))
        return tok, choice


class RecordingNoise(NoiseSource):
    """The sampler's own noise source, with its draws recorded."""

    def __init__(self, *a):
        super().__init__(*a)
        self.draws = []

    def draw(self, k):
        tok, choice = super().draw(k)
        self.draws.append((tok.clone(), choice.clone()))
        return tok, choice


def states(model: StubModel, out: torch.Tensor) -> list[torch.Tensor]:
    """Token grids before step 0, …, before step K−1, and the output."""
    return model.inputs + [out]


def newly_decided(model: StubModel, out: torch.Tensor, k: int) -> torch.Tensor:
    s = states(model, out)
    return (s[k] == model.mask_id) & (s[k + 1] != model.mask_id)


# ---- decoding: how many tokens stay masked ------------------------------------------------------------------

def test_remask_counts_are_the_floored_cosine_written_out():
    assert remask_counts(16, 4) == MASKED_AFTER_16_4
    # ⌊9·cos(π(k+1)/8)⌋ = ⌊8.31⌋, ⌊6.36⌋, ⌊3.44⌋, 0
    assert remask_counts(9, 4) == [8, 6, 3, 0]
    # ⌊8·cos(π(k+1)/16)⌋ = 7, 7, 6, 5, 4, 3, 1, 0: every step must fix at least one token, so 7, 6, 5, …
    assert remask_counts(8, 8) == [7, 6, 5, 4, 3, 2, 1, 0]
    assert remask_counts(5, 1) == [0]


def test_decoder_keeps_the_cosine_count_masked_after_each_step():
    torch.manual_seed(0)
    model = StubModel(16, 8, lambda c, t: torch.randn(t.shape[0], 16, 8))
    y = torch.zeros(5, dtype=torch.long)
    trace = []
    out = maskgit_decode(model, y, 1, DecodeSettings(steps=4), NoiseSource(0, range(5), 16, 8), trace=trace)
    masked_before = [(s == model.mask_id).sum(1).tolist() for s in states(model, out)]
    assert masked_before == [[16] * 5, [14] * 5, [11] * 5, [6] * 5, [0] * 5]
    assert len(model.inputs) == 4  # exactly K model calls
    assert [t["masked_after"] for t in trace] == MASKED_AFTER_16_4


# ---- decoding: temperature and choice noise, read back --------------------------------------------------------

def test_sampling_temperature_is_annealed_per_step():
    """V = 2, logits (0, 1) everywhere. Row r gets token noise (0, −r·δ), so it samples token 1 iff 1/τ_k > r·δ:
    the number of rows whose step-k tokens are 1 measures 1/τ_k to within δ."""
    B, T, K, delta = 1200, 16, 4, 0.0025
    logits = torch.tensor([0.0, 1.0]).expand(B, T, 2)
    model = StubModel(T, 2, lambda c, t: logits)
    g_tok = torch.stack([torch.zeros(B), -delta * torch.arange(B)], -1)[:, None, :].expand(B, T, 2)
    choice = torch.Generator().manual_seed(0)
    noise = ScriptedNoise(lambda k: (uniform_for(g_tok), torch.rand(B, T, generator=choice) * 0.9 + 0.05))
    trace = []
    out = maskgit_decode(model, torch.zeros(B, dtype=torch.long), 1, DecodeSettings(steps=K), noise, trace=trace)
    read_back = []
    for k in range(K):
        new = newly_decided(model, out, k)
        assert new.any(1).all()
        tok = torch.where(new, out, -1)
        ones = (tok == 1).any(1)
        assert not ((tok == 0).any(1) & ones).any()  # one token per row: the draw depends on the row only
        n1 = int(ones.sum())
        assert ones[:n1].all() and not ones[n1:].any()  # a threshold on r
        read_back.append(1 / ((n1 - 0.5) * delta))
    assert read_back == pytest.approx(TEMPERATURES_4, abs=0.01)
    assert [t["temperature"] for t in trace] == pytest.approx(read_back, abs=0.01)  # the hook tells the truth


def _roles(state: torch.Tensor, mask_id: int, keep: int):
    """Per row, among the still-masked positions in order: the first `keep − 1` are forced to be decided,
    the next two (P, Q) compete for the last decided slot, the rest are forced to stay masked."""
    B, T = state.shape
    role = torch.full((B, T), 3)  # 0 forced keep, 1 P, 2 Q, 3 forced re-mask (or already decided)
    for b in range(B):
        masked = (state[b] == mask_id).nonzero().flatten().tolist()
        for i, pos in enumerate(masked[:keep + 1]):
            role[b, pos] = 0 if i < keep - 1 else (1 if i == keep - 1 else 2)
    return role


def test_choice_noise_scale_is_annealed_per_step_and_zero_at_the_last():
    """Confidence = log p(sampled) + s_k·Gumbel. P has log p higher than Q's by Δ = 1 and choice noise −r·δ
    in row r (Q: 0), so P beats Q for the last decided slot iff 1 > s_k·r·δ: counting the rows where P was
    decided measures s_k. All others are forced (kept: Gumbel +8, re-masked: −3.5; all sample token 0)."""
    B, T, K, delta = 1200, 16, 4, 0.001
    b_q = math.log(2 * math.e - 1)  # logits (0, b_q): log p(0) = −log(2e) = log ½ − 1
    counts = MASKED_AFTER_16_4
    roles = []

    def logits_fn(call, state):
        masked_now = int((state[0] == 4).sum())
        role = _roles(state, 4, masked_now - counts[call])
        roles.append(role)
        out = torch.zeros(B, T, 4)
        out[..., 1] = torch.where(role == 2, b_q, 0.0)
        out[..., 2:] = -30.0  # two of the four codes are never drawn
        return out

    def noise_fn(k):
        role = roles[k]
        g_tok = torch.tensor([8.0, -3.0, 0.0, 0.0]).expand(B, T, 4)  # always sample token 0
        g_choice = torch.where(role == 0, 8.0, torch.where(role == 2, 0.0, -3.5))
        g_choice = torch.where(role == 1, -delta * torch.arange(B)[:, None].float(), g_choice)
        return uniform_for(g_tok), uniform_for(g_choice)

    model = StubModel(T, 4, logits_fn)
    trace = []
    out = maskgit_decode(model, torch.zeros(B, dtype=torch.long), 1, DecodeSettings(steps=K),
                         ScriptedNoise(noise_fn), trace=trace)
    assert (out == 0).all()
    read_back = []
    for k in range(K - 1):
        new = newly_decided(model, out, k)
        role = roles[k]
        assert new[role == 0].all() and not new[role == 3].any()  # the forced ones went where they were sent
        p_won = new[role == 1]  # (B,): P decided in row r
        assert torch.equal(p_won, ~new[role == 2])  # exactly one of P, Q
        n = int(p_won.sum())
        assert p_won[:n].all() and not p_won[n:].any()
        read_back.append(1 / ((n - 0.5) * delta))
    assert read_back == pytest.approx(CHOICE_SCALES_4[:-1], rel=0.01)
    scales = [t["choice_scale"] for t in trace]
    assert scales[:-1] == pytest.approx(read_back, rel=0.01)
    assert scales[-1] == 0.0  # exactly no choice noise at the last step


@pytest.mark.parametrize("temp_bias,p_tempered,p_raw", [(0.5, 0.9, 0.75), (2.0, 0.6340, 0.75)])
def test_sampling_draws_from_the_tempered_logits(temp_bias, p_tempered, p_raw):
    """One step (τ = temp_bias), logits (0, log 3): raw p(1) = 3/4; tempered p(1) = 3^(1/τ)/(1 + 3^(1/τ)):
    0.9 at τ = 0.5, √3/(1 + √3) = 0.634 at τ = 2. 4,000 draws: binomial std ≤ 0.0077."""
    n_rows, T = 250, 16
    model = StubModel(T, 2, lambda c, t: torch.tensor([0.0, math.log(3)]).expand(t.shape[0], T, 2))
    toks = sample_tokens(model, torch.zeros(n_rows, dtype=torch.long), 1,
                         DecodeSettings(steps=1, temp_bias=temp_bias), seed=3)
    p_hat = float((toks == 1).float().mean())
    std = math.sqrt(p_tempered * (1 - p_tempered) / toks.numel())
    assert abs(p_hat - p_tempered) < 4 * std
    assert abs(p_hat - p_raw) > 10 * std


# ---- decoding: which tokens are re-masked, and decided tokens stay --------------------------------------------

def test_each_step_matches_a_hand_written_maskgit_step():
    """Random logits and the sampler's own noise; each step recomputed here in float64: sample from
    logits/τ_k, confidence = log p(sampled) + s_k·Gumbel, decided tokens kept, the least confident re-masked."""
    B, T, V, K = 6, 16, 8, 4
    gen = torch.Generator().manual_seed(1)
    model = StubModel(T, V, lambda c, t: 3 * torch.randn(t.shape[0], T, V, generator=gen))
    noise = RecordingNoise(7, range(B), T, V)
    out = maskgit_decode(model, torch.zeros(B, dtype=torch.long), 1, DecodeSettings(steps=K), noise)
    seen = states(model, out)
    mask_id = model.mask_id
    for k in range(K):
        state, logits = seen[k], model.logits[k].double()
        u_tok, u_choice = noise.draws[k]
        unknown = state == mask_id
        sampled = torch.where(unknown, (logits / TEMPERATURES_4[k] + gumbel(u_tok)).argmax(-1), state)
        log_p = logits.log_softmax(-1).gather(-1, sampled[..., None])[..., 0]
        confidence = log_p + CHOICE_SCALES_4[k] * gumbel(u_choice)
        expect = sampled.clone()
        for b in range(B):
            candidates = unknown[b].nonzero().flatten()
            order = confidence[b, candidates].argsort()  # ascending: least confident first
            expect[b, candidates[order[:MASKED_AFTER_16_4[k]]]] = mask_id
        assert torch.equal(seen[k + 1], expect), f"step {k}"
        # the re-masked are strictly less confident than every token decided at this step
        kept = unknown & (seen[k + 1] != mask_id)
        remasked = seen[k + 1] == mask_id
        for b in range(B):
            if remasked[b].any():
                assert confidence[b][remasked[b]].max() < confidence[b][kept[b]].min()


def test_the_least_confident_are_remasked():
    """Half the positions are confident (p(0) ≈ 0.99), half unsure (uniform over 4); every choice Gumbel is 0,
    so confidence is log p alone: the 5 tokens decided at step 0 of 2 must all be confident ones."""
    B, T, V, K = 4, 16, 4, 2
    sure = torch.arange(T) % 2 == 0
    logits = torch.where(sure[:, None], torch.tensor([6.0, 0.0, 0.0, 0.0]), torch.zeros(V)).expand(B, T, V)
    model = StubModel(T, V, lambda c, t: logits)
    g_tok = torch.tensor([4.0, 0.0, 0.0, 0.0]).expand(B, T, V)  # everybody samples token 0
    noise = ScriptedNoise(lambda k: (uniform_for(g_tok), torch.full((B, T), math.exp(-1))))  # Gumbel 0
    out = maskgit_decode(model, torch.zeros(B, dtype=torch.long), 1, DecodeSettings(steps=K), noise)
    # ⌊16·cos(π/4)⌋ = 11 stay masked after step 0: 5 decided, all of them among the 8 confident ones
    decided = model.inputs[1] != model.mask_id
    assert decided.sum(1).tolist() == [5] * B
    assert not (decided & ~sure).any()
    assert (out == 0).all()


def test_decided_tokens_never_change():
    """After its step, a position's logits strongly favour another token than the one decided there;
    the decoder must neither resample nor re-mask it."""
    B, T, V, K = 8, 16, 6, 6
    gen = torch.Generator().manual_seed(2)

    def logits_fn(call, state):
        out = torch.randn(state.shape[0], T, V, generator=gen)
        decided = state != V
        other = F.one_hot((state.clamp(max=V - 1) + 1) % V, V).float() * 20
        return torch.where(decided[..., None], other - 10, out)

    model = StubModel(T, V, logits_fn)
    out = maskgit_decode(model, torch.zeros(B, dtype=torch.long), 1, DecodeSettings(steps=K),
                         NoiseSource(0, range(B), T, V))
    seen = states(model, out)
    for k in range(1, len(seen)):
        before = seen[k - 1] != V
        assert torch.equal(seen[k][before], seen[k - 1][before]), f"a decided token changed at step {k - 1}"
    assert (out != V).all()


def test_trace_does_not_change_the_samples():
    torch.manual_seed(0)
    weights = torch.randn(17, 8)
    model = StubModel(16, 8, lambda c, t: weights[t])
    y = torch.zeros(4, dtype=torch.long)
    a = maskgit_decode(model, y, 1, DecodeSettings(steps=5, cfg=2.0), NoiseSource(4, range(4), 16, 8))
    b = maskgit_decode(model, y, 1, DecodeSettings(steps=5, cfg=2.0), NoiseSource(4, range(4), 16, 8), trace=[])
    assert torch.equal(a, b)


# ---- family wiring: label dropout, label smoothing, distillation ----------------------------------------------

MASKED_RUN = {
    "family": "masked",
    "tokenizer": {"base_channels": 8, "downsample": 1, "res_blocks": 0, "codebook_size": 16, "code_dim": 8},
    "model": {"image_size": SIDE, "channels": 1, "codebook_size": 16, "grid": 4, "dim": 32, "heads": 2,
              "blocks": 2, "mlp_ratio": 2.0, "num_classes": NUM_CLASSES},
    "objective": {"kind": "maskgit"},
    "data": {"image_size": SIDE, "channels": 1},
    "train": {"mode": "ilsd", "loops": 2, "min_loops": 1, "steps": 100, "batch_size": 60, "lr": 1e-3,
              "warmup_steps": 2, "precision": "fp32", "device": "cpu", "log_every": 1000, "sample_every": 0,
              "ckpt_every": 1000, "seed": 0},
    "sample": {"steps": 4, "cfg": 1.0},
}


@pytest.fixture
def masked_trainer(tiny_dataset, tmp_path):
    """Callable(*overrides) -> a Trainer of a tiny masked run over an (untrained, saved) tokenizer."""
    from elt.tokenizers import VQAutoencoder, save_tokenizer

    base = flatten_overrides(MASKED_RUN) + [f"data.name={tiny_dataset}", f"tokenizer.path={tmp_path / 'tok'}"]
    cfg = load_config(None, base)
    torch.manual_seed(0)
    save_tokenizer(VQAutoencoder(cfg.tokenizer, (1, SIDE, SIDE)), cfg.tokenizer, tmp_path / "tok")
    made = []

    def make(*over):
        made.append(Trainer(load_config(None, base + list(over)), tmp_path / f"run{len(made)}", progress=False))
        return made[-1]

    return make


class NetSpy(torch.nn.Module):
    """Wraps the trainer's network: records the labels and the outputs of every call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.labels, self.outputs = net, [], []

    def forward(self, tokens, y, loops, exits=None):
        out = self.net(tokens, y, loops=loops, exits=exits)
        self.labels.append(y.clone())
        self.outputs.append([o.detach().clone() for o in out])
        return out


def test_label_dropout_reaches_the_model_at_its_rate(masked_trainer):
    """The labels the network gets in training steps are the batch's; over 20 batches of 60 the null label
    (= num_classes) appears at rate ≈ p (4 binomial std = 0.053 at p = 0.3), never at p = 0."""
    p, steps = 0.3, 20
    trainer = masked_trainer(f"train.label_dropout={p}", "train.mode=vanilla")
    spy = trainer.net = NetSpy(trainer.net)
    for step in range(3):
        trainer.train_step(step)
    null = trainer.model.null_label
    assert null == NUM_CLASSES
    y = torch.cat([trainer._batch(s)["y"] for s in range(steps)])
    assert torch.equal(torch.cat(spy.labels), y[:3 * 60])  # what the network saw in the three steps
    rate = float((y == null).float().mean())
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / len(y))
    # the labels that are not dropped are the data's own
    true = trainer.data.labels[torch.cat([batch_indices(s, 60, len(trainer.data), 0) for s in range(steps)])]
    kept = y != null
    assert torch.equal(y[kept], true[kept])

    off = masked_trainer("train.label_dropout=0", "train.mode=vanilla")
    spy = off.net = NetSpy(off.net)
    off.train_step(0)
    y = torch.cat([off._batch(s)["y"] for s in range(5)])
    assert torch.equal(spy.labels[0], y[:60])
    assert not (y == null).any()


def smoothed_ce(logits, targets, mask, eps):
    """Hand-written label-smoothed cross-entropy, mean over the masked positions:
    (1 − ε)·(−log p_target) + ε·mean_v(−log p_v)."""
    log_p = logits[mask].double().log_softmax(-1)
    nll = -log_p.gather(-1, targets[mask][:, None])[:, 0]
    return float(((1 - eps) * nll - eps * log_p.mean(-1)).mean())


def soft_ce(student, teacher, mask):
    p = teacher[mask].double().softmax(-1)
    return float(-(p * student[mask].double().log_softmax(-1)).sum(-1).mean())


def test_trainer_losses_are_smoothed_gt_and_masked_distillation(masked_trainer):
    """One ILSD step; every logged term recomputed by hand from the logits the network returned."""
    eps = 0.2
    trainer = masked_trainer(f"objective.label_smoothing={eps}")
    with torch.no_grad():  # a random head so the logits are not uniform
        for p in trainer.model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.2)
    spy = trainer.net = NetSpy(trainer.net)
    batches = []
    real_batch = trainer._batch
    trainer._batch = lambda s: batches.append(real_batch(s)) or batches[-1]
    res = trainer.train_step(3)
    b, (student, teacher) = batches[0], spy.outputs[0]
    mask, targets = b["mask"], b["targets"]
    assert mask.any() and (~mask).any()
    assert torch.equal(b["inputs"][mask], torch.full_like(targets[mask], 16))  # [MASK] where masked
    assert torch.equal(b["inputs"][~mask], targets[~mask])
    assert res.parts["gt_teacher"] == pytest.approx(smoothed_ce(teacher, targets, mask, eps), rel=1e-5)
    assert res.parts["gt_student"] == pytest.approx(smoothed_ce(student, targets, mask, eps), rel=1e-5)
    assert abs(res.parts["gt_teacher"] - smoothed_ce(teacher, targets, mask, 0.0)) > 0.05
    assert res.parts["distill"] == pytest.approx(soft_ce(student, teacher, mask), rel=1e-5)
    everywhere = torch.ones_like(mask)
    assert abs(res.parts["distill"] - soft_ce(student, teacher, everywhere)) > 1e-3


def _family_and_batch(eps: float):
    cfg = load_config(None, flatten_overrides(MASKED_RUN) + [f"objective.label_smoothing={eps}"])
    fam = MaskedFamily(cfg)
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 16, (4, 16), generator=gen)
    mask = torch.rand(4, 16, generator=gen) < 0.5
    mask[:, 0], mask[:, 1] = True, False
    return fam, {"targets": targets, "mask": mask, "count": int(mask.sum())}, gen


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_gt_loss_is_label_smoothed_cross_entropy_on_masked_positions(eps):
    fam, b, gen = _family_and_batch(eps)
    logits = 2 * torch.randn(4, 16, 16, generator=gen)
    loss = float(fam.gt_loss(logits, b))
    assert loss == pytest.approx(smoothed_ce(logits, b["targets"], b["mask"], eps), rel=1e-5)
    assert abs(loss - smoothed_ce(logits, b["targets"], b["mask"], 0.0)) > 0.05
    # eps = 0.1 at the default: a hand case with V = 16, uniform logits: −log(1/16) whatever ε
    uniform = torch.zeros(4, 16, 16)
    assert float(fam.gt_loss(uniform, b)) == pytest.approx(math.log(16), rel=1e-6)


def test_distillation_covers_exactly_the_masked_positions():
    fam, b, gen = _family_and_batch(0.1)
    mask = b["mask"]
    student = torch.randn(4, 16, 16, generator=gen)
    teacher = torch.randn(4, 16, 16, generator=gen)
    base = float(fam.dist_loss(student, teacher, b))
    assert base == pytest.approx(soft_ce(student, teacher, mask), rel=1e-5)
    noise = 5 * torch.randn(4, 16, 16, generator=gen)
    outside = torch.where(mask[..., None], 0.0, noise)
    inside = torch.where(mask[..., None], noise, 0.0)
    assert float(fam.dist_loss(student + outside, teacher, b)) == base
    assert float(fam.dist_loss(student, teacher + outside, b)) == base
    assert abs(float(fam.dist_loss(student + inside, teacher, b)) - base) > 0.1
    assert abs(float(fam.dist_loss(student, teacher + inside, b)) - base) > 0.1
