"""Build AudioLDM 2 checkpoints with random weights, laid out exactly like the hub's.

Why: the course must run (and be tested) where the Hugging Face Hub cannot be reached. Two kinds:

* ``tiny``: a few MB, built in seconds, with the real model's time and frequency geometry
  (16 kHz, 64 mel bins, vocoder hop 160, VAE downsampling 4, 8 latent channels), so that
  ``audio_length_in_s=10.24`` gives 163 840 samples, exactly as ``cvssp/audioldm2`` does.
* ``full-size``: the real architecture (``base``, ``large`` or ``music``) from the real configs in
  ``helpers/configs``, with random weights: about 4.2 GB in float32. Its speed and memory are real.

Random weights make noise, not music: a file ``audioldm2_faster.json`` in the folder says so, and
:func:`describe_checkpoint` reads it so that notebooks can label what you hear.

Both are written in the hub's layout: ``model_index.json`` names ``GPT2Model`` as the language model,
as the hub checkpoints do, so the loader meets the same problem a reader meets with the real model.

Command line::

    python -m helpers.checkpoints tiny DIR
    python -m helpers.checkpoints full DIR [--variant base|large|music]
"""

from __future__ import annotations

import argparse
import json
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

RANDOM_MARKER_FILE = "audioldm2_faster.json"
VARIANTS = ("base", "large", "music")
# The real checkpoints' language model is a bare GPT2Model, and their tokenizers are "fast" ones.
HUB_CLASS_MAP = json.loads(resources.files("helpers.configs").joinpath("model_index.json").read_text())

# Words of the prompts this course uses, so that the home-made T5 tokenizer splits them into
# whole words, as the real one does, rather than into letters. Its size sets the tiny T5's embedding, so the
# random weights drawn after it: change a word for a word, or the tiny checkpoint's weights (and sound) change.
COMMON_WORDS = (
    "a an the and with of in on at to for from by is are low high quality average music The Brazilian "
    "samba gently crashing background hammer hitting wooden surface dog barking rain piano jazz "
    "drums bass guitar birds singing water running sound noise car engine people talking loud soft "
    "calm fast slow electronic orchestra violin beat synth voice wind thunder ocean waves"
).split()


def _config(name: str) -> dict:
    """One of the real checkpoints' component configs shipped in ``helpers/configs``."""
    return json.loads(resources.files("helpers.configs").joinpath(name).read_text())


# --------------------------------------------------------------------------------------------
# Tokenizers, built in code: no tokenizer file can be downloaded here.
# --------------------------------------------------------------------------------------------
def build_clap_tokenizer(model_max_length: int = 512):
    """A byte-level BPE tokenizer with no merges: every byte is one token, any text encodes.

    The pipeline pads CLAP's input to ``model_max_length`` (512, as the real one), so the text
    length the CLAP encoder sees is the real one whatever the vocabulary.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tokens = specials + sorted(ByteLevel.alphabet()) + ["<mask>"]
    vocab = {token: index for index, token in enumerate(tokens)}
    return RobertaTokenizerFast(vocab=vocab, merges=[], model_max_length=model_max_length)


def build_t5_tokenizer(model_max_length: int = 128):
    """A sentencepiece-style unigram tokenizer: whole common words, else single characters."""
    from transformers import T5TokenizerFast

    characters = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(character, -5.0) for character in characters]
    pieces += [("▁" + character, -4.0) for character in string.ascii_letters]
    pieces += [("▁" + word, -3.0) for word in COMMON_WORDS if len(word) > 1]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def build_feature_extractor():
    """CLAP's feature extractor: 48 kHz, 64 mel bins, as the real checkpoints'. It holds no weights."""
    from transformers import ClapFeatureExtractor

    config = {k: v for k, v in _config("feature_extractor.json").items() if k != "feature_extractor_type"}
    return ClapFeatureExtractor(**config)


def build_scheduler():
    """The DDIM scheduler exactly as the real checkpoints configure it."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(_config("scheduler.json"))


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
def build_tiny_components(seed: int = 0) -> dict:
    """Every component of a tiny AudioLDM 2 with the real time and frequency geometry."""
    from diffusers import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2Model,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = build_clap_tokenizer(), build_t5_tokenizer()
    clap_dim, t5_dim, gpt2_dim = 16, 32, 16
    text_config = ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=clap_dim, intermediate_size=37, num_attention_heads=2,
        num_hidden_layers=2, max_position_embeddings=514, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        projection_dim=clap_dim,
    )
    # spec_size 256 with 64 mel bins is what lets CLAP rank a 10 s clip, as the real audio branch does.
    audio_config = ClapAudioConfig(
        spec_size=256, num_mel_bins=64, patch_size=4, patch_stride=4, window_size=8, depths=[1, 1],
        num_attention_heads=[2, 2], patch_embeds_hidden_size=16, hidden_size=32, projection_dim=clap_dim,
        enable_fusion=False,
    )
    text_encoder = ClapModel(ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(),
                                        projection_dim=clap_dim))
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=t5_dim, d_ff=37, d_kv=8, num_heads=2, num_layers=2,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
    ))
    language_model = GPT2Model(GPT2Config(n_embd=gpt2_dim, n_head=2, n_layer=2, vocab_size=64, n_positions=256,
                                           bos_token_id=0, eos_token_id=0))
    language_model.config.max_new_tokens = 8
    projection_model = AudioLDM2ProjectionModel(
        text_encoder_dim=clap_dim, text_encoder_1_dim=t5_dim, langauge_model_dim=gpt2_dim
    )
    unet = AudioLDM2UNet2DConditionModel(
        # Attention only in the lowest block (64 x 4 latent pixels): attention on a CPU is what costs.
        sample_size=256, in_channels=8, out_channels=8, block_out_channels=(32, 32, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        cross_attention_dim=[[None, gpt2_dim, t5_dim]] * 3, attention_head_dim=8, norm_num_groups=16,
    )
    # Three blocks: the VAE downsamples by 2 ** (3 - 1) = 4, as the real one does.
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=8, block_out_channels=[16, 32, 32], layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
        norm_num_groups=16, sample_size=1024, scaling_factor=_config("vae.json")["scaling_factor"],
    )
    # Upsampling 5 * 4 * 2 * 2 * 2 = 160 samples per mel frame at 16 kHz, as the real vocoder.
    real_vocoder = _config("vocoder.json")
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=32,
        upsample_rates=real_vocoder["upsample_rates"], upsample_kernel_sizes=real_vocoder["upsample_kernel_sizes"],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
    ))
    make_audible(vocoder)
    return dict(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, projection_model=projection_model,
        language_model=language_model, tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        feature_extractor=build_feature_extractor(), unet=unet, scheduler=build_scheduler(), vocoder=vocoder,
    )


