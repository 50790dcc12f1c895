"""Data Docs as one self-contained page: nothing remote, styles and scripts inline, status icons drawn,
no logo, no link to a page that is not there."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.datadocs import ICONS, dead_links, offline, page, remote_assets

RESULT = Path(__file__).parent / "data" / "ge_validation_result.json"  # 4 expectations of a demo run, one failed
PAGE = """<html><head>
    <link rel="stylesheet" href="https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css">
    <link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<style> .x { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png') 0 0; }
</style>
<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>
<link rel="stylesheet" href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" integrity="sha384-x" crossorigin="anonymous"></script>
<link rel="shortcut icon" href="../../../static/images/favicon.ico" type="image/x-icon"/>
</head><body><a href="../../index.html"><img class="logo" src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1"
 alt="Great Expectations"></a> <a href="../../index.html">Home</a> <a href="#top">Top</a>
 <a href="https://greatexpectations.io/newsletter">Subscribe</a></body></html>"""


def test_the_page_is_one_file_that_loads_nothing_remote(tmp_path):
    assert len(remote_assets(PAGE)) == 8
    html = offline(PAGE)
    assert remote_assets(html) == [] and "favicon" not in html and "<img" not in html
    assert "jQuery" in html and ".btn-primary" in html and "ge-" in html  # jQuery, Bootstrap and GE's styles inline
    assert html.index(".btn-primary") < html.index("ge-")  # GE's stylesheet after Bootstrap's, as GE orders them
    assert 'href="https://greatexpectations.io/newsletter"' in html  # a link to click is not an asset
    assert 'href="#top"' in html and "Home" in html and "index.html" not in html


def test_inlined_scripts_do_not_close_their_own_tag():
    html = offline(PAGE)
    assert html.count("</script>") == 2  # jQuery's and Bootstrap's, each closed once; vega's is dropped


def test_a_real_result_renders_with_an_icon_for_each_status_and_no_dead_link(tmp_path):
    html = page(json.loads(RESULT.read_text()))
    target = tmp_path / "validation.html"
    target.write_text(html)
    assert remote_assets(html) == [] and dead_links(html, target) == []
    assert html.count("fa-times text-danger") >= 1 and html.count("fa-check-circle text-success") >= 3
    assert all(f".{name}::before" in html for name in ICONS)


def test_dead_links_names_a_relative_link_without_its_file(tmp_path):
    target = tmp_path / "p.html"
    (tmp_path / "there.html").write_text("")
    assert dead_links('<a href="there.html">a</a><a href="../gone.html">b</a><a href="#x">c</a>', target) == ["../gone.html"]
