"""Helpers for the Streamlit pages: identity, cached resources, the vote page's view of a pair.

Torch-free by rule: the vote and results pages import this package, and annotators must get a
page in well under a second (DESIGN.md). Nothing here imports torch, diffusers or transformers.
"""
