"""SwAVLoss and Sinkhorn-Knopp against a numpy reference of the official algorithm."""

import numpy as np
import pytest
import torch

from entropylib.criteria import SwAVLoss
from entropylib.criteria.swav_loss import sinkhorn_knopp


def reference_sinkhorn(scores, eps=0.05, iters=3):
    """The official layout: Q is K x B, rows are prototypes, columns are samples."""
    q = np.exp(scores / eps).T
    k, b = q.shape
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= b
    return (q * b).T


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def reference_swav(scores, queues=None, temperature=0.1, assign=(0, 1)):
    bs = scores[0].shape[0]
    total = 0.0
    for j, a in enumerate(assign):
        out = scores[a] if queues is None else np.concatenate([queues[j], scores[a]])
        q = reference_sinkhorn(out)[-bs:]
        sub = 0.0
        for v in range(len(scores)):
            if v != a:
                sub -= np.mean(np.sum(q * log_softmax(scores[v] / temperature), axis=1))
        total += sub / (len(scores) - 1)
    return total / len(assign)


def random_scores(rng, n_crops, b=16, k=12, dim=8):
    protos = rng.normal(size=(k, dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    out = []
    for _ in range(n_crops):
        z = rng.normal(size=(b, dim))
        out.append(z / np.linalg.norm(z, axis=1, keepdims=True) @ protos.T)
    return out, protos


def test_sinkhorn_matches_reference_and_marginals():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(40, 7)) * 0.5
    q = sinkhorn_knopp(torch.from_numpy(s))
    np.testing.assert_allclose(q.numpy(), reference_sinkhorn(s), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(q.sum(dim=1).numpy(), 1.0, rtol=1e-12)
    # with many iterations the prototypes are used equally: column sums B / K
    q_many = sinkhorn_knopp(torch.from_numpy(s), iterations=200)
    np.testing.assert_allclose(q_many.sum(dim=0).numpy(), 40 / 7, rtol=1e-6)


@pytest.mark.parametrize(("n_crops", "assign"), [(2, (0, 1)), (5, (0, 1)), (4, (1,))])
def test_loss_matches_reference(n_crops, assign):
    rng = np.random.default_rng(n_crops)
    scores, _ = random_scores(rng, n_crops)
    loss, parts = SwAVLoss(crops_for_assign=assign)(*[torch.from_numpy(s) for s in scores])
    assert loss.item() == pytest.approx(reference_swav(scores, assign=assign), rel=1e-10)
    assert parts["per_assignment"].shape == (len(assign),)


def test_loss_with_queue_matches_reference():
    rng = np.random.default_rng(5)
    scores, protos = random_scores(rng, 4)
    queues = []
    for _ in range(2):
        e = rng.normal(size=(24, protos.shape[1]))
        queues.append(e / np.linalg.norm(e, axis=1, keepdims=True) @ protos.T)
    loss, _ = SwAVLoss()(
        *[torch.from_numpy(s) for s in scores], queue_scores=[torch.from_numpy(q) for q in queues]
    )
    assert loss.item() == pytest.approx(reference_swav(scores, queues), rel=1e-10)
    assert loss.item() != pytest.approx(reference_swav(scores), rel=1e-6)


def test_codes_carry_no_gradient():
    rng = np.random.default_rng(1)
    scores = [torch.from_numpy(s).requires_grad_() for s in random_scores(rng, 2)[0]]
    loss, _ = SwAVLoss()(*scores)
    loss.backward()
    # with codes detached, d loss / d s_v = (softmax(s_v / T) - q_a) / (T B) for the other crop
    q = torch.from_numpy(reference_sinkhorn(scores[1].detach().numpy()))
    p = torch.softmax(scores[0].detach() / 0.1, dim=1)
    expected = (p - q) / (0.1 * 16) / 2
    torch.testing.assert_close(scores[0].grad, expected, rtol=1e-10, atol=1e-12)


def test_fp16_scores_under_autocast():
    rng = np.random.default_rng(2)
    scores = [torch.from_numpy(s).float() for s in random_scores(rng, 3)[0]]
    expected, _ = SwAVLoss()(*scores)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = SwAVLoss()(*[s.half() for s in scores])
    assert loss.dtype == torch.float32
    assert abs(loss.item() - expected.item()) < 1e-2  # fp16 rounding of scores / 0.1


def test_errors():
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        SwAVLoss(temperature=0)
    with pytest.raises(ValueError, match="sinkhorn_iterations must be a positive integer"):
        SwAVLoss(sinkhorn_iterations=0)
    with pytest.raises(ValueError, match="crops_for_assign"):
        SwAVLoss(crops_for_assign=())
    with pytest.raises(ValueError, match="repeated"):
        SwAVLoss(crops_for_assign=(0, 0))
    with pytest.raises(ValueError, match="at least 2 view"):
        SwAVLoss()(torch.randn(4, 3))
    with pytest.raises(ValueError, match="needs at least 3 crops"):
        SwAVLoss(crops_for_assign=(0, 2))(torch.randn(4, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match="same shape"):
        SwAVLoss()(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="one \\(L, K\\) tensor per assigned crop"):
        SwAVLoss()(torch.randn(4, 3), torch.randn(4, 3), queue_scores=[torch.randn(6, 3)])
    with pytest.raises(ValueError, match=r"queue_scores\[1\] must be \(L, 3\)"):
        SwAVLoss()(
            torch.randn(4, 3),
            torch.randn(4, 3),
            queue_scores=[torch.randn(6, 3), torch.randn(6, 2)],
        )
