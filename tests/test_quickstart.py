"""The README quickstart's sample output is what the code prints."""

import re
from pathlib import Path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_quickstart_sample_output_matches(default_router):
    block = README.split("## Quickstart", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    score = float(re.search(r"good enough\]: ([0-9.]+)", block).group(1))
    assert round(default_router.score("What is the capital of France?"), 3) == score
    target, shown = re.search(r"# \('(\w+)', ([0-9.]+)\.\.\., 'argument:quality_threshold'\)", block).groups()
    d = default_router.route("Prove Fermat's little theorem.", quality_threshold=0.7)
    assert (d.target, f"{d.score:.2f}") == (target, shown)
