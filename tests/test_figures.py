"""The workflow's figures draw without pyplot."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from oncobench import figures


def test_trajectories_by_treatment_draws_one_panel_per_regimen():
    days = np.arange(30)
    vols = {"none": np.exp(np.linspace(0, 3, 60)).reshape(2, 30), "chemo": np.zeros((2, 30))}
    fig = figures.plot_trajectories_by_treatment(days, vols)
    assert isinstance(fig, Figure) and len([a for a in fig.axes if a.get_visible()]) == 2
    fig.canvas.draw()
