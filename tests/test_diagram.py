"""The pipeline's picture: every stage the course times is on it, under its name, and measured shares are written on it."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.diagram import plot_pipeline  # noqa: E402
from helpers.stages import STAGES, StageTimes  # noqa: E402


def _texts(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


def _all_text(ax) -> str:
    return "\n".join(_texts(ax) + [ax.get_title()])


def test_the_picture_shows_every_stage_the_course_times_and_what_runs_once_per_step():
    ax = plot_pipeline()
    texts = _all_text(ax)
    for stage in STAGES:
        assert stage in texts, f"{stage} is not on the picture"
    for words in ("once per clip", "once per denoising step", "a batch of 2", "negative prompt", "scheduler",
                  "8 new vectors", "prompt"):
        assert words in texts
    assert not any("%" in text for text in _texts(ax)), "no shares without measurements"
    plt.close(ax.figure)


def test_the_labels_stay_inside_the_picture_and_do_not_overlap():
    ax = plot_pipeline(StageTimes(seconds={stage: 1.0 for stage in STAGES}, calls={}, total_s=8.0))
    figure = ax.figure
    renderer = figure.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in ax.texts if text.get_text().strip()]
    frame = ax.get_window_extent(renderer).expanded(1.02, 1.15)  # the notes under the drawing may reach below it
    for words, box in boxes:
        assert frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1), f"{words!r} leaves the picture"
    for index, (words, box) in enumerate(boxes):
        for other_words, other in boxes[index + 1:]:
            assert not box.overlaps(other), f"{words!r} overlaps {other_words!r}"
    plt.close(figure)


def test_measured_shares_are_written_on_the_stages_as_seconds_and_percentages():
    seconds = {"CLAP text encoder": 1.44, "T5 text encoder": 0.51, "projection": 0.0, "GPT-2": 0.86, "UNet": 2.95,
               "VAE decoder": 0.87, "vocoder": 1.45}
    times = StageTimes(seconds=seconds, calls={stage: 1 for stage in seconds}, total_s=8.12, steps=4)
    texts = _all_text(plot_pipeline(times, title="the last rung"))
    assert "2.95 s, 36%" in texts and "1.45 s, 18%" in texts
    assert "one generation: 8.12 s" in texts and "everything else" in texts and "the last rung" in texts
    plt.close("all")


def test_shares_may_be_fractions_or_seconds_and_unknown_stages_are_refused():
    texts = _all_text(plot_pipeline({"UNet": 0.5, "vocoder": 0.25, "everything else": 0.25}))
    assert "50%" in texts and "25%" in texts and " s, " not in texts  # fractions carry no seconds
    texts = _all_text(plot_pipeline({"UNet": 3.0, "vocoder": 1.0}))
    assert "3.00 s, 75%" in texts
    with pytest.raises(ValueError, match="STAGES"):
        plot_pipeline({"the UNet": 1.0})
    plt.close("all")


def test_it_draws_into_the_axes_it_is_given():
    figure, (left, right) = plt.subplots(1, 2)
    assert plot_pipeline(ax=right) is right
    assert right.texts and not left.texts
    plt.close(figure)
