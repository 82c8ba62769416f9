"""Two-process gloo runs of the criteria against one process on the concatenated batch.

Convention (see entropylib.criteria.distributed): every rank holds the loss of the global batch
and a rank's input receives world_size times the gradient of the global loss, which
DistributedDataParallel's gradient averaging divides out. So for each rank r: the rank
losses average to the single-process loss, and grad_r / world_size equals the single-process
gradient of rank r's rows.
"""

import contextlib
import socket
import zlib

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from entropylib.criteria import (
    E2MC,
    MMCR,
    LogDet,
    SwAVLoss,
    Uniformity,
    VCReg,
    VICRegLoss,
)
from entropylib.criteria.distributed import (
    all_reduce_max,
    all_reduce_sum,
    equal_batches,
    gather_with_grad,
    world_size,
)
from entropylib.criteria.swav_loss import sinkhorn_knopp

WORLD = 2
# (name, criterion factory, number of views, rows of rank 0 and rank 1, columns)
CASES = [
    ("e2mc_sigmoid_uneven", lambda: E2MC(), 2, (40, 24), 6),
    (
        "e2mc_phi",
        lambda: E2MC(transform="gaussian_cdf", ent_coeff=1.0, cov_coeff=25.0),
        2,
        (32, 32),
        5,
    ),
    ("vicreg", lambda: VICRegLoss(), 2, (16, 16), 6),
    ("swav", lambda: SwAVLoss(), 4, (12, 12), 7),
    ("vcreg", lambda: VCReg(), 2, (10, 14), 5),
    ("mmcr", lambda: MMCR(), 3, (9, 9), 4),
    ("uniformity", lambda: Uniformity(t=3.0, align_coeff=1.0), 2, (11, 7), 4),
    ("logdet", lambda: LogDet(), 2, (15, 15), 6),
]


def make_inputs(name, n_views, sizes, d):
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    views = [torch.randn(sum(sizes), d, generator=g, dtype=torch.float64) for _ in range(n_views)]
    if name == "swav":  # cosine scores of normalised embeddings and prototypes
        views = [torch.tanh(v) for v in views]
    return views


def split(x, sizes, rank):
    start = sum(sizes[:rank])
    return x[start : start + sizes[rank]]


def _worker(rank, port, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    torch.set_num_threads(1)
    results = {"world_size": world_size()}
    for name, factory, n_views, sizes, d in CASES:
        views = [
            split(v, sizes, rank).clone().requires_grad_()
            for v in make_inputs(name, n_views, sizes, d)
        ]
        loss, _ = factory()(*views)
        loss.backward()
        results[name] = (loss.detach(), [v.grad for v in views])

    x = torch.arange(2.0 * (3 + rank)).reshape(-1, 2).add(10 * rank).requires_grad_()
    gathered = gather_with_grad(x)
    # rank-dependent weights: the ranks' losses differ, so the backward must sum over ranks
    weights = torch.arange(gathered.numel(), dtype=x.dtype).reshape(gathered.shape) * (1 + rank)
    (gathered * weights).sum().backward()
    results["gather"] = (gathered.detach(), x.grad)
    results["reduce"] = (
        all_reduce_sum(torch.tensor([1.0, rank])),
        all_reduce_max(torch.tensor(rank * 1.0)),
    )
    scores = split(make_inputs("swav", 1, (12, 12), 7)[0], (12, 12), rank)
    results["sinkhorn"] = sinkhorn_knopp(scores)
    results["equal"] = _equal_batches_case(rank, scores)
    torch.save(results, out_dir / f"rank{rank}.pt")
    dist.destroy_process_group()


def _equal_batches_case(rank, scores):
    """The same gather and Sinkhorn-Knopp with and without stating equal batches, and the
    collectives each called (counted by wrapping torch.distributed's functions)."""
    calls = []
    originals = {name: getattr(dist, name) for name in ("all_gather", "all_reduce")}

    def counted(name):
        def call(*args, **kwargs):
            calls.append(name)
            return originals[name](*args, **kwargs)
        return call

    for name in originals:
        setattr(dist, name, counted(name))
    try:
        x = torch.arange(6.0).reshape(3, 2) + 10 * rank
        out = {}
        for stated in (False, True):
            calls.clear()
            with equal_batches() if stated else contextlib.nullcontext():
                gathered = gather_with_grad(x)
                codes = sinkhorn_knopp(scores)
            out[stated] = (gathered, codes, list(calls))
        return out
    finally:
        for name, function in originals.items():
            setattr(dist, name, function)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed")
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), out_dir), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def test_world_size_and_collectives(rank_results):
    assert [r["world_size"] for r in rank_results] == [2, 2]
    for r in rank_results:
        torch.testing.assert_close(r["reduce"][0], torch.tensor([2.0, 1.0]))
        assert r["reduce"][1].item() == 1.0


def test_gather_with_grad_uneven_blocks(rank_results):
    expected = torch.cat([torch.arange(6.0).reshape(3, 2), torch.arange(8.0).reshape(4, 2) + 10])
    weights = torch.arange(expected.numel(), dtype=expected.dtype).reshape(expected.shape)
    for rank, r in enumerate(rank_results):
        torch.testing.assert_close(r["gather"][0], expected)
        # rank s's loss is sum((1 + s) * w * gathered): each input gets (1 + 2) * w of its rows
        rows = slice(0, 3) if rank == 0 else slice(3, 7)
        torch.testing.assert_close(r["gather"][1], 3 * weights[rows])


def test_equal_batches_need_no_size_collective(rank_results):
    """Stating equal batches drops the all_gather of the row counts (one per gathered tensor)
    and the all_reduce of Sinkhorn-Knopp's global batch size; the results are the same."""
    for r in rank_results:
        general, stated = r["equal"][False], r["equal"][True]
        assert torch.equal(general[0], stated[0]) and torch.equal(general[1], stated[1])
        # gather: sizes + blocks; Sinkhorn: batch size, then a max and a sum for each of its
        # log-sum-exps (total mass, 3 x column masses)
        assert general[2] == ["all_gather", "all_gather"] + ["all_reduce"] * 9
        assert stated[2] == ["all_gather"] + ["all_reduce"] * 8


def test_sinkhorn_over_the_global_batch(rank_results):
    scores = make_inputs("swav", 1, (12, 12), 7)[0]
    expected = sinkhorn_knopp(scores)
    got = torch.cat([r["sinkhorn"] for r in rank_results])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "factory", "n_views", "sizes", "d"), CASES, ids=[c[0] for c in CASES]
)
def test_rank_losses_and_gradients_equal_one_process(
    rank_results, name, factory, n_views, sizes, d
):
    views = [v.clone().requires_grad_() for v in make_inputs(name, n_views, sizes, d)]
    loss, _ = factory()(*views)
    loss.backward()
    rank_losses = torch.stack([r[name][0] for r in rank_results])
    torch.testing.assert_close(rank_losses.mean(), loss.detach(), rtol=1e-10, atol=1e-12)
    for rank, r in enumerate(rank_results):
        for v, grad in zip(views, r[name][1], strict=True):
            torch.testing.assert_close(
                grad / WORLD, split(v.grad, sizes, rank), rtol=1e-9, atol=1e-12
            )
