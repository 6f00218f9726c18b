"""Report tables: the paper's Table 1 layout (mean ± std over seeds, best Gap in bold)."""

import re

import pytest

from tarf.comparison import gap_by_seed, runs_table, standings, table1
from tarf.report import (
    audit_table,
    flat_row,
    method_label,
    mixes_requests,
    report_rows,
    spearman,
)


def run(task, method, seed, gap, rte=10.0, changes=None):
    return {
        "task": task,
        "method": method,
        "config_changes": changes or {},
        "seed": seed,
        "dataset": "toy",
        "recipe": "tiny",
        "metrics": {"UA": 1.0, "RA": 90.0, "TA": 80.0, "MIA": 99.0, "Gap": gap, "RTE_s": rte},
        "reference": {"UA": 0.0, "RA": 91.0, "TA": 81.0, "MIA": 100.0, "train_s": 100.0},
        "original": {"UA": 90.0, "RA": 91.0, "TA": 81.0, "MIA": 10.0, "Gap": 40.0},
    }


def test_table1_groups_tasks_averages_seeds_and_bolds_best_gap():
    reports = [
        run("target-mismatch", "tarf", 0, 1.0),
        run("target-mismatch", "tarf", 1, 3.0),
        run("target-mismatch", "ga", 0, 5.0, rte=50.0),
        run("all-matched", "ga", 0, 0.5),
        run("all-matched", "tarf", 0, 2.0),
    ]
    lines = table1(reports).splitlines()
    body = [line for line in lines[2:]]
    # the paper's task order, reference first, methods in Table 1 order (ga before tarf)
    assert [line.split(" | ")[0].strip("| ") for line in body] == ["all-matched"] * 4 + [
        "target-mismatch"
    ] * 4
    assert "retrained (reference)" in body[0] and "original" in body[1]
    assert "| ga |" in body[2] and "**0.50**" in body[2] and "**2.00**" not in body[3]
    tarf_tm = next(line for line in body if line.startswith("| target-mismatch | tarf |"))
    assert "| 2 |" in tarf_tm and "**2.00 ± 1.41**" in tarf_tm  # mean ± sample std
    ga_tm = next(line for line in body if line.startswith("| target-mismatch | ga |"))
    assert ga_tm.endswith("| 0.500 |")  # RTE / retrain time = 50 / 100


def test_gap_by_seed_shows_every_seed_behind_the_mean():
    reports = [
        run("target-mismatch", "tarf", 1, 3.0),  # out of order: cells list seeds 0, 1
        run("target-mismatch", "tarf", 0, 1.0),
        run("target-mismatch", "ga", 0, 5.0),
        run("target-mismatch", "ga", 1, 7.0),
        run("all-matched", "tarf", 0, 2.0),
        run("all-matched", "ga", 0, 0.5),
    ]
    header, _, ga, tarf = gap_by_seed(reports).splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "method", "all-matched", "target-mismatch"
    ]  # fmt: skip
    assert [c.strip() for c in ga.strip("|").split("|")] == [
        "ga",
        "**0.50**",
        "6.00 ± 1.41 (5.00 / 7.00)",
    ]
    assert [c.strip() for c in tarf.strip("|").split("|")] == [
        "tarf", "2.00", "**2.00 ± 1.41** (1.00 / 3.00)"
    ]  # fmt: skip
    # one seed everywhere: nothing to add to Table 1
    assert gap_by_seed([r for r in reports if r["seed"] == 0]) == ""


def test_changed_hyperparameters_label_the_run():
    rep = run("all-matched", "ga", 0, 1.0, changes={"lr": 0.0003})
    assert method_label(rep) == "ga lr=0.0003"
    assert flat_row(rep)["config_changes"] == "lr=0.0003" and flat_row(rep)["method"] == "ga"


def test_auto_prior_labels_the_run():
    rep = run("target-mismatch", "tarf", 0, 1.0)
    rep["request"] = {"prior": "auto"}
    assert method_label(rep) == "tarf prior=auto"
    rep["request"] = {"prior": 3}
    assert method_label(rep) == "tarf"


def test_runs_of_different_requests_are_not_pooled():
    trees, fruit = run("target-mismatch", "tarf", 0, 2.0), run("target-mismatch", "tarf", 0, 6.0)
    trees["request"] = {"forget": ["maple_tree", "oak_tree"], "target": ["trees"]}
    fruit["request"] = {"forget": ["pear"], "target": ["fruit_and_vegetables"]}
    body = table1([trees, fruit]).splitlines()[2:]
    tarf_rows = [line for line in body if "| tarf |" in line]
    assert len(tarf_rows) == 2 and all("| 1 |" in line for line in tarf_rows)  # not 4.00 ± 2.83
    assert any("maple_tree,oak_tree -> trees" in line and "**2.00**" in line for line in body)
    assert any("pear -> fruit_and_vegetables" in line and "**6.00**" in line for line in body)
    rows = report_rows(fruit, with_request=True)
    assert rows[0][:2] == ["pear -> fruit_and_vegetables (toy, tiny)", "target-mismatch"]
    assert mixes_requests([trees, fruit]) and not mixes_requests([trees, trees])
    assert flat_row(trees)["target"] == "trees" and flat_row(fruit)["forget"] == "pear"
    # one bench: its tasks differ in target by design, and their rows stay plain
    matched = run("all-matched", "tarf", 0, 1.0)
    matched["request"] = {
        "forget": ["maple_tree", "oak_tree"],
        "target": ["maple_tree", "oak_tree"],
    }
    assert not mixes_requests([matched, trees])
    assert "| all-matched | tarf |" in table1([matched, trees])
    trees["request"]["prior"] = "auto"
    assert flat_row(trees)["prior"] == "auto" and flat_row(fruit)["prior"] is None


