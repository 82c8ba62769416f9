"""Weighted kNN: faiss vs brute force, an independent reference, scikit-learn, known answers."""

import warnings

import numpy as np
import pytest

from evaluation.knn import knn_accuracy, knn_neighbors, l2_normalize


def _reference_knn(bank, bank_y, queries, k, temperature, n_cls):
    """Float64 similarities, stable ordering by (-sim, index), votes summed in a loop."""
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ b.astype(np.float64).T
    preds = []
    for row in sims:
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        votes = np.zeros(n_cls)
        for j in order:
            votes[bank_y[j]] += np.exp(row[j] / temperature)
        preds.append(min(range(n_cls), key=lambda c: (-votes[c], c)))
    return np.array(preds)


def _four_hot(rng, n, d=16):
    """Rows with exactly four ones: cosine similarities are exact multiples of 1/4 (many ties)."""
    x = np.zeros((n, d), dtype=np.float32)
    for row in x:
        row[rng.choice(d, 4, replace=False)] = 1
    return x


@pytest.mark.parametrize("k", [1, 7, 50])
def test_faiss_equals_brute_on_random_data(k):
    rng = np.random.default_rng(k)
    bank = rng.normal(size=(3000, 24)).astype(np.float32)
    queries = rng.normal(size=(400, 24)).astype(np.float32)
    s1, i1 = knn_neighbors(bank, queries, k, backend="faiss", chunk_size=128)
    s2, i2 = knn_neighbors(bank, queries, k, backend="brute", chunk_size=97)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    y = rng.integers(0, 10, 3000)
    yq = rng.integers(0, 10, 400)
    r1 = knn_accuracy(bank, y, queries, yq, k=(k, 200), backend="faiss")
    r2 = knn_accuracy(bank, y, queries, yq, k=(k, 200), backend="brute")
    for kk in r1:
        np.testing.assert_array_equal(r1[kk].predictions, r2[kk].predictions)
        assert r1[kk].top1 == r2[kk].top1 and r1[kk].top5 == r2[kk].top5


def test_exact_ties_broken_by_lowest_index_in_both_backends():
    rng = np.random.default_rng(0)
    bank = _four_hot(rng, 2000)
    queries = _four_hot(rng, 300)
    expected_sims = (queries @ bank.T) / 4.0  # exact: 0, 1/4, 1/2, 3/4 or 1
    for backend in ("faiss", "brute"):
        sims, idx = knn_neighbors(bank, queries, 30, backend=backend, chunk_size=64)
        for qi in range(len(queries)):
            order = np.lexsort((np.arange(len(bank)), -expected_sims[qi]))[:30]
            np.testing.assert_array_equal(idx[qi], order)
            np.testing.assert_array_equal(sims[qi], expected_sims[qi, order].astype(np.float32))


def test_predictions_match_independent_reference_with_ties():
    rng = np.random.default_rng(1)
    bank = _four_hot(rng, 600)
    queries = _four_hot(rng, 80)
    y = rng.integers(0, 5, 600)
    for backend in ("faiss", "brute"):
        res = knn_accuracy(bank, y, queries, np.zeros(80, int), k=(10, 40), temperature=0.1,
                           num_classes=5, backend=backend)
        for k in (10, 40):
            ref = _reference_knn(bank, y, queries, k, 0.1, 5)
            np.testing.assert_array_equal(res[k].predictions[:, 0], ref)


def test_matches_scikit_learn_weighted_cosine_knn():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(2)
    bank = rng.normal(size=(2000, 16)).astype(np.float32)
    queries = rng.normal(size=(300, 16)).astype(np.float32)
    y = rng.integers(0, 10, 2000)
    t = 0.07
    clf = KNeighborsClassifier(
        n_neighbors=20, metric="cosine", algorithm="brute",
        weights=lambda d: np.exp((1 - d) / t),
    ).fit(bank, y)
    ours = knn_accuracy(bank, y, queries, np.zeros(300, int), k=20, temperature=t)
    np.testing.assert_array_equal(ours[20].predictions[:, 0], clf.predict(queries))


