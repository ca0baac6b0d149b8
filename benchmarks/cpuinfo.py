"""The CPU a benchmark ran on, recorded with every saved run: /proc/cpuinfo's vendor, family, model, stepping, name
and the vector features moert's kernels use, and `moert kernels` (which kernel each product runs there)."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_identity(moert: str = str(REPO / "build" / "bin" / "moert")) -> dict:
    """The CPU the run measures (/proc/cpuinfo's first processor: vendor, family, model, stepping, name, the vector
    features moert's kernels use) and, when the moert binary exists, its `moert kernels` listing."""
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
    except OSError:
        pass
    flags = set(info.get("flags", "").split())
    wanted = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]
    cpu = dict(vendor=info.get("vendor_id", ""), family=info.get("cpu family", ""), model=info.get("model", ""),
               stepping=info.get("stepping", ""), name=info.get("model name", ""),
               features=[f for f in wanted if f in flags])
    if Path(moert).exists():
        done = subprocess.run([moert, "kernels"], capture_output=True, text=True)
        cpu["moert_kernels"] = done.stdout
    return cpu


def describe_cpu(cpu: dict) -> str:
    """'AMD EPYC (AuthenticAMD family 23 model 1 stepping 2; avx2 fma f16c)'."""
    return (f"{cpu.get('name') or 'unknown CPU'} ({cpu.get('vendor')} family {cpu.get('family')} model "
            f"{cpu.get('model')} stepping {cpu.get('stepping')}; {' '.join(cpu.get('features', []))})")
