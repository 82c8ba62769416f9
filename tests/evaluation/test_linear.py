"""Linear probes and fine-tuning: known answers, selection never on test, errors."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import TensorDataset

from evaluation.accuracy import topk_accuracy
from evaluation.finetune import finetune
from evaluation.linear import linear_probe, sgd_linear_probe
from evaluation.subsets import validation_split


def _clusters(rng, n, d=8, n_cls=5, scale=8.0):
    centers = rng.normal(size=(n_cls, d)) * scale
    y = rng.integers(0, n_cls, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_separated_clusters_are_learned_and_shuffled_labels_give_chance():
    rng = np.random.default_rng(0)
    x, y = _clusters(rng, 1500)
    res = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], Cs=(0.1, 1.0))
    assert res.top1 == 1.0
    shuffled = linear_probe(x[:1000], rng.permutation(y[:1000]), x[1000:], y[1000:],
                            Cs=(0.1, 1.0))
    assert abs(shuffled.top1 - 0.2) < 0.08  # 500 test points, chance 1/5


def test_selection_matches_an_independent_validation_search():
    rng = np.random.default_rng(1)
    x, y = _clusters(rng, 600, d=20, scale=0.6)
    cs = (1e-3, 1e-2, 1e-1, 1.0)
    res = linear_probe(x[:400], y[:400], x[400:], y[400:], Cs=cs, seed=5)
    fit, val = validation_split(y[:400], fraction=0.2, seed=5)
    scores = {}
    for c in cs:
        m = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=200))
        scores[c] = m.fit(x[fit], y[fit]).score(x[val], y[val])
    assert res.val_top1 == pytest.approx(scores)
    assert res.C == max(cs, key=lambda c: scores[c])
    assert res.n_train == fit.size and res.n_val == val.size


def test_test_labels_never_influence_the_selected_model():
    # Make test labels that a test-set selector would prefer for a different C: the
    # predictions of the model fitted with another C score 100% on them. The probe must still
    # pick the validation choice and be exactly as good as that model on these labels.
    rng = np.random.default_rng(2)
    x, y = _clusters(rng, 600, d=20, scale=0.5)
    x_tr, y_tr, x_te = x[:400], y[:400], x[400:]
    cs = (1e-3, 1.0)
    honest = linear_probe(x_tr, y_tr, x_te, y[400:], Cs=cs)
    other = cs[1] if honest.C == cs[0] else cs[0]
    other_model = make_pipeline(StandardScaler(), LogisticRegression(C=other, max_iter=200))
    bait = other_model.fit(x_tr, y_tr).predict(x_te)
    best_model = make_pipeline(StandardScaler(), LogisticRegression(C=honest.C, max_iter=200))
    best_pred = best_model.fit(x_tr, y_tr).predict(x_te)
    assert np.mean(best_pred == bait) < 1.0  # the two C give different test predictions
    baited = linear_probe(x_tr, y_tr, x_te, bait, Cs=cs)
    assert baited.C == honest.C
    assert baited.val_top1 == honest.val_top1
    assert baited.top1 == pytest.approx(np.mean(best_pred == bait))


def test_topk_accuracy_breaks_ties_towards_the_lower_class():
    scores = np.array([[0.2, 0.2, 0.1], [0.0, 0.5, 0.5]])
    top1, top5 = topk_accuracy(scores, np.array([0, 2]))
    assert top1 == 0.5 and top5 == 1.0


def test_probe_bad_input():
    x = np.ones((10, 3))
    y = np.array([0, 1] * 5)
    with pytest.raises(ValueError, match="8 entries but the features have 10 rows"):
        linear_probe(x, y[:8], x, y)
    nan = x.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_probe(x, y, nan, y)
    with pytest.raises(ValueError, match="Cs"):
        linear_probe(x, y, x, y, Cs=(0.0,))
    with pytest.raises(ValueError, match="single class"):
        linear_probe(x, np.zeros(10, int), x, y)


def _toy_sets(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(240, 4, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return (TensorDataset(x[:160], y[:160]), TensorDataset(x[160:200], y[160:200]),
            TensorDataset(x[200:], y[200:]))


def test_sgd_probe_trains_only_the_head_and_learns_a_linear_rule():
    train, val, test = _toy_sets(0)
    torch.manual_seed(0)
    trunk = torch.nn.Linear(4, 4)
    before = [p.detach().clone() for p in trunk.parameters()]
    res = sgd_linear_probe(trunk, train, val, test, num_classes=2, epochs=15, lr=0.5,
                           batch_size=32, progress=False)
    assert res.top1 >= 0.9
    assert len(res.val_top1) == 15 and res.val_top1[res.best_epoch - 1] == max(res.val_top1)
    for p, q in zip(before, trunk.parameters(), strict=True):
        assert torch.equal(p, q) and q.requires_grad


def test_finetune_trains_the_trunk_and_selects_on_validation():
    train, val, test = _toy_sets(1)
    torch.manual_seed(1)
    trunk = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU())
    before = [p.detach().clone() for p in trunk.parameters()]
    res = finetune(trunk, train, val, test, num_classes=2, epochs=10, trunk_lr=0.05,
                   head_lr=0.5, batch_size=32, progress=False)
    assert res.top1 >= 0.9
    assert res.val_top1[res.best_epoch - 1] == max(res.val_top1)
    assert res.best_epoch == 1 + res.val_top1.index(max(res.val_top1))
    assert any(not torch.equal(p, q) for p, q in zip(before, trunk.parameters(), strict=True))
    with pytest.raises(ValueError, match="learning rates"):
        finetune(trunk, train, val, test, num_classes=2, trunk_lr=0.0)
    with pytest.raises(ValueError, match="empty"):
        finetune(trunk, train, TensorDataset(torch.zeros(0, 4), torch.zeros(0)), test,
                 num_classes=2)


def test_transfer_probe_equals_linear_probe_on_the_encoded_target():
    from evaluation.transfer import transfer_probe

    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 1, 3, 3, generator=g)
    y = (x[:, 0, 0, 0] > x[:, 0, 1, 1]).long()
    torch.manual_seed(3)
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 6))
    res = transfer_probe(encoder, TensorDataset(x[:200], y[:200]),
                         TensorDataset(x[200:], y[200:]), Cs=(0.1, 1.0), seed=2)
    with torch.no_grad():
        z = encoder(x).numpy()
    direct = linear_probe(z[:200], y[:200].numpy(), z[200:], y[200:].numpy(), Cs=(0.1, 1.0),
                          seed=2)
    assert res.C == direct.C
    assert res.top1 == pytest.approx(direct.top1)
    assert res.top1 >= 0.8


@pytest.mark.parametrize("scale", [1e200, 1e-200, 1e30, 1e-30])
def test_probe_is_scale_invariant_far_from_unit_scale(scale):
    # at 1e200 the standardisation overflowed ("Input X contains NaN"); at 1e-200 the variance
    # underflowed to 0, the features were left at 1e-200 and the probe returned chance (0.25)
    rng = np.random.default_rng(9)
    x, y = _clusters(rng, 600, n_cls=4)
    ref = linear_probe(x[:400], y[:400], x[400:], y[400:], Cs=(0.1, 1.0))
    assert ref.top1 == 1.0
    res = linear_probe(x[:400] * scale, y[:400], x[400:] * scale, y[400:], Cs=(0.1, 1.0))
    assert res.top1 == ref.top1 and res.C == ref.C
    assert res.val_top1 == pytest.approx(ref.val_top1)


def test_probe_standardises_on_training_features_only():
    # Shifting and scaling the test features alone must change the predictions: the probe
    # standardises with the training statistics, never with the test set's own.
    rng = np.random.default_rng(10)
    x, y = _clusters(rng, 600, n_cls=4)
    res = linear_probe(x[:400], y[:400], 3 * x[400:] + 50, y[400:], Cs=(1.0,))
    assert res.top1 < 0.9


def test_probe_parameter_errors_name_the_parameter():
    x = np.ones((10, 3))
    y = np.array([0, 1] * 5)
    with pytest.raises(ValueError, match=r"max_iter must be a positive integer.*2\.5"):
        linear_probe(x, y, x, y, max_iter=2.5)
    with pytest.raises(TypeError, match="Cs must be.*'1'"):
        linear_probe(x, y, x, y, Cs=("1",))
    with pytest.raises(TypeError, match="Cs must be"):
        linear_probe(x, y, x, y, Cs=1.0)


def test_non_converged_fits_are_counted_not_printed():
    # one run printed 135 lines of ConvergenceWarning; the count now goes into the result
    import warnings

    rng = np.random.default_rng(11)
    x, y = _clusters(rng, 300, n_cls=3, scale=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = linear_probe(x[:200], y[:200], x[200:], y[200:], Cs=(0.1, 10.0), max_iter=1)
    assert (res.not_converged, res.n_fits) == (3, 3)  # two candidate C and the refit
    done = linear_probe(x[:200], y[:200], x[200:], y[200:], Cs=(0.1, 10.0))
    assert (done.not_converged, done.n_fits) == (0, 3)
