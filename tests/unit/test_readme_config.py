"""The README's configuration example passes ``config check`` as printed, with each
groupBy its comment offers (issue 20: a tag there was refused with ``partitions: 12``)."""

from __future__ import annotations

import re
from pathlib import Path

from processors.config_check import check_config

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_config() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_example_is_accepted_as_printed(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(readme_config(), encoding="utf-8")
    checked = check_config(path, {})
    assert [s.group_by for s in checked.settings.values()] == ["00100020"]


def offered_group_bys() -> list[str]:
    comment = re.search(r"groupBy: \S+ +# (.*)", readme_config())
    assert comment is not None, "the README example's groupBy line lost its comment"
    names = [n for n in ("Patient", "Study", "Series") if n in comment.group(1)]
    tags = re.findall(r'"[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}"', comment.group(1))
    return names + tags


def test_the_comment_offers_names_and_a_tag() -> None:
    offered = offered_group_bys()
    assert offered[:3] == ["Patient", "Study", "Series"]
    assert len(offered) > 3


def test_every_groupby_the_comment_offers_is_accepted(tmp_path: Path) -> None:
    text = readme_config()
    for group_by in offered_group_bys():
        path = tmp_path / "config.yaml"
        path.write_text(re.sub(r"groupBy: \S+", f"groupBy: {group_by}", text), encoding="utf-8")
        assert check_config(path, {}).config.kafka.partitions == 12, group_by
