"""Building the demo studies from the welcome page (tiny models; real photographs), with a
progress bar.

`evaluation.demo` (torch) and `evaluation.photo_demo` are imported inside the functions so that the
welcome page itself stays light.
"""

from __future__ import annotations

import streamlit as st

from db.engine import data_dir


def build_demo_with_progress() -> None:
    """Run `evaluation.demo.build_demo` into the data dir, showing its progress."""
    from evaluation.demo import build_demo  # torch: lazily, only when asked

    bar = st.progress(0.0, text="Starting the demo build")

    def report(fraction: float, message: str = "") -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Building the demo")

    with st.spinner("Training tiny variants and rendering images on the CPU"):
        result = build_demo(data_dir(), progress=report)
    bar.progress(1.0, text="Demo study ready")
    st.success(
        f"Demo study **{result.study}** ready: {result.images} images "
        f"({result.rendered_now} rendered now) in {result.seconds:.0f} s. "
        f"Database: `{result.database}`; images: `{result.images_dir}`."
    )
    st.page_link("pages/vote.py", label="Vote now", icon=":material/how_to_vote:")


def build_photo_demo_with_progress() -> None:
    """Run `evaluation.photo_demo.build_photo_demo` into the data dir, showing its progress."""
    from evaluation.photo_demo import build_photo_demo  # scikit-image: only when asked

    bar = st.progress(0.0, text="Starting the photo demo")

    def report(fraction: float, message: str = "") -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message or "Building the photo demo")

    result = build_photo_demo(data_dir(), progress=report)
    bar.progress(1.0, text="Photo demo ready")
    st.success(
        f"Photo demo study **{result.study}** ready: {result.images} images from "
        f"{len(result.variants)} image pipelines ({result.added} new) in {result.seconds:.1f} s."
    )
    st.page_link("pages/vote.py", label="Vote now", icon=":material/how_to_vote:")
