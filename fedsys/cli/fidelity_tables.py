"""``fedsys fidelity``'s tables: a :class:`FidelityReport` as a person reads it."""

from __future__ import annotations

import math

from rich.table import Table

from fedsys.fidelity.compare import TERMS, FidelityReport


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:+.1f}%"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def rounds_table(report: FidelityReport) -> Table:
    """Round by round: time, participants, dropouts, stragglers, accuracy, both sides."""
    table = Table(title="per round: simulated / measured (seconds)")
    for column in ("round", "sim s", "real s", "error", "part.", "drop.", "strag.", "accuracy"):
        table.add_column(column, justify="right")
    table.add_column("same set")
    for r in report.rounds:
        table.add_row(
            str(r.round_idx),
            _s(r.sim_s),
            _s(r.real_s),
            _pct(r.rel_error),
            f"{r.sim_participants}/{r.real_participants}",
            f"{r.sim_dropouts}/{r.real_dropouts}",
            f"{r.sim_stragglers}/{r.real_stragglers}",
            f"{_acc(r.sim_accuracy)}/{_acc(r.real_accuracy)}",
            "yes" if r.same_participants else "no",
        )
    return table


def terms_table(report: FidelityReport) -> Table:
    """Where each round's difference (measured - simulated) comes from, in seconds."""
    table = Table(title="per round: measured - simulated, by term (seconds)")
    for column in ("round", "difference", *TERMS):
        table.add_column(column, justify="right")
    for r in report.rounds:
        table.add_row(
            str(r.round_idx),
            f"{r.real_s - r.sim_s:+.3f}",
            *(f"{r.terms.get(t, 0.0):+.3f}" for t in TERMS),
        )
    return table


def totals_table(report: FidelityReport) -> Table:
    """The run in total: time, time to target, counts, and the summed terms."""
    t = report.totals
    table = Table(title="simulated vs measured, in total")
    for column in ("metric", "simulated", "measured", "rel. error"):
        table.add_column(column, justify="right")

    def row(name: str, sim: float | None, real: float | None, fmt=_s) -> None:
        error = None if sim in (None, 0) or real is None else (real - sim) / sim
        table.add_row(name, fmt(sim), fmt(real), _pct(error))

    row("total time (s)", t["sim_total_s"], t["real_total_s"])
    row("time to target (s)", t["sim_time_to_target_s"], t["real_time_to_target_s"])
    row("participants", t["sim_participants"], t["real_participants"], str)
    row("dropouts", t["sim_dropouts"], t["real_dropouts"], str)
    row("stragglers", t["sim_stragglers"], t["real_stragglers"], str)
    row("final accuracy", t["sim_final_accuracy"], t["real_final_accuracy"], _acc)
    table.add_row("median |round error|", "", "", _pct(t["median_abs_round_error"]))
    table.add_row(
        "rounds with the same participants",
        "",
        f"{t['rounds_same_participants']}/{t['rounds']}",
        "",
    )
    for term in TERMS:
        table.add_row(f"difference from {term} (s)", "", f"{t['terms_s'][term]:+.2f}", "")
    return table
