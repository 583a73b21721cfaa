"""A sweep's space is sized and validated from the request alone; its children are made lazily, a
batch at a time, and are exactly what scipy/NumPy give for the seed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import qmc

from app.fmi.model_description import ModelInfo, parse_model_description
from app.sweeps import space as sweep_space
from app.sweeps.schemas import SweepCreate
from app.sweeps.space import SweepTooLarge, TooManySamples, expand


@pytest.fixture(scope="module")
def van_der_pol(fmus: dict[str, Path]) -> ModelInfo:
    with zipfile.ZipFile(fmus["VanDerPol"]) as archive:
        return parse_model_description(archive.read("modelDescription.xml"))


def sweep(**fields: object) -> SweepCreate:
    return SweepCreate.model_validate(fields)


class TestSize:
    def test_nothing_is_sampled_until_the_children_are_listed(self, van_der_pol: ModelInfo,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*_: object) -> None:
            raise AssertionError("sampled before the children were asked for")

        monkeypatch.setattr(sweep_space, "unit_samples", refuse)
        space = expand(sweep(method="lhs", samples=5000, parameters={"mu": {"min": 0.1, "max": 2.0}}),
                       van_der_pol, max_children=10_000, max_values=10_000)
        assert space.count == 5000 and space.names == ["mu"]

    def test_a_grid_is_counted_not_listed(self, van_der_pol: ModelInfo) -> None:
        space = expand(sweep(method="grid", parameters={"mu": [float(i) for i in range(100)],
                                                        "x0": [float(i) for i in range(100)]}),
                       van_der_pol, max_children=10_000, max_values=20_000)
        assert space.count == 10_000
        first = next(space.batches(3))
        assert first == [{"mu": 0.0, "x0": 0.0}, {"mu": 0.0, "x0": 1.0}, {"mu": 0.0, "x0": 2.0}]

    def test_too_many_children_or_values_are_refused_from_the_request(self, van_der_pol: ModelInfo) -> None:
        ranges = {"mu": {"min": 0.1, "max": 2.0}, "x0": {"min": 0.0, "max": 1.0}}
        with pytest.raises(TooManySamples):
            expand(sweep(method="random", samples=1001, parameters=ranges), van_der_pol, 1000, 10**9)
        with pytest.raises(SweepTooLarge) as caught:
            expand(sweep(method="random", samples=600, parameters=ranges), van_der_pol, 1000, 1000)
        assert caught.value.extra["values"] == 1200
        with pytest.raises(SweepTooLarge):
            expand(sweep(method="list", parameters=[{"mu": 1.0, "x0": 1.0}] * 501), van_der_pol, 1000, 1000)


class TestChildren:
    @pytest.mark.filterwarnings("ignore:The balance properties of Sobol")
    @pytest.mark.parametrize("method", ["random", "sobol", "lhs"])
    def test_batches_are_the_seeded_design_in_order(self, van_der_pol: ModelInfo, method: str) -> None:
        space = expand(sweep(method=method, samples=2500, seed=11,
                             parameters={"mu": {"min": 0.5, "max": 2.0}, "x0": {"min": -1.0, "max": 1.0}}),
                       van_der_pol, max_children=10_000, max_values=10_000)
        batches = list(space.batches(1000))
        assert [len(b) for b in batches] == [1000, 1000, 500]
        unit = {"random": lambda: np.random.default_rng(11).random((2500, 2)),
                "sobol": lambda: qmc.Sobol(d=2, scramble=True, rng=11).random(2500),
                "lhs": lambda: qmc.LatinHypercube(d=2, rng=11).random(2500)}[method]()
        got = np.array([[child["mu"], child["x0"]] for batch in batches for child in batch], dtype=float)
        assert np.allclose(got, qmc.scale(unit, [0.5, -1.0], [2.0, 1.0]), rtol=0, atol=1e-12)

    def test_listing_twice_gives_the_same_children(self, van_der_pol: ModelInfo) -> None:
        space = expand(sweep(method="random", samples=10, parameters={"mu": {"min": 0.0, "max": 1.0}}),
                       van_der_pol, max_children=100, max_values=100)
        assert [c for b in space.batches(4) for c in b] == [c for b in space.batches(7) for c in b]
