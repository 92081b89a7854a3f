"""scripts/tensorboard_screenshots.py: a run's dashboard as a user's browser draws it."""

import numpy as np
import pytest
from PIL import Image

from dlnlab.events import EventFile
from scripts import tensorboard_screenshots as shots

RUN_COLOUR = (255, 112, 67)  # the Scalars dashboard's line for the first run (#ff7043)


def test_url_puts_each_filter_where_its_dashboard_reads_it():
    base = "http://127.0.0.1:1"
    assert (shots.dashboard_url(base, "timeseries", "^train/loss$", "alpha=1e-10", 0.0)
            == f"{base}/?forceSVG=true&tagFilter=%5Etrain%2Floss%24&runFilter=alpha%3D1e-10"
               "&smoothing=0.0#timeseries")
    # no raw '&' or '=' in the hash: the older dashboards split it on them
    assert (shots.dashboard_url(base, "scalars", "a&b", "c=d", None)
            == f"{base}/?forceSVG=true#scalars&tagFilter=a%26b&regexInput=c%3Dd")
    assert shots.dashboard_url(base, "text", None, None, None) == f"{base}/?forceSVG=true#text"


def test_without_chromium_it_says_how_to_install_it_and_makes_nothing(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("CHROMIUM", "no-such-browser")
    assert shots.main([str(tmp_path), "--out", str(tmp_path / "png")]) == 0
    assert capsys.readouterr().out == shots.INSTALL + "\n"
    assert "apt-get install -y chromium" in shots.INSTALL
    assert not (tmp_path / "png").exists()


@pytest.mark.skipif(shots.find_chromium() is None,
                    reason="chromium is not installed (apt-get install -y chromium)")
def test_scalars_dashboard_is_drawn(tmp_path):
    """A run written as dlnlab writes it, in an 800 × 600 screenshot: its loss curve is drawn."""
    events = EventFile(tmp_path / "run" / "tb" / "run")
    steps = np.arange(0, 2000, 10)
    loss = np.where(steps < 800, 0.7, np.where(steps < 1400, 0.2, 0.05))  # two jumps
    events.scalars(steps, ("loss", "beta/0"), np.column_stack([loss, 1 - loss]))
    events.close()

    (png,) = shots.shoot(tmp_path / "run", tmp_path / "png", ["scalars"], width=800, height=600,
                         timeout=20)
    assert png == tmp_path / "png" / "scalars.png"
    image = Image.open(png).convert("RGB")
    assert image.size == (800, 600)
    pixels = np.asarray(image).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 100  # text, grid, widgets: not a blank or loading page
    assert (pixels.min(axis=1) < 200).mean() > 0.05
    # The curves, right of the sidebar and below the header: no spinner is this colour.
    charts = np.asarray(image)[100:, 300:]
    assert (np.abs(charts.astype(int) - RUN_COLOUR).max(axis=2) < 20).sum() > 200
