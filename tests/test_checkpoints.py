"""The checkpoints the project builds: laid out like the hub's, with the real geometry."""

import json
import subprocess
import sys

import pytest
import torch

from helpers.checkpoints import RANDOM_MARKER_FILE, describe_checkpoint
from helpers.loading import REQUIRED_SUBFOLDERS


def test_tiny_checkpoint_is_laid_out_like_the_hub(tiny_checkpoint):
    index = json.loads((tiny_checkpoint / "model_index.json").read_text())
    assert index["_class_name"] == "AudioLDM2Pipeline"
    assert index["language_model"] == ["transformers", "GPT2Model"]
    assert index["tokenizer"] == ["transformers", "RobertaTokenizerFast"]
    assert index["tokenizer_2"] == ["transformers", "T5TokenizerFast"]
    for name in REQUIRED_SUBFOLDERS:
        assert (tiny_checkpoint / name).is_dir(), name
    size = sum(f.stat().st_size for f in tiny_checkpoint.rglob("*") if f.is_file())
    assert size < 20 * 1024**2


def test_tiny_checkpoint_says_its_weights_are_random(tiny_checkpoint):
    info = describe_checkpoint(tiny_checkpoint)
    assert info.random_weights and info.kind == "tiny"
    assert "noise" in info.listening_note
    assert describe_checkpoint("cvssp/audioldm2").random_weights is False


def test_tiny_geometry_matches_the_real_model(tiny_pipe):
    vocoder = tiny_pipe.vocoder.config
    assert vocoder.sampling_rate == 16000 and vocoder.model_in_dim == 64
    assert int(torch.tensor(vocoder.upsample_rates).prod()) == 160
    assert tiny_pipe.vae_scale_factor == 4 and tiny_pipe.vae.config.latent_channels == 8
    assert tiny_pipe.feature_extractor.sampling_rate == 48000 and tiny_pipe.feature_extractor.feature_size == 64
    # The UNet's two cross-attention streams: GPT-2's generated embeddings and Flan-T5's.
    assert tiny_pipe.unet.config.cross_attention_dim[-1][1:] == [
        tiny_pipe.language_model.config.n_embd, tiny_pipe.text_encoder_2.config.d_model]


def test_tiny_checkpoint_makes_audible_noise_that_depends_on_the_seed(tiny_pipe):
    """A random vocoder left at transformers' init peaks near 1e-10: silence, and every spectral distance 0."""
    from helpers import spectral_distance

    def clip(seed):
        generator = torch.Generator().manual_seed(seed)
        return tiny_pipe("noise", num_inference_steps=2, audio_length_in_s=1.28, generator=generator).audios[0]

    first, again, other = clip(0), clip(0), clip(1)
    assert 0.01 < float(first.std()) < 0.5
    assert spectral_distance(first, again) == 0.0
    assert spectral_distance(first, other) > 0.5


def test_make_audible_sets_the_loudness_of_a_random_vocoder():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from helpers.checkpoints import make_audible

    torch.manual_seed(0)
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(upsample_initial_channel=32, resblock_kernel_sizes=[3],
                                                   resblock_dilation_sizes=[[1, 3]]))
    mel = torch.randn(1, 100, vocoder.config.model_in_dim)
    with torch.no_grad():
        assert float(vocoder(mel).std()) < 1e-4  # transformers' init: near-silence
        make_audible(vocoder, loudness=0.1)
        assert 0.05 < float(vocoder(mel).std()) < 0.2


def test_checkpoint_command_writes_a_tiny_checkpoint(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers.checkpoints", "tiny", str(tmp_path / "ckpt")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ckpt" / RANDOM_MARKER_FILE).is_file()
    assert "AUDIOLDM2_MODEL=" in result.stdout


def test_full_size_configs_have_the_real_parameter_counts():
    """Built on the meta device: the real architecture's size, without allocating 4 GB."""
    from diffusers import AudioLDM2UNet2DConditionModel

    from helpers.checkpoints import _config

    with torch.device("meta"):
        base = AudioLDM2UNet2DConditionModel.from_config(_config("unet_base.json"))
        large = AudioLDM2UNet2DConditionModel.from_config(_config("unet_large.json"))
    assert sum(p.numel() for p in base.parameters()) == pytest.approx(346.9e6, rel=0.005)
    assert sum(p.numel() for p in large.parameters()) == pytest.approx(718.0e6, rel=0.005)


def test_unknown_variant_is_refused():
    from helpers.checkpoints import build_full_size_components

    with pytest.raises(ValueError, match="base, large, music"):
        build_full_size_components("huge")


def test_the_tiny_t5_tokenizer_keeps_every_word_of_the_course_prompt_whole():
    from helpers import settings
    from helpers.checkpoints import build_t5_tokenizer

    tokens = build_t5_tokenizer().tokenize(settings.PROMPT)
    assert tokens == ["\u2581" + word for word in settings.PROMPT.split()]
