"""Claims and their parts as values, and their evaluation: per-seed differences in, verdicts out (no torch).

A claim is a sentence (English, with its Korean beside it) and its parts. Each part reads one metric of the study's
runs and is one of four kinds:

- ``paired``: metric(arm A) - metric(arm B) per seed (or A/B - 1 with ``ratio``), or metric(A) alone when there
  is no B (a probed quantity claimed > 0); decided by the paired rule of `sandbag.study.stats`. A timed pair is
  compared round by round of the timing phase (`paired_rounds`);
- ``diff_of_diffs``: (A1 - B1) - (A2 - B2) per seed: an effect at one setting against the same effect at another;
- ``check``: a deterministic check, the worst value of a probed field over an arm's runs against a tolerance;
- ``builtin``: a named check that needs no run (claim 4's closed-form penalty problem, `BUILTINS`).

A metric is a results.csv column (``test_acc``), a field of a run's probes.json (``probe.dropout_disagreement``)
or a quantity of the timing phase (``timing.seconds_per_epoch``). Claims are written as data (the lecture's in
lecture.toml, a user's in their study file) and turned into these values once, by `sandbag.study.schema`.

A claim is **decided** when every part is supported, contradicted or negligible (or a check passed or failed);
its verdict is the parts' common verdict, or mixed. A part whose metric sits at its bound in both arms (`at_bound`:
clean training accuracy 1.0 everywhere, or within the smallest effect of interest of it) is *not testable*: it does
not count either way, and a claim of such parts only is not decided. Holm's adjustment runs per data set over
every paired part of the study's confirmatory claims, with the parts that read machine timings as a family of
their own (so the other verdicts do not vary with the machine), and the exploratory claims (added or changed after
the study first ran) as families of their own again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import median

from .layout import CELL, split_cell
from .penalty import penalty_check
from .stats import (
    ALPHA,
    DECIDED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    check_verdict,
    combine,
    holm,
    paired_verdict,
    probability_of_improvement,
)

KINDS = ("paired", "diff_of_diffs", "check", "builtin")
BUILTINS = {"penalty_minimum": lambda: penalty_check()["error"]}  # name -> the value checked against a tolerance
PROBE, TIMING = "probe.", "timing."

Arm = tuple[str, str]  # (group, arm name), as the runs and results.csv name it


@dataclass(frozen=True)
class Part:
    """One comparison of a claim (see the module docstring for the kinds)."""

    kind: str
    label: str
    label_ko: str = ""
    metric: str = ""
    a: Arm | None = None
    b: Arm | None = None
    first: tuple[Arm, Arm] | None = None  # diff_of_diffs: (A1, B1)
    second: tuple[Arm, Arm] | None = None  # diff_of_diffs: (A2, B2)
    direction: str = ""
    margin: float = 0.0
    smallest_effect: float | None = None
    ratio: bool = False
    tolerance: float | None = None  # check and builtin
    check: str = ""  # builtin: a key of BUILTINS
    key: str = ""  # its name in analysis.json (probed and built-in quantities)

    @property
    def timed(self) -> bool:
        return self.metric.startswith(TIMING)

    @property
    def probed(self) -> bool:
        return self.metric.startswith(PROBE)

    @property
    def column(self) -> str:
        """The field read from a row: the results column, the probe field, or the timing row's column."""
        return self.metric.split(".", 1)[1] if self.probed or self.timed else self.metric

    def arms(self) -> set[Arm]:
        return {x for x in (self.a, self.b, *(self.first or ()), *(self.second or ())) if x is not None}

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", ())}

    @classmethod
    def from_dict(cls, d: dict) -> Part:
        def arm(x):
            return tuple(x) if x is not None else None

        pairs = {k: tuple(arm(x) for x in d[k]) for k in ("first", "second") if d.get(k)}
        return cls(**{**d, "a": arm(d.get("a")), "b": arm(d.get("b")), **pairs})


