"""Optimizers against updates computed by hand; parameter groups; state round trips; clipping; the
learning-rate schedule."""

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd import Tensor
from tinygrad_lm.optim import SGD, AdamW, clip_grad_norm, warmup_cosine_lr


def param(values, dtype=np.float64):
    return Tensor(np.array(values, dtype=dtype), requires_grad=True)


def set_grad(p, g):
    p.grad = Tensor(np.array(g, dtype=p.dtype))


def adamw_by_hand(p, grads, lr, beta1, beta2, eps, weight_decay):
    """torch.optim.AdamW's algorithm as written in its documentation (bias-corrected moments)."""
    m = v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p - lr * weight_decay * p
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p


def test_adamw_first_step_by_hand():
    p = param([1.0, -2.0])
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    set_grad(p, [0.5, -4.0])
    opt.step()
    # Step 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) = 0.1 * sign(g);
    # decay first multiplies p by 1 - lr * wd = 0.99.
    np.testing.assert_allclose(p.data, [0.99 - 0.1, -1.98 + 0.1], rtol=1e-7)
    assert opt.state[p]["step"] == 1


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 6), wd=st.sampled_from([0.0, 0.1]),
       betas=st.sampled_from([(0.9, 0.999), (0.8, 0.95)]))  # fmt: skip
def test_adamw_matches_the_algorithm_over_several_steps_in_two_groups(seed, steps, wd, betas):
    rng = np.random.default_rng(seed)
    a0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(4)
    a, b = param(a0), param(b0)
    opt = AdamW([{"params": [a], "weight_decay": wd}, {"params": [b], "lr": 0.05, "weight_decay": 0.0}],
                lr=0.01, betas=betas, eps=1e-6)  # fmt: skip
    grads_a = [rng.standard_normal((3, 2)) for _ in range(steps)]
    grads_b = [rng.standard_normal(4) for _ in range(steps)]
    for ga, gb in zip(grads_a, grads_b):
        set_grad(a, ga)
        set_grad(b, gb)
        opt.step()
    np.testing.assert_allclose(a.data, adamw_by_hand(a0, grads_a, 0.01, *betas, 1e-6, wd), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.data, adamw_by_hand(b0, grads_b, 0.05, *betas, 1e-6, 0.0), rtol=1e-10, atol=1e-12)


def test_adamw_skips_parameters_without_gradient_and_keeps_dtype():
    a, b = param([1.0], np.float32), param([2.0], np.float32)
    opt = AdamW([a, b], lr=0.1, weight_decay=0.5)
    set_grad(a, [1.0])
    opt.step()
    assert b.data[0] == 2.0 and b not in opt.state  # no gradient: untouched, not even decayed
    assert a.data.dtype == np.float32 and opt.state[a]["exp_avg"].dtype == np.float32
    set_grad(b, [1.0])
    opt.step()
    assert opt.state[a]["step"] == 2 and opt.state[b]["step"] == 1  # each parameter counts its own steps
    np.testing.assert_allclose(b.data, adamw_by_hand(np.array([2.0]), [np.array([1.0])], 0.1, 0.9, 0.999, 1e-8, 0.5),
                               rtol=1e-6)  # fmt: skip
    opt.zero_grad()
    assert a.grad is None and b.grad is None


class OneByOneAdamW(AdamW):
    """AdamW that never takes its whole-group path: the per-parameter reference."""

    def _flat_state(self, index, params):
        return None


def test_adamw_updates_a_group_at_once_with_the_bits_of_one_parameter_at_a_time():
    rng = np.random.default_rng(3)
    shapes = [(3, 2), (4,), (2, 2, 2)]
    start = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    runs = []
    for kind in (AdamW, OneByOneAdamW):
        ps = [param(v.copy(), np.float32) for v in start]
        opt = kind([{"params": ps[:2], "weight_decay": 0.1}, {"params": ps[2:], "weight_decay": 0.0}], lr=0.01)
        for step, gs in enumerate(grads):
            for p, g in zip(ps, gs):
                set_grad(p, g)
            if step == 2:
                ps[1].grad = None  # skipped once: its step count falls behind, the group goes one by one
            opt.step()
        runs.append((ps, opt))
    (flat, opt_flat), (plain, opt_plain) = runs
    for a, b in zip(flat, plain):
        np.testing.assert_array_equal(a.data, b.data)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            np.testing.assert_array_equal(opt_flat.state[a][key], opt_plain.state[b][key])
    assert [opt_flat.state[p]["step"] for p in flat] == [4, 3, 4]


