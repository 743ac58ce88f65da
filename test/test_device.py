"""Device and precision names; the allocator setting."""

from __future__ import annotations

import logging
import platform

import pytest
import torch

from dinov3_toolkit import device
from dinov3_toolkit.device import autocast, resolve_device, resolve_precision

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
has_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_falls_back_to_cpu_with_a_warning(name, caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_device(name) == torch.device("cpu")
    assert f"device '{name}' requested but CUDA is not available" in caplog.text


@no_cuda
def test_auto_is_the_cpu_without_a_word_where_there_is_no_cuda(caplog):
    """Nothing particular was asked for, so nothing fell short of it: the default says nothing."""
    with caplog.at_level(logging.DEBUG, logger="dinov3_toolkit"):
        assert resolve_device("auto") == torch.device("cpu")
    assert not caplog.records


@has_cuda
def test_auto_is_the_first_gpu_where_there_is_cuda():
    assert resolve_device("auto") == torch.device("cuda", 0)


@has_cuda
def test_cuda_index():
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.parametrize("name", ["gpu", "cpu:0", "cuda:x", "CUDA", "", "mps", "auto:0"])
def test_bad_device_names(name):
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        resolve_device(name)


def test_precisions():
    assert resolve_precision("fp32") is torch.float32
    assert resolve_precision("fp16") is torch.float16
    assert resolve_precision("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="fp32, fp16, bf16, got 'fp64'"):
        resolve_precision("fp64")


def test_autocast_only_below_fp32():
    linear = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast(torch.device("cpu"), torch.float32):
        assert linear(x).dtype == torch.float32
    with autocast(torch.device("cpu"), torch.bfloat16):
        assert linear(x).dtype == torch.bfloat16


def test_keep_freed_memory_sets_glibc_thresholds(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: FakeLibc())
    assert device.keep_freed_memory() is True
    assert calls == [(-3, 64 * 2**20), (-1, 128 * 2**20)]  # M_MMAP_THRESHOLD, then M_TRIM_THRESHOLD


def test_keep_freed_memory_is_a_no_op_without_glibc(monkeypatch):
    def no_libc(name):
        raise OSError("not found")

    monkeypatch.setattr(device.ctypes, "CDLL", no_libc)
    assert device.keep_freed_memory() is False

    class Musl:  # a libc without mallopt
        pass

    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: Musl())
    assert device.keep_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_takes_effect_on_glibc():
    assert device.keep_freed_memory() is True
