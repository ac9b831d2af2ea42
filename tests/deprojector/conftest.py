"""Fixtures for the deprojector tests."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread; the 2 shared cores thrash with more. Opt in per
    module (`pytestmark = pytest.mark.usefixtures("one_thread")`): tests that compare against a
    subprocess keep the default thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