def test_separated_clusters_give_full_accuracy_and_shuffled_labels_chance():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(10, 32)) * 10
    y = rng.integers(0, 10, 3000)
    x = centers[y] + rng.normal(size=(3000, 32))
    res = knn_accuracy(x[:2000], y[:2000], x[2000:], y[2000:])
    assert res[20].top1 == 1.0 and res[200].top1 == 1.0
    shuffled = rng.permutation(y[:2000])
    res = knn_accuracy(x[:2000], shuffled, x[2000:], y[2000:])
    for r in res.values():
        assert abs(r.top1 - 0.1) < 0.05  # 1000 test points: sd of chance accuracy ~0.01
        assert abs(r.top5 - 0.5) < 0.08


def test_top5_counts_the_true_class_among_the_five_best_votes():
    bank = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, 0], [0, -1]], dtype=np.float32)
    y = np.array([0, 0, 1, 1, 2, 3])
    res = knn_accuracy(bank, y, np.array([[1, 0.05]]), np.array([3]), k=6, backend="brute")
    assert res[6].top1 == 0.0 and res[6].top5 == 1.0
    assert res[6].predictions[0, 0] == 0


def test_result_does_not_depend_on_chunk_size():
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(500, 8))
    q = rng.normal(size=(123, 8))
    y = rng.integers(0, 3, 500)
    a = knn_accuracy(bank, y, q, np.zeros(123, int), k=15, chunk_size=1)
    b = knn_accuracy(bank, y, q, np.zeros(123, int), k=15, chunk_size=1000)
    np.testing.assert_array_equal(a[15].predictions, b[15].predictions)


def test_k_larger_than_bank_is_clamped_with_a_warning():
    rng = np.random.default_rng(5)
    bank = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, 30)
    with pytest.warns(RuntimeWarning, match="larger than the bank"):
        res = knn_accuracy(bank, y, bank[:5], y[:5], k=(10, 100))
    assert sorted(res) == [10, 30]
    with pytest.warns(RuntimeWarning, match="using k=30"):
        sims, idx = knn_neighbors(bank, bank[:2], 50)
    assert idx.shape == (2, 30) and sorted(idx[0]) == list(range(30))


def test_bad_input_is_rejected_clearly():
    x = np.ones((10, 3))
    y = np.zeros(10, int)
    with pytest.raises(ValueError, match="9 entries but the features have 10 rows"):
        knn_accuracy(x, y[:9], x, y)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        knn_accuracy(bad, y, x, y)
    with pytest.raises(ValueError, match="NaN"):
        knn_neighbors(x, bad, 3)
    with pytest.raises(ValueError, match="same model"):
        knn_accuracy(x, y, np.ones((4, 2)), y[:4])
    with pytest.raises(ValueError, match="temperature"):
        knn_accuracy(x, y, x, y, k=3, temperature=0)
    with pytest.raises(ValueError, match="positive integer"):
        knn_accuracy(x, y, x, y, k=0)
    with pytest.raises(ValueError, match="unknown kNN backend"):
        knn_accuracy(x, y, x, y, k=3, backend="annoy")
    with pytest.raises(ValueError, match="2-D"):
        knn_neighbors(np.ones(5), x, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="num_classes"):
            knn_accuracy(x, np.arange(10), x, y, k=3, num_classes=5)


def test_large_label_values_are_remapped_not_allocated():
    # labels {0, 1, 2, 10**6} once made a (queries x 10**6) vote matrix; 1e12 raised MemoryError
    import tracemalloc

    rng = np.random.default_rng(6)
    centers = 10 * np.eye(4)
    cls = rng.integers(0, 4, 400)
    x = centers[cls] + rng.normal(size=(400, 4))
    small = knn_accuracy(x[:200], cls[:200], x[200:], cls[200:], k=5, backend="brute")[5]
    for top in (10**6, 10**12):
        values = np.array([0, 1, 2, top])
        tracemalloc.start()
        res = knn_accuracy(x[:200], values[cls[:200]], x[200:], values[cls[200:]], k=5,
                           backend="brute")[5]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 20e6, peak  # the vote matrix is 200 x 4, whatever the label values
        assert res.top1 == small.top1 and res.top5 == small.top5
        # predictions are the labels themselves, ranked as with the labels 0..3
        np.testing.assert_array_equal(res.predictions, values[small.predictions])


