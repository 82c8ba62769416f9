"""SwAV (Caron et al., NeurIPS 2020): projection head, prototypes, queue, multi-crop."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from adapters.augment import DatasetInfo, MultiView, augmented_view, check_size
from adapters.methods.base import (
    MethodAdapter,
    MethodDefaults,
    MethodOutput,
    OfficialLayout,
    load_exact,
)
from entropylib.criteria import SwAVLoss
from entropylib.validation import is_integer

#: SwAV's local-crop size relative to the global crop (96 / 224 in Caron et al. 2020)
SWAV_LOCAL_RATIO = 96 / 224


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear (2048-2048-128); indices 0, 1, 3 as ``module.projection_head.*``."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class SwAV(MethodAdapter):
    """SwAV adapter: 2 global + N local crops, prototypes, Sinkhorn codes, optional queue.

    E2MC sees the projection-head output BEFORE L2 normalisation, for the two global crops
    only, with the normal-CDF transform, ent_coeff 10, cov_coeff 1 (docs/method.md).
    The prototypes (a bias-free Linear ``out_dim -> n_prototypes``) are renormalised to unit
    rows before every step, and with ``freeze_prototypes_steps = N`` they are not updated in
    the first N steps (their gradient is dropped, as the reference does for its first 313
    iterations when pretraining from scratch; 0, the default here, suits continued training).
    With ``queue_length > 0`` the last ``queue_length`` global-crop embeddings per assigned
    crop are queued, as in the reference split over the processes: each of ``world`` keeps
    ``queue_length // world`` rows of its own (see :meth:`set_world_size`); once full, their
    scores join the Sinkhorn-Knopp input. The queue is per-process state
    (:meth:`process_state`), not part of the state dict. Crops of one resolution go
    through the backbone together, so BatchNorm sees them as one batch, as in the reference.
    Optimizer: LARS with LARC clipping (the reference's SGD + apex LARC), weight decay 1e-6,
    base lr 0.3 per 256 images (4.8 at batch 4096).

    Examples
    --------
    >>> import torch
    >>> from adapters.backbones import build_backbone
    >>> net = build_backbone("small_cnn", in_channels=1)
    >>> heads = SwAV(net.feature_dim, out_dim=16, n_prototypes=10)
    >>> crops = [torch.randn(8, 1, 28, 28)] * 2 + [torch.randn(8, 1, 12, 12)] * 2
    >>> [tuple(e.shape) for e in heads(net, crops).embeddings]
    [(8, 16), (8, 16)]
    """

    name = "swav"
    defaults = MethodDefaults(
        optimizer="lars",
        base_lr=0.3,
        weight_decay=1e-6,
        clip=True,
        head_options={
            "hidden_dim": None,
            "out_dim": 128,
            "n_prototypes": 3000,
            "temperature": 0.1,
            "epsilon": 0.05,
            "sinkhorn_iterations": 3,
            "queue_length": 0,
            "freeze_prototypes_steps": 0,
        },
    )
    official_layouts = {
        # swav_*ep_pretrain.pth.tar: a bare state dict; prototypes an nn.Linear without bias
        "swav": OfficialLayout("module.", {
            "projection_head": ("module.projection_head.",
                                ((0, "linear"), (1, "bn"), (3, "linear"))),
            "prototypes": ("module.prototypes.", ((None, "linear_nobias"),))}),
    }
    embedding_head = "projection_head"

    def __init__(self, feature_dim: int, **options) -> None:
        super().__init__()
        opts = self.head_options(options)
        out_dim = int(opts["out_dim"])
        self.projection_head = projection_head(
            feature_dim, int(opts["hidden_dim"] or feature_dim), out_dim
        )
        self.prototypes = nn.Linear(out_dim, int(opts["n_prototypes"]), bias=False)
        self.loss = SwAVLoss(
            temperature=opts["temperature"], epsilon=opts["epsilon"],
            sinkhorn_iterations=opts["sinkhorn_iterations"],
        )
        self.freeze_prototypes_steps = int(opts["freeze_prototypes_steps"])
        self.queue_length = int(opts["queue_length"])
        self.queue: torch.Tensor | None
        self.register_buffer("queue", None, persistent=False)
        #: embeddings pushed into the queue so far, counted on the host: whether the queue is
        #: full is then known without reading the device
        self.queue_count = 0
        self.set_world_size(1)

    def set_world_size(self, world: int) -> None:
        """Size this process's queue for a run of ``world`` processes: ``queue_length // world``
        rows (the reference's split of the global queue), empty."""
        if not self.queue_length:
            return
        rows = self.queue_length // world
        if rows == 0:
            raise ValueError(f"queue_length {self.queue_length} is shorter than the number of "
                             f"processes ({world}): each process keeps queue_length // {world} "
                             "rows of the queue")
        device = self.prototypes.weight.device
        self.queue = torch.zeros(2, rows, self.prototypes.in_features, device=device)
        self.queue_count = 0

    def process_state(self) -> dict[str, torch.Tensor]:
        """This process's queue and the number of embeddings pushed into it."""
        if self.queue is None:
            return {}
        return {"queue": self.queue, "queue_count": torch.tensor(self.queue_count)}

    @torch.no_grad()
    def load_process_state(self, state: Mapping[str, torch.Tensor]) -> None:
        if self.queue is None:
            return
        if state["queue"].shape != self.queue.shape:
            raise ValueError(f"the saved SwAV queue is {tuple(state['queue'].shape)}, this "
                             f"process's is {tuple(self.queue.shape)}")
        self.queue.copy_(state["queue"])
        self.queue_count = int(state["queue_count"])

    @torch.no_grad()
    def before_step(self) -> None:
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def after_backward(self, step: int) -> None:
        if step < self.freeze_prototypes_steps:
            self.prototypes.weight.grad = None  # the optimizer skips a parameter without grad

    def forward(self, backbone: nn.Module, views: list[torch.Tensor]) -> MethodOutput:
        if len(views) < 2:
            raise ValueError(f"SwAV takes 2 global crops (+ local crops), got {len(views)} views")
        n = views[0].shape[0]
        features, start = [], 0
        while start < len(views):
            stop = start + 1
            while stop < len(views) and views[stop].shape[-2:] == views[start].shape[-2:]:
                stop += 1
            features.append(backbone(torch.cat(views[start:stop])))
            start = stop
        h = self.projection_head(torch.cat(features))
        scores = self.prototypes(F.normalize(h, dim=1))
        crop_scores = list(scores.split(n))
        queue_scores = None
        if self.queue is not None:
            if self.queue_count >= self.queue.shape[1]:
                queue_scores = [q @ self.prototypes.weight.T for q in self.queue]
            self._push(F.normalize(h[: 2 * n], dim=1).detach().view(2, n, -1))
        loss, parts = self.loss(*crop_scores, queue_scores=queue_scores)
        return MethodOutput(loss, parts, [h[:n], h[n : 2 * n]])

    @torch.no_grad()
    def _push(self, embeddings: torch.Tensor) -> None:
        n = embeddings.shape[1]
        length = self.queue.shape[1]
        keep = max(length - n, 0)
        self.queue[:, n:] = self.queue[:, :keep].clone()
        self.queue[:, : min(n, length)] = embeddings[:, :length].to(self.queue.dtype)
        self.queue_count += n

    @classmethod
    def views(cls, info: DatasetInfo, *, size: int | None = None, n_local_crops: int = 6,
              local_size: int | None = None) -> MultiView:
        """Caron et al. 2020, sizes for 224 px scaled by ``size / 224``: 2 global crops of
        ``size``, scale (0.14, 1), then ``n_local_crops`` local crops of ``local_size``
        (default ``round(size * 96 / 224)``), scale (0.05, 0.14); flip; jitter
        (0.8, 0.8, 0.8, 0.2) p=0.8; grayscale p=0.2; blur p=0.5 (local crops share the global
        crops' sigma range, as in the reference)."""
        size = info.image_size if size is None else check_size("size", size)
        if not is_integer(n_local_crops) or n_local_crops < 0:
            raise ValueError(f"n_local_crops must be a non-negative int, got {n_local_crops!r}")
        if local_size is None:
            local_size = max(round(size * SWAV_LOCAL_RATIO), 1)
        else:
            local_size = check_size("local_size", local_size)
        jitter = (0.8, 0.8, 0.8, 0.2)
        global_view = augmented_view(info, size, (0.14, 1.0), jitter, blur_p=0.5,
                                     blur_size=size)
        local_view = augmented_view(info, local_size, (0.05, 0.14), jitter, blur_p=0.5,
                                    blur_size=size)
        return MultiView([global_view, global_view] + [local_view] * n_local_crops)

    @classmethod
    def options_from_official(cls, heads):
        head = heads["projection_head"]
        return {"hidden_dim": head["0.weight"].shape[0], "out_dim": head["3.weight"].shape[0],
                "n_prototypes": heads["prototypes"]["weight"].shape[0]}

    def load_official_heads(self, heads: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        load_exact(self.projection_head, heads["projection_head"], "SwAV projection head")
        load_exact(self.prototypes, heads["prototypes"], "SwAV prototypes")