def build_full_size_components(variant: str = "base", seed: int = 0) -> dict:
    """Every component of the real architecture (``base``, ``large`` or ``music``), weights random."""
    from diffusers import AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL
    from transformers import (
        ClapConfig, ClapModel, GPT2Config, GPT2Model, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config,
        T5EncoderModel,
    )

    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    torch.manual_seed(seed)
    language_model = GPT2Model(GPT2Config(**_config("language_model_gpt2.json")))
    language_model.config.max_new_tokens = 8
    return dict(
        vae=AutoencoderKL.from_config(_config("vae.json")),
        text_encoder=ClapModel(ClapConfig(**_config("text_encoder_clap.json"))),
        text_encoder_2=T5EncoderModel(T5Config(**_config("text_encoder_2_t5.json"))),
        projection_model=AudioLDM2ProjectionModel.from_config(_config("projection_model.json")),
        language_model=language_model,
        tokenizer=build_clap_tokenizer(_config("tokenizer.json")["model_max_length"]),
        tokenizer_2=build_t5_tokenizer(_config("tokenizer_2.json")["model_max_length"]),
        feature_extractor=build_feature_extractor(),
        unet=AudioLDM2UNet2DConditionModel.from_config(_config(f"unet_{variant}.json")),
        scheduler=build_scheduler(),
        vocoder=make_audible(SpeechT5HifiGan(SpeechT5HifiGanConfig(**_config("vocoder.json")))),
    )


def make_audible(vocoder, loudness: float = 0.1):
    """Make a random HiFi-GAN vocoder output noise you can hear, instead of near-silence.

    transformers initialises its convolutions with a standard deviation of 0.01, and each upsampling stage
    then shrinks the signal: the waveform of a random vocoder peaks near 1e-10, which plays as silence and
    makes every spectrogram and spectral distance floor out at the same value. We re-initialise the
    convolutions with PyTorch's own default and scale the last one so that a random mel spectrogram comes
    out as noise with a standard deviation of ``loudness`` (about -20 dB of full scale). The shapes, and so
    the speed, do not change.
    """
    convolutions = [m for m in vocoder.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))]
    with torch.no_grad():
        for convolution in convolutions:
            convolution.reset_parameters()
        vocoder.conv_post.bias.zero_()
        mel = torch.randn(1, 256, vocoder.config.model_in_dim, generator=torch.Generator().manual_seed(0))
        vocoder.conv_post.weight.mul_(loudness / vocoder(mel).std())
    return vocoder


