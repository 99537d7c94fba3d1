"""Part III: multimodal models: a joint image-text space (LiT), VBPR, content, a generator."""
