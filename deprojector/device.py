"""The one device and dtype picker: CUDA when present, float16 there, CPU/float32 otherwise."""

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as given, else "cuda" when a GPU is visible, else "cpu"."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: str | torch.device, dtype: torch.dtype | None = None) -> torch.dtype:
    """`dtype` as given, else float16 on CUDA (SD's usual precision) and float32 elsewhere."""
    if dtype is not None:
        return dtype
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32
