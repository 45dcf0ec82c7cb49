"""Code folders (pre-computed tokens or latents): write, memory-map, read back, open through load_dataset,
and train the flow family on 4-channel float latents with the ordinary Trainer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from elt.data import CodeDataset, DataError, load_dataset, read_meta, write_codes


def latents(n: int = 40, shape=(4, 8, 8), classes: int = 2, seed: int = 0):
    """Float32 latents (n, *shape) whose mean depends on the class, and labels (n,)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    codes = rng.normal(0, 1, size=(n, *shape)).astype(np.float32) + labels[:, None, None, None].astype(np.float32)
    return codes, labels


def test_latent_folder_round_trip_memory_mapped_with_stats(tmp_path):
    codes, labels = latents()
    folder = write_codes(tmp_path / "lat", codes, labels, ["a", "b"], kind="latents", source="src123",
                         codec="test-vae")
    assert sorted(p.name for p in folder.iterdir()) == ["codes.npy", "labels.npy", "meta.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lat"]  # written in place, no temporary left
    ds = CodeDataset(folder)
    assert isinstance(ds.codes, np.memmap)  # rows are read on demand
    assert (len(ds), ds.code_shape, ds.image_shape, ds.num_classes) == (40, (4, 8, 8), (4, 8, 8), 2)
    assert ds.kind == "latents" and not ds.discrete and ds.class_names == ["a", "b"]
    x, y = ds.get_batch([3, 0, 39])
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(codes[[3, 0, 39]]))
    assert y.tolist() == [1, 0, 1]
    assert torch.equal(ds.model_inputs(x), x)  # latents are stored as the model takes them
    meta = read_meta(folder)
    assert (meta.source, meta.codec, meta.dtype, meta.shape) == ("src123", "test-vae", "float32", (40, 4, 8, 8))
    per_channel = codes.transpose(1, 0, 2, 3).reshape(4, -1).astype(np.float64)
    np.testing.assert_allclose(meta.stats["mean"], per_channel.mean(1), rtol=1e-9)
    np.testing.assert_allclose(meta.stats["std"], per_channel.std(1), rtol=1e-7)
    assert meta.stats["min"] == pytest.approx(float(codes.min()))
    assert meta.stats["max"] == pytest.approx(float(codes.max()))


def test_token_folder_round_trip(tmp_path):
    tokens = np.random.default_rng(1).integers(0, 16, size=(6, 2, 3)).astype(np.int16)
    folder = write_codes(tmp_path / "tok", tokens, np.zeros(6), ["only"], kind="tokens", source="s", codec="vq",
                         codebook_size=16)
    ds = CodeDataset(folder)
    x, y = ds.get_batch(torch.arange(6))
    assert ds.discrete and x.dtype == torch.int64 and torch.equal(x, torch.from_numpy(tokens).long())
    assert y.dtype == torch.int64 and read_meta(folder).stats is None and read_meta(folder).codebook_size == 16
    assert torch.equal(ds.all_codes(), x)


def test_load_dataset_opens_code_folders_and_their_splits(tmp_path):
    codes, labels = latents(8)
    write_codes(tmp_path / "flat", codes, labels, ["a", "b"], kind="latents", source="s", codec="c")
    assert isinstance(load_dataset(str(tmp_path / "flat")), CodeDataset)
    with pytest.raises(DataError, match=r"has no test split"):
        load_dataset(str(tmp_path / "flat"), "test")
    with pytest.raises(DataError, match=r"cannot be resized or converted: leave data.image_size and data.channels"):
        load_dataset(str(tmp_path / "flat"), image_size=8)
    write_codes(tmp_path / "split" / "train", codes, labels, ["a", "b"], kind="latents", source="s", codec="c")
    write_codes(tmp_path / "split" / "test", codes[:2], labels[:2], ["a", "b"], kind="latents", source="s", codec="c")
    assert len(load_dataset(str(tmp_path / "split"), "train")) == 8
    assert len(load_dataset(str(tmp_path / "split"), "test")) == 2


