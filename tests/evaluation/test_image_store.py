"""The image store: content-addressed PNG files written atomically, one sha256-of-a-file helper."""

import hashlib

from evaluation.image_store import IMAGES_DIR, TEMP_PREFIX, sha256_file, write_image


def test_sha256_file_matches_hashlib_on_a_multi_block_file(tmp_path):
    """sha256_file reads in blocks yet gives the digest of the whole file."""
    data = bytes(range(256)) * 9000  # ~2.2 MiB: three 1 MiB blocks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_write_image_stores_bytes_under_their_hash_and_leaves_no_temp_file(tmp_path):
    """The file is named by its sha256 under images/<sha[:2]>/, holds the bytes, no temp file."""
    relative, sha = write_image(tmp_path, b"\x89PNG not really")
    assert sha == hashlib.sha256(b"\x89PNG not really").hexdigest()
    assert relative == f"{IMAGES_DIR}/{sha[:2]}/{sha}.png"
    assert sha256_file(tmp_path / relative) == sha
    assert not [p for p in (tmp_path / IMAGES_DIR).rglob(f"{TEMP_PREFIX}*")]
