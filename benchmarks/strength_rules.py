"""Which strength rule makes replicates of a study choose alike: each rule of `sandbag.study.plan.RULES` applied
to every study's sweep, per data set and technique, and for every pair of studies whether the two picks are the
same strength or grid neighbours (in the union of the grids swept). The count of such pairs decides which rule the
study keeps (`plan.RULE`).

Each rule walks its own sweep: from the study's grid, it extends beyond an edge while its own pick sits there
(`plan.beyond_edge`, up to `plan.MAX_EXTENSIONS` a side), as `sandbag study` would with that rule, reading the
strengths the study swept. A study swept with best-mean extends wherever the best by mean sits at an edge, which
is wherever the plateau-centre rule's pick does (its pick at an edge is the best by mean there), so both walks
read runs that exist; a strength a walk needs and the study lacks ends that walk (counted as "short").

Decision rules, each fixed before its count was made:
- 2026-12-02, replicates 0-5: the rule with more pairs alike; on a tie the one-standard-error rule stays
  (best-mean 53 of 60, one-standard-error 48: best-mean kept).
- 2026-12-07, replicates 2-7 (0 and 1 are the standard study's replicate pair, kept out to test the rule after):
  plateau-centre replaces best-mean if it has more pairs alike, and its picks' mean validation accuracy (over
  techniques and replicates) is no more than 0.005 below best-mean's; on a tie best-mean stays.
- 2026-12-07, later, the same sweeps: plateau-centre's tie between two middle strengths (the better by mean, the
  weaker, the stronger). A variant replaces it if it has no fewer pairs alike, more pairs of the very same strength,
  and mean validation accuracy no more than 0.005 below best-mean's; of two such, more of the same, then the weaker.
  The stronger: 60 of 60 alike, 28 the same, 0.9110 (the better: 59, 26, 0.9128; the weaker, 3 walks short: 55,
  23, 0.9124): adopted. Its count ran on copies of the sweeps that the study, run again with that rule, had
  extended as its walk needed (0 walks short); a study run so keeps only its own grid, so each rule is counted
  where it walked in full.

    python benchmarks/strength_rules.py STUDY_A STUDY_B [STUDY_C ...]

The studies can be whole studies or the sweep alone (benchmarks/sweep_replicates.toml, same seeds and samples).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from sandbag.study.plan import RULES, beyond_edge, room_beyond, sweep_scores
from sandbag.study.results import read_results


def walk(rule: str, grid: list[float], values: dict, technique: str) -> tuple[float, bool]:
    """The strength `rule` picks after extending `grid` as the study would; whether a strength it needed was
    missing from the study's sweep (`values`)."""
    original, grid = sorted(grid), sorted(grid)
    while True:
        swept = {v: values[v] for v in grid if v in values}
        value = beyond_edge(grid, swept, technique, rule)
        if value is None or not room_beyond(grid, original, value):
            return RULES[rule](swept), False
        if value not in values:
            return RULES[rule](swept), True
        grid = sorted([*grid, value])


def picks(study: Path) -> dict[tuple[str, str], dict]:
    rows = read_results(study)
    base = json.loads((study / "study.json").read_text())["config"]["sweep"]
    out = {}
    for data in sorted({r["data"] for r in rows}):
        scores = sweep_scores(r for r in rows if r["data"] == data and r["group"] == "sweep")
        for tech, values in scores.items():
            found = {rule: walk(rule, base[tech], values, tech) for rule in RULES}
            mean = {v: sum(r[0] for r in runs) / len(runs) for v, runs in values.items()}
            out[(data, tech)] = {"grid": sorted(values), **{rule: pick for rule, (pick, _) in found.items()},
                                 "short": {rule: short for rule, (_, short) in found.items()},
                                 "val_acc": {rule: mean[pick] for rule, (pick, _) in found.items()}}
    return out


def neighbours(a: float, b: float, grid: list[float]) -> bool:
    return abs(grid.index(a) - grid.index(b)) <= 1


def main(studies: list[Path]) -> None:
    found = [picks(Path(s)) for s in studies]
    agree = {rule: [0, 0] for rule in RULES}
    exact = {rule: 0 for rule in RULES}
    accuracy = {rule: [] for rule in RULES}
    short = {rule: 0 for rule in RULES}
    print(f"{'data/technique':24} " + " ".join(f"{rule:>40}" for rule in RULES))
    for key in sorted(set.intersection(*(set(f) for f in found))):
        grid = sorted(set().union(*(f[key]["grid"] for f in found)))
        cells = []
        for rule in RULES:
            chosen = [f[key][rule] for f in found]
            pairs = [neighbours(a, b, grid) for a, b in itertools.combinations(chosen, 2)]
            agree[rule][0] += sum(pairs)
            agree[rule][1] += len(pairs)
            exact[rule] += sum(a == b for a, b in itertools.combinations(chosen, 2))
            accuracy[rule] += [f[key]["val_acc"][rule] for f in found]
            short[rule] += sum(f[key]["short"][rule] for f in found)
            cells.append(f"{' / '.join(f'{c:g}' for c in chosen)} {sum(pairs)}/{len(pairs)} alike")
        print(f"{'/'.join(key):24} " + " ".join(f"{c:>40}" for c in cells))
    for rule, (same, total) in agree.items():
        mean = sum(accuracy[rule]) / len(accuracy[rule]) if accuracy[rule] else float("nan")
        print(f"{rule}: {same} of {total} pairs of replicates chose alike (same strength or a grid neighbour), "
              f"{exact[rule]} the same strength; mean validation accuracy of its picks {mean:.4f}; walks cut short "
              f"by a strength not swept: {short[rule]}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main([Path(a) for a in sys.argv[1:]])
