"""The masked family on clips: the quantizer on a 3-D token grid (t, h, w)."""

import torch

from elt.tokenizers.quantizer import VectorQuantizer


def _quantizer(seed: int = 0) -> VectorQuantizer:
    torch.manual_seed(seed)
    return VectorQuantizer(num_codes=16, code_dim=4)


def test_quantizer_on_3d_grid_equals_the_same_vectors_laid_out_2d():
    # z3: (B, D, t, h, w); the same vectors as an image grid (B, D, t*h, w) keep raster order (t slowest)
    torch.manual_seed(1)
    z3 = torch.randn(2, 4, 3, 5, 6)
    z2 = z3.reshape(2, 4, 3 * 5, 6)
    q3, q2 = _quantizer(), _quantizer()
    torch.manual_seed(2)  # dead-code restarts draw from the global generator: same draws for both layouts
    out3, idx3, commit3, stats3 = q3(z3, update=True)
    torch.manual_seed(2)
    out2, idx2, commit2, stats2 = q2(z2, update=True)
    assert idx3.shape == (2, 3, 5, 6) and out3.shape == z3.shape
    assert torch.equal(idx3.reshape(2, 15, 6), idx2)
    assert torch.allclose(out3.reshape(2, 4, 15, 6), out2)
    assert torch.allclose(commit3, commit2)
    assert stats3 == stats2
    assert torch.allclose(q3.codebook, q2.codebook)  # the EMA update saw the same vectors
    assert torch.allclose(q3.lookup(idx3).reshape(2, 4, 15, 6), q2.lookup(idx2))


def test_quantizer_3d_indices_are_raster_order_t_slowest():
    # each vector equals one code; its index must come back at the same (t, h, w) place
    q = _quantizer()
    idx = torch.randint(0, 16, (1, 2, 3, 4))  # (B, t, h, w)
    z = q.lookup(idx)  # (B, D, t, h, w)
    assert z.shape == (1, 4, 2, 3, 4)
    _, got, _, _ = q(z, update=False)
    assert torch.equal(got, idx)