def test_writing_bad_codes_is_refused_before_anything_is_written(tmp_path):
    codes, labels = latents(4)
    with pytest.raises(DataError, match=r"latents codes must have dtype float16 or float32, got 'int64'"):
        write_codes(tmp_path / "x", codes.astype(np.int64), labels, ["a", "b"], kind="latents", source="s", codec="c")
    with pytest.raises(DataError, match=r"token codes need \"codebook_size\""):
        write_codes(tmp_path / "x", codes.astype(np.int16), labels, ["a", "b"], kind="tokens", source="s", codec="c")
    with pytest.raises(DataError, match=r"labels outside 0\.\.1"):
        write_codes(tmp_path / "x", codes, labels + 1, ["a", "b"], kind="latents", source="s", codec="c")
    assert not list(tmp_path.iterdir())


def _edit_meta(folder, **changes):
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(changes)
    (folder / "meta.json").write_text(json.dumps(meta))


BAD_META = [
    ("not json", lambda f: (f / "meta.json").write_text("{oops"), r"cannot read .*meta.json"),
    ("other format", lambda f: _edit_meta(f, format="npz"), r"is not a code folder's meta.json"),
    ("newer version", lambda f: _edit_meta(f, version=2), r"has version 2, this elt reads version 1"),
    ("unknown kind", lambda f: _edit_meta(f, kind="pixels"), r"\"kind\" must be one of tokens, latents"),
    ("unknown key", lambda f: _edit_meta(f, scale=0.18), r"has unknown keys \['scale'\]"),
    ("shape disagrees", lambda f: _edit_meta(f, shape=[40, 4, 4, 4]), r"holds float32 \(40, 4, 8, 8\) but meta"),
    ("shape not ints", lambda f: _edit_meta(f, shape="40x4x8x8"), r"\"shape\" must be a list of integers"),
    ("no classes", lambda f: _edit_meta(f, class_names=[]), r"\"class_names\" is empty"),
    ("labels beyond the classes", lambda f: np.save(f / "labels.npy", np.full(40, 5)), r"labels outside 0\.\.1"),
    ("codes.npy damaged", lambda f: (f / "codes.npy").write_bytes(b"junk"), r"cannot read .*codes.npy"),
]


@pytest.mark.parametrize("change,pattern", [r[1:] for r in BAD_META], ids=[r[0] for r in BAD_META])
def test_a_damaged_code_folder_gets_one_clear_error(change, pattern, tmp_path):
    codes, labels = latents()
    folder = write_codes(tmp_path / "lat", codes, labels, ["a", "b"], kind="latents", source="s", codec="c")
    change(folder)
    with pytest.raises(DataError, match=pattern) as err:
        load_dataset(str(folder))
    assert "write the code folder again" in str(err.value) or "must" in str(err.value) or "empty" in str(err.value)


def test_flow_family_trains_on_float_latents_and_samples_codes(tmp_path, make_config):
    """4-channel latents (no /127.5 conversion) through the ordinary Trainer; decoding latents back to pixels
    through a VAE is not part of this step."""
    from elt.sampling.flow import euler_sample
    from elt.train import Trainer

    codes, labels = latents(40, (4, 8, 8), classes=2)
    folder = write_codes(tmp_path / "lat", codes, labels, ["a", "b"], kind="latents", source="s", codec="c")
    cfg = make_config(f"data.name={folder}", "data.image_size=null", "data.channels=null", "model.channels=4",
                      "model.num_classes=2", "train.steps=3", "train.ckpt_every=3", "train.log_every=1")
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    seen = []  # (batch read from the folder, what the family trains on)
    real = trainer.data.model_inputs
    trainer.data.model_inputs = lambda x: seen.append((x.clone(), real(x))) or seen[-1][1]
    summary = trainer.fit()
    trainer.close()
    assert summary["step"] == 3 and np.isfinite(summary["loss"]) and len(seen) == 3
    stored = torch.from_numpy(codes)
    for raw, x0 in seen:  # the latents reach the model as stored: no /127.5 - 1, no clamping
        assert x0.dtype == torch.float32 and x0.shape == (8, 4, 8, 8) and torch.equal(x0, raw)
        assert all(any(torch.equal(row, s) for s in stored) for row in x0)
    model = trainer.ema.model.eval()
    noise = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    out = euler_sample(model, trainer.family.process, noise, torch.tensor([0, 1, 0, 1]), loops=1, steps=2)
    assert out.shape == (4, 4, 8, 8) and torch.isfinite(out).all()
