import math

import matplotlib.image
import numpy as np
import pytest
from conftest import no_missing_glyphs

from sandbag.fonts import hangul_family
from sandbag.study import figures as F
from sandbag.study import penalty as C

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _fresh_rng():
    """Fresh random inputs every run; the seed goes into assertion messages so a failure can be replayed."""
    seed = int(np.random.SeedSequence().entropy % 2**32)
    return seed, np.random.default_rng(seed)


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.ptp(image[..., :3]) > 0  # not a blank canvas


# ---------------------------------------------------------------------------------------------------------------
# Closed forms vs grid search


def test_closed_forms_match_grid_search_on_random_problems():
    seed, rng = _fresh_rng()
    lo, hi, n = -12.0, 12.0, 240001
    step = (hi - lo) / (n - 1)
    for _ in range(20):
        a, w0 = rng.uniform(0.5, 2), rng.uniform(-6, 6)
        lam, alpha = rng.uniform(0, 5), rng.uniform(0, 8)
        l2 = C.numeric_minimum(lambda w, a=a, w0=w0, lam=lam: a * (w - w0) ** 2 / 2 + lam * w**2 / 2, lo, hi, n)
        l1 = C.numeric_minimum(lambda w, a=a, w0=w0, al=alpha: a * (w - w0) ** 2 / 2 + al * np.abs(w), lo, hi, n)
        assert abs(l2 - C.l2_minimum(a, w0, lam)) <= step, (seed, a, w0, lam)
        assert abs(l1 - C.l1_minimum(a, w0, alpha)) <= step, (seed, a, w0, alpha)
        if alpha >= a * abs(w0):
            assert l1 == 0.0 and C.l1_minimum(a, w0, alpha) == 0.0, (seed, a, w0, alpha)


def test_closed_forms_on_hand_checked_values():
    assert C.l2_minimum(1.0, 4.5, 0.5) == pytest.approx(3.0)
    assert C.l2_minimum(2.0, -3.0, 1.0) == pytest.approx(-2.0)
    assert C.l1_minimum(1.0, 4.5, 1.0) == pytest.approx(3.5)
    assert C.l1_minimum(2.0, -3.0, 2.0) == pytest.approx(-2.0)
    assert C.l1_minimum(1.0, 4.5, 4.5) == 0.0 and C.l1_minimum(1.0, -4.5, 6.0) == 0.0
    with pytest.raises(ValueError):
        C.numeric_minimum(np.abs, 1.0, 1.0)


def test_penalty_figure_minima_match_closed_forms_and_move_as_theory_says(tmp_path):
    seed, rng = _fresh_rng()
    a = float(rng.uniform(0.5, 2))
    w0 = 4.5
    lams = tuple(float(v) for v in rng.uniform(0.1, 1) * 1.7 ** np.arange(5))  # increasing, well apart
    alphas = tuple(float(v) for v in np.sort(np.r_[rng.uniform(0.1, a * w0, 3), a * w0, rng.uniform(1, 3) * a * w0]))
    n = 20001
    out = F.penalty_figure(tmp_path / "penalty.png", lams=lams, alphas=alphas, a=a, w0=w0, n=n)
    _assert_png(tmp_path / "penalty.png")

    span = max(abs(w0), 1.0)
    step = ((max(0, w0) + 0.45 * span + 0.5) - (min(0, w0) - 0.45 * span - 0.5)) / (n - 1)
    assert [r["lam"] for r in out["l2"]] == pytest.approx(lams)
    assert [r["alpha"] for r in out["l1"]] == pytest.approx(alphas)
    for r in out["l2"]:
        assert r["closed_form"] == pytest.approx(C.l2_minimum(a, w0, r["lam"]))
        assert abs(r["numeric_min"] - r["closed_form"]) <= step, (seed, a, r)
    for r in out["l1"]:
        assert r["closed_form"] == pytest.approx(C.l1_minimum(a, w0, r["alpha"]))
        assert abs(r["numeric_min"] - r["closed_form"]) <= step, (seed, a, r)

    # L2: the minimum moves toward 0 as lambda grows, and never reaches it
    l2_numeric = [r["numeric_min"] for r in out["l2"]]
    l2_closed = [r["closed_form"] for r in out["l2"]]
    assert all(x > y for x, y in zip(l2_numeric, l2_numeric[1:], strict=False)), (seed, l2_numeric)
    assert all(x > y > 0 for x, y in zip(l2_closed, l2_closed[1:], strict=False)), (seed, l2_closed)
    assert min(l2_numeric) > 0
    # L1: exactly 0 once alpha >= a * w0, strictly positive before; at alpha = a * w0 too (|w0| - alpha / a left
    # 8.9e-16 there for a = 0.9766408340247965)
    assert C.l1_minimum(0.9766408340247965, 4.5, 0.9766408340247965 * 4.5) == 0.0
    for r in out["l1"]:
        if r["alpha"] >= a * w0:
            assert r["numeric_min"] == 0.0 and r["closed_form"] == 0.0, (seed, a, r)
        else:
            assert r["closed_form"] > 0 and r["numeric_min"] > 0, (seed, a, r)


