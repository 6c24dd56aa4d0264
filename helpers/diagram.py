"""The pipeline in one picture: what runs once per clip, and what runs once per denoising step.

Notebook 00 draws it; 06 and 08 point back to it; 09 writes its measured share of each stage on it. It is drawn
with matplotlib here, so that it shows the stages :mod:`helpers.stages` times, under the same names
(:data:`helpers.stages.STAGES`), and nothing else has to be kept in step with the code.
"""

from __future__ import annotations

from collections.abc import Mapping

from helpers.stages import STAGES

WIDTH, HEIGHT = 120, 58  # the canvas, in the picture's own units
# Each stage's box: (x, y, width, height) on the canvas, and what it does, under its name.
BOXES = {
    "CLAP text encoder": ((18, 36, 20, 10), "one vector\nfor the whole text"),
    "T5 text encoder": ((18, 23, 20, 10), "Flan-T5: one vector\nper token"),
    "projection": ((42, 36, 18, 10), "joins the two"),
    "GPT-2": ((42, 20, 18, 11), "8 new vectors,\none call each"),
    "UNet": ((67, 25, 22, 21), ""),
    "VAE decoder": ((96, 6, 21, 10), "latent -> mel\nspectrogram"),
    "vocoder": ((96, 21, 21, 10), "mel spectrogram\n-> waveform"),
}
REGIONS = [  # (x, width, colour, heading)
    (16, 46, "#e6effa", "once per clip: the prompt,\nthen again the negative prompt"),
    (64, 28, "#fcebd9", "once per denoising step\n(200 with DDIM, 20 with DPM-Solver++)"),
    (94, 25, "#e4f3e4", "once per clip:\ndecode"),
]
PLAIN, INPUT = "#ffffff", "#f0f0f0"
NAME_SIZE, DETAIL_SIZE = 10, 8.5


def _as_fractions(shares) -> tuple[dict[str, float], float | None]:
    """{stage: fraction of one generation}, and that generation's seconds where ``shares`` gave seconds.

    ``shares``: a :class:`helpers.stages.StageTimes`, or {stage: seconds or fraction}. Seconds are divided by the
    generation's total: a StageTimes knows it; for a mapping it is the sum of the values (add "everything else").
    """
    if hasattr(shares, "seconds") and hasattr(shares, "total_s"):  # a StageTimes
        return {stage: seconds / shares.total_s for stage, seconds in shares.seconds.items()}, shares.total_s
    shares = dict(shares)
    unknown = sorted(set(shares) - set(STAGES) - {"everything else"})
    if unknown:
        raise ValueError(f"Unknown stages {unknown}: the picture's stages are {list(STAGES)} "
                         "(helpers.stages.STAGES), and 'everything else'.")
    total = sum(shares.values())
    if total <= 1.0 + 1e-9:  # fractions already
        return shares, None
    return {stage: value / total for stage, value in shares.items()}, total


