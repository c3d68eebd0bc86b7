"""What a reader sees: findings first, each figure once, verdicts no stronger than what was measured (not testable
parts, units, the strengths a verdict rests on)."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest

from sandbag.study import claims, stats
from sandbag.study.claims import Claim, Part
from sandbag.study.i18n import translator
from sandbag.study.report import build_report, part_sentence

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_study"
NONE, L2 = ("headline", "none"), ("headline", "l2")


def _rows(values: dict, metric: str) -> list[dict]:
    return [{"data": "d", "group": g, "arm": a, "seed": s, "status": "finished", metric: v}
            for (g, a), per_seed in values.items() for s, v in enumerate(per_seed)]


def test_a_metric_at_its_bound_in_both_arms_is_not_testable(fresh_seed):
    rng = random.Random(fresh_seed)
    n = rng.randint(3, 8)
    fit = Part(kind="paired", label="train acc lower", metric="train_acc", a=L2, b=NONE, direction="less")
    test = Part(kind="paired", label="test acc higher", metric="test_acc", a=L2, b=NONE, direction="greater")
    rows = _rows({NONE: [1.0] * n, L2: [1.0] * n}, "train_acc")
    base = [rng.uniform(0.8, 0.9) for _ in range(n)]
    for row in rows:
        row["test_acc"] = base[row["seed"]] + (0.02 + rng.uniform(0, 0.002) if row["arm"] == "l2" else 0.0)
    [result] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (fit, test))])
    saturated, measured = result["data"]["d"]["parts"]
    assert saturated["verdict"] == stats.NOT_TESTABLE and saturated["bound"] == 1.0 and "p_holm" not in saturated
    assert measured["verdict"] == stats.SUPPORTED and "p_holm" in measured
    assert result["data"]["d"]["decided"] and result["data"]["d"]["verdict"] == stats.SUPPORTED
    # one seed off the ceiling: a difference was measured, so the part is testable again
    rows[0]["train_acc"] = 0.998
    [again] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (fit,))])
    assert again["data"]["d"]["parts"][0]["verdict"] != stats.NOT_TESTABLE
    # a claim of untestable parts only is not decided
    rows[0]["train_acc"] = 1.0
    [alone] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (fit,))])
    assert alone["data"]["d"]["verdict"] == stats.NOT_TESTABLE and not alone["data"]["d"]["decided"]


def test_a_part_reads_in_plain_words_only_as_strongly_as_its_interval(fresh_seed):
    rng = random.Random(fresh_seed)
    mean = rng.uniform(0.01, 0.05)
    t = translator("en")
    decided = {"metric": "test_acc", "a": "bn", "b": "none", "mean": mean, "ci_low": mean / 2,
               "ci_high": 1.5 * mean, "label": "x"}
    text = part_sentence(decided, t)
    assert text.startswith("bn raised test accuracy by ") and f"{100 * mean:.3g} pt" in text and "over none" in text
    lowered = part_sentence({**decided, "mean": -mean, "ci_low": -1.5 * mean, "ci_high": -mean / 2}, t)
    assert lowered.startswith("bn lowered test accuracy by ")
    open_ = part_sentence({**decided, "ci_low": -mean, "ci_high": 3 * mean}, t)
    assert "raised" not in open_ and open_.startswith("test accuracy, bn minus none: +")
    ratio = part_sentence({**decided, "metric": "timing.seconds_per_epoch", "ratio": True}, t)
    assert f"{100 * mean:+.3g}%" in ratio


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader")
    study = out / "study"
    shutil.copytree(REFERENCE, study)
    build_report(study)
    return study


def test_the_report_opens_with_its_findings_and_shows_each_figure_once(reference_report):
    text = (reference_report / "report.md").read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[0] == "Findings"
    assert headings.index("Claims") < headings.index("Figures") < headings.index("Design and protocol")
    findings = text[:text.index("## Claims")]
    assert re.search(r"\*\*mnist-5k: \d+ of \d+ claims decided\.\*\*", findings)
    assert findings.count("\n- **") == 15  # one line per claim
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and len(images) == len(set(images))  # no figure twice
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors  # every "Figure:" link lands on a figure
    html = (reference_report / "report.html").read_text()
    assert html.count("<figure") == len(images) and 'href="#fig-' in html


def test_each_findings_numbers_open_a_sentence_of_their_own(reference_report):
    """After the claim's sentence, its numbers start with a capital ("Test accuracy, l2 minus l2-bias: ...") or
    with an arm's name as written ("bn raised ..."), never a lower-case word mid-line after a full stop."""
    findings = (reference_report / "report.md").read_text().split("## Claims")[0]
    verdicts = json.loads((reference_report / "verdicts.json").read_text())
    arms = {p.get("a") for v in verdicts for r in v["data"].values() for p in r["parts"]} - {None}
    lines = [line for line in findings.splitlines() if line.startswith("- **")]
    claims_with_numbers = 0
    for line, v in zip(lines, verdicts, strict=True):
        claim_text = v["text"]
        rest = line.split(claim_text, 1)[1].strip() if claim_text in line else ""
        if not rest:
            continue
        claims_with_numbers += 1
        assert rest[0].isupper() or any(rest.startswith(f"{arm} ") for arm in arms), line
    assert claims_with_numbers >= 10


