"""Models: loading (4-bit on CUDA, fp32 on CPU), adapters and their shard-by-shard merge (merging),
GPU-memory estimates, and the batched sampler of probe answers."""
