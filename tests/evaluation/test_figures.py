"""Class colours: the ten tab10 colours, cycling after ten classes."""

import numpy as np
from matplotlib import colors

from evaluation.figures import class_colors


def test_ten_classes_get_the_ten_tab10_colours_then_cycle():
    tab10 = [colors.to_rgba(f"tab:{name}") for name in (
        "blue", "orange", "green", "red", "purple", "brown", "pink", "gray", "olive", "cyan")]
    got = [tuple(c) for c in class_colors(np.arange(12))]
    np.testing.assert_allclose(got[:10], tab10, atol=1e-6)
    assert got[10:] == got[:2]  # class 10 is coloured as class 0, 11 as 1