def test_differences_carry_their_units(reference_report):
    text = (reference_report / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| bn: test accuracy higher"))
    assert " pt" in row
    timed = next(line for line in text.splitlines() if "seconds per epoch: dropout / none" in line
                 and line.startswith("|"))
    assert "%" in timed


def test_a_verdict_names_the_strengths_it_rests_on(tiny_study):
    study, _ = tiny_study
    text = (study / "report.md").read_text()
    section = text[text.index("### 6. Dropout narrows the train-test gap."):]
    section = section[:section.index("\n### ")]
    line = next(x for x in section.splitlines() if x.startswith("This verdict speaks of"))
    assert line.endswith(": dropout 0.4.")  # the one strength the claim's arms depend on (a one-value grid)
    penalty = text[text.index("### 4. "):]
    assert "This verdict speaks of" not in penalty[:penalty.index("\n### ")]  # no swept arm there


def test_a_metric_within_its_smallest_effect_of_the_bound_in_both_arms_is_not_testable(fresh_seed):
    """With a smallest effect of interest, a part is not testable when each arm's mean lies within it of the
    bound (one run of ten off the ceiling no longer makes it testable), and testable again once an arm's mean
    leaves that room, where a difference of that size could show."""
    rng = random.Random(fresh_seed)
    n, room = rng.randint(5, 10), rng.uniform(0.003, 0.01)
    fit = Part(kind="paired", label="train acc lower", metric="train_acc", a=L2, b=NONE, direction="less",
               smallest_effect=room)
    none = [1.0] * n
    none[rng.randrange(n)] = 1.0 - rng.uniform(0.5, 0.9) * room * n  # one unfitted run, the mean still within
    rows = _rows({NONE: none, L2: [1.0] * n}, "train_acc")
    [result] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (fit,))])
    part = result["data"]["d"]["parts"][0]
    assert part["verdict"] == stats.NOT_TESTABLE and part["bound"] == 1.0 and not part["every_run"], fresh_seed
    assert not result["data"]["d"]["decided"]
    for row in rows:  # l2 now leaves the room: its mean more than the smallest effect below 1.0
        if row["arm"] == "l2":
            row["train_acc"] = 1.0 - rng.uniform(1.5, 3.0) * room
    [again] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (fit,))])
    assert again["data"]["d"]["parts"][0]["verdict"] != stats.NOT_TESTABLE


def test_a_training_loss_within_its_smallest_effect_of_zero_in_both_arms_is_not_testable(fresh_seed):
    """Cross-entropy's floor is 0: two arms that both fit their training set (mean losses under the smallest effect
    of interest, in nats) have no room to show a looser fit of that size, one unfitted run or not; a loss above it
    in one arm is testable (and supported when it is above in every run)."""
    rng = random.Random(fresh_seed)
    n, room = rng.randint(5, 10), rng.uniform(0.003, 0.01)
    looser = Part(kind="paired", label="train loss higher", metric="train_loss", a=L2, b=NONE,
                  direction="greater", smallest_effect=room)
    none = [rng.uniform(1e-4, 5e-4) for _ in range(n)]
    none[rng.randrange(n)] = rng.uniform(0.5, 0.9) * room * n / 2  # one unfitted run, the mean still within
    l2 = [x + rng.uniform(1e-5, 1e-4) for x in none]  # higher in every run but one, by nothing that matters
    rows = _rows({NONE: none, L2: l2}, "train_loss")
    [result] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (looser,))])
    part = result["data"]["d"]["parts"][0]
    assert part["verdict"] == stats.NOT_TESTABLE and part["bound"] == 0.0 and not part["every_run"], fresh_seed
    for row in rows:  # l2 now fits loosely: every run above the smallest effect
        if row["arm"] == "l2":
            row["train_loss"] = room * rng.uniform(2.0, 4.0) + max(none)
    [again] = claims.evaluate_claims(["d"], rows, [Claim(1, "c", "claim", (looser,))])
    assert again["data"]["d"]["parts"][0]["verdict"] == stats.SUPPORTED
