"""The taxonomy against the paper's Table 4 (all 27 three-layer cases) and Table 2."""

import pytest

from tarf.domains import ImpracticalRequestError, Level, classify

S, C, P = Level.SUBSET, Level.CLASS, Level.SUPERCLASS

# Paper Table 4, copied row by row: (No., L_D, L_M, L_T, comment).
PAPER_TABLE4 = [
    (1, S, S, S, "All matched"), (2, S, S, C, "Target mismatch"), (3, S, C, S, "Model mismatch"),
    (4, S, C, C, "Data mismatch"), (5, S, S, P, "Different"), (6, S, P, S, "Different"),
    (7, S, P, P, "Different"), (8, S, C, P, "Different"), (9, S, P, C, "Different"),
    (10, C, C, C, "All matched"), (11, C, C, P, "Target mismatch"), (12, C, P, C, "Model mismatch"),
    (13, C, P, P, "Data mismatch"), (14, C, S, S, "Impractical"), (15, C, S, C, "Similar to all matched"),
    (16, C, S, P, "Different"), (17, C, C, S, "Impractical"), (18, C, P, S, "Impractical"),
    (19, P, P, P, "All matched"), (20, P, C, C, "Impractical"), (21, P, C, P, "Similar to all matched"),
    (22, P, P, C, "Impractical"), (23, P, S, S, "Impractical"), (24, P, S, C, "Impractical"),
    (25, P, S, P, "Similar to all matched"), (26, P, C, S, "Impractical"), (27, P, P, S, "Impractical"),
]  # fmt: skip

EXPECTED = {
    "All matched": "all-matched",
    "Similar to all matched": "all-matched",
    "Target mismatch": "target-mismatch",
    "Model mismatch": "model-mismatch",
    "Data mismatch": "data-mismatch",
}


@pytest.mark.parametrize("no,d,m,t,comment", PAPER_TABLE4)
def test_table4_case(no, d, m, t, comment):
    if comment == "Impractical":
        with pytest.raises(ImpracticalRequestError, match="L_D ≻ L_T"):
            classify(d, m, t)
        return
    kind = classify(d, m, t)
    assert kind.case == no
    if comment == "Different":
        assert kind.name == f"scenario-{no}"
        assert no in (5, 6, 7, 8, 9, 16)
    else:
        assert kind.name == EXPECTED[comment]
    if comment == "Similar to all matched":
        assert kind.comment == "similar to all matched"


def test_table2_two_layer():
    # Table 2 (class/superclass only): No. 1-4 are the four tasks, 5 and 7 impractical,
    # 6 similar to all matched, 8 all matched.
    assert classify(C, C, C).name == "all-matched"
    assert classify(C, C, P).name == "target-mismatch"
    assert classify(C, P, C).name == "model-mismatch"
    assert classify(C, P, P).name == "data-mismatch"
    for d, m, t in ((P, C, C), (P, P, C)):
        with pytest.raises(ImpracticalRequestError):
            classify(d, m, t)
    assert classify(P, C, P).comment == "similar to all matched"
    assert classify(P, P, P).name == "all-matched"


def test_level_parse():
    assert Level.parse("Superclass") == P
    assert Level.parse("sub-set") == S
    with pytest.raises(ValueError, match="unknown label level"):
        Level.parse("genus")