# --------------------------------------------------------------------------------------------
# Writing to disk in the hub's layout
# --------------------------------------------------------------------------------------------
def save_checkpoint(components: dict, directory: str | Path, *, kind: str, variant: str | None = None) -> Path:
    """Save ``components`` as a pipeline folder laid out like ``cvssp/audioldm2``.

    ``AudioLDM2Pipeline.save_pretrained`` writes each component in its subfolder; we then rewrite
    ``model_index.json`` with the hub's class names (``GPT2Model``, ``RobertaTokenizerFast``,
    ``T5TokenizerFast``) and add the marker that says the weights are random.
    """
    from diffusers import AudioLDM2Pipeline

    from transformers.utils import logging as transformers_logging

    directory = Path(directory)
    bars_on = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # one "Writing model shards" bar per component is noise here
    try:
        AudioLDM2Pipeline(**components).save_pretrained(directory)
    finally:
        if bars_on:
            transformers_logging.enable_progress_bar()
    model_index = json.loads((directory / "model_index.json").read_text())
    for name, library_and_class in HUB_CLASS_MAP.items():
        if not name.startswith("_"):
            model_index[name] = library_and_class
    (directory / "model_index.json").write_text(json.dumps(model_index, indent=2) + "\n")
    marker = {
        "kind": kind,
        "variant": variant,
        "random_weights": True,
        "note": "Random weights: this checkpoint makes noise, not music. Its speed and memory are "
        "real only for the full-size kind; never present its sound or quality as AudioLDM 2's.",
    }
    (directory / RANDOM_MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return directory


def write_tiny_checkpoint(directory: str | Path, seed: int = 0) -> Path:
    """Build the tiny random checkpoint and write it to ``directory`` (a few MB, a few seconds)."""
    return save_checkpoint(build_tiny_components(seed), directory, kind="tiny")


def write_full_size_checkpoint(directory: str | Path, variant: str = "base", seed: int = 0) -> Path:
    """Build the full-size random checkpoint (about 4.2 GB in float32 for ``base``) in ``directory``."""
    return save_checkpoint(build_full_size_components(variant, seed), directory, kind="full-size", variant=variant)


def default_cache_dir() -> Path:
    """Where built checkpoints are kept between runs: ``$AUDIOLDM2_CACHE`` or ``~/.cache/audioldm2-faster``."""
    import os

    return Path(os.environ.get("AUDIOLDM2_CACHE", Path.home() / ".cache" / "audioldm2-faster"))


def cached_checkpoint(kind: str = "full-size", variant: str = "base") -> Path:
    """Path of a built checkpoint in the cache, building it the first time (full-size: a few minutes)."""
    if kind not in ("tiny", "full-size"):
        raise ValueError(f"Unknown kind {kind!r}: choose 'tiny' or 'full-size'.")
    directory = default_cache_dir() / (f"{kind}-random-{variant}" if kind == "full-size" else "tiny-random")
    if not (directory / RANDOM_MARKER_FILE).is_file():  # the marker is written last: its absence means unfinished
        if kind == "tiny":
            write_tiny_checkpoint(directory)
        else:
            print(f"Building the full-size random '{variant}' checkpoint in {directory} (once; a few minutes)...")
            write_full_size_checkpoint(directory, variant)
    return directory


# --------------------------------------------------------------------------------------------
# Telling what a checkpoint is
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointInfo:
    """What a model id points at, so that a notebook can say what you are listening to."""

    model_id: str
    kind: str  # "real", "tiny" or "full-size"
    random_weights: bool

    @property
    def label(self) -> str:
        if not self.random_weights:
            return f"{self.model_id} (trained weights)"
        return f"{self.kind} random weights ({self.model_id})"

    @property
    def listening_note(self) -> str:
        """One sentence to print above any audio this checkpoint makes."""
        if not self.random_weights:
            return "Trained weights: what you hear is what AudioLDM 2 makes."
        speed = "its timings are real" if self.kind == "full-size" else "its timings say nothing about the real model"
        return f"Random weights ({self.kind}): what you hear is noise, not music; {speed}."


def describe_checkpoint(model_id: str | Path) -> CheckpointInfo:
    """Read the random-weights marker, if any, of a local checkpoint folder."""
    marker = Path(model_id) / RANDOM_MARKER_FILE
    if marker.is_file():
        data = json.loads(marker.read_text())
        return CheckpointInfo(str(model_id), data["kind"], bool(data.get("random_weights", True)))
    return CheckpointInfo(str(model_id), "real", False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an AudioLDM 2 checkpoint with random weights.")
    parser.add_argument("kind", choices=["tiny", "full"], help="tiny (a few MB) or full (the real size, ~4.2 GB)")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--variant", choices=VARIANTS, default="base", help="full-size only: which architecture")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.kind == "tiny":
        path = write_tiny_checkpoint(args.directory, args.seed)
    else:
        path = write_full_size_checkpoint(args.directory, args.variant, args.seed)
    print(f"Wrote a {args.kind} random-weights AudioLDM 2 checkpoint to {path}")
    print(f"Use it with:  export AUDIOLDM2_MODEL={path.resolve()}")


if __name__ == "__main__":
    main()
