"""The README's examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    for name, value in list(namespace.items()):  # property tests defined in an example: run them too
        if name.startswith("test_") and callable(value):
            value()


def test_the_property_testing_example_is_the_pytest_file_make_test_runs():
    example = (README.parent / "examples" / "test_gradient_properties.py").read_text()
    assert example in BLOCKS, "the README's property-testing block differs from examples/test_gradient_properties.py"


def test_the_testing_module_docstring_example_runs():
    import textwrap

    import autograd.testing

    doc = autograd.testing.__doc__
    example = doc.split("\n\n")[1:3]  # the indented example after the first line: imports, then the test
    code = textwrap.dedent("\n\n".join(example))
    namespace: dict = {}
    exec(compile(code, "autograd/testing.py docstring", "exec"), namespace)
    namespace["test_mul"]()
