"""Great Expectations Data Docs as one self-contained page: styled, with its status icons, and no network.

GE's page loads Bootstrap, jQuery, Font Awesome and a dozen other assets from CDNs, shows a logo
from S3, and links to the Data Docs site's index and suite pages, which a single validation page
does not have. So offline it rendered as bare text, and inside MLflow's artifact viewer (which shows
the one file, not the folder beside it) without styles and with ``$ is not defined``.
:func:`offline` inlines what the page needs from installed packages (Bootstrap 4 and jQuery as
Bootstrap-Flask ships them, GE's own Data Docs stylesheet), draws the status icons with Unicode
glyphs in place of the icon font (✔ succeeded, ✖ failed, ⚠ warning), drops every other remote asset
(table filters, date pickers, chart libraries, web fonts, the logo) and turns links to pages that
do not exist into plain text. No request leaves the page; links to the web a person may click stay.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

__all__ = ["page", "offline", "remote_assets", "dead_links", "ICONS"]

# remote asset (matched in its URL) -> the installed file whose text replaces it
_LOCAL = {
    "bootstrap/4.3.1/css/bootstrap.min.css": ("flask_bootstrap", "static/bootstrap4/css/bootstrap.min.css"),
    "code.jquery.com/jquery": ("flask_bootstrap", "static/bootstrap4/jquery.min.js"),
    "bootstrap/4.3.1/js/bootstrap.min.js": ("flask_bootstrap", "static/bootstrap4/js/bootstrap.min.js"),
}
_GE_STYLES = ("great_expectations", "render/view/static/styles/data_docs_default_styles.css")
#: The Font Awesome icons GE's renderers use, as the glyph that stands in for each.
ICONS = {"fa-check-circle": "\\2714", "fa-times": "\\2716", "fa-times-circle": "\\2716",
         "fa-exclamation-triangle": "\\26A0", "fa-question-circle": "?", "fa-comment": "\\2026"}
_ICON_CSS = (".fas, .far, .fa { font-style: normal; font-weight: 700; display: inline-block; min-width: 1em; "
             "text-align: center; font-family: 'DejaVu Sans', 'Segoe UI Symbol', sans-serif; }\n"
             + "\n".join(f'.{name}::before {{ content: "{glyph}"; }}' for name, glyph in ICONS.items()))
_LINK = re.compile(r"<link\b[^>]*\bhref=\"(https?://[^\"]+)\"[^>]*>\s*", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"(https?://[^\"]+)\"[^>]*>\s*</script>\s*", re.I)
_IMG = re.compile(r"<img\b[^>]*>\s*", re.I)
_CSS_URL = re.compile(r"url\(['\"]?https?://[^)'\"]+['\"]?\)", re.I)
_FAVICON = re.compile(r"<link\b[^>]*rel=\"shortcut icon\"[^>]*>\s*", re.I)
_RELATIVE_A = re.compile(r"<a\s+href=\"(?!#|https?:|mailto:)[^\"]*\"\s*>(.*?)</a>", re.I | re.S)


def _package_text(package: str, relative: str) -> str:
    return (Path(importlib.import_module(package).__file__).parent / relative).read_text(encoding="utf-8")


def _inline(tag: str, text: str) -> str:
    return f"<{tag}>\n{text.replace('</', '<' + chr(92) + '/')}\n</{tag}>\n"


def offline(html: str) -> str:
    """``html`` as one file: every remote asset inlined from an installed package or removed, the icons
    drawn, the logo gone and links to pages that are not there made plain text."""

    def local(url: str) -> str | None:
        return next((_package_text(*where) for needle, where in _LOCAL.items() if needle in url), None)

    def link(m: re.Match) -> str:
        text = local(m[1])
        return _inline("style", text) if text else ""

    def script(m: re.Match) -> str:
        text = local(m[1])
        return _inline("script", text) if text else ""

    html = _LINK.sub(link, html)
    html = _SCRIPT.sub(script, html)
    html = _IMG.sub("", html)
    html = _CSS_URL.sub("none", html)
    html = _FAVICON.sub("", html)
    html = _RELATIVE_A.sub(r"\1", html)
    try:
        ge = _package_text(*_GE_STYLES)
    except OSError:
        ge = ""
    return html.replace("</head>", _inline("style", _CSS_URL.sub("none", ge) + "\n" + _ICON_CSS) + "</head>", 1)


def page(result: Any) -> str:
    """The Data Docs page of a validation result (GE's object, or its JSON dict as ``validation.json`` holds it)."""
    from great_expectations.core.expectation_validation_result import ExpectationSuiteValidationResultSchema
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    if isinstance(result, dict):
        result = ExpectationSuiteValidationResultSchema().load(result)
    return offline(DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result)))


def remote_assets(html: str) -> list[str]:
    """Every remote URL the page would load by itself (stylesheets, scripts, images, CSS url())."""
    return ([m[1] for m in _LINK.finditer(html)] + [m[1] for m in _SCRIPT.finditer(html)]
            + re.findall(r"<img\b[^>]*\bsrc=\"(https?://[^\"]+)\"", html, re.I) + _CSS_URL.findall(html))


def dead_links(html: str, page: Path) -> list[str]:
    """The page's relative links (and local assets) that name no file beside ``page``."""
    markup = re.sub(r"<script\b.*?</script>", "", html, flags=re.I | re.S)
    targets = re.findall(r"\b(?:href|src)=\"(?!#|https?:|mailto:|data:)([^\"]+)\"", markup, re.I)
    return [t for t in targets if not (page.parent / t.split("#")[0]).exists()]