def plot_pipeline(shares: Mapping[str, float] | object | None = None, ax=None, title: str | None = None):
    """Draw AudioLDM 2's pipeline: the prompt's encoders and GPT-2 once per clip, the UNet once per step on a batch
    of 2 (classifier-free guidance), then the VAE decoder and the vocoder once per clip. Returns the axes.

    ``shares``: where one generation's time went, written on each stage's box and shaded by it: a
    :class:`helpers.stages.StageTimes` (what ``h.measure(..., split_stages=True).stages`` holds), or {stage: seconds
    or fraction} with the names of :data:`helpers.stages.STAGES`.
    """
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    fractions, total_s = _as_fractions(shares) if shares is not None else ({}, None)
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 5.8))
    ax.set(xlim=(0, WIDTH), ylim=(0, HEIGHT), aspect="equal")
    ax.axis("off")
    shade = matplotlib.colormaps["Oranges"]

    def text(x, y, words, size=DETAIL_SIZE, **kwargs):
        ax.text(x, y, words, fontsize=size, **{"ha": "center", "va": "center", **kwargs})

    def rounded(x, y, w, h, face):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=1", facecolor=face,
                                    edgecolor="#333333", linewidth=1.2))

    def path(*points, head=True):
        """A line through ``points`` at right angles, with an arrow head at the last one."""
        xs, ys = zip(*points)
        if len(points) > 2:
            ax.plot(xs[:-1], ys[:-1], color="#555555", linewidth=1.2, solid_capstyle="butt")
        ax.add_patch(FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>" if head else "-", mutation_scale=12,
                                     color="#555555", linewidth=1.2, shrinkA=0, shrinkB=0))

    def share_line(stage):
        if stage not in fractions:
            return ""
        seconds = f"{fractions[stage] * total_s:.2f} s, " if total_s else ""
        return f"{seconds}{fractions[stage]:.0%}"

    def face(stage):
        return shade(0.08 + 0.6 * min(max(fractions[stage], 0.0), 1.0)) if stage in fractions else PLAIN

    def stage_box(stage):
        (x, y, w, h), detail = BOXES[stage]
        rounded(x, y, w, h, face(stage))
        lines = [(stage, NAME_SIZE, "bold"), (detail, DETAIL_SIZE, "normal"), (share_line(stage), NAME_SIZE, "bold")]
        lines = [line for line in lines if line[0]]
        heights = [line[0].count("\n") + 1 for line in lines]
        step = h / (sum(heights) + 1)
        top = y + h - step
        for (words, size, weight), count in zip(lines, heights):
            text(x + w / 2, top - step * (count - 1) / 2, words, size=size, fontweight=weight)
            top -= step * count

    for x, w, colour, heading in REGIONS:
        ax.add_patch(Rectangle((x, 1), w, 48.5, facecolor=colour, edgecolor="none"))
        text(x + w / 2, 53.5, heading, size=9.5, fontstyle="italic")

    # The inputs: both texts go through both encoders; the noise is the first latent.
    for y, words in ((41, "prompt"), (28, "negative\nprompt"), (5.5, "seeded\nnoise")):
        rounded(1, y - 3.5, 12, 7, INPUT)
        text(7, y, words, size=NAME_SIZE - 0.5)
    path((13, 41), (15.5, 41), head=False)
    path((13, 28), (15.5, 28), (15.5, 41), head=False)
    path((15.5, 41), (18, 41))
    path((15.5, 28), (18, 28))

    # Once per clip: the encoders, the projection, GPT-2.
    for stage in ("CLAP text encoder", "T5 text encoder", "projection", "GPT-2"):
        stage_box(stage)
    path((38, 41), (42, 41))  # CLAP -> projection
    path((38, 28), (40, 28), (40, 38.5), (42, 38.5))  # T5 -> projection
    path((51, 36), (51, 31))  # projection -> GPT-2
    path((40, 28), (40, 16), (63.5, 16), (63.5, 27.5), (67, 27.5))  # T5's vectors -> the UNet
    text(51, 15.4, "T5's vectors", size=7.5, va="top")
    path((60, 32), (67, 32))  # GPT-2's vectors -> the UNet
    text(63.5, 33, "GPT-2's\nvectors", size=7.5, va="bottom")

    # Once per step: the UNet on a batch of 2, the scheduler, and back.
    (x, y, w, h), _ = BOXES["UNet"]
    rounded(x, y, w, h, face("UNet"))
    text(x + w / 2, y + h - 2.2, "UNet", size=NAME_SIZE, fontweight="bold")
    if "UNet" in fractions:
        text(x + w / 2, y + h - 5, share_line("UNet"), size=NAME_SIZE, fontweight="bold")
    for row, words in enumerate(("negative prompt", "prompt")):
        row_y = y + 5.4 - 4.2 * row
        ax.add_patch(Rectangle((x + 1.5, row_y), w - 3, 3.6, facecolor="white", edgecolor="#777777", linewidth=0.8))
        text(x + w / 2, row_y + 1.8, words, size=DETAIL_SIZE)
    text(x + w / 2, y + h - (8.8 if "UNet" in fractions else 6.5), "a batch of 2:\nclassifier-free guidance",
         size=DETAIL_SIZE)
    rounded(67, 5, 22, 11, INPUT)
    text(78, 12.8, "scheduler", size=NAME_SIZE, fontweight="bold")
    text(78, 8.2, "u + scale x (c - u),\nthen the next latent", size=DETAIL_SIZE)
    path((72, 25), (72, 16))  # UNet -> scheduler
    text(71, 20.5, "noise\npredictions", size=7.5, ha="right")
    path((84, 16), (84, 25))  # scheduler -> UNet: the next step
    text(85, 20.5, "next\nstep", size=7.5, ha="left")
    path((13, 5.5), (16, 5.5), (16, 2.8), (78, 2.8), (78, 5))  # the noise -> the first latent
    text(40, 3.4, "the first latent", size=7.5, va="bottom")

    # Once per clip: decode the last latent.
    stage_box("VAE decoder")
    stage_box("vocoder")
    path((89, 10.5), (96, 10.5))
    text(92.5, 12, "last\nlatent", size=7.5, va="bottom")
    path((106.5, 16), (106.5, 21))
    rounded(99.5, 36, 14, 6, INPUT)
    text(106.5, 39, "waveform", size=NAME_SIZE - 0.5)
    path((106.5, 31), (106.5, 36))

    notes = []
    if "everything else" in fractions:
        notes.append(f"everything else (scheduler, tokenisers, Python): {share_line('everything else')}")
    elif total_s and hasattr(shares, "other_s"):
        notes.append(f"everything else (scheduler, tokenisers, Python): {shares.other_s:.2f} s, "
                     f"{shares.other_s / total_s:.0%}")
    if total_s:
        notes.append(f"one generation: {total_s:.2f} s")
    if notes:
        ax.text(WIDTH / 2, -0.5, ";   ".join(notes), fontsize=9, ha="center", va="top")
    if title:
        ax.set_title(title)
    return ax
