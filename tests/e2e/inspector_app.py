"""A one-component app for the inspector's browser test: two distinct images, blind labels."""

import os
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from arena_ui.inspector import inspect_pair

folder = Path(os.environ["INSPECTOR_IMAGES"])
first, second = folder / "first.png", folder / "second.png"
if not first.exists():
    yy, xx = np.mgrid[0:128, 0:128]
    checker = ((xx // 16 + yy // 16) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([checker, checker // 2, 255 - checker], -1)).save(first)
    Image.fromarray(np.stack([255 - checker, checker, checker // 3], -1)).save(second)

st.title("Inspector")
inspect_pair(first, second, labels=("Left", "Right"), key="test_inspector")
