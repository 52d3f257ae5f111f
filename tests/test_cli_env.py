"""The command line and the environment files an instructor relies on."""
import re
import subprocess
import sys
from pathlib import Path

from inferlab import doctor

REPO = Path(__file__).resolve().parent.parent


def _inferlab(*args, **kw):
    return subprocess.run([sys.executable, "-m", "inferlab", *args], capture_output=True, text=True, timeout=600, **kw)


def test_help_lists_every_subcommand():
    out = _inferlab("--help").stdout
    for command in ("doctor", "model", "grade", "labs", "vram", "plan"):
        assert command in out


def test_doctor_reports_ready_here():
    proc = _inferlab("doctor")
    assert proc.returncode == 0, proc.stdout
    assert "READY" in proc.stdout and "embedded model" in proc.stdout


def test_doctor_fails_with_the_fix_when_something_is_missing(monkeypatch):
    monkeypatch.setattr(doctor.models, "embedded_ready", lambda: False)
    monkeypatch.setattr(doctor, "_importable", lambda module: (True, ""))   # the imports are checked above
    items = doctor.findings()
    text = doctor.report(items)
    assert "NOT READY" in text and "inferlab model prepare" in text
    assert not all(f.ok or not f.required for f in items)


def test_model_path_points_at_the_cache():
    proc = _inferlab("model", "path")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("SmolLM2-135M-Instruct")


def test_versions_have_one_source_of_truth():
    env = (REPO / "environment.yml").read_text()
    assert "-r requirements/cuda.txt" in env
    assert not re.search(r"^\s*-\s*[A-Za-z0-9_.-]+\s*[=<>]=", env, re.M), "environment.yml pins a pip package itself"
    pins = {}
    for f in (REPO / "requirements").glob("*.txt"):
        for line in f.read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.-]+)==", line)
            if m:
                assert m.group(1) not in pins, f"{m.group(1)} pinned in {pins.get(m.group(1))} and {f.name}"
                pins[m.group(1)] = f.name


def test_make_help_lists_the_required_targets():
    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True).stdout
    for target in ("setup", "lab", "labs", "run", "reference", "test", "test-gpu", "doctor", "grade"):
        assert re.search(rf"make {target}\s", out), target


def test_setup_is_fast_when_already_done():
    proc = subprocess.run(["bash", "tools/setup.sh"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "up to date" in proc.stdout


def test_transformers_vllm_and_bitsandbytes_import_together():
    code = "import transformers, vllm, bitsandbytes; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_sglang_is_optional_in_the_doctor_and_says_why_it_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "_importable", lambda module: (True, ""))
    found = {f.what: f for f in doctor.findings()}
    sglang = found["SGLang (optional)"]
    assert not sglang.ok and not sglang.required and "GPU tier only" in sglang.detail


def test_setup_sglang_refuses_a_machine_without_an_nvidia_gpu(tmp_path):
    """Without nvidia-smi (this CI machine) it stops at once with one line, and builds nothing."""
    proc = subprocess.run(["bash", "tools/setup-sglang.sh"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no NVIDIA GPU here" in proc.stderr
    assert not (REPO / ".venv-sglang").exists()
