"""biasamp.agreement: the one kappa implementation every stage uses."""

from __future__ import annotations

import pytest

from biasamp import agreement


def test_stages_share_one_cohen_kappa():
    from biasamp.annotate import cohen_kappa as annotate_kappa
    from biasamp.images import cohen_kappa as images_kappa

    assert annotate_kappa is agreement.cohen_kappa and images_kappa is agreement.cohen_kappa


def test_classify_kappa_wraps_the_shared_statistic():
    from biasamp.classify import cohen_kappa as classify_kappa

    a = ["f", "f", "m", "m", "m", "f", "m"]
    b = ["f", "m", "m", "m", "f", "f", "m"]
    k = classify_kappa(a, b)
    assert k["kappa"] == pytest.approx(agreement.cohen_kappa(a, b))
    assert k["agreement"] == pytest.approx(agreement.chance_corrected_parts(a, b)[0])
    undefined = classify_kappa(["m"] * 3, ["m"] * 3)  # both raters use one label: kappa is undefined, as in agreement
    assert undefined["kappa"] is None and undefined["note"] and agreement.cohen_kappa(["m"] * 3, ["m"] * 3) is None


def test_chance_corrected_parts_reference():
    # 2x2 table [[20, 5], [10, 15]]: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5, kappa = 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert agreement.chance_corrected_parts(a, b) == pytest.approx((0.7, 0.5))
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)
    assert agreement.chance_corrected_parts([], []) is None
    with pytest.raises(ValueError):
        agreement.cohen_kappa(["a"], [])
