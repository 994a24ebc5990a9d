"""Tests of equidmri.runtime: the glibc allocator settings."""

import sys

import pytest

from equidmri.runtime import retain_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_retain_freed_memory_takes_effect_and_is_idempotent():
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True
