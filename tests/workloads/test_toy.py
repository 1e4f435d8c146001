"""``pbt-toy``: the numpy update is torch SGD's, and the surrogate decides which θ moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pbtune.errors import UserError
from pbtune.workloads import get

OPTS = {"step_size": 0.01, "steps_per_iteration": 4, "theta_init": (0.9, 0.9)}


def _toy(h0: float, h1: float, **options: object):
    return get("pbt-toy")({"h0": h0, "h1": h1}, options={**OPTS, **options})


def test_matches_torch_sgd_on_the_surrogate() -> None:
    toy = _toy(0.7, 0.3)
    theta = torch.nn.Parameter(torch.tensor([0.9, 0.9], dtype=torch.float64))
    h = torch.tensor([0.7, 0.3], dtype=torch.float64)
    opt = torch.optim.SGD([theta], lr=0.01)
    for _ in range(5):
        train = toy.train(1)
        for _ in range(4):
            surrogate = 1.2 - (h * theta**2).sum()
            opt.zero_grad()
            (-surrogate).backward()
            opt.step()
        assert np.allclose(toy.theta, theta.detach().numpy(), rtol=0, atol=1e-15)
        assert train["surrogate"] == pytest.approx(float(surrogate.detach()), abs=1e-15)
    assert toy.iteration == 5
    # Closed form: each step multiplies θᵢ by (1 − 2·lr·hᵢ).
    assert np.allclose(toy.theta, 0.9 * (1 - 2 * 0.01 * np.array([0.7, 0.3])) ** 20)
    score = toy.evaluate()["score"]
    assert score == pytest.approx(1.2 - float(np.sum(toy.theta**2)))


def test_only_coordinates_with_weight_move() -> None:
    toy = _toy(1.0, 0.0)
    toy.train(10)
    assert toy.theta[1] == 0.9 and toy.theta[0] < 0.9
    assert toy.evaluate()["score"] < 1.2 - 0.81  # θ₁ stuck at 0.9: never near the optimum


def test_state_round_trip_and_hyperparameter_change() -> None:
    a = _toy(0.5, 0.5)
    a.train(3)
    state = a.get_state()
    b = _toy(0.1, 0.9)
    b.set_state(state)
    assert b.iteration == 3 and np.array_equal(b.theta, a.theta)
    assert b.config == {"h0": 0.5, "h1": 0.5}
    b.apply_hyperparameters({"h1": 0.0})
    b.train(1)
    assert b.theta[1] == a.theta[1]  # h₁ = 0 now: θ₁ frozen
    state["theta"][0] = 5.0  # the state is a copy
    assert a.theta[0] != 5.0
    with pytest.raises(KeyError, match="theta"):
        b.set_state({"iteration": 1, "config": {}})


@pytest.mark.parametrize("options", [{"step_size": 0}, {"steps_per_iteration": 0},
                                     {"theta_init": (1.0,)}])
def test_bad_options_are_user_errors(options: dict) -> None:
    with pytest.raises(UserError, match="pbt-toy"):
        _toy(0.5, 0.5, **options)
