"""Models: loading (4-bit on CUDA, fp32 on CPU), adapters, GPU-memory estimates, and the batched sampler
of probe answers."""
