"""The codec boundary: the one pixel conversion, the shared VQ base, PSNR, the hashers, staged folders, weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from elt.atomic import staged_dir
from elt.codecs import PIXELS, Codec, PixelCodec, VQCodec, psnr, to_uint8, to_unit
from elt.data import ArrayImageDataset
from elt.hashing import dataset_hash, file_sha1, file_sha256, images_sha1, state_dict_sha1
from elt.tokenizers import ScriptedTokenizer, TokenizerConfig, VQAutoencoder
from elt.weights import save_weights
from stand_ins import StandIn

ALL_BYTES = torch.arange(256, dtype=torch.uint8)


# ---- pixels ---------------------------------------------------------------------------------------------
def test_to_unit_is_bit_identical_to_the_formulas_it_replaced():
    x = ALL_BYTES.view(4, 1, 8, 8)
    got = to_unit(x)
    assert torch.equal(got, x.float() / 127.5 - 1.0)  # family/flow, tokenizers/evaluate
    assert torch.equal(got, x.float().div_(127.5).sub_(1.0))  # eval/classifier
    assert got.min() == -1 and got.max() == 1 and got.dtype == torch.float32


def test_to_uint8_is_bit_identical_to_the_old_formula_and_inverts_to_unit():
    x = torch.randn(3, 3, 5, 7) * 1.5  # values outside [-1, 1] too: clamped
    old = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    assert torch.equal(to_uint8(x), old)
    assert torch.equal(to_uint8(to_unit(ALL_BYTES.view(1, 1, 16, 16))).flatten(), ALL_BYTES)  # exact round trip


def test_to_uint8_moves_channels_last_for_any_number_of_spatial_axes():
    img = torch.rand(2, 3, 4, 5) * 2 - 1  # (B, C, H, W)
    assert to_uint8(img).shape == (2, 4, 5, 3)
    video = torch.rand(2, 3, 6, 4, 5) * 2 - 1  # (B, C, T, H, W)
    out = to_uint8(video)
    assert out.shape == (2, 6, 4, 5, 3)
    for t in range(6):  # frame by frame the same as the 2-D conversion
        assert torch.equal(out[:, t], to_uint8(video[:, :, t]))
    line = torch.rand(2, 3, 9) * 2 - 1  # (B, C, L): one spatial axis
    assert to_uint8(line).shape == (2, 9, 3)
    with pytest.raises(ValueError, match=r"at least one spatial axis"):
        to_uint8(torch.zeros(2, 3))


def test_pixel_codec_encodes_channels_last_media_and_checks_its_shape():
    media = torch.randint(0, 256, (2, 6, 4, 3), dtype=torch.uint8)  # (B, H, W, C)
    codec = PixelCodec((3, 6, 4))
    codes = codec.encode(media)
    assert codes.shape == (2, 3, 6, 4) and torch.equal(codes, to_unit(media.permute(0, 3, 1, 2)))
    assert torch.equal(to_uint8(codec.decode(codes)), media)  # round trip
    assert not codec.discrete and codec.code_shape == (3, 6, 4) and isinstance(codec, Codec)
    with pytest.raises(ValueError, match=r"\(B, 3, 6, 4\)"):
        codec.encode(torch.zeros(2, 4, 4, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must be uint8"):
        PIXELS.encode(torch.zeros(2, 4, 4, 3))
    with pytest.raises(ValueError, match=r"uint8 pixels"):
        to_unit(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"floats in \[-1, 1\]"):
        PIXELS.decode(torch.zeros(2, 3, 4, 4, dtype=torch.long))


def test_psnr_hand_cases():
    x = torch.zeros(2, 1, 2, 2)
    assert torch.allclose(psnr(x, x), torch.full((2,), 100.0))  # exact: capped at 100 dB
    recon = x.clone()
    recon[1] = 0.2  # every pixel off by 0.1 on the [0, 1] scale: MSE 0.01 -> 20 dB
    assert psnr(recon, x)[1].item() == pytest.approx(20.0, abs=1e-4)
    assert psnr(torch.full_like(x, 3.0), torch.ones_like(x))[0].item() == pytest.approx(100.0)  # recon is clamped


# ---- the VQ base: both tokenizers get the same checks ---------------------------------------------------
def _autoencoder():
    torch.manual_seed(0)
    cfg = TokenizerConfig(base_channels=4, downsample=1, res_blocks=0, codebook_size=16, code_dim=4)
    return VQAutoencoder(cfg, (1, 4, 4)).eval()


def _scripted():
    return ScriptedTokenizer(torch.jit.script(StandIn()), "standin.pt").eval()


@pytest.mark.parametrize("make", [_autoencoder, _scripted], ids=["VQAutoencoder", "ScriptedTokenizer"])
def test_both_tokenizers_share_the_base_interface_and_checks(make):
    tok = make()
    assert isinstance(tok, VQCodec) and isinstance(tok, Codec) and tok.discrete
    assert (tok.codebook_size, tok.token_grid, tok.image_shape) == (16, (2, 2), (1, 4, 4))
    assert tok.code_shape == (2, 2) and tok.media_shape == (1, 4, 4)
    media = torch.randint(0, 256, (3, 4, 4, 1), dtype=torch.uint8)  # channels-last
    tokens = tok.encode(media)
    assert tokens.shape == (3, 2, 2) and tokens.dtype == torch.int64
    assert torch.equal(tokens, tok.encode_unit(to_unit(media.permute(0, 3, 1, 2))))
    images = tok.decode(tokens)
    assert images.shape == (3, 1, 4, 4) and images.dtype == torch.float32
    with pytest.raises(ValueError, match=r"images of shape \(B, 1, 4, 4\), got \(3, 1, 8, 8\)"):
        tok.encode_unit(torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"float images in \[-1, 1\], got torch.uint8"):
        tok.encode_unit(torch.zeros(3, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"call encode_unit"):
        tok.encode(torch.zeros(3, 4, 4, 1))  # float images given to the media entry point
    with pytest.raises(ValueError, match=r"token values must lie in 0\.\.15, got 0\.\.16"):
        tok.decode(torch.tensor([[[0, 16], [1, 2]]]))
    with pytest.raises(ValueError, match=r"token values must lie in 0\.\.15, got -1\.\.3"):
        tok.decode(torch.tensor([[[-1, 3], [1, 2]]]))
    with pytest.raises(ValueError, match=r"tokens must have shape \(B, 2, 2\)"):
        tok.decode(torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"integer tensor, got torch.float32"):
        tok.decode(torch.zeros(1, 2, 2))


def test_autoencoder_state_dict_keys_are_unchanged_by_the_base():
    """Checkpoints written before the codec base must still load: no new parameters or buffers."""
    keys = set(_autoencoder().state_dict())
    assert keys and all(k.split(".")[0] in ("encoder", "quantizer", "decoder") for k in keys)
    assert set(_scripted().state_dict()) == {f"module.{k}" for k in StandIn().state_dict()}


# ---- hashing: the outputs are cache keys on disk, pinned on known bytes -----------------------------------
def test_hashers_give_their_pinned_outputs(tmp_path):
    path = tmp_path / "bytes.bin"
    path.write_bytes(bytes(range(256)) * 10)
    assert file_sha256(path) == "e392378f849d67bbb1a7bbec84f1098ae3faa751049c009a850130ce6073d91a"
    assert file_sha1(path) == "f48a95799d144d5ad254355f1849533120dbec12"
    imgs = torch.arange(24, dtype=torch.uint8).view(2, 1, 3, 4)
    assert images_sha1(imgs) == "078f4cb85d95f0f240d36bc40a997767ecbee1ae"
    data = ArrayImageDataset(imgs, torch.tensor([0, 1]), ["a", "b"])
    assert dataset_hash(data) == "d693a9976a5a619dbfc8de680cbc3d91866f5dd2"

    class Batches:  # a data set without an `images` tensor is hashed batch by batch, to the same value
        image_shape = (1, 3, 4)

        def __len__(self):
            return 2

        def get_batch(self, idx):
            return imgs[idx], torch.zeros(len(idx), dtype=torch.long)

    assert dataset_hash(Batches()) == dataset_hash(data)
    m = nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.copy_(torch.arange(6.0).view(2, 3))
        m.bias.copy_(torch.tensor([0.5, -1.0]))
    m.register_buffer("count", torch.tensor([7]))
    assert state_dict_sha1(m) == "ffea4881a5d375a55269bb39b20bd174ba00d774"


def test_old_hasher_names_still_import_and_agree(tmp_path):
    from elt.data.mnist import sha256_file
    from elt.eval.inception import file_sha1 as inception_sha1
    from elt.eval.reference import images_sha1 as reference_sha1
    from elt.tokenizers import tokenizer_fingerprint
    from elt.tokenizers.cache import dataset_hash as cache_dataset_hash

    path = tmp_path / "b.bin"
    path.write_bytes(b"elt")
    assert sha256_file(path) == file_sha256(path) and inception_sha1(path) == file_sha1(path)
    assert reference_sha1 is images_sha1 and cache_dataset_hash is dataset_hash
    tok = _autoencoder()
    assert tokenizer_fingerprint(tok) == state_dict_sha1(tok)


# ---- staged folders and weights -------------------------------------------------------------------------
def test_staged_dir_replaces_on_success_and_keeps_the_old_folder_on_error(tmp_path):
    out = tmp_path / "out"
    with staged_dir(out) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one" and (out.stat().st_mode & 0o777) == 0o755
    with pytest.raises(RuntimeError, match="boom"), staged_dir(out) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "one"
    with staged_dir(out) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    with pytest.raises(FileExistsError, match="already exists"), staged_dir(out, overwrite=False) as tmp:
        (tmp / "c.txt").write_text("never")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left behind


def test_save_weights_writes_detached_unshared_cpu_tensors(tmp_path):
    base = torch.arange(6.0, requires_grad=True)
    state = {"a": base, "view": base.detach()[::2], "same": base.detach()}  # a strided view, shared memory
    save_weights(state, tmp_path / "w.safetensors")
    back = load_file(str(tmp_path / "w.safetensors"))
    assert torch.equal(back["a"], torch.arange(6.0)) and torch.equal(back["view"], torch.tensor([0.0, 2.0, 4.0]))
    assert np.array_equal(back["same"].numpy(), np.arange(6.0, dtype=np.float32))
