"""The README's Python example runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.long  # an end-to-end training; the default suite parses every command (test_docs.py)
def test_readme_python_example_runs(tmp_path, monkeypatch):
    # The example of the "In your research code" section (other sections show fragments).
    section = README.read_text().split("## In your research code", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["scores"].shape == (540,)
    assert (tmp_path / "runs" / "digits-3" / "result.json").exists()
    assert namespace["cfg"].data.normal_class == 3
