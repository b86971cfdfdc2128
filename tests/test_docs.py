"""The plugin documentation keeps up with the API: README.md's "Writing a method plugin" section
must mention every hook of bench.hookspecs and every stage a Method provides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import hookspecs

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## Writing a method plugin"
HOOKS = sorted(name for name, f in vars(hookspecs).items() if hasattr(f, "modbench_spec"))
STAGES = ("train", "modularize", "compose", "build", "hparams")


def plugin_section() -> str:
    """The section's text, up to the next level-2 heading outside a code block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == SECTION]
    assert starts, f"README.md has no '{SECTION}' section"
    body, fenced = [], False
    for line in lines[starts[0] + 1:]:
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    assert re.search(rf"\b{hook}\b", plugin_section()), f"hook {hook} is not in README.md's '{SECTION}'"


@pytest.mark.parametrize("stage", STAGES)
def test_every_method_stage_is_documented(stage):
    """A stage counts as documented when it appears as code: `train`, `Method.train`, or ``def train(``."""
    pattern = rf"`(?:\w+\.)?{stage}\b|\bdef {stage}\("
    assert re.search(pattern, plugin_section()), f"Method.{stage} is not in README.md's '{SECTION}'"
