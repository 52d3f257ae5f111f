"""The GPU smoke test's skip logic and its probes, run on the CPU (CI has no GPU)."""
import pandas as pd

from inferlab import gpu_smoke

NOTHING = {"cuda": False, "vllm": False, "bitsandbytes": False, "network": False}
EVERYTHING = {need: True for need in NOTHING}


def frame(rows):
    return pd.DataFrame(rows, columns=gpu_smoke.COLUMNS)


def test_a_probe_missing_what_it_needs_is_skipped_with_each_reason():
    probe = gpu_smoke.Probe("04", "server", ("cuda", "vllm"), run=lambda s: "ran")
    reason = gpu_smoke.skip_reason(probe, dict(NOTHING, vllm=True))
    assert reason == gpu_smoke.NEEDS["cuda"]
    both = gpu_smoke.skip_reason(probe, NOTHING)
    assert gpu_smoke.NEEDS["cuda"] in both and gpu_smoke.NEEDS["vllm"] in both
    assert gpu_smoke.skip_reason(probe, EVERYTHING) is None


def test_a_probe_without_code_points_to_the_full_run_even_when_everything_is_there():
    probe = gpu_smoke.Probe("06", "benchmarks", ("cuda",))
    assert "make test-gpu" in gpu_smoke.skip_reason(probe, EVERYTHING)


def test_on_a_machine_without_cuda_or_engines_the_cpu_probes_run_and_the_rest_say_why():
    table = frame(gpu_smoke.run("smollm2-135m-instruct", "cpu", "float32", NOTHING, layers=2))
    assert list(table.columns) == ["lab", "check", "status", "result"]
    assert len(table) == len(gpu_smoke.probes())
    ran = table[table.status == "ran"]
    skipped = table[table.status == "skipped"]
    assert set(ran.check) == {p.what for p in gpu_smoke.probes() if not p.needs and p.run}
    assert not (table.status == "FAILED").any(), table.to_string()
    assert all(skipped.result.str.len() > 0)
    kv = ran[ran.check.str.startswith("KV cache")].result.iloc[0]
    assert "(+0.00 %)" in kv                     # the cache's tensors are exactly the prediction
    assert skipped[skipped.check.str.contains("max_memory_allocated")].result.iloc[0] == gpu_smoke.NEEDS["cuda"]


def test_a_failing_probe_is_reported_and_does_not_hide_the_others(monkeypatch):
    def broken(subject):
        raise RuntimeError("device lost\nsecond line")
    probes = [gpu_smoke.Probe("02", "build", (), gpu_smoke.build_model), gpu_smoke.Probe("99", "broken", (), broken),
              gpu_smoke.Probe("03", "quantize", (), gpu_smoke.quantize_on_device)]
    monkeypatch.setattr(gpu_smoke, "probes", lambda: probes)
    table = frame(gpu_smoke.run("smollm2-135m-instruct", "cpu", "float32", NOTHING, layers=1))
    assert list(table.status) == ["ran", "FAILED", "ran"]
    assert table.result.iloc[1] == "RuntimeError: device lost"


def test_when_the_model_cannot_be_built_the_probes_that_need_it_are_skipped(monkeypatch):
    def no_model(subject):
        raise MemoryError("out of memory")
    probes = [gpu_smoke.Probe("02", "build", (), no_model), gpu_smoke.Probe("03", "quantize", (), gpu_smoke.quantize_on_device)]
    monkeypatch.setattr(gpu_smoke, "probes", lambda: probes)
    monkeypatch.setattr(gpu_smoke, "build_model", no_model)
    table = frame(gpu_smoke.run("smollm2-135m-instruct", "cpu", "float32", NOTHING, layers=1))
    assert list(table.status) == ["FAILED", "skipped"] and "could not be built" in table.result.iloc[1]


def test_the_command_prints_one_table_and_its_exit_status(monkeypatch, capsys):
    monkeypatch.setattr(gpu_smoke, "capabilities", lambda: dict(NOTHING))
    assert gpu_smoke.main(["--config", "smollm2-135m-instruct", "--layers", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("GPU smoke test on cpu (float32)") and out.count("skipped") >= 5
    header = out.splitlines()[1]
    assert header.split() == list(gpu_smoke.COLUMNS)
    assert gpu_smoke.main(["--config", "no-such-model"]) == 2
    assert "unknown config 'no-such-model'" in capsys.readouterr().out
