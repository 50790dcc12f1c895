"""scripts/ui_check.py on Data Docs in a real browser (Debian's chromium through playwright; skipped without them):
GE's own page fails it, ours passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "tests" / "data" / "ge_validation_result.json"
BROWSER = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not BROWSER.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")


def _check(page: Path, out: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("playwright")
    return subprocess.run([sys.executable, str(REPO / "scripts" / "ui_check.py"), "--no-airflow", "--data-docs",
                           str(page), "--out", str(out)], capture_output=True, text=True, timeout=120)


def _ge_page(offline: bool) -> str:
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    from pipeline import datadocs

    result = ExpectationSuiteValidationResultSchema().load(json.loads(RESULT.read_text()))
    html = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    return datadocs.offline(html) if offline else html


def test_ge_s_own_page_fails_the_check_with_one_line(tmp_path):
    page = tmp_path / "validation.html"
    page.write_text(_ge_page(offline=False))  # its CDNs blocked: bare text, no icons, a logo, dead links
    out = _check(page, tmp_path / "shots")
    assert out.returncode == 1 and out.stderr.startswith("ui_check: error: the Data Docs"), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_our_page_passes_it_with_an_icon_in_every_status_cell(tmp_path):
    page = tmp_path / "validation.html"
    page.write_text(_ge_page(offline=True))
    out = _check(page, tmp_path / "shots")
    assert out.returncode == 0, out.stderr
    assert "4 status icons" in out.stdout and (tmp_path / "shots" / "data-docs.png").stat().st_size > 10_000
