"""The figures the blog "AudioLDM 2, faster" reports, to set beside our own measurements.

Source: the Hugging Face blog post "AudioLDM 2, faster" (2023) and its companion Colab notebook, with diffusers
and torch of 2023. They are quoted, not measured here; every notebook measures its own numbers on your device
next to them.

The blog does not name its GPU, and it was probably not a T4: its float32 baseline, 15.3 UNet steps per second at
341.5 GFLOP per guided step, is 5.2 TFLOP/s, most of a T4's 8.1 TFLOP/s float32 peak, while the companion Colab on
a real free T4 took 37 s for the clip the blog timed at 13 s. (On an H200 this course measured 13.4 s for that
rung: eager, the pipeline waits on Python on a fast GPU; see results/.)
"""

BLOG_TITLE = 'Hugging Face blog, "AudioLDM 2, faster" (2023)'
BLOG_DEVICE = "a GPU it does not name, 2023 libraries"

# Seconds for one 10.24 s clip, as the blog reports them (one waveform per prompt unless said). Its first figure is
# its first call, with no negative prompt (warm-up included, its footnote says); every later one has the negative
# prompt, so a speed-up of float16 or more is like for like over the second, float32 with the negative prompt.
BLOG_SECONDS = {
    "float32, DDIM 200 steps": 13.0,
    "float32 + negative prompt, DDIM 200 steps": 12.0,
    "float16, DDIM 200 steps": 9.0,
    "float16 + torch.compile, DDIM 200 steps (after an 83 s first call)": 4.0,
    "float16 + compile, DPMSolverMultistep 20 steps": 1.0,  # "under 1 s"
}
# The blog's iteration speeds (UNet steps per second) behind those times.
BLOG_ITERATIONS_PER_S = {"float32": 15.3, "float32 + negative prompt": 16.5, "float16": 20.9, "float16 + compile": 49.0}
BLOG_COMPILE_FIRST_CALL_S = 83.0
BLOG_OFFLOAD = "4 clips x 150 s with enable_model_cpu_offload, DPMSolverMultistep 20 steps: 36 s"
# The companion Colab on a free T4 printed slower figures, and dropped torch.compile after a
# BackendCompilerFailed error on that card.
COLAB_T4_SECONDS = {"float32, DDIM 200 steps": 37.0, "float16, DDIM 200 steps": 26.0,
                    "float16, DPMSolverMultistep 20 steps": 3.0}
