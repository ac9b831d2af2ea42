"""The Variants page's zip import in a real browser: an admin uploads a zip holding a manifest
and its images, and the page lists the new `images` variant."""

import io
import zipfile

import pytest

pytestmark = pytest.mark.e2e


def zip_bytes() -> bytes:
    """A zip with manifest.csv and two small PNGs."""
    from PIL import Image

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(
            "manifest.csv", "prompt,seed,image\na tabby cat,0,a.png\na red bus,0,b.png\n"
        )
        for name, colour in (("a.png", (200, 40, 40)), ("b.png", (40, 40, 200))):
            png = io.BytesIO()
            Image.new("RGB", (8, 8), colour).save(png, format="PNG")
            archive.writestr(name, png.getvalue())
    return buffer.getvalue()


def test_admin_imports_a_zip_of_images_as_a_variant(served, page):
    """Upload, name, import: the success names the variant and its 2 images, and the variants
    table lists it."""
    base, tiny = served
    page.goto(f"{base}/variants?token={tiny.admin_token}")
    form = page.locator('[data-testid="stForm"]').filter(has_text="Zip with manifest.csv")
    form.locator('input[type="file"]').set_input_files(
        {"name": "shots.zip", "mimeType": "application/zip", "buffer": zip_bytes()}
    )
    form.get_by_text("shots.zip").wait_for()
    form.get_by_label("Variant name").fill("zipped")
    form.get_by_role("button", name="Upload and import").click()
    page.get_by_text("Imported zipped: 2 images (2 new)").wait_for(timeout=60_000)
    table = page.locator('[data-testid="stDataFrame"]').first
    table.get_by_text("zipped", exact=True).wait_for(state="attached")  # canvas grid: hidden cells
