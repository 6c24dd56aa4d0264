"""GPU probe for issue 10 (notebooks 09 and 10): where rung 6's time goes, and what beyond the blog buys.

Run on a lent GPU after the course's GPU command, with $OUT set; writes $OUT/probe.jsonl. Full-size random
checkpoint, float16, DPM-Solver++, 10.24 s, the course's prompt and negative prompt. Stops starting new steps
when $PROBE_S seconds are nearly spent.
"""

import json
import os
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import helpers as h
from helpers.checkpoints import cached_checkpoint
from helpers.stages import STAGES, time_stages

START = time.time()
DEADLINE = START + float(os.environ.get("PROBE_S", 300))
OUT = os.environ.get("OUT", "/tmp")
KIND = os.environ.get("PROBE_MODEL", "full-size")
device = torch.device(os.environ.get("PROBE_DEVICE", "cuda"))
dtype = torch.float16 if device.type == "cuda" else torch.float32
log = open(f"{OUT}/probe.jsonl", "a")


def emit(**record):
    record["t"] = round(time.time() - START, 1)
    line = json.dumps(record, default=str)
    print(line, flush=True)
    log.write(line + "\n")
    log.flush()


def left():
    return DEADLINE - time.time()


def median_s(fn, repeats=5):
    timing = h.time_runs(fn, device=device, warmup=1, repeats=repeats)
    return round(timing.median_s, 5), round(timing.spread_s, 5), [round(s, 3) for s in timing.warmup_s]


# A. the device's peak matmul rate, measured
def matmul_tflops(dt, n=8192, reps=20):
    a, b = torch.randn(n, n, device=device, dtype=dt), torch.randn(n, n, device=device, dtype=dt)
    for _ in range(3):
        a @ b
    h.timing.synchronize(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    h.timing.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


if device.type == "cuda":
    emit(step="device", name=torch.cuda.get_device_name(0), torch=torch.__version__)
    emit(step="peak", fp16=matmul_tflops(torch.float16), bf16=matmul_tflops(torch.bfloat16),
         fp32=matmul_tflops(torch.float32))
    torch.backends.cuda.matmul.allow_tf32 = True
    emit(step="peak", tf32=matmul_tflops(torch.float32))
    torch.backends.cuda.matmul.allow_tf32 = False

path = cached_checkpoint(KIND, "base") if KIND in ("tiny", "full-size") else KIND
pipe = h.load_pipeline(path, torch_dtype=dtype, device=device)
from diffusers import DPMSolverMultistepScheduler  # noqa: E402

pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
SECONDS, NEG = 10.24, h.settings.NEGATIVE_PROMPT


def gen(steps=20, **kwargs):
    kwargs.setdefault("negative_prompt", NEG)
    prompt = kwargs.pop("prompt", h.settings.PROMPT)
    return h.generate(pipe, prompt, num_inference_steps=steps, audio_length_in_s=SECONDS, **kwargs)


def stages(label, steps=20, **kwargs):
    st = time_stages(pipe, lambda: gen(steps, **kwargs), device, steps=steps)
    emit(step="stages", label=label, seconds={k: round(v, 5) for k, v in st.seconds.items()}, calls=st.calls,
         total_s=round(st.total_s, 5), other_s=round(st.other_s, 5))


EAGER = os.environ.get("PROBE_FROM") != "compile"
# B. eager float16, DPM 20 (rung 6 without compile)
if EAGER:
    emit(step="eager", steps=20, median=median_s(lambda: gen(20)))
    stages("eager fp16 dpm20")

# C. FLOPs per stage, 2 steps (UNet per step = half)
totals = {stage: 0 for stage in STAGES}
entered = {}
counter = FlopCounterMode(display=False)
hooks = []
from functools import reduce  # noqa: E402

for stage, names in STAGES.items():
    for index, name in enumerate(names):
        module = reduce(getattr, name.split("."), pipe)

        def pre(m, a):
            entered[id(m)] = counter.get_total_flops()

        def post(m, a, o, stage=stage):
            totals[stage] += counter.get_total_flops() - entered.pop(id(m))

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
with counter:
    gen(2) if EAGER else None
for handle in hooks:
    handle.remove()
emit(step="flops", steps=2, gflop={k: round(v / 1e9, 2) for k, v in totals.items()},
     total_gflop=round(counter.get_total_flops() / 1e9, 2))

# D. QKV fusion: what diffusers' own call fuses on this UNet
try:
    pipe.unet.fuse_qkv_projections()
    fused = sum(getattr(m, "fused_projections", False) for m in pipe.unet.modules())
    emit(step="fuse_qkv", fused_modules=fused, processors=sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()}))
    pipe.unet.unfuse_qkv_projections()
except Exception as error:  # noqa: BLE001
    emit(step="fuse_qkv", error=f"{type(error).__name__}: {error}"[:300])

# E. the fixed part: prompt embeddings computed once and reused
with torch.no_grad():
    embeds, mask, generated = pipe.encode_prompt(h.settings.PROMPT, device, 1, True, negative_prompt=NEG)
cached = dict(prompt=None, negative_prompt=None, prompt_embeds=embeds[1:], negative_prompt_embeds=embeds[:1],
              attention_mask=mask[1:], negative_attention_mask=mask[:1], generated_prompt_embeds=generated[1:],
              negative_generated_prompt_embeds=generated[:1])
if EAGER:
    emit(step="eager cached embeds", steps=20, median=median_s(lambda: gen(20, **cached)))
    emit(step="encode_prompt alone", median=median_s(lambda: pipe.encode_prompt(h.settings.PROMPT, device, 1, True,
                                                                                negative_prompt=NEG)))
    for steps in (10, 15):
        emit(step="eager", steps=steps, median=median_s(lambda: gen(steps), repeats=3))

if device.type != "cuda" or left() < 120:
    emit(step="stop", reason="no time or no CUDA for compile", left=left())
    sys.exit(0)

# F. compile the UNet as rung 5 does, then the VAE decoder and the vocoder too
torch._inductor.config.fx_graph_cache = True
pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
t = time.perf_counter()
gen(20)
emit(step="compile unet first call", s=round(time.perf_counter() - t, 1))
if EAGER:
    emit(step="compiled unet", steps=20, median=median_s(lambda: gen(20)))
    stages("compiled unet fp16 dpm20")
    emit(step="compiled unet cached embeds", steps=20, median=median_s(lambda: gen(20, **cached)))
if left() < 60:
    emit(step="stop", reason="no time for VAE/vocoder compile", left=left())
    sys.exit(0)
decode_mode = os.environ.get("PROBE_DECODE_MODE") or None  # None: default Inductor, no CUDA graphs
emit(step="decode compile mode", mode=decode_mode)
pipe.vae.decoder = torch.compile(pipe.vae.decoder, mode=decode_mode, fullgraph=True)
pipe.vocoder = torch.compile(pipe.vocoder, mode=decode_mode, fullgraph=True)
t = time.perf_counter()
try:
    gen(20)
    emit(step="compile vae+vocoder first call", s=round(time.perf_counter() - t, 1))
except Exception as error:  # noqa: BLE001
    emit(step="compile vae+vocoder", error=f"{type(error).__name__}: {error}"[:500])
    sys.exit(0)
for steps in (20, 15, 10):
    emit(step="compiled all cached embeds", steps=steps, median=median_s(lambda: gen(steps, **cached)))
stages("compiled all cached embeds dpm20", **cached)
emit(step="done", left=left())