def test_gaps_in_the_labels_keep_the_zero_vote_ranking_of_all_classes():
    # Classes without a vote fill the top-5 by increasing label. By default the classes are the
    # labels that occur (a label that occurs nowhere cannot be right); num_classes declares
    # 0..num_classes-1 as classes, and the absent ones then count, as in a dense vote matrix.
    bank = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([7, 9])
    res = knn_accuracy(bank, y, bank[:1], y[:1], k=1, backend="brute")[1]
    assert res.predictions.tolist() == [[7, 9]]
    res = knn_accuracy(bank, y, bank[:1], y[:1], k=1, num_classes=12, backend="brute")[1]
    assert res.predictions.tolist() == [[7, 0, 1, 2, 3]]


def test_tiny_temperature_votes_like_the_nearest_neighbour():
    # exp(s / T) overflowed to inf for every neighbour at T = 1e-3 and the lowest class won
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(6, 8)) * 3
    y = rng.integers(0, 6, 1500)
    x = centers[y] + rng.normal(size=(1500, 8))
    nearest = knn_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], k=1, backend="brute")[1]
    for t in (1e-3, 1e-6):
        res = knn_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], k=20, temperature=t,
                           backend="brute")[20]
        np.testing.assert_array_equal(res.predictions[:, 0], nearest.predictions[:, 0])
    # and at a moderate temperature the votes equal an independent log-sum-exp reference
    ref = _reference_knn(x[:1000], y[:1000], x[1000:1100], 20, 0.01, 6)
    res = knn_accuracy(x[:1000], y[:1000], x[1000:1100], y[1000:1100], k=20, temperature=0.01,
                       backend="brute")[20]
    np.testing.assert_array_equal(res.predictions[:, 0], ref)


@pytest.mark.parametrize("backend", ["faiss", "brute"])
def test_features_beyond_float32_range_keep_their_directions(backend):
    # |x| ~ 1e20 overflowed the float32 norm and zeroed every row (top-1 0.24 instead of 1);
    # finite float64 features above float32's range were called "infinite"
    rng = np.random.default_rng(8)
    centers = 10 * np.eye(4)
    y = rng.integers(0, 4, 400)
    x = centers[y] + rng.normal(size=(400, 4))
    ref = knn_accuracy(x[:300], y[:300], x[300:], y[300:], k=10, backend=backend)[10]
    assert ref.top1 == 1.0
    for scale in (1e20, 1e40, 1e300, 1e-30, 1e-300):
        big = x * scale
        res = knn_accuracy(big[:300], y[:300], big[300:], y[300:], k=10, backend=backend)[10]
        np.testing.assert_array_equal(res.predictions, ref.predictions)
    np.testing.assert_allclose(l2_normalize(x * 1e300), l2_normalize(x), rtol=1e-6)
    s1, i1 = knn_neighbors(x * 1e40, x[:5] * 1e-40, 3, backend=backend)
    s2, i2 = knn_neighbors(x, x[:5], 3, backend=backend)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-6)


def test_parameter_errors_name_the_parameter():
    x = np.eye(3)[np.arange(12) % 3] + 0.1
    y = np.arange(12) % 3
    with pytest.raises(ValueError, match=r"k must be a positive integer.*2\.5"):
        knn_accuracy(x, y, x, y, k=2.5)
    with pytest.raises(ValueError, match=r"k must be a positive integer.*2\.5"):
        knn_accuracy(x, y, x, y, k=(1, 2.5))
    with pytest.raises(ValueError, match=r"k must be a positive integer.*2\.5"):
        knn_neighbors(x, x, 2.5)
    with pytest.raises(TypeError, match="temperature must be a real number.*'0.1'"):
        knn_accuracy(x, y, x, y, k=3, temperature="0.1")
    with pytest.raises(ValueError, match="temperature must be.*inf"):
        knn_accuracy(x, y, x, y, k=3, temperature=float("inf"))
    with pytest.raises(ValueError, match=r"num_classes must be a positive integer.*4\.5"):
        knn_accuracy(x, y, x, y, k=3, num_classes=4.5)
    with pytest.raises(ValueError, match="num_classes must be a positive integer.*True"):
        knn_accuracy(x, y, x, y, k=3, num_classes=True)


def test_k_and_labels_may_be_numpy_values():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, 60)
    a = knn_accuracy(x, y, x, y, k=np.array([3, 5]), backend="brute")
    b = knn_accuracy(x, y, x, y, k=[3, 5], backend="brute")
    assert a[3].top1 == b[3].top1 and a[5].top1 == b[5].top1
