"""The comma rule: which prompts are composed, and their parts."""

import pytest

from deprojector.prompts import is_composed, prompt_kind, prompt_parts


@pytest.mark.parametrize(
    ("text", "kind", "parts"),
    [
        ("cat maid", "single", ["cat maid"]),
        ("cat, maid", "composed", ["cat", "maid"]),
        (
            "1girl, red hair, blue eye, black skirt",
            "composed",
            ["1girl", "red hair", "blue eye", "black skirt"],
        ),
        ("1boy 1girl in class room", "single", ["1boy 1girl in class room"]),
        ("  cat ,, maid , ", "composed", ["cat", "maid"]),
        ("cat,", "single", ["cat"]),
    ],
)
def test_comma_rule_splits_parts(text, kind, parts):
    """Commas make a prompt composed; parts are stripped and empty ones dropped."""
    assert prompt_parts(text) == parts
    assert prompt_kind(text) == kind
    assert is_composed(text) == (kind == "composed")


@pytest.mark.parametrize("text", ["", "   ", " , ,"])
def test_empty_prompt_is_rejected(text):
    """An empty or whitespace-only prompt raises ValueError naming the prompt."""
    with pytest.raises(ValueError, match="prompt="):
        prompt_kind(text)


def test_prompts_module_does_not_import_torch():
    """The vote page can import the comma rule without paying for torch."""
    import subprocess
    import sys

    code = "import sys, deprojector.prompts; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
