"""The study report opened in Chromium from disk: every image shows, nothing is fetched."""

import sys
from pathlib import Path

import pytest

from db.engine import make_engine, session_factory
from evaluation.photo_demo import STUDY_NAME
from evaluation.report import write_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evaluation"))
from report_study import voted_photo_demo  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("report-data")
    engine = make_engine(voted_photo_demo(data_dir))
    out = tmp_path_factory.mktemp("report") / "out"
    try:
        with session_factory(engine)() as s:
            write_report(s, data_dir, STUDY_NAME, out)
    finally:
        engine.dispose()
    return out / "report.html"


def test_report_opens_offline_with_every_image_visible(page, report_html):
    """Every <img> decodes (naturalWidth > 0) and no request other than file:/data: is made."""
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report_html.as_uri(), wait_until="load")
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert len(widths) == 2 and all(w > 0 for w in widths)
    assert requests and all(url.startswith(("file:", "data:")) for url in requests)
    assert page.get_by_role("heading", name="Decision board").is_visible()


def test_report_prints_with_its_images(page, report_html):
    """In print media the grids stay visible and fit the page width."""
    page.goto(report_html.as_uri(), wait_until="load")
    page.emulate_media(media="print")
    boxes = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => [i.getBoundingClientRect().width, document.body.clientWidth])"
    )
    assert all(0 < width <= body for width, body in boxes)
