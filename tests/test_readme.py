"""The README stays a true landing page: its set-up commands and its links."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_the_two_setup_commands() -> None:
    first = _blocks("bash")[0].strip().splitlines()
    ci = (README.parent / ".ci" / "run").read_text()

    assert len(first) == 2
    assert first[0].endswith(".venv/bin/fedsys run")
    assert first[1].endswith(".venv/bin/python -m pytest")
    assert README.read_text().index("```bash") < README.read_text().index("## ")
    assert first[1] in ci.splitlines()


def test_readme_demo_lines() -> None:
    demo = _blocks("bash")[1].strip().splitlines()

    assert demo == [
        ".venv/bin/fedsys deploy local --clients 8",
        ".venv/bin/fedsys silo local --sites 4 --rtt-ms 100",
        ".venv/bin/fedsys query --demo",
    ]


def test_every_link_of_the_readme_leads_to_a_file() -> None:
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())

    broken = [t for t in targets if "://" not in t and not (README.parent / t).exists()]

    assert len(targets) >= 10
    assert not broken, f"README links to missing files: {broken}"
