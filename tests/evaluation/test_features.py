"""Feature extraction and its disk cache."""

import os

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from evaluation.features import (
    cached_features,
    checkpoint_fingerprint,
    extract_features,
    feature_cache_key,
)


class _Counting(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5),
                                       torch.nn.BatchNorm1d(5))
        self.calls = 0
        self.modes = []

    def forward(self, x):
        self.calls += 1
        self.modes.append(self.training)
        return self.net(x)


def _data(n=37):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 2, 2, generator=g), torch.arange(n) % 4)


def test_features_equal_a_direct_forward_in_eval_mode_and_mode_is_restored():
    model = _Counting()
    model.train()
    data = _data()
    feats, labels = extract_features(model, data, batch_size=8, progress=False)
    assert model.training and not any(model.modes)
    assert model.calls == 5  # ceil(37 / 8) batches
    model.eval()
    with torch.no_grad():
        direct = model.net(data.tensors[0]).numpy()
    np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, data.tensors[1].numpy())
    assert feats.dtype == np.float32 and labels.dtype == np.int64


def test_cache_is_reused_and_keyed_by_everything(tmp_path):
    model = _Counting()
    data = _data()
    key = feature_cache_key(checkpoint="sha256:x", dataset="toy", split="train",
                            transform="T1", length=37)
    a = cached_features(model, data, cache_dir=tmp_path, key=key, progress=False)
    calls = model.calls
    b = cached_features(model, data, cache_dir=tmp_path, key=key, progress=False)
    assert model.calls == calls  # read back, model not run
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.npz"]
    variants = [
        dict(checkpoint="sha256:y", dataset="toy", split="train", transform="T1", length=37),
        dict(checkpoint="sha256:x", dataset="toy2", split="train", transform="T1", length=37),
        dict(checkpoint="sha256:x", dataset="toy", split="test", transform="T1", length=37),
        dict(checkpoint="sha256:x", dataset="toy", split="train", transform="T2", length=37),
        dict(checkpoint="sha256:x", dataset="toy", split="train", transform="T1", length=37,
             indices=[0, 1]),
    ]
    keys = {feature_cache_key(**v) for v in variants}
    assert len(keys) == len(variants) and key not in keys


def test_checkpoint_fingerprint_follows_content_or_stat(tmp_path):
    p = tmp_path / "m.pt"
    p.write_bytes(b"abc")
    import hashlib

    assert checkpoint_fingerprint(p) == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    s1 = checkpoint_fingerprint(p, content_hash=False)
    p.write_bytes(b"abcd")
    os.utime(p, ns=(1, 10**18))
    assert checkpoint_fingerprint(p, content_hash=False) != s1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint_fingerprint(tmp_path / "missing.pt")


def test_empty_dataset_and_bad_output_shape():
    with pytest.raises(ValueError, match="empty"):
        extract_features(torch.nn.Flatten(), TensorDataset(torch.zeros(0, 2), torch.zeros(0)))
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        extract_features(torch.nn.Identity(), _data(4), progress=False)
