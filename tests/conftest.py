"""Shared test settings: hypothesis profiles sized for a 2-core CI machine, and the
``requires_fashion_mnist`` marker for tests that read the real Fashion-MNIST."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a ``@pytest.mark.requires_fashion_mnist`` test, with the reason, when the data is
    not installed where ``adapters.data.fashion_mnist_root()`` looks."""
    if item.get_closest_marker("requires_fashion_mnist") is None:
        return
    # imported here: adapters loads torch, which the estimator-only tests do not need
    from adapters.data import FASHION_MNIST_ENV, fashion_mnist_available, fashion_mnist_root

    if not fashion_mnist_available():
        pytest.skip(
            f"Fashion-MNIST not installed in {fashion_mnist_root()} (install Debian's "
            f"dataset-fashion-mnist or set {FASHION_MNIST_ENV} to its folder)"
        )
