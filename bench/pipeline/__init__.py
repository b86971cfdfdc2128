"""The pipeline: a cell's stages, the store they cache in, the training loop, metrics, executors."""
