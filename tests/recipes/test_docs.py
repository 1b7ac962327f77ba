"""The recipes in docs/testing.md are these tests, word for word."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_recipe_in_the_docs_is_a_test_here() -> None:
    doc = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"<!-- recipe: (\S+) -->\n```python\n(.*?)```\n", doc, re.S)
    assert {path for path, _ in blocks} >= {
        "tests/recipes/test_kopf_operator.py", "tests/recipes/test_official_client_controller.py",
        "tests/recipes/test_kr8s_script.py", "tests/recipes/test_helm_rendered.py"}
    for path, code in blocks:
        assert (ROOT / path).read_text() == code, f"docs/testing.md differs from {path}"
