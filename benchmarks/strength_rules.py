"""Which strength rule makes replicates of a study choose alike: each rule of `sandbag.study.plan.RULES` applied
to every study's sweep, per data set and technique, and for every pair of studies whether the two picks are the
same strength or grid neighbours (in the union of the grids). The count of such pairs decides which rule the study
keeps (`plan.RULE`), by a rule fixed before the count was first made over more than two replicates: the rule with
more pairs alike; on a tie the one-standard-error rule stays.

    python benchmarks/strength_rules.py STUDY_A STUDY_B [STUDY_C ...]

The studies can be whole studies or the sweep alone (benchmarks/sweep_replicates.toml, same seeds and samples).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from sandbag.study.plan import RULES, sweep_scores
from sandbag.study.results import read_results


def picks(study: Path) -> dict[tuple[str, str], dict]:
    rows = read_results(study)
    out = {}
    for data in sorted({r["data"] for r in rows}):
        scores = sweep_scores(r for r in rows if r["data"] == data and r["group"] == "sweep")
        for tech, values in scores.items():
            out[(data, tech)] = {"grid": sorted(values), **{rule: pick(values) for rule, pick in RULES.items()}}
    return out


def neighbours(a: float, b: float, grid: list[float]) -> bool:
    return abs(grid.index(a) - grid.index(b)) <= 1


def main(studies: list[Path]) -> None:
    found = [picks(s) for s in studies]
    agree = {rule: [0, 0] for rule in RULES}
    print(f"{'data/technique':24} " + " ".join(f"{rule:>40}" for rule in RULES))
    for key in sorted(set.intersection(*(set(f) for f in found))):
        grid = sorted(set().union(*(f[key]["grid"] for f in found)))
        cells = []
        for rule in RULES:
            chosen = [f[key][rule] for f in found]
            pairs = [neighbours(a, b, grid) for a, b in itertools.combinations(chosen, 2)]
            agree[rule][0] += sum(pairs)
            agree[rule][1] += len(pairs)
            cells.append(f"{' / '.join(f'{c:g}' for c in chosen)} {sum(pairs)}/{len(pairs)} alike")
        print(f"{'/'.join(key):24} " + " ".join(f"{c:>40}" for c in cells))
    for rule, (same, total) in agree.items():
        print(f"{rule}: {same} of {total} pairs of replicates chose alike (same strength or a grid neighbour)")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main([Path(a) for a in sys.argv[1:]])