def test_penalty_figure_defaults(tmp_path):
    out = F.penalty_figure(tmp_path / "p.png")
    assert [r["closed_form"] for r in out["l2"]] == pytest.approx([3.0, 2.25, 1.5, 0.9])
    assert [r["closed_form"] for r in out["l1"]] == pytest.approx([3.5, 2.0, 0.0, 0.0])
    assert [r["numeric_min"] for r in out["l1"]][2:] == [0.0, 0.0]
    assert [r["numeric_min"] for r in out["l2"]] == pytest.approx([3.0, 2.25, 1.5, 0.9], abs=1e-3)


def test_penalty_figure_negative_optimum_and_single_values(tmp_path):
    out = F.penalty_figure(tmp_path / "neg.png", lams=(1.0,), alphas=(0.5,), a=2.0, w0=-3.0)
    assert out["l2"][0]["numeric_min"] == pytest.approx(-2.0, abs=2e-3)
    assert out["l1"][0]["numeric_min"] == pytest.approx(-2.75, abs=2e-3)
    _assert_png(tmp_path / "neg.png")
    empty = F.penalty_figure(tmp_path / "empty.png", lams=(), alphas=())
    assert empty == {"l2": [], "l1": []}
    _assert_png(tmp_path / "empty.png")


# ---------------------------------------------------------------------------------------------------------------
# Colors


def test_each_arm_keeps_its_color():
    arms = ["none", "l2", "l1", "noise", "dropout", "bn", "l2-bias", "l1-prox", "bn-post"]
    colors = F.palette(["none", "l2", *arms])
    assert list(colors) == arms and len(set(colors.values())) == len(arms)  # distinct, first-come order
    assert F.palette(arms) == colors  # the same list gives the same colors, in every figure
    assert F.color_for("l2=1e-3", colors) == F.color_for("l2", colors) == colors["l2"]
    assert F.color_for("l1-prox", colors) == colors["l1-prox"]
    assert F.color_for("something-new", colors) == F.color_for("something-new")  # stable fallback
    assert F.color_for("") == F.OTHER


def test_weight_histogram_from_counts_matches_raw_values(tmp_path, fresh_seed):
    rng = np.random.default_rng(fresh_seed)
    v = np.where(rng.random(3000) < 0.3, 0.0, rng.laplace(0, 0.02, 3000))
    raw = F.histogram(v, edges=np.linspace(-1, 1, 201))
    assert raw["n"] == 3000 and raw["zero"] == int(np.sum(v == 0)), fresh_seed
    assert raw["small"] == int(np.sum(np.abs(v) < 1e-3)) and sum(raw["counts"]) == 3000, fresh_seed
    assert F.histogram(raw) == raw  # a histogram dict (probes.json) passes through
    _assert_png(F.weight_histograms(tmp_path / "w.png", {"l1-prox": raw, "none": rng.normal(0, 0.05, 500)}))


# ---------------------------------------------------------------------------------------------------------------
# Every figure writes a valid PNG, for typical and degenerate inputs


def _curves(rng, arms, seeds, epochs):
    return {
        arm: {
            "epoch": list(range(1, epochs + 1)),
            "train_acc": [list(np.sort(rng.uniform(0.8, 1, epochs))) for _ in range(seeds)],
            "test_acc": [list(np.sort(rng.uniform(0.7, 0.9, epochs))) for _ in range(seeds)],
        }
        for arm in arms
    }


