"""`elt plan`: the best measured setting within a GFLOPs budget (never over it, never guessed), the Pareto front,
and clear errors for budgets below every measurement and for bad input."""
from __future__ import annotations

import json
import random

import pytest

from conftest import assert_one_clear_line
from elt.cli import main
from elt.errors import ConfigError
from elt.planner import candidates, plan


def _table(rows_by_run: dict[str, list[tuple]]) -> dict:
    """{name: [(loops, steps, gflops, fd, cons), ...]} -> an anytime.json of `elt anytime --eval`."""
    return {"runs": [{"run": f"runs/{name}", "name": name, "trained_loops": 4, "cfg": 3.0, "guidance": "cfg",
                      "results": [{"loops": L, "steps": s, "gflops_per_sample": g, "fd_classifier": fd,
                                   "class_consistency": c} for L, s, g, fd, c in rows]}
                     for name, rows in rows_by_run.items()]}


TABLE = _table({"ilsd": [(1, 20, 2.0, 60.0, 0.80), (2, 20, 4.0, 30.0, 0.90), (4, 20, 8.0, 20.0, 0.92),
                         (2, 10, 2.0, 40.0, 0.85)],
                "vanilla": [(4, 20, 8.0, 19.0, 0.93), (1, 20, 2.0, 500.0, 0.10)]})


def test_the_choice_is_the_best_within_the_budget():
    points = candidates(TABLE["runs"])
    assert plan(points, 2.0, "fd_classifier")["choice"]["steps"] == 10  # L=2 at 10 steps beats L=1 at 20
    assert plan(points, 7.9, "fd_classifier")["choice"]["loops"] == 2
    choice = plan(points, 8.0, "fd_classifier")["choice"]
    assert (choice["name"], choice["loops"]) == ("vanilla", 4)
    assert plan(points, 8.0, "class_consistency")["choice"]["class_consistency"] == 0.93  # higher is better
    front = plan(points, 3.0, "fd_classifier")["front"]
    assert [p["gflops_per_sample"] for p in front] == [2.0, 4.0, 8.0, 8.0][:len(front)] and front[0]["steps"] == 10


def test_never_over_budget_and_nothing_cheaper_is_better():
    rng = random.Random(0)
    for _ in range(200):
        rows = [(rng.randint(1, 6), rng.choice([10, 20]), rng.uniform(0.5, 10), rng.uniform(1, 100), 0.5)
                for _ in range(rng.randint(1, 12))]
        points = candidates(_table({"r": rows})["runs"])
        budget = rng.uniform(0.4, 11)
        if budget < min(p["gflops_per_sample"] for p in points):
            with pytest.raises(ConfigError, match="no measured setting costs at most"):
                plan(points, budget, "fd_classifier")
            continue
        choice = plan(points, budget, "fd_classifier")["choice"]
        assert choice["gflops_per_sample"] <= budget
        assert not any(p["gflops_per_sample"] <= budget and p["fd_classifier"] < choice["fd_classifier"]
                       for p in points)


def test_cli_prints_the_choice_and_writes_json(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "anytime").mkdir(parents=True)
    (run / "anytime" / "anytime.json").write_text(json.dumps(TABLE))
    assert main(["plan", str(run), "--gflops", "5", "--json", str(tmp_path / "plan.json")]) == 0
    assert "<- chosen" in capsys.readouterr().out
    saved = json.loads((tmp_path / "plan.json").read_text())
    assert saved["choice"]["loops"] == 2 and saved["metric"] == "fd_classifier" and saved["budget"] == 5


@pytest.mark.parametrize("argv,message", [
    (lambda t: ["plan", t / "none", "--gflops", "5"], r"\S*none does not exist: pass an anytime\.json"),
    (lambda t: ["plan", t, "--gflops", "5"], r"holds no anytime\.json .*measure the run first with `elt anytime"),
    (lambda t: ["plan", t / "a.json", "--gflops", "0"], r"--gflops must be a budget > 0"),
    (lambda t: ["plan", t / "a.json", "--gflops", "1"], r"no measured setting costs at most 1 GFLOPs per sample: "
                                                        r"the cheapest, .* costs 2; raise --gflops, or measure"),
    (lambda t: ["plan", t / "a.json", "--gflops", "5", "--metric", "fid"], r"--metric fid: the table measured "
                                                                            r"class_consistency, fd_classifier"),
], ids=["missing", "run without table", "zero budget", "below every point", "unmeasured metric"])
def test_bad_plan_input_gets_one_clear_line(argv, message, tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(TABLE))
    assert_one_clear_line(argv(tmp_path), message, (tmp_path,), capsys)


@pytest.fixture(scope="module")
def measured_run(tiny_cfg_dict, tmp_path_factory):
    """A tiny trained run with an any-time table of its own counted GFLOPs (quality values made up: the test is
    about which setting is chosen and what it costs)."""
    import yaml

    from elt.anytime import gflops_per_sample
    from elt.models import from_pretrained

    root = tmp_path_factory.mktemp("plan_run")
    (root / "c.yaml").write_text(yaml.safe_dump(tiny_cfg_dict()))
    run = root / "run"
    assert main(["train", str(root / "c.yaml"), "train.steps=2", "--out", str(run), "--no-progress"]) == 0
    model, _ = from_pretrained(run)
    rows = [(L, 2, gflops_per_sample(model, L, 2, 1.0), 50.0 / L, 0.9) for L in (1, 2, 3)]
    table = _table({"ilsd": rows})
    table["runs"][0]["cfg"] = 1.0
    (run / "anytime").mkdir()
    (run / "anytime" / "anytime.json").write_text(json.dumps(table))
    return run, [r[2] for r in rows]


