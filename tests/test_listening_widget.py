"""h.listening.choose: one player switched between many clips, on ipywidgets 8 (here) and 7 (Colab's)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import listening

ROOT = Path(__file__).resolve().parent.parent
CLIPS = {"float32": np.sin(np.arange(1600) / 5) * 0.5, "float16": np.sin(np.arange(1600) / 3) * 0.5,
         "overflowed": np.full(1600, np.nan)}


def test_choose_switches_one_player_between_the_clips():
    box = listening.choose(CLIPS)
    buttons, player = box.children
    assert list(buttons.options) == list(CLIPS) and buttons.value == "float32"
    assert player.value == listening.player_html(CLIPS["float32"])  # the first one waits to be played
    assert "<audio" in player.value and "autoplay" not in player.value
    buttons.value = "float16"  # what a click does
    assert player.value == listening.player_html(CLIPS["float16"], autoplay=True)
    assert "autoplay" in player.value
    buttons.value = "overflowed"
    assert player.value.startswith("<p>Nothing to play: this clip is not finite: 1600 NaN")
    assert [type(child).__name__ for child in box.children] == ["RadioButtons", "HTML"]  # no Output widget


def test_choose_needs_a_clip():
    with pytest.raises(ValueError, match="at least one clip"):
        listening.choose({})


def test_choose_works_with_colabs_ipywidgets_7(tmp_path):
    """ipywidgets 7.7.1 (Colab's, kept by the install cell) put first on the path of a fresh Python."""
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                                str(tmp_path), "ipywidgets==7.7.1", "ipython_genutils==0.2.0"],
                               capture_output=True, text=True)
    if installed.returncode:
        pytest.skip("cannot install ipywidgets 7.7.1 here (no package index?): " + installed.stderr.strip()[-200:])
    check = ("import ipywidgets, numpy as np\n"
             "from helpers.listening import choose, player_html\n"
             "clips = {'a': np.ones(160) * 0.1, 'b': np.ones(160) * 0.2}\n"
             "buttons, player = choose(clips).children\n"
             "buttons.value = 'b'\n"
             "assert player.value == player_html(clips['b'], autoplay=True)\n"
             "print(ipywidgets.__version__)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "7.7.1"
