"""server/quiet.py: native output held off fd 2 while a model loads, and the few words
the start-up line gives for not using the GPU."""

from __future__ import annotations

import os

import pytest

from server.quiet import decision, gpu_reason, native_output

# What LiteRT printed on a machine without a GPU (excerpts of a real start-up).
VULKAN = (
    "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file\n"
    "ERROR: [delegate_webgpu.cc:359] Failed to initialize WebGPU environment: INTERNAL: "
    "No adapters found\n"
)
SOURCE_ONLY = "ERROR: [./litert/cc/litert_compiled_model.h:1961]\n└ ERROR: [compiled_model.cc:1036]"


def test_native_output_captures_what_is_written_to_fd_2(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with native_output() as native:
        os.write(2, b"INFO: [registry.cc:1] noise from C\n")
    os.write(2, b"after\n")  # fd 2 is back
    assert native.text == "INFO: [registry.cc:1] noise from C\n"
    assert capfd.readouterr().err == "after\n"


def test_native_output_not_quiet_leaves_fd_2_alone() -> None:
    before = os.fstat(2)
    with native_output(quiet=False) as native:
        assert os.fstat(2).st_ino == before.st_ino
    assert native.text == ""


def test_native_output_restores_fd_2_when_loading_fails() -> None:
    before = os.fstat(2).st_ino
    try:
        with native_output():
            raise ValueError("the model is corrupt")
    except ValueError:
        pass
    assert os.fstat(2).st_ino == before


def test_gpu_reason_reads_what_the_runtime_printed() -> None:
    assert gpu_reason(SOURCE_ONLY, VULKAN) == "no Vulkan driver (libvulkan.so.1 not found)"
    assert gpu_reason(SOURCE_ONLY, "No adapters found") == "no GPU adapter found"
    assert gpu_reason(SOURCE_ONLY) == "the GPU accelerator could not be set up"
    assert gpu_reason("no module named compiled_model") == "no module named compiled_model"


def test_decision_says_which_accelerator_and_why_not_the_gpu() -> None:
    assert decision("auto", "gpu", "litert", None, "") == "gpu (litert)"
    assert decision("cpu", "cpu", "litert", None, "") == "cpu (litert; as --accelerator cpu asks)"
    line = decision("auto", "cpu", "litert", SOURCE_ONLY, VULKAN)
    assert line == "cpu (litert; GPU not used: no Vulkan driver (libvulkan.so.1 not found))"
