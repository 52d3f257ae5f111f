"""inferlab.capacity: the shipped trace and its summary, memory per replica, the performance model, the
fleet, and plans checked against hand-computed numbers; bad specs fail with one line that says what to do."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from inferlab import bench, capacity, hardware, memory
from inferlab.capacity import explore, perfmodel as pm, trace
from inferlab.capacity.fleet import fleet
from inferlab.capacity.sizing import replica_concurrency

GiB = 2**30
EXAMPLE = yaml.safe_load((trace.TRACES.parent / "plans" / "chat-8b.yaml").read_text())


# ----------------------------------------------------------------------------- trace

def test_the_shipped_trace_is_what_the_generator_writes(tmp_path):
    again = trace.write(trace.generate(), tmp_path / "chat-day.csv.gz")
    assert again.read_bytes() == (trace.TRACES / "chat-day.csv.gz").read_bytes()


def test_the_shipped_trace_has_the_documented_shape():
    day = trace.load("chat-day")
    stats = trace.characterise(day)
    assert list(day.columns) == trace.COLUMNS
    assert day["arrival_s"].is_monotonic_increasing and day["arrival_s"].max() < trace.DAY_S
    assert 0.45 < stats["mean_rate"] < 0.65                       # 0.5/s before the bursts
    assert 2.5 < stats["peak_to_mean"] < 5.5                      # (1 + 0.6) x 2.5 = 4 at most, plus noise
    assert (day["prefix_tokens"] > 0).mean() == pytest.approx(0.7, abs=0.02)
    assert (day["input_tokens"] > day["prefix_tokens"]).all()
    hours = (day["arrival_s"] // 3600).value_counts()
    assert hours[15] > 2.5 * hours[3]                            # the afternoon is busier than the night


def test_characterise_by_hand():
    frame = pd.DataFrame({"arrival_s": [0, 10, 59.9, 60, 61, 62, 130], "input_tokens": [100, 200, 300, 400, 500, 600, 700],
                          "output_tokens": [1, 2, 3, 4, 5, 6, 7], "prefix_tokens": [0, 100, 0, 200, 0, 0, 0]})
    got = trace.characterise(frame, window_s=60, duration_s=180)
    assert got["mean_rate"] == pytest.approx(7 / 180)
    assert got["peak_rate"] == pytest.approx(3 / 60)              # [0, 60) and [60, 120) both hold 3
    assert got["peak_to_mean"] == pytest.approx((3 / 60) / (7 / 180))
    assert got["input_p50"] == 400 and got["output_p99"] == pytest.approx(6.94)
    assert got["prefix_share"] == pytest.approx(300 / 2800)


def test_an_unknown_trace_names_the_shipped_ones():
    with pytest.raises(ValueError, match="chat-day"):
        trace.load("no-such-trace")


# ----------------------------------------------------------------------------- memory and fleet by hand

def test_replica_concurrency_by_hand():
    # 80 GiB x 0.9 = 72 GiB; minus 8 GiB of weights and 1 GiB overhead = 63 GiB; 1 MiB per request -> 64,512
    assert replica_concurrency(80 * GiB, 1, 8 * GiB, GiB, 256, 4096, 0.9) == 63 * 1024
    # TP 2: each GPU 72 - 4 - 1 = 67 GiB free, and the replica holds twice that
    assert replica_concurrency(80 * GiB, 2, 8 * GiB, GiB, 256, 4096, 0.9) == 2 * 67 * 1024
    assert replica_concurrency(16 * GiB, 1, 20 * GiB, GiB, 256, 4096, 0.9) == 0


def test_layout_concurrency_agrees_with_the_even_split_where_heads_divide():
    cfg = memory.load_config("llama-3.1-8b")
    gpu = hardware.get_gpu("H100")
    simple = replica_concurrency(gpu.memory_bytes, 2, memory.weight_bytes(cfg, "bf16"), memory.overhead_bytes(),
                                 memory.kv_bytes_per_token(cfg, "bf16"), 4000, memory.USABLE_FRACTION)
    layout = capacity.layout_concurrency(cfg, gpu.memory_bytes, 2, 1, 4000, "bf16")
    assert 0.97 * simple <= layout <= simple                      # activations and norms take a little more


def test_fleet_by_hand():
    got = fleet(peak_rate=12, mean_rate=4, replica_rate=2.5, target_utilisation=0.7, gpus_per_replica=2,
                usd_per_gpu_hour=3.0, mean_output_tokens=250, mean_input_tokens=750, spare_replicas=1)
    # 12 / (2.5 x 0.7) = 6.86 -> 7 serving + 1 spare = 8 replicas, 16 GPUs, $48/hour
    assert (got["replicas"], got["gpus"], got["usd_per_hour"]) == (8, 16, 48.0)
    # the mean rate serves 4 x 3600 x 250 = 3.6 M output tokens an hour
    assert got["usd_per_million_output_tokens"] == pytest.approx(48 / 3.6)
    assert got["usd_per_million_tokens"] == pytest.approx(48 / 14.4)
    assert fleet(0.1, 0.05, 10, 0.7, 1, 1.0, 100, 0, 0)["replicas"] == 1     # at least one replica serves


# ----------------------------------------------------------------------------- the performance model

COST = pm.ModelCost(active_params=1e9, weight_bytes=2e9, kv_bytes_per_token=1e5)
HW = pm.Hardware("test", peak_flops=100e12, bandwidth=1e12)
EFF = pm.Efficiency(prefill=0.5, decode=0.5)


def test_alone_by_hand_and_calibration_reproduces_it():
    load = pm.Workload(1000, 100)
    alone = pm.alone(load, COST, HW, EFF)
    prefill = 1000 * 2e9 / 50e12                                  # 40 ms
    step = (2e9 + 1050 * 1e5) / 0.5e12                            # 4.21 ms
    assert alone["tpot_s"] == pytest.approx(step) and alone["ttft_s"] == pytest.approx(prefill + step)
    back = pm.calibrate(alone["ttft_s"], 1000, alone["tpot_s"], 1050, COST, HW)
    assert back.prefill == pytest.approx(0.5) and back.decode == pytest.approx(0.5)
    with pytest.raises(ValueError, match="TPOT < TTFT"):
        pm.calibrate(0.01, 1000, 0.02, 1050, COST, HW)


def test_latencies_obey_littles_law_and_saturate():
    load = pm.Workload(1000, 100)
    got = pm.latencies(5.0, load, COST, HW, EFF)
    assert got["batch"] == pytest.approx(5.0 * 100 * got["tpot_s"], rel=1e-6)
    assert got["prefill_share"] == pytest.approx(5.0 * 1000 * 2e9 / 50e12)
    slower = pm.latencies(10.0, load, COST, HW, EFF)
    assert slower["tpot_s"] > got["tpot_s"] and slower["ttft_s"] > got["ttft_s"]
    assert pm.latencies(25.0, load, COST, HW, EFF) is None        # prefill alone needs 25 x 40 ms = 100% of the time


def test_the_operating_point_is_where_the_binding_objective_is_met():
    load = pm.Workload(1000, 100)
    point = pm.operating_point(load, COST, HW, EFF, ttft_s=10.0, tpot_s=0.010)
    assert point["tpot_s"] == pytest.approx(0.010, rel=1e-6)
    cap = point["batch"] / 2                                       # KV space for half the batch
    capped = pm.operating_point(load, COST, HW, EFF, ttft_s=10.0, tpot_s=0.010, max_batch=cap)
    assert capped["rate"] < point["rate"] and capped["batch"] == pytest.approx(cap, rel=1e-6)
    assert pm.operating_point(load, COST, HW, EFF, ttft_s=10.0, tpot_s=0.004) is None   # alone is 4.21 ms


# ----------------------------------------------------------------------------- plans

def _spec(**changes):
    raw = {"model": "llama-3.1-8b",
           "workload": {"mean_rate": 10.0, "peak_rate": 30.0, "input_mean": 1000, "output_mean": 200,
                        "tokens_p99": 4000},
           "slo": {"ttft_ms": 5000, "tpot_ms": 30}, "gpus": ["H100"], "weights": ["bf16"],
           "efficiency": {"prefill": 0.5, "decode": 0.5}, "headroom": {"utilisation": 0.7, "spare_replicas": 1},
           "prices": {"H100": {"usd_per_gpu_hour": 2.0, "source": "a test", "date": "2026-12-03"}},
           "max_gpus_per_replica": 1}
    raw.update(changes)
    return raw


def test_a_plan_matches_the_hand_computed_one():
    """TPOT binds (not KV, not TTFT), so the rate solves a linear equation:
    slo x (1 - rate L_in t_pt) = (W + rate L_out slo c k) / (B f)."""
    plan = capacity.make_plan(capacity.parse(_spec()))
    (best,) = plan["options"]
    cfg = memory.load_config("llama-3.1-8b")
    n, w, k = memory.active_param_count(cfg), memory.weight_bytes(cfg, "bf16"), memory.kv_bytes_per_token(cfg, "bf16")
    gpu = hardware.get_gpu("H100")
    t_pt = 2 * n / (gpu.bf16_tflops * 1e12 * 0.5)
    bw, slo, c = gpu.bandwidth_gbs * 1e9 * 0.5, 0.030, 1000 + 200 / 2
    rate = (slo - w / bw) / (slo * 1000 * t_pt + 200 * slo * c * k / bw)
    assert best["limited_by"] == "TPOT" and best["replica_rate"] == pytest.approx(rate, rel=1e-6)
    serving = math.ceil(30 / (rate * 0.7))
    assert best["replicas"] == serving + 1 and best["gpus"] == serving + 1
    assert best["usd_per_hour"] == pytest.approx(2.0 * (serving + 1))
    assert best["usd_per_million_output_tokens"] == pytest.approx(2.0 * (serving + 1) / (10 * 200 * 3600) * 1e6)
    assert any("30 ms" in a and "mean TPOT" in a for a in plan["assumptions"])


def test_prefix_caching_and_quantized_weights_raise_the_rate():
    base = capacity.make_plan(capacity.parse(_spec()))["options"][0]["replica_rate"]
    cached = capacity.make_plan(capacity.parse(_spec(prefix_caching=True, workload={
        **_spec()["workload"], "prefix_share": 0.5})))["options"][0]["replica_rate"]
    fp8 = capacity.make_plan(capacity.parse(_spec(weights=["fp8"])))["options"][0]["replica_rate"]
    assert cached > base and fp8 > base


def test_options_are_ranked_by_cost_per_token_and_report_every_assumption():
    plan = capacity.make_plan(capacity.load("chat-8b"))
    costs = [o["usd_per_million_output_tokens"] for o in plan["options"] if o["feasible"]]
    assert costs == sorted(costs) and len(costs) >= 4
    text = capacity.report(plan)
    for needle in ("Recommendation:", "Assumptions:", "headroom", "prefix caching", "docs.runpod.io", "2026-12-03"):
        assert needle in text


@pytest.mark.parametrize("change, words", [
    ({"gpus": ["H900"]}, "unknown GPU 'H900'"),
    ({"slo": {"ttft_ms": 5000, "tpot_ms": 1}}, "raise slo.ttft_ms/tpot_ms"),
    ({"model": "llama-3.1-70b", "gpus": ["L4"], "prices": {}, "max_gpus_per_replica": 2}, "fits no layout"),
    ({"colour": "blue"}, "unknown key(s) colour"),
    ({"gpus": ["MI300X"], "prices": {}}, "no price for MI300X"),
    ({"efficiency": {"prefill": 0.5}}, "efficiency needs prefill and decode"),
    ({"efficiency": {"prefill": 0.5, "decode": 1.5}}, "efficiency.decode must be in (0, 1]"),
    ({"workload": {"mean_rate": 10.0, "peak_rate": 5.0, "input_mean": 1, "output_mean": 1, "tokens_p99": 2}},
     "below mean_rate"),
    ({"prices": {"H100": {"usd_per_gpu_hour": 2.0}}}, "needs its source and date"),
    ({"model": "no-such-model"}, "model: cannot read config"),
    ({"model": "deepseek-v2-lite"}, "model: per-device sizing covers"),
])
def test_bad_specs_fail_with_one_line_that_says_what_to_change(change, words):
    with pytest.raises(capacity.PlanError) as err:
        capacity.make_plan(capacity.parse(_spec(**change)))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_command_prints_a_plan_writes_json_and_fails_in_one_line(tmp_path):
    out = tmp_path / "plan.json"
    done = subprocess.run([sys.executable, "-m", "inferlab", "plan", "chat-8b", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Recommendation:" in done.stdout
    written = json.loads(out.read_text())
    assert written["options"][0]["feasible"] and written["assumptions"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**EXAMPLE, "gpus": ["H900"]}))
    failed = subprocess.run([sys.executable, "-m", "inferlab", "plan", str(bad)], capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1 and "unknown GPU 'H900'" in failed.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    failed = subprocess.run([sys.executable, "-m", "inferlab", "plan", str(broken)], capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 2 and "is not valid YAML" in failed.stderr and failed.stderr.count("\n") == 1


def test_the_explorer_falls_back_to_a_table_where_no_one_can_move_it(monkeypatch):
    monkeypatch.setenv(explore.HEADLESS_ENV, "1")
    assert explore.headless()
    table = explore.static_table(_spec(), scales=(1, 2), tpots=(30, 60))
    assert len(table) == 4 and set(table.columns) >= {"plan", "GPUs", "$/hour", "$/M output tokens"}
    more = table[table["traffic x"] == 2]["GPUs"].tolist()
    less = table[table["traffic x"] == 1]["GPUs"].tolist()
    assert all(m >= n for m, n in zip(more, less))
    monkeypatch.delenv(explore.HEADLESS_ENV)
    monkeypatch.delenv("INFERLAB_RUN_MARK", raising=False)
    assert not explore.headless()
    assert type(explore.explorer(_spec())).__name__ == "VBox"


# ----------------------------------------------------------------------------- measured operating point

def test_mean_latency_limit_interpolates_between_the_runs_around_the_crossing():
    runs = [{"request_rate": r, "mean_ttft_ms": 100, "mean_tpot_ms": t} for r, t in ((1, 40), (2, 50), (3, 70))]
    got = bench.mean_latency_limit(runs, {"ttft": 500, "tpot": 60})
    assert got == {"rate": pytest.approx(2.5), "bracketed": True}
    assert bench.mean_latency_limit(runs, {"tpot": 100}) == {"rate": 3, "bracketed": False}
    assert bench.mean_latency_limit(runs, {"tpot": 30}) is None