def _cases():
    rng = np.random.default_rng()
    weights = {
        "none": rng.normal(0, 0.05, 5000),
        "l2": rng.normal(0, 0.02, 5000),
        "l1": rng.laplace(0, 0.01, 5000),
        "l1-prox": np.where(rng.random(5000) < 0.6, 0.0, rng.laplace(0, 0.02, 5000)),
    }
    bs_rows = [
        {"batch_size": b, "bn": bn, "test_acc_mean": rng.uniform(0.8, 0.95), "test_acc_ci": rng.uniform(0, 0.02),
         "seconds_per_epoch_mean": 40 / math.sqrt(b)}
        for b in (16, 32, 64, 128) for bn in (False, True)
    ]
    head_rows = [
        {"arm": arm, "test_acc_mean": rng.uniform(0.9, 0.97), "test_acc_ci": rng.uniform(0, 0.01),
         "gap_mean": rng.uniform(-0.01, 0.05), "gap_ci": rng.uniform(0, 0.01), "n": 5}
        for arm in ("none", "l2", "l1", "l1-prox", "noise", "dropout", "bn", "bn-post")
    ]
    sweeps = {
        "l2": [(v, rng.uniform(0.9, 0.95)) for v in (1e-5, 1e-4, 1e-3, 1e-2) for _ in range(2)],
        "dropout": [(v, rng.uniform(0.9, 0.95)) for v in (0.1, 0.3, 0.5)],
        "noise": [(0.0, 0.9), (0.1, 0.92), (1.0, 0.91)],
    }
    masks = rng.random((12, 128)) < 0.5
    return [
        # typical
        ("curves", F.learning_curves, (_curves(rng, ["none", "l2", "dropout", "bn"], 3, 6),)),
        ("weights", F.weight_histograms, (weights,)),
        ("dropout", F.dropout_figure, (masks, [0.95, 0.96, 0.955], [0.9, 0.92, 0.91])),
        ("bn", F.bn_figure, (list(rng.normal(3, 0.2, 2000)), list(rng.normal(0, 1, 2000)), "(conv2d, channel 3)")),
        ("batch", F.batch_size_figure, (bs_rows,)),
        ("headline", F.headline_figure, (head_rows,)),
        ("validation", F.validation_curves, (sweeps, {"l2": 1e-3, "dropout": 0.3, "noise": 0.1})),
        # one seed, one epoch, one of everything
        ("curves-1", F.learning_curves, (_curves(rng, ["l1-prox"], 1, 1),)),
        ("weights-1", F.weight_histograms, ({"l1-prox": np.zeros(10)},)),
        ("dropout-1", F.dropout_figure, (np.ones((1, 4), bool), [0.9], [0.8])),
        ("bn-1", F.bn_figure, ([1.0], [0.0])),
        ("batch-1", F.batch_size_figure, ([{"batch_size": 32, "bn": True, "test_acc_mean": 0.9, "test_acc_ci": None,
                                            "seconds_per_epoch_mean": None}],)),
        ("headline-1", F.headline_figure, ([{"arm": "new-technique", "test_acc_mean": 0.9, "test_acc_ci": None,
                                             "gap_mean": 0.01, "gap_ci": None, "n": 1}],)),
        ("validation-1", F.validation_curves, ({"l2": [(1e-3, 0.9)]}, {"l2": 1e-3})),
        # a diverged seed (shorter list, nan), mixed empties
        ("curves-ragged", F.learning_curves, ({"noise": {"epoch": [1, 2, 3], "train_acc": [[0.5, 0.6, 0.7], [0.5]],
                                                         "test_acc": [[0.4, float("nan"), 0.6], [0.4]]},
                                               "empty": {"epoch": [], "train_acc": [], "test_acc": []}},)),
        ("weights-mixed", F.weight_histograms, ({"none": rng.normal(0, 1, 100), "l1": np.array([])},)),
        ("validation-mixed", F.validation_curves, ({"l2": [], "noise": [(0.0, 0.9), (0.0, 0.91)]}, {})),
        ("dropout-no-masks", F.dropout_figure, (np.zeros((0, 0), bool), [0.9], [])),
        # empty: a "no data" figure, never a crash
        ("curves-0", F.learning_curves, ({},)),
        ("weights-0", F.weight_histograms, ({},)),
        ("dropout-0", F.dropout_figure, (np.zeros((0, 0), bool), [], [])),
        ("bn-0", F.bn_figure, ([], [])),
        ("batch-0", F.batch_size_figure, ([],)),
        ("headline-0", F.headline_figure, ([],)),
        ("validation-0", F.validation_curves, ({}, {})),
    ]


LANGS = [pytest.param("en"), pytest.param("ko", marks=pytest.mark.skipif(
    hangul_family() is None, reason="no Hangul font installed (make test installs Debian's fonts-nanum)"))]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name, func, args", _cases(), ids=[c[0] for c in _cases()])
def test_every_figure_writes_a_valid_png(tmp_path, name, func, args, lang, monkeypatch):
    """...in each language with every glyph drawn, and without pyplot's global figure manager (which leaks figures
    in a long study and needs a backend): any use of it fails here."""
    import matplotlib.pyplot as plt

    def no_pyplot(*args, **kwargs):
        raise AssertionError("figures must not use pyplot's global state")

    for name_ in ("figure", "subplots", "gcf", "gca", "savefig", "subplot_mosaic"):
        monkeypatch.setattr(plt, name_, no_pyplot)
    path = tmp_path / "sub" / f"{name}.png"
    with no_missing_glyphs(), F.language(lang):
        out = func(path, *args, lang=lang)
    assert out == path
    _assert_png(path)


