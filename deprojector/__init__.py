"""CLIP Text Deprojector: the model, its training, and image generation (see docs/interfaces.md)."""
