"""transfer_probe extracts the target's features with the evaluation's batch size."""

import torch
from torch.utils.data import TensorDataset

from evaluation import transfer
from evaluation.features import extract_features


def test_default_batch_is_that_of_feature_extraction(monkeypatch):
    # docs/evaluation.md: --batch-size (256) is the batch of the feature extraction
    batches = []

    def spy(model, dataset, **options):
        batches.append(options["batch_size"])
        return extract_features(model, dataset, **options)

    monkeypatch.setattr(transfer, "extract_features", spy)
    x = torch.randn(300, 1, 2, 2)
    y = (x.flatten(1).sum(1) > 0).long()
    transfer.transfer_probe(torch.nn.Flatten(), TensorDataset(x[:200], y[:200]),
                            TensorDataset(x[200:], y[200:]), Cs=(1.0,))
    assert batches == [256, 256]
