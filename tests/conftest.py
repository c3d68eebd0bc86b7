import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny study (27 one-epoch runs on a 200-sample slice) with its report, built once per session."""
    from sandbag.study import load_config, run_study
    from sandbag.study.report import build_report

    out = tmp_path_factory.mktemp("study") / "tiny"
    rows = run_study(load_config(TINY), out, workers=2, threads=1, command="sandbag study --config configs/tiny.toml")
    build_report(out)
    return out, rows


@contextmanager
def no_missing_glyphs():
    """AssertionError after the block, naming each distinct report of a missing glyph matplotlib made inside it.

    matplotlib reports one in two ways: plain text through `warnings` ("Glyph 48176 (...) missing from font(s)
    ..."), mathtext through `logging` ("Font 'default' does not have a glyph for '\\u2212' ...": the minus of a
    log axis's tick label). Both are collected here; a check on the warning alone misses every tick label."""
    logged: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            logged.append(record.getMessage())

    handler, logger = Collect(logging.WARNING), logging.getLogger("matplotlib")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level or logging.WARNING, logging.WARNING))  # a quieter matplotlib logger would hide them
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    found = sorted({m for m in [*logged, *(str(w.message) for w in caught)] if "glyph" in m.lower()})
    assert not found, f"{len(found)} kinds of missing glyph: " + " | ".join(found)


SEED_ENV = "SANDBAG_TEST_SEED"


@pytest.fixture
def fresh_seed(request):
    """A new random seed for each run of a randomized test (or $SANDBAG_TEST_SEED); printed when the test fails."""
    import os

    seed = int(os.environ.get(SEED_ENV) or int.from_bytes(os.urandom(4), "little"))
    request.node.fresh_seed = seed
    return seed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    seed = getattr(item, "fresh_seed", None)
    if seed is not None and report.failed:
        report.sections.append(("fresh seed", f"this run drew seed {seed}; rerun it with {SEED_ENV}={seed}"))


@pytest.fixture
def open_in_chromium(tmp_path, monkeypatch):
    """``open(html_path) -> (images as [alt, loaded], console log, title)`` in headless Chromium (selenium), or a
    skip where Chromium is not installed."""
    import shutil

    chromium_bin = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium_bin or not driver:
        pytest.skip("headless Chromium is not installed (make test installs Debian's chromium and chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must not look for drivers online

    def start():
        options = webdriver.ChromeOptions()
        options.binary_location = chromium_bin
        for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}"]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))

    def open_page(page: Path) -> tuple[list, list, str]:
        browser = start()
        try:
            browser.get(page.resolve().as_uri())
            images = browser.execute_script(
                "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
            return images, browser.get_log("browser"), browser.title
        finally:
            browser.quit()

    return open_page
