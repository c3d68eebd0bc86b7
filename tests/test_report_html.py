"""Open the report in headless Chromium: every image loads and the console shows no error."""


def test_report_html_loads_every_image_without_console_errors(tiny_study, open_in_chromium):
    out, _ = tiny_study
    images, logs, title = open_in_chromium(out / "report.html")
    assert len(images) >= 8, images
    assert all(ok for _, ok in images), [alt for alt, ok in images if not ok]
    errors = [entry for entry in logs if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert "sandbag study" in title