def test_adamw_gradient_set_by_hand_in_another_dtype_updates_as_one_by_one():
    runs = []
    for kind in (AdamW, OneByOneAdamW):
        ps = [param(np.ones((2, 2)), np.float32), param(np.ones(3), np.float32)]
        opt = kind(ps, lr=0.1)
        for step in range(3):
            set_grad(ps[0], np.full((2, 2), 0.3))
            ps[1].grad = Tensor(np.full(3, 0.7 + step, dtype=np.float64))  # float64 beside float32 data
            opt.step()
        runs.append(ps)
    for a, b in zip(*runs):
        assert a.data.dtype == np.float32
        np.testing.assert_array_equal(a.data, b.data)


def test_adamw_state_stays_live_after_loading():
    """Loaded moments are copied into the optimizer's own buffers; state_dict shows the live values."""
    ps = [param(np.ones((2, 2))), param(np.ones(3))]
    opt = AdamW(ps, lr=0.1)
    for p in ps:
        set_grad(p, np.ones(p.shape))
    opt.step()
    saved = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(saved)
    for p in ps:
        set_grad(p, np.ones(p.shape))
    opt.step()
    live = opt.state_dict()["state"]
    assert [live[i]["step"] for i in (0, 1)] == [2, 2]
    np.testing.assert_allclose(live[0]["exp_avg"], 1 - 0.9**2)
    assert not np.shares_memory(live[0]["exp_avg"], saved["state"][0]["exp_avg"])


def sgd_by_hand(p, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's algorithm as documented."""
    buf = None
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9}, {"momentum": 0.9, "dampening": 0.5}, {"momentum": 0.8, "nesterov": True},
     {"momentum": 0.5, "weight_decay": 0.1}],
)  # fmt: skip
def test_sgd_matches_the_algorithm(options):
    rng = np.random.default_rng(1)
    p0 = rng.standard_normal(5)
    p = param(p0)
    opt = SGD([p], lr=0.1, **options)
    grads = [rng.standard_normal(5) for _ in range(4)]
    for g in grads:
        set_grad(p, g)
        opt.step()
    np.testing.assert_allclose(p.data, sgd_by_hand(p0, grads, 0.1, **options), rtol=1e-12)


def test_sgd_first_steps_by_hand():
    p = param([1.0])
    opt = SGD([p], lr=0.5, momentum=0.9)
    set_grad(p, [2.0])
    opt.step()  # buf = 2, p = 1 - 0.5 * 2 = 0
    assert p.data[0] == 0.0
    set_grad(p, [1.0])
    opt.step()  # buf = 0.9 * 2 + 1 = 2.8, p = 0 - 1.4
    np.testing.assert_allclose(p.data, [-1.4])


def test_parameter_group_errors():
    a = param([1.0])
    with pytest.raises(ValueError, match="more than one group"):
        AdamW([{"params": [a]}, {"params": [a]}])
    with pytest.raises(ValueError, match="unknown hyper-parameters"):
        AdamW([{"params": [a], "momentum": 0.9}])
    with pytest.raises(ValueError, match="does not require grad"):
        SGD([Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="betas"):
        AdamW([a], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="nesterov"):
        SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="Tensors"):
        SGD([np.ones(2)], lr=0.1)


def test_hyperparameters_can_be_changed_per_group():
    a, b = param([1.0]), param([1.0])
    opt = SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    opt.param_groups[1]["lr"] = 1.0
    set_grad(a, [1.0])
    set_grad(b, [1.0])
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [0.9, 0.0])


