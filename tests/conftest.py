from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny study (27 one-epoch runs on a 200-sample slice) with its report, built once per session."""
    from sandbag.report import build_report
    from sandbag.study import load_config, run_study

    out = tmp_path_factory.mktemp("study") / "tiny"
    rows = run_study(load_config(TINY), out, workers=2, threads=1, command="sandbag study --config configs/tiny.toml")
    build_report(out)
    return out, rows
