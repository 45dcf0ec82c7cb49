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