# ---------------------------------------------------------------------------------------------------
# State dicts
# ---------------------------------------------------------------------------------------------------


def _train(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            set_grad(p, g)
        opt.step()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_state_dict_round_trip_continues_identically(kind):
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (4,)]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(5)]
    start = [rng.standard_normal(s) for s in shapes]

    def make(values):
        ps = [param(v.copy()) for v in values]
        groups = [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}]
        return ps, (AdamW(groups, lr=0.01) if kind == "adamw" else SGD(groups, lr=0.01, momentum=0.9))

    straight, opt = make(start)
    _train(opt, straight, grads)

    first, opt1 = make(start)
    _train(opt1, first, grads[:3])
    saved = copy.deepcopy(opt1.state_dict())
    assert set(saved) == {"state", "param_groups"} and saved["param_groups"][1]["params"] == [1]
    assert all(isinstance(v, (np.ndarray, int)) for s in saved["state"].values() for v in s.values())
    resumed, opt2 = make([p.data for p in first])
    opt2.param_groups[0]["lr"] = 123.0  # restored from the state dict
    opt2.load_state_dict(saved)
    assert opt2.param_groups[0]["lr"] == 0.01
    _train(opt2, resumed, grads[3:])
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_load_state_dict_validates_before_changing_anything():
    a, b = param(np.ones((2, 2))), param(np.ones(3))
    opt = AdamW([{"params": [a]}, {"params": [b]}], lr=0.01)
    set_grad(a, np.ones((2, 2)))
    set_grad(b, np.ones(3))
    opt.step()
    good = copy.deepcopy(opt.state_dict())
    before = copy.deepcopy(opt.state_dict())

    bad_shape = copy.deepcopy(good)
    bad_shape["state"][1]["exp_avg"] = np.zeros(4)
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 1 .* shape \(4,\)"):
        opt.load_state_dict(bad_shape)
    one_group = {"state": {}, "param_groups": good["param_groups"][:1]}
    with pytest.raises(ValueError, match="1 saved parameter groups, this optimizer has 2"):
        opt.load_state_dict(one_group)
    with pytest.raises(ValueError, match="another kind of optimizer"):
        SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(good)
    missing = copy.deepcopy(good)
    del missing["state"][0]["exp_avg_sq"]
    with pytest.raises(ValueError, match="expected"):
        opt.load_state_dict(missing)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i in before["state"]:
        for key, value in before["state"][i].items():
            np.testing.assert_array_equal(after["state"][i][key], value)


# ---------------------------------------------------------------------------------------------------
# Clipping and the schedule
# ---------------------------------------------------------------------------------------------------


def test_clip_grad_norm_scales_all_gradients_together():
    a, b, c = param([0.0, 0.0]), param([0.0]), param([0.0])
    set_grad(a, [3.0, 0.0])
    set_grad(b, [4.0])  # joint norm 5; c has no gradient
    assert clip_grad_norm([a, b, c], 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate([a.grad.data, b.grad.data]), [0.6, 0.0, 0.8], rtol=1e-6)
    assert clip_grad_norm([a, b], 10.0) == pytest.approx(1.0, rel=1e-6)  # below the limit: unchanged
    np.testing.assert_allclose(b.grad.data, [0.8], rtol=1e-6)
    assert clip_grad_norm([c], 1.0) == 0.0


def test_warmup_cosine_schedule():
    lr = lambda step: warmup_cosine_lr(step, max_lr=1.0, warmup_steps=4, decay_steps=14, min_lr=0.1)  # noqa: E731
    assert [lr(s) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lr(4) == pytest.approx(1.0)
    assert lr(9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr(14) == pytest.approx(0.1) and lr(1000) == 0.1
    assert all(lr(s) >= lr(s + 1) for s in range(4, 20))
    assert warmup_cosine_lr(0, 1.0, 0, 0) == 0.0
    with pytest.raises(ValueError, match="warmup_steps <= decay_steps"):
        warmup_cosine_lr(0, 1.0, 10, 5)
