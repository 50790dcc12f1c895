"""Great Expectations Data Docs that render styled with no network.

GE's page loads Bootstrap, jQuery and a dozen other assets from CDNs, so on a machine without
internet (or a laptop on a plane) the report renders as bare text. :func:`offline` copies the
assets the page needs from an installed package (Bootstrap 4 and jQuery as Bootstrap-Flask ships
them, GE's own Data Docs stylesheet) into ``static/`` beside the page, points the page at them,
and drops every other remote asset (table filters, date pickers, chart libraries, web fonts, the
logo image): no request leaves the machine. Links a person may click stay as they are.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

__all__ = ["offline", "remote_assets"]

# remote asset (matched in its URL) -> the local file that replaces it, from an installed package
_LOCAL = {
    "bootstrap/4.3.1/css/bootstrap.min.css": ("flask_bootstrap", "static/bootstrap4/css/bootstrap.min.css"),
    "code.jquery.com/jquery": ("flask_bootstrap", "static/bootstrap4/jquery.min.js"),
    "bootstrap/4.3.1/js/bootstrap.min.js": ("flask_bootstrap", "static/bootstrap4/js/bootstrap.min.js"),
}
_GE_STYLES = ("great_expectations", "render/view/static/styles/data_docs_default_styles.css")
_LINK = re.compile(r"<link\b[^>]*\bhref=\"(https?://[^\"]+)\"[^>]*>\s*", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=\"(https?://[^\"]+)\"[^>]*>\s*</script>\s*", re.I)
_IMG_SRC = re.compile(r"(<img\b[^>]*?)\s*\bsrc=\"https?://[^\"]+\"", re.I)
_CSS_URL = re.compile(r"url\(['\"]?https?://[^)'\"]+['\"]?\)", re.I)
_FAVICON = re.compile(r"<link\b[^>]*rel=\"shortcut icon\"[^>]*>\s*", re.I)


def _package_file(package: str, relative: str) -> Path:
    import importlib

    return Path(importlib.import_module(package).__file__).parent / relative


def offline(html: str, docs_dir: Path) -> str:
    """``html`` with every remote asset replaced by a local copy under ``docs_dir/static`` or removed."""
    static = Path(docs_dir) / "static"
    static.mkdir(parents=True, exist_ok=True)

    def local(url: str) -> str | None:
        for needle, (package, relative) in _LOCAL.items():
            if needle in url:
                source = _package_file(package, relative)
                shutil.copyfile(source, static / source.name)
                return f"static/{source.name}"
        return None

    def link(m: re.Match) -> str:
        path = local(m[1])
        return f'<link rel="stylesheet" href="{path}"/>\n    ' if path else ""

    def script(m: re.Match) -> str:
        path = local(m[1])
        return f'<script src="{path}"></script>\n' if path else ""

    html = _LINK.sub(link, html)
    html = _SCRIPT.sub(script, html)
    html = _IMG_SRC.sub(r"\1", html)
    html = _CSS_URL.sub("none", html)
    html = _FAVICON.sub("", html)
    ge = _package_file(*_GE_STYLES)
    if ge.exists():
        shutil.copyfile(ge, static / ge.name)
        html = html.replace("</head>", f'  <link rel="stylesheet" href="static/{ge.name}"/>\n</head>', 1)
    return html


def remote_assets(html: str) -> list[str]:
    """Every remote URL the page would load by itself (stylesheets, scripts, images, CSS url())."""
    return ([m[1] for m in _LINK.finditer(html)] + [m[1] for m in _SCRIPT.finditer(html)]
            + re.findall(r"<img\b[^>]*\bsrc=\"(https?://[^\"]+)\"", html, re.I) + _CSS_URL.findall(html))
