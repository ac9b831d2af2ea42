"""The comma rule (spec section 2): a prompt with commas is composed of parts, one without is single.

No torch here: the vote and results pages use it.
"""

from typing import Literal

PromptKind = Literal["single", "composed"]

# The six prompts the author used throughout the series (spec section 7): the same three texts
# as single embeddings, then composed by the comma rule.
ARTICLE_PROMPTS = (
    "cat maid",
    "1girl red hair blue eye black skirt",
    "1boy 1girl in class room",
    "cat, maid",
    "1girl, red hair, blue eye, black skirt",
    "1boy, 1girl, in class room",
)


def _check_prompt(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"prompt={text!r}: expected a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"prompt={text!r} is empty; expected some text, e.g. 'cat maid'")
    return text


def prompt_parts(text: str) -> list[str]:
    """The parts of a prompt: split on commas, strip, drop empty ones ("cat, maid" -> 2 parts)."""
    parts = [part.strip() for part in _check_prompt(text).split(",")]
    parts = [part for part in parts if part]
    if not parts:
        raise ValueError(f"prompt={text!r} has only commas and spaces; expected at least one word")
    return parts


def is_composed(text: str) -> bool:
    """True when the prompt has two or more non-empty comma-separated parts."""
    return len(prompt_parts(text)) > 1


def prompt_kind(text: str) -> PromptKind:
    """ "composed" for "cat, maid", "single" for "cat maid" (and for "cat," with one real part)."""
    return "composed" if is_composed(text) else "single"
