"""GPT-2's new vectors from a static cache equal the pipeline's own, eager and compiled as one graph (fullgraph)."""

import pytest
import torch

import helpers as h
from helpers.gpt2 import StaticGPT2, pipeline_calls, remove_static_gpt2, use_static_gpt2


@pytest.fixture(scope="module")
def tiny_pipe(tiny_checkpoint):
    return h.load_pipeline(str(tiny_checkpoint), torch_dtype=torch.float32, device="cpu")


def test_the_static_loop_gives_the_pipelines_vectors(tiny_pipe):
    calls = pipeline_calls(tiny_pipe)
    assert len(calls) == 2 and any(0 < mask.sum() < mask.numel() for _, mask, _ in calls)  # padding inside a mask
    static = StaticGPT2(tiny_pipe.language_model)
    for inputs_embeds, mask, expected in calls:
        with torch.no_grad():
            got = static(inputs_embeds, attention_mask=mask)
        assert got.shape == expected.shape == (1, 8, inputs_embeds.shape[-1])
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_both_prompts_in_one_batch_give_each_prompts_vectors(tiny_pipe):
    (x1, m1, out1), (x2, m2, out2) = pipeline_calls(tiny_pipe)
    if x1.shape != x2.shape:
        pytest.skip("the two prompts project to different lengths on this checkpoint")
    with torch.no_grad():
        got = StaticGPT2(tiny_pipe.language_model)(torch.cat([x1, x2]), attention_mask=torch.cat([m1, m2]))
    torch.testing.assert_close(got, torch.cat([out1, out2]), rtol=1e-5, atol=1e-5)


def test_the_loop_compiles_as_one_graph_and_keeps_the_vectors(tiny_pipe):
    """fullgraph=True with Dynamo alone: a graph break would raise. (Inductor lowers the same graph on a CPU: a minute
    here on the tiny checkpoint, two on the full-size one, checked by hand; too long for the suite.)"""
    calls = pipeline_calls(tiny_pipe)
    graphs = h.compiling.compiled_graphs()
    static = use_static_gpt2(tiny_pipe, compile="default", backend="eager")
    try:
        for _ in range(2):  # the second call replays the same graph: no recompilation
            for inputs_embeds, mask, expected in calls:
                with torch.no_grad():
                    got = tiny_pipe.generate_language_model(inputs_embeds, attention_mask=mask)
                torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    finally:
        remove_static_gpt2(tiny_pipe)
    assert h.compiling.compiled_graphs() - graphs == 1  # both prompts have the same length here: one graph
    assert len(static.caches) == 1 and "generate_language_model" not in tiny_pipe.__dict__