def _texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # no Hangul font needed: the text is read, not drawn
def test_korean_figures_name_the_techniques_in_korean(monkeypatch, tmp_path):
    """lang="ko": every label that names a technique uses the catalog's Korean name (README: figures in the lecture's
    terms); lang="en" keeps the arm names. Read off the drawn figures' text, before any font renders them."""
    from sandbag.study.i18n import TECHNIQUES_KO

    drawn = []
    monkeypatch.setattr(F, "_save", lambda fig, path: drawn.append(fig) or path)
    arms = ["none", "l2", "l1", "noise", "dropout", "bn", "bn-post"]
    rng = np.random.default_rng()
    rows = [{"arm": a, "test_acc_mean": 0.9, "test_acc_ci": 0.01, "gap_mean": 0.02, "gap_ci": 0.01, "n": 3}
            for a in arms]
    sweeps = {"l2": [(1e-4, 0.9), (1e-3, 0.91)], "dropout": [(0.3, 0.9), (0.5, 0.92)]}
    texts = {}
    for lang in ("en", "ko"):
        drawn.clear()
        F.headline_figure(tmp_path / "h.png", rows, lang=lang)
        F.learning_curves(tmp_path / "c.png", _curves(rng, arms, 2, 3), lang=lang)
        F.weight_histograms(tmp_path / "w.png", {a: rng.normal(0, 0.05, 500) for a in ("none", "l2", "l1")},
                            lang=lang)
        F.validation_curves(tmp_path / "v.png", sweeps, {"l2": 1e-3}, lang=lang)
        F.regime_map(tmp_path / "r.png", *_regime_rows(rng, arms[1:6], (100, 400)), lang=lang)
        texts[lang] = [text for fig in drawn for text in _texts(fig)]
    ko, en = texts["ko"], texts["en"]
    for arm in arms:
        name = TECHNIQUES_KO[arm] if arm != "bn-post" else "배치 정규화 (활성화 뒤)"
        assert f"{name} (n=3)" in ko and f"{name} (n=2 seeds)" not in ko, arm  # headline ticks
        assert f"{arm} (n=3)" in en and not any(text.startswith(f"{arm} (n=") for text in ko), arm
    assert "드롭아웃 (시드 n=2)" in ko  # a learning-curve panel
    assert any(text.startswith("L1 정규화 (n=500)") for text in ko)  # a weight-histogram legend
    assert {"L2 정규화", "L2 정규화 강도", "드롭아웃 강도"} <= set(ko) and {"l2", "l2 strength"} <= set(en)
    legends = {t for fig in drawn for ax in fig.axes if ax.get_legend() for t in _texts(ax.get_legend())}
    assert {TECHNIQUES_KO[a] for a in arms[:6]} <= legends  # the regime map's legends (the last figure drawn)
    assert not set(arms[:6]) & legends


def _regime_rows(rng, techniques, sizes) -> tuple[list[dict], list[dict]]:
    """Rows as `regime.regime_rows` and `regime.accuracy_rows` give them, with random numbers."""
    effects = [{"technique": tech, "train_size": n, "metric": metric, "mean": m, "ci_low": m - 0.01,
                "ci_high": m + 0.01, "n": 3, "smallest_effect": 0.005}
               for tech in techniques for n in sizes for metric in ("test_acc", "gap")
               for m in [float(rng.normal(0, 0.02))]]
    accuracy = [{"arm": arm, "train_size": n, "mean": a, "ci_low": a - 0.01, "ci_high": a + 0.01, "n": 3}
                for arm in ["none", *techniques] for n in sizes for a in [float(rng.uniform(0.7, 0.95))]]
    return effects, accuracy


def test_technique_labels_cover_the_registry_and_leave_unknown_names_alone():
    from sandbag.regularizers import TECHNIQUES
    from sandbag.study.i18n import TECHNIQUES_KO, technique_label

    assert set(TECHNIQUES) | {"none"} == set(TECHNIQUES_KO)
    cases = {"dropout": "드롭아웃", "l2-bias": "L2 정규화 (편향 포함)", "bn-b8": "배치 정규화 (배치 8)",
             "none-b128": "정규화 없음 (배치 128)", "dropout=0.5+l2=1e-3": "드롭아웃=0.5+L2 정규화=1e-3",
             "my-arm": "my-arm", "bn-later": "bn-later", "dropout+mine": "dropout+mine", "keep=0.6": "keep=0.6"}
    for name, shown in cases.items():
        assert technique_label(name, "ko") == shown, name
        assert technique_label(name, "en") == name
