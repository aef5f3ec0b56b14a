"""The README's set-up and test commands are the ones CI runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fenced_after(text: str, marker: str) -> str:
    """The first line inside the code fence that follows ``marker``."""
    rest = text.split(marker, 1)[1]
    return rest.split("```", 2)[1].strip().splitlines()[-1].strip()


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    for marker in ("<!-- setup -->", "<!-- test -->"):
        command = fenced_after(readme, marker)
        assert command in ci, f"{marker} command not in .ci/run: {command}"
    assert fenced_after(readme, "<!-- run -->").endswith("hybrid-llm demo")
