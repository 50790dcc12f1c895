"""Data Docs that render styled offline: every remote asset of GE's page is a local copy or gone."""

from __future__ import annotations

from pipeline.datadocs import offline, remote_assets

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
</head><body><img class="logo" src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1"
 alt="Great Expectations"><a href="https://greatexpectations.io/newsletter">Subscribe</a></body></html>"""


def test_the_page_loads_nothing_remote_and_its_local_assets_exist(tmp_path):
    assert len(remote_assets(PAGE)) == 8
    html = offline(PAGE, tmp_path)
    assert remote_assets(html) == []
    for name in ("bootstrap.min.css", "jquery.min.js", "bootstrap.min.js", "data_docs_default_styles.css"):
        assert f'"static/{name}"' in html and (tmp_path / "static" / name).stat().st_size > 1000, name
    assert "favicon" not in html
    assert 'href="https://greatexpectations.io/newsletter"' in html  # a link to click is not an asset
    assert html.index("bootstrap.min.css") < html.index("data_docs_default_styles.css")
