"""`--lang ko`: the report, its claims and its figures in Korean, with every Hangul glyph drawn (no empty boxes)."""

import base64
import json
import re
import shutil
from pathlib import Path

import matplotlib
import pytest
from conftest import no_missing_glyphs
from matplotlib.figure import Figure

from sandbag.cli import main
from sandbag.fonts import hangul_family
from sandbag.study import figures, i18n
from sandbag.study.figures import language
from sandbag.study.report import FIGURES, build_report

REFERENCE = Path(__file__).resolve().parent / "data" / "reference_study"
HANGUL = re.compile(r"[\uac00-\ud7a3]")

needs_font = pytest.mark.skipif(hangul_family() is None, reason="no Hangul font installed (make test installs "
                                                                "Debian's fonts-nanum)")


def _log_axis(path, family: list[str]) -> None:
    """A log axis from 1e-6 to 1e-3 (tick labels `$\\mathdefault{10^{-6}}$`...) drawn with `family` first."""
    with matplotlib.rc_context({"font.family": family}):
        fig = Figure()
        ax = fig.subplots()
        ax.set_xscale("log")
        ax.set_xlim(1e-6, 1e-3)
        fig.savefig(path)


def test_the_glyph_check_catches_both_ways_matplotlib_reports_a_missing_glyph(tmp_path):
    """Hangul text in the default font (a `warnings` warning) and a log axis's minus in a font without U+2212 (a
    `logging` record from mathtext; matplotlib's cmss10 has no U+2212, so no Hangul font is needed). The old check
    turned only warnings matching "Glyph .* missing from font" into errors: it let the second through."""
    fig = Figure()
    fig.subplots().set_title("배치 정규화")
    with pytest.raises(AssertionError, match="Glyph 48176"), no_missing_glyphs():
        fig.savefig(tmp_path / "hangul.png")
    with pytest.raises(AssertionError, match=r"does not have a glyph for '\\u2212'"), no_missing_glyphs():
        _log_axis(tmp_path / "minus.png", ["cmss10"])
    with no_missing_glyphs():
        _log_axis(tmp_path / "dejavu.png", ["DejaVu Sans"])


@needs_font
def test_a_korean_log_axis_draws_its_minus_signs(tmp_path):
    """The Hangul font alone (Nanum Gothic has no U+2212) lost the minus of every log tick: 10¤6 for 10^-6.
    `language("ko")` draws it, and Hangul beside it."""
    with pytest.raises(AssertionError, match="u2212"), no_missing_glyphs():
        _log_axis(tmp_path / "hangul-first.png", [hangul_family(), "DejaVu Sans"])
    with no_missing_glyphs(), language("ko"):
        fig = Figure()
        ax = fig.subplots()
        ax.set_xscale("log")
        ax.set_xlim(1e-6, 1e-3)
        ax.set_xlabel("l2 강도: −0.5")
        fig.savefig(tmp_path / "ko.png")


@pytest.mark.parametrize("lang", ["en", pytest.param("ko", marks=needs_font)])
def test_every_figure_of_the_report_draws_every_glyph(tmp_path, lang):
    """The report's figures (each of `report.FIGURES`) of a finished study, tests/data/reference_study: its sweep
    spans decades (log axes, negative exponents), its probes fill the dropout and BN figures."""
    study = tmp_path / "study"
    shutil.copytree(REFERENCE, study)
    with no_missing_glyphs():
        build_report(study, lang=lang)
    drawn = {p.stem for p in (study / "figures" / "mnist-5k").glob("*.png")}
    assert drawn == set(FIGURES), drawn ^ set(FIGURES)


@needs_font
def test_the_report_check_fails_with_the_hangul_font_first(tmp_path, monkeypatch):
    """The same report with the font order sandbag had before (the Hangul font first): its log-axis ticks lose
    the minus, and the check above says so."""
    monkeypatch.setattr(figures, "use_hangul_font",
                        lambda: matplotlib.rcParams.update({"font.family": [hangul_family(), "DejaVu Sans"]}))
    study = tmp_path / "study"
    shutil.copytree(REFERENCE, study)
    with pytest.raises(AssertionError, match=r"'default' does not have a glyph for '\\u2212'"), no_missing_glyphs():
        build_report(study, lang="ko")


@pytest.fixture(scope="module")
def korean_study(tiny_study, tmp_path_factory):
    """A copy of the tiny study with its report rebuilt by `sandbag report --lang ko` (a missing glyph fails it)."""
    if hangul_family() is None:
        pytest.skip("no Hangul font installed (make test installs Debian's fonts-nanum)")
    src, _ = tiny_study
    out = tmp_path_factory.mktemp("ko") / "tiny"
    shutil.copytree(src, out)
    english = (out / "verdicts.json").read_text()
    i18n.MISSING.clear()
    with no_missing_glyphs():
        assert main(["report", str(out), "--lang", "ko"]) == 0
    return out, english