def test_sample_budget_uses_the_plan_and_stays_within_it(measured_run, tmp_path):
    run, costs = measured_run
    budget = (costs[1] + costs[2]) / 2  # L = 2 fits, L = 3 does not
    assert main(["sample", str(run), "--budget", str(budget), "--per-class", "1",
                 "--out", str(tmp_path / "s.npz")]) == 0
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["loops"] == 2 and record["steps"] == 2
    assert record["gflops_per_sample"] <= budget and record["budget"]["measured_gflops"] == pytest.approx(costs[1])


@pytest.mark.parametrize("extra,message", [
    (["--budget", "1e9", "--loops", "2"], r"--budget chooses the setting itself: drop --loops"),
    (["--budget", "1e-9"], r"no measured setting costs at most 1e-09 GFLOPs per sample"),
], ids=["with --loops", "below every point"])
def test_bad_sample_budget_gets_one_clear_line(measured_run, extra, message, tmp_path, capsys):
    run, _ = measured_run
    assert_one_clear_line(["sample", run, "--per-class", "1", "--out", tmp_path / "x.npz", *extra], message,
                          (run, tmp_path), capsys)


def _timed(rows_by_run: dict[str, list[tuple]], per_point: int = 100) -> dict:
    """Like _table, each row with its measured sampling time: (loops, steps, gflops, fd, seconds)."""
    table = _table({name: [(L, s, g, fd, 0.5) for L, s, g, fd, _ in rows] for name, rows in rows_by_run.items()})
    for run, rows in zip(table["runs"], rows_by_run.values()):
        run["samples_per_point"] = per_point
        for row, (*_, seconds) in zip(run["results"], rows):
            row["sample_seconds"] = seconds
    return table


def test_a_seconds_budget_uses_the_measured_time_per_sample():
    """--seconds: each point costs its sweep's wall time over the sweep's sample count (here 100 per point)."""
    table = _timed({"ilsd": [(1, 20, 2.0, 60.0, 20.0), (2, 20, 4.0, 30.0, 45.0), (4, 20, 8.0, 20.0, 80.0)]})
    points = candidates(table["runs"])
    assert [p["seconds_per_sample"] for p in points] == [0.2, 0.45, 0.8]
    assert plan(points, 0.5, "fd_classifier", "seconds_per_sample")["choice"]["loops"] == 2
    assert plan(points, 0.8, "fd_classifier", "seconds_per_sample")["choice"]["loops"] == 4
    rng = random.Random(1)
    for _ in range(200):  # never over a seconds budget, nothing cheaper is better
        rows = [(rng.randint(1, 6), 20, rng.uniform(0.5, 10), rng.uniform(1, 100), rng.uniform(1, 90))
                for _ in range(rng.randint(1, 12))]
        points = candidates(_timed({"r": rows}, per_point=rng.choice([10, 100]))["runs"])
        budget = rng.uniform(0.05, 2)
        if budget < min(p["seconds_per_sample"] for p in points):
            continue
        choice = plan(points, budget, "fd_classifier", "seconds_per_sample")["choice"]
        assert choice["seconds_per_sample"] <= budget
        assert not any(p["seconds_per_sample"] <= budget and p["fd_classifier"] < choice["fd_classifier"]
                       for p in points)


def test_cli_seconds_budget_and_plot(tmp_path, capsys):
    table = _timed({"ilsd": [(1, 20, 2.0, 60.0, 20.0), (2, 20, 4.0, 30.0, 45.0)]})
    (tmp_path / "t.json").write_text(json.dumps(table))
    assert main(["plan", str(tmp_path / "t.json"), "--seconds", "0.3", "--plot", str(tmp_path / "p.png"),
                 "--json", str(tmp_path / "p.json")]) == 0
    assert "within 0.3 s per sample: ilsd: loops=1" in capsys.readouterr().out
    assert (tmp_path / "p.png").stat().st_size > 0
    assert json.loads((tmp_path / "p.json").read_text())["cost"] == "seconds_per_sample"


@pytest.mark.parametrize("argv,message", [
    (lambda t: ["plan", t / "a.json", "--seconds", "1"], r"the table has no seconds per sample for its fd_classifier "
                                                         r"points .*plan with --gflops"),
    (lambda t: ["plan", t / "b.json", "--seconds", "0"], r"--seconds must be a budget > 0 \(seconds per sample\)"),
    (lambda t: ["plan", t / "b.json", "--seconds", "0.01"], r"no measured setting costs at most 0\.01 seconds per "
                                                            r"sample: the cheapest, .* raise --seconds"),
    (lambda t: ["plan", t / "b.json", "--gflops", "5", "--plot", t / "p.jpg"], r"--plot \S*p\.jpg does not end in "
                                                                               r"\.png"),
    (lambda t: ["plan", t / "b.json", "--gflops", "5", "--classifier", t], r"--classifier / --steps-list say how to "
                                                                           r"measure a run: add --measure"),
    (lambda t: ["plan", t / "b.json", "--gflops", "5", "--measure"], r"--measure measures a run folder; \S*b\.json "
                                                                     r"is not one"),
    (lambda t: ["plan", t, "--gflops", "5", "--measure"], r"--measure scores the run with a dataset classifier: pass "
                                                          r"--classifier"),
], ids=["no timings", "zero seconds", "below every time", "plot not png", "classifier without measure",
        "measure a json", "measure without classifier"])
def test_bad_plan_budget_input_gets_one_clear_line(argv, message, tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(TABLE))
    (tmp_path / "b.json").write_text(json.dumps(_timed({"ilsd": [(1, 20, 2.0, 60.0, 20.0)]})))
    assert_one_clear_line(argv(tmp_path), message, (tmp_path,), capsys)