def test_spearman_ranks_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take their mean rank: x ranks 0, 1.5, 1.5, 3 against y ranks 0, 1, 2, 3
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / (4.5 * 5) ** 0.5)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_audit_table_puts_gap_beside_ulira_and_says_whether_rankings_agree():
    reports = []
    # tarf: the smallest Gap, the most distinguishable
    for method, gap, auc in (("ga", 5.0, 90.0), ("ft", 1.0, 70.0), ("tarf", 0.5, 95.0)):
        rep = run("all-matched", method, 0, gap)
        rep["audit"] = {"AUC": auc, "null_AUC": {"max": 55.0}, "F": 0.5, "score": 0.4}
        reports.append(rep)
    lines = audit_table(reports).splitlines()
    ga = next(line for line in lines if line.startswith("| all-matched | ga |"))
    assert ga.split(" | ")[3:6] == ["5.00", "90.00", "55.00"]  # Gap, AUC, null max
    assert lines[-1].endswith("all-matched -0.50 (3 methods).")


def test_no_gap_worse_than_the_untouched_original_is_marked_best():
    worse = [run("model-mismatch", "tarf", 0, 45.0), run("model-mismatch", "ga", 0, 50.0)]
    assert "**" not in table1(worse)  # the original's Gap is 40: nobody beat doing nothing
    mixed = worse + [run("model-mismatch", "ft", 0, 39.0)]
    assert "| model-mismatch | ft | 1 |" in table1(mixed) and "**39.00**" in table1(mixed)


def test_retrain_is_never_the_best_and_standings_say_where_tarf_stands():
    reports = [
        run("all-matched", "retrain", 0, 0.1),
        run("all-matched", "retrain", 1, 0.1),
        run("all-matched", "ga", 0, 0.5),
        run("all-matched", "ga", 1, 3.0),
        run("all-matched", "tarf", 0, 1.0),
        run("all-matched", "tarf", 1, 1.0),
        run("all-matched", "ft", 0, 2.0),  # one seed: compared on seed 0 alone
        run("all-matched", "scrub", 0, 0.2),
        run("all-matched", "scrub", 1, 0.3),
    ]
    # retraining on the kept data is the bar, not an unlearning method: SCRUB is bold
    assert "**0.10**" not in table1(reports) and "**0.25 ± 0.07**" in table1(reports)
    assert "**0.25 ± 0.07** (0.20 / 0.30)" in gap_by_seed(reports)
    (line,) = standings(reports).splitlines()
    assert line.startswith("- all-matched: best unlearning method scrub 0.25 (2 seeds)")
    assert "tarf 1.00 is lower than 1 of the other 3" in line
    assert "higher than scrub (0.25)" in line and "split against ga (1.75): lower at 1 of 2" in line
    assert "retrain" not in line
    # nobody beat doing nothing (the original's Gap is 40): no best is named
    worse = [run("model-mismatch", "tarf", 0, 45.0), run("model-mismatch", "ga", 0, 50.0)]
    assert standings(worse).startswith(
        "- model-mismatch: no unlearning method beat the untouched original (40.00)"
    )
    assert "**" not in gap_by_seed(worse + [run("model-mismatch", "ga", 1, 41.0)])


def test_gaps_layout_shows_one_seed_too_and_refuses_mixed_requests():
    reports = [run("all-matched", "tarf", 0, 1.0), run("all-matched", "ga", 0, 0.5)]
    text = runs_table(reports, "gaps")
    assert "| ga     | **0.50**" in text and "| tarf   | 1.00" in text
    assert "- all-matched: best unlearning method ga 0.50 (1 seed)" in text
    other = run("all-matched", "ft", 0, 2.0)
    other["request"] = {"forget": ["x"], "target": ["x"]}
    with pytest.raises(ValueError, match="mix requests"):
        runs_table([*reports, other], "gaps")


def test_one_request_under_two_recipes_is_two_settings():
    tiny, small = run("all-matched", "tarf", 0, 1.0), run("all-matched", "tarf", 0, 3.0)
    tiny["recipe"], small["recipe"] = "tiny", "tiny:cpunet"
    assert mixes_requests([tiny, small]) and not mixes_requests([tiny, tiny])
    body = table1([tiny, small]).splitlines()[2:]
    rows = [line for line in body if "| tarf |" in line]
    assert len(rows) == 2 and all("| 1 |" in line for line in rows)  # not 2.00 ± 1.41
    assert any("tiny:cpunet)" in line and "3.00" in line for line in rows)
    with pytest.raises(ValueError, match="datasets or recipes"):
        runs_table([tiny, small], "gaps")
    # the runs layout names each run's seed when there are several
    second = run("all-matched", "tarf", 1, 2.0)
    assert re.match(r"\| task +\| model +\| seed +\| UA", runs_table([tiny, second]))
    assert "seed" not in runs_table([tiny])


def test_standings_say_when_no_other_method_ran():
    (line,) = standings([run("data-mismatch", "tarf", 0, 1.0)]).splitlines()
    assert line == (
        "- data-mismatch: best unlearning method tarf 1.00 (1 seed); "
        "no other unlearning method has run here."
    )
