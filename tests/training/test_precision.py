import pytest
import torch

from training import precision
from training.precision import resolve_precision


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),  # AMD Zen 4, Intel Cooper Lake
        ("flags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile", True),  # Intel Sapphire Rapids
        ("Features\t: fp asimd bf16 i8mm", True),  # Arm FEAT_BF16 (Graviton 3, Neoverse V1)
        ("flags\t\t: fpu sse avx2 avx512f avx512bw avx512vl", False),  # AVX-512 without BF16: emulated
        ("Features\t: fp asimd", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, monkeypatch, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\n{flags}\n")
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert precision.cpu_has_native_bf16() is native
        assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native else "fp32")
    finally:
        precision.cpu_has_native_bf16.cache_clear()


def test_explicit_precisions_pass_through_and_unknown_ones_are_refused():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("half", cpu)


def test_a_machine_without_proc_cpuinfo_stays_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    finally:
        precision.cpu_has_native_bf16.cache_clear()
