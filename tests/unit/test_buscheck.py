"""``config check --kafka``'s verdicts from what the bus shows (pure)."""

from __future__ import annotations

from processors.commands.buscheck import BusView, bus_lines


def test_an_ae_title_with_instances_and_no_live_processor_is_a_warning() -> None:
    view = BusView(
        announced={"CT": {"scp-1"}, "MR": {"scp-1", "scp-2"}},
        in_log={"CT", "US"},
        members={"CT": 2, "MR": 0},
    )
    lines = bus_lines(view, configured=("PET",))
    assert lines["bus"] == [
        "AE title CT: received by scp-1; instances in the log; 2 live processor(s)",
        "AE title MR: received by scp-1, scp-2; 0 live processor(s)",
        "AE title US: instances in the log; no processor group",
    ]
    warned = sorted(line.split()[2] for line in lines["warning"])
    assert warned == ["MR", "US"]  # a group without members serves nothing


def test_the_checked_configs_own_ae_titles_are_not_warned_about() -> None:
    view = BusView(announced={"CT": {"scp-1"}}, in_log={"CT"}, members={})
    assert bus_lines(view, configured=("CT",))["warning"] == []