@dataclass(frozen=True)
class Claim:
    number: int
    id: str
    text: str
    parts: tuple[Part, ...]
    text_ko: str = ""
    figure: str | None = None

    def arms(self) -> set[Arm]:
        return set().union(*(p.arms() for p in self.parts)) if self.parts else set()

    def to_dict(self) -> dict:
        return {"number": self.number, "id": self.id, "text": self.text, "text_ko": self.text_ko,
                "figure": self.figure, "parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, d: dict) -> Claim:
        return cls(d["number"], d["id"], d["text"], tuple(Part.from_dict(p) for p in d["parts"]),
                   d.get("text_ko", ""), d.get("figure"))


def keys(row: dict) -> list[tuple[str, str, str]]:
    """Where a row stands in a results table: (data, group, arm); a row of a cell ("mnist-5k@500", a study over
    train_sizes) also as (data set, group, "arm@500"), the arm at that size, which claims across sizes read."""
    key = (row["data"], row["group"], row["arm"])
    data, size = split_cell(row["data"])
    return [key] if size is None else [key, (data, row["group"], f"{row['arm']}{CELL}{size}")]


def results_table(rows: list[dict]) -> dict:
    """{(data, group, arm): {seed: row}} over finished runs (a row may carry its run's probes under "probes")."""
    table: dict = {}
    for row in rows:
        if row.get("status") == "finished":
            for key in keys(row):
                table.setdefault(key, {})[int(row["seed"])] = row
    return table


def per_seed(table: dict, data: str, arm: Arm | None, part: Part) -> dict[int, float]:
    """The part's metric for each seed of `arm` that has it."""
    if arm is None:
        return {}
    out = {}
    for seed, row in table.get((data, *arm), {}).items():
        value = (row.get("probes") or {}).get(part.column) if part.probed else row.get(part.column)
        if value is not None:
            out[seed] = value
    return out


# A timing row's column -> its rounds in order (timing.json version 3 on), which timed parts compare round by round:
# whole epochs, or chunks of 4 steps where the part's arms share a batch size (version 4, `sandbag.study.timing`)
ROUNDS = {"seconds_per_epoch": "epoch_seconds", "wall_seconds_per_epoch": "wall_epoch_seconds"}
CHUNKS = {"seconds_per_epoch": "chunk_seconds", "wall_seconds_per_epoch": "wall_chunk_seconds"}


def _paired(table: dict, data: str, a: Arm, b: Arm, part: Part) -> dict[int, float]:
    if part.timed and part.column in ROUNDS:
        rounds = paired_rounds(table, data, a, b, part)
        if rounds:
            return rounds
    x, y = per_seed(table, data, a, part), per_seed(table, data, b, part)
    return {s: _compare(x[s], y[s], part.ratio) for s in sorted(set(x) & set(y))}


def _compare(x: float, y: float, ratio: bool) -> float:
    return x / y - 1 if ratio else x - y


def paired_rounds(table: dict, data: str, a: Arm, b: Arm, part: Part) -> dict[int, float]:
    """Per repetition (seed), the median over the timing phase's rounds of A's epoch against B's epoch of the same
    round (A/B - 1 with ``ratio``, else A - B): the machine's drift from one round to the next falls on both and
    cancels (`sandbag.study.timing`). The rounds are chunks of an epoch where both arms were timed in chunks at one
    batch size (alternated together), else whole epochs. Empty where the rows lack their rounds (a timing.json
    before version 3)."""
    x, y = table.get((data, *a), {}), table.get((data, *b), {})
    out = {}
    for seed in sorted(set(x) & set(y)):
        chunked = CHUNKS[part.column] in x[seed] and CHUNKS[part.column] in y[seed] and \
            x[seed].get("batch_size") == y[seed].get("batch_size")
        key = (CHUNKS if chunked else ROUNDS)[part.column]
        one, two = x[seed].get(key), y[seed].get(key)
        if not one or not two or len(one) != len(two):
            return {}
        out[seed] = median([_compare(p, q, part.ratio) for p, q in zip(one, two, strict=True)])
    return out


def diffs(part: Part, table: dict, data: str) -> dict[int, float]:
    """The per-seed numbers a paired or diff-of-diffs part decides on."""
    if part.kind == "diff_of_diffs":
        one, two = _paired(table, data, *part.first, part), _paired(table, data, *part.second, part)
        return {s: one[s] - two[s] for s in sorted(set(one) & set(two))}
    if part.b is None:
        return per_seed(table, data, part.a, part)
    return _paired(table, data, part.a, part.b, part)


def check_values(part: Part, table: dict, data: str) -> dict[int, float]:
    if part.kind == "builtin":
        return {0: BUILTINS[part.check]()}
    return per_seed(table, data, part.a, part)


def failed_seeds(rows: list[dict]) -> dict:
    """{(data, group, arm): [seeds]} of the runs that failed (raised, or lost their worker for good)."""
    out: dict = {}
    for row in rows:
        if row.get("status") == "failed":
            for key in keys(row):
                out.setdefault(key, []).append(int(row["seed"]))
    return out


def lacking(result: dict, part: Part, failed: dict, data: str) -> dict:
    """A part whose arms lack seeds because their runs failed is inconclusive, with the reason: the seeds left
    could be the ones on which an arm happens to work (a run that fails is rarely a random one)."""
    missing = [f"{'/'.join(arm)} seed {s}" for arm in sorted(part.arms()) for s in failed.get((data, *arm), [])]
    if not missing:
        return result
    return {**result, "verdict": INCONCLUSIVE, "missing": missing}


# Metrics with bounds a run can sit at: a part comparing arms that all sit at one bound measured nothing
BOUNDS = {"train_acc": (0.0, 1.0), "val_acc": (0.0, 1.0), "test_acc": (0.0, 1.0), "running_acc": (0.0, 1.0),
          "frac_small": (0.0, 1.0), "frac_zero": (0.0, 1.0),
          "train_loss": (0.0,), "val_loss": (0.0,), "test_loss": (0.0,), "running_loss": (0.0,)}  # cross-entropy >= 0


def at_bound(part: Part, table: dict, data: str) -> dict | None:
    """Where the part has no room to measure: {"bound": the bound of `BOUNDS`, "every_run": whether every run
    sits exactly at it}, or None. Every arm the part reads sits at the bound in every run; or, where the part has a
    smallest effect of interest, each arm's mean lies within that effect of the bound. Then the arms' difference
    cannot reach the smallest effect in either direction, and what it reads is the ceiling, not the technique (e.g.
    clean training accuracy 1.0 on 9 seeds of 10 and 0.994 on one: 3 of 500 images not fitted; or a clean training
    loss of 0.0004 against 0.0005 nats, where both arms fit their training set). The tolerance was set on 2026-12-07
    after such a run had flipped claim 1's parts between two replicates (*not testable* in one, *negligible* in the
    other); the loss's floor was added the same day, after an unfitted run (loss 0.0101 where the others had
    0.0005) had made L2's and BN's training-loss parts *supported* in one replicate and *inconclusive* in the
    other."""
    if part.probed or part.timed or part.column not in BOUNDS or part.kind not in ("paired", "diff_of_diffs"):
        return None
    values = [list(per_seed(table, data, arm, part).values()) for arm in part.arms()]
    if not all(values):
        return None
    means = [sum(v) / len(v) for v in values]
    room = part.smallest_effect or 0.0
    for bound in BOUNDS[part.column]:
        if all(abs(m - bound) <= room for m in means):
            return {"bound": bound, "every_run": all(x == bound for v in values for x in v)}
    return None


def evaluate_part(part: Part, table: dict, data: str) -> dict:
    if part.kind in ("check", "builtin"):
        values = check_values(part, table, data)
        return {"label": part.label, "kind": "check", **check_verdict(list(values.values()), part.tolerance)}
    per = diffs(part, table, data)
    saturated = at_bound(part, table, data)
    if saturated is not None:
        n = len(per)
        return {"label": part.label, "kind": "paired", "metric": part.metric, "ratio": part.ratio,
                "direction": part.direction, "margin": part.margin,
                "smallest_effect": part.smallest_effect, "timed": part.timed, "n": n, "mean": math.nan,
                "ci_low": math.nan, "ci_high": math.nan, "p": math.nan, "verdict": NOT_TESTABLE, **saturated,
                "diffs": per}
    result = paired_verdict(list(per.values()), part.direction, part.margin, part.smallest_effect)
    sides = {"a": part.a[1], "b": part.b[1]} if part.kind == "paired" and part.b is not None else {}
    return {"label": part.label, "kind": "paired", "metric": part.metric, "ratio": part.ratio, **sides,
            "direction": part.direction, "margin": part.margin,
            "smallest_effect": part.smallest_effect, "timed": part.timed, "diffs": per, **result,
            "p_a_beats_b": probability_of_improvement(list(per.values()))}


def evaluate_claims(data_sets: list[str], rows: list[dict], claims: list[Claim], timing: list[dict] | None = None,
                    exploratory: set[str] = frozenset()) -> list[dict]:
    """Every claim's verdict per data set, with the numbers behind each part, whether it is decided, and whether
    each decided paired part survives Holm's correction (per data set, in the families of the module docstring).
    `rows`: result rows, each with its run's probes.json under "probes" where the claims need it; `timing`: the
    timing phase's rows (timing.json), which the timed parts read instead of the runs' own epoch times;
    `exploratory`: ids of the claims added or changed since the study first ran."""
    table = results_table(rows)
    timed = results_table([{**r, "status": "finished"} for r in timing]) if timing else table
    failed = failed_seeds(rows)
    out = []
    for claim in claims:
        per_data = {}
        for data in data_sets:
            parts = [lacking(evaluate_part(part, timed if part.timed else table, data), part, failed, data)
                     for part in claim.parts]
            verdicts = [p["verdict"] for p in parts]
            testable = [v for v in verdicts if v != NOT_TESTABLE]
            per_data[data] = {"verdict": combine(verdicts) if parts else INCONCLUSIVE,
                              "decided": bool(testable) and all(v in DECIDED for v in testable), "parts": parts}
        entry = {"number": claim.number, "id": claim.id, "text": claim.text, "figure": claim.figure, "data": per_data}
        if claim.id in exploratory:
            entry["exploratory"] = True
        out.append(entry)
    for data in data_sets:
        families: dict[tuple[bool, bool], list[dict]] = {}
        for entry in out:
            for p in entry["data"][data]["parts"]:
                if p["kind"] == "paired" and p["verdict"] != NOT_TESTABLE:
                    families.setdefault((bool(entry.get("exploratory")), p["timed"]), []).append(p)
        for family in families.values():
            for part, adjusted in zip(family, holm([p["p"] for p in family]), strict=True):
                part["p_holm"] = adjusted
                part["holm"] = part["verdict"] in DECIDED and adjusted < ALPHA
    return out


def probe_values(data_sets: list[str], rows: list[dict], claims: list[Claim]) -> dict:
    """analysis.json: per data set, every probed or built-in quantity a claim reads, per seed
    ({data: {key: {seed: value}}})."""
    table = results_table(rows)
    out: dict = {}
    for claim in claims:
        for part in claim.parts:
            if part.probed or part.kind == "builtin":
                for data in data_sets:
                    values = check_values(part, table, data) if part.kind in ("check", "builtin") else \
                        diffs(part, table, data)
                    out.setdefault(data, {})[part.key or part.column] = values
    return out


def localize(verdicts: list[dict], claims: list[Claim], lang: str) -> list[dict]:
    """`verdicts` (English, as verdicts.json holds them) with each claim's text and part labels in `lang`, taken
    from the claims they were evaluated from (matched by id; a label without a translation stays English)."""
    if lang == "en":
        return verdicts
    by_id = {c.id: c for c in claims}
    out = []
    for v in verdicts:
        claim = by_id.get(v.get("id"))
        if claim is None:
            out.append(v)
            continue
        labels = [p.label_ko or p.label for p in claim.parts]

        def local(parts, labels=labels):
            return [{**p, "label": labels[i] if i < len(labels) else p["label"]} for i, p in enumerate(parts)]

        out.append({**v, "text": claim.text_ko or claim.text,
                    "data": {d: {**r, "parts": local(r["parts"])} for d, r in v["data"].items()}})
    return out
