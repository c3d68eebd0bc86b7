"""The report is pure: it rebuilds from study.json, results.csv, metrics.jsonl and probes.json alone, with neither
torch, the data set code nor any model.pt, and gives the same verdicts byte for byte."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from sandbag.cli import main
from sandbag.fonts import hangul_family


def test_report_rebuilds_without_models_data_or_torch(tiny_study, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_study[0], copy)
    verdicts, analysis = (copy / "verdicts.json").read_bytes(), (copy / "analysis.json").read_bytes()
    models = list(copy.glob("runs/*/*/model.pt"))
    assert len(models) == 27
    for path in models:
        path.unlink()
    for name in ("verdicts.json", "analysis.json", "report.html", "report.md"):
        (copy / name).unlink()
    code = ("import sys\n"
            "from sandbag.study.report import build_report\n"
            f"build_report({str(copy)!r})\n"
            "loaded = [m for m in ('torch', 'sandbag.data', 'sandbag.train', 'sandbag.runs') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    env = {**os.environ, "SANDBAG_DATA": str(tmp_path / "no-data-here")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (copy / "verdicts.json").read_bytes() == verdicts
    assert (copy / "analysis.json").read_bytes() == analysis
    assert (copy / "report.html").stat().st_size > 0


def test_every_finished_run_has_small_probes_and_the_claims_read_them(tiny_study):
    out, _ = tiny_study
    probes = {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/*/probes.json")}
    assert len(probes) == 27
    for name, p in probes.items():
        assert (out.glob(f"runs/*/{name}/probes.json").__next__()).stat().st_size < 32_000, name
        assert sum(p["weights"]["counts"]) + p["weights"]["below"] + p["weights"]["above"] == p["weights"]["n"]
        assert ("dropout_accuracy_drop" in p) == ("-dropout" in name or name.startswith("sweep-dropout")), name
        assert ("bn_z_mean_absmax" in p) == ("-bn" in name), name
    verdicts = {v["number"]: v["data"]["mnist-5k"] for v in json.loads((out / "verdicts.json").read_text())}
    for number in (8, 9, 10):
        assert all(part["n"] == 2 for part in verdicts[number]["parts"]), verdicts[number]


def test_import_of_the_report_loads_no_torch():
    code = "import sys; import sandbag.study.report; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
    times = subprocess.run([sys.executable, "-X", "importtime", "-c", "import sandbag.study.report"],
                           capture_output=True, text=True, timeout=120).stderr
    assert "torch" not in times


def _snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("lang", ["en", pytest.param("ko", marks=pytest.mark.skipif(
    hangul_family() is None, reason="no Hangul font installed (make test installs Debian's fonts-nanum)"))])
def test_report_out_writes_everything_there_and_only_reads_the_study(tiny_study, tmp_path, capsys, lang):
    """`sandbag report STUDY --lang ko --out DIR`: the study folder keeps every byte (its English report too), and
    DIR holds a whole report whose figures are its own."""
    study = tmp_path / "tiny"
    shutil.copytree(tiny_study[0], study)
    before = _snapshot(study)
    out = tmp_path / "report-ko"
    capsys.readouterr()
    assert main(["report", str(study), "--lang", lang, "--out", str(out)]) == 0
    assert _snapshot(study) == before
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out / "report.html")
    written = _snapshot(out)
    assert {"report.html", "report.md", "verdicts.json", "analysis.json"} <= set(written)
    figures = sorted(name for name in written if name.startswith("figures/"))
    assert figures == sorted(name for name in before if name.startswith("figures/"))  # the same eight, redrawn
    assert written["verdicts.json"] == before["verdicts.json"]  # same study, same verdicts, in any language
    if lang == "ko":  # the Korean figures are new ones; the English ones stay in the study folder (snapshot)
        assert all(written[name] != before[name] for name in figures)
    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", written["report.md"].decode())
    assert linked and all((out / link).is_file() for link in linked)
    html = written["report.html"].decode()
    assert f'<html lang="{lang}">' in html and html.count("data:image/png;base64,") == len(linked)
    assert str(study) in written["report.md"].decode()  # it says where the study's results are
