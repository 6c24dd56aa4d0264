"""The figures the blog "AudioLDM 2, faster" reports, to set beside our own measurements.

Source: the Hugging Face blog post "AudioLDM 2, faster" (2023) and its companion Colab notebook, both on
a T4-class card (about 15 GB of GPU memory), with diffusers and torch of 2023. They are quoted, not
measured here; every notebook measures its own numbers on your device next to them.
"""

BLOG_TITLE = 'Hugging Face blog, "AudioLDM 2, faster" (2023)'
BLOG_DEVICE = "T4-class GPU (14.75 GiB), 2023 libraries"

# Seconds for one 10.24 s clip, as the blog reports them (one waveform per prompt unless said).
BLOG_SECONDS = {
    "float32, DDIM 200 steps": 13.0,
    "float16, DDIM 200 steps": 9.0,
    "float16 + torch.compile, DDIM 200 steps (after an 83 s first call)": 4.0,
    "float16 + compile, DPMSolverMultistep 20 steps": 1.0,  # "under 1 s"
}
# The blog's iteration speeds (UNet steps per second) behind those times.
BLOG_ITERATIONS_PER_S = {"float32": 15.3, "float16": 20.9, "float16 + compile": 49.0}
BLOG_COMPILE_FIRST_CALL_S = 83.0
BLOG_OFFLOAD = "4 clips x 150 s with enable_model_cpu_offload, DPMSolverMultistep 20 steps: 36 s"
# The companion Colab on a free T4 printed slower figures, and dropped torch.compile after a
# BackendCompilerFailed error on that card.
COLAB_T4_SECONDS = {"float32, DDIM 200 steps": 37.0, "float16, DDIM 200 steps": 26.0,
                    "float16, DPMSolverMultistep 20 steps": 3.0}