@needs_font
def test_korean_report_has_no_english_template_left(korean_study):
    out, _ = korean_study
    assert not i18n.MISSING, sorted(i18n.MISSING)
    md = (out / "report.md").read_text()
    for heading in ("## 실험 방법", "## 주장", "## 파일", "고른 강도", "주 비교"):
        assert heading in md
    for english in ("## Protocol", "## Claims", "Verdict rule", "Chosen strengths", "survives Holm"):
        assert english not in md
    assert '<html lang="ko">' in (out / "report.html").read_text()


@needs_font
def test_korean_report_gives_durations_in_korean_units(korean_study):
    out, _ = korean_study
    md = (out / "report.md").read_text()
    assert re.search(r"경과 시간 \d+(\.\d)?(분|초), 학습에 쓴 계산 시간 \d+(\.\d)?(분|초)\.", md), md[:600]
    assert not re.search(r"\d (min|s)\b", md.split("## ")[0])  # the header, where the durations are


@needs_font
def test_korean_claims_and_verdict_words(korean_study):
    out, english = korean_study
    md = (out / "report.md").read_text()
    verdicts = json.loads(english)
    assert (out / "verdicts.json").read_text() == english  # machine-readable results stay English in any language
    for v in verdicts:
        heading = next(line for line in md.splitlines() if line.startswith(f"### {v['number']}. "))
        assert HANGUL.search(heading), heading
        assert v["text"] not in md
    words = {i18n.KO[mark] for mark in ("SUPPORTED", "CONTRADICTED", "NEGLIGIBLE", "inconclusive", "mixed")}
    assert any(word in md for word in words)


def test_every_catalog_entry_fills_the_same_fields():
    """A Korean template names exactly the fields of its English key, so no value is dropped or invented."""
    fields = re.compile(r"{(\w*)(?::[^}]*)?}")
    for english, korean in i18n.KO.items():
        assert sorted(fields.findall(english)) == sorted(fields.findall(korean)), english


@needs_font
def test_korean_report_opens_in_chromium(korean_study, open_in_chromium):
    out, _ = korean_study
    images, logs, title = open_in_chromium(out / "report.html")
    assert len(images) >= 8 and all(ok for _, ok in images), images
    assert not [entry for entry in logs if entry["level"] in ("SEVERE", "ERROR")], logs
    assert title.startswith("sandbag 실험")


def _templates(path: Path) -> set[str]:
    """The literal templates a module passes to its translator (`t("...")`, `tr("...")`)."""
    import ast

    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("t", "tr")
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value)
    return out


def test_the_catalog_has_every_template_the_code_translates_without_a_font():
    """Read off the source, no font and no report needed: every literal template of the report, the figures and
    the command line, and every verdict word, has its Korean entry."""
    from sandbag.study.report import VERDICT_MARK

    src = Path(__file__).resolve().parents[1] / "src" / "sandbag"
    used = set().union(*(_templates(src / name) for name in ("study/report.py", "study/figures.py", "cli.py")))
    assert len(used) > 100  # the scan finds them (a renamed translator would make this test vacuous)
    missing = sorted(u for u in used | set(VERDICT_MARK.values()) if u not in i18n.KO)
    assert not missing, missing


def test_durations_and_statistical_words_read_as_korean():
    """Minutes as 분 and seconds as 초; a reused run is 재사용 (not 다시 씀, "rewritten"); Holm's family-wise error rate
    is 전체 제1종 오류율 (not 가족별, a word-for-word "per family")."""
    from sandbag.study.report import format_duration

    ko, en = i18n.translator("ko"), i18n.translator("en")
    assert (format_duration(754, ko), format_duration(45.4, ko), format_duration(None, ko)) == ("12.6분", "45초", "n/a")
    assert (format_duration(754, en), format_duration(45.4, en)) == ("12.6 min", "45 s")
    korean = "\n".join(i18n.KO.values())
    assert "다시 씁" not in korean and "가족" not in korean and not re.search(r"\d\s*min\b|\{\w+\} ?min\b", korean)
    reuse = next(v for k, v in i18n.KO.items() if "reuses the runs done" in k)
    assert "재사용" in reuse
    assert all("전체 제1종 오류율" in v for k, v in i18n.KO.items() if "family-wise" in k)


def test_korean_catalog_is_complete_without_a_hangul_font(tiny_study, tmp_path, monkeypatch):
    """Every sentence of a Korean report has its catalog entry, checked where no Hangul font is installed too: the
    figures (the only part that needs the font) are stood in for by one blank PNG."""
    import contextlib

    from sandbag.study import report
    from sandbag.study.layout import CELL_FIGURES

    src, _ = tiny_study
    out = tmp_path / "tiny"
    shutil.copytree(src, out)
    blank = out / "blank.png"
    blank.write_bytes(base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="))
    monkeypatch.setattr(figures, "language", lambda lang="en": contextlib.nullcontext())
    monkeypatch.setattr(report, "draw_figures", lambda x: {f: Path("blank.png") for f in CELL_FIGURES})
    i18n.MISSING.clear()
    report.build_report(out, lang="ko")
    assert not i18n.MISSING, sorted(i18n.MISSING)
    assert "## 결과 요약" in (out / "report.md").read_text()
