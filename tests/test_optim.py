"""Optimizers: which parameters decay, one training step in both modes, exact updates, and resumable state."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mindcv_lite.optim import OPTIMIZERS, create_optimizer, param_groups_weight_decay

NO_DECAY = {"fc.bias", "norm.gamma", "norm.beta", "pos_embed", "cls_token"}


class TinyNet(nn.Cell):
    """A Dense + LayerNorm net with a position embedding and a class token, like the ViTs' exempt parameters."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Dense(4, 3)
        self.norm = nn.LayerNorm((3,))
        self.pos_embed = Parameter(Tensor(np.full((1, 1, 3), 0.5, np.float32)), name="pos_embed")
        self.cls_token = Parameter(Tensor(np.full((1, 1, 3), 0.25, np.float32)), name="cls_token")

    def construct(self, x):
        return self.norm(self.fc(x) + self.pos_embed[0, 0] + self.cls_token[0, 0])

    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}


@pytest.fixture
def pynative():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)


def _values(net):
    return {param.name: param.asnumpy().copy() for param in net.trainable_params()}


def _zero_grads(net):
    return tuple(Tensor(np.zeros(param.shape, np.float32)) for param in net.trainable_params())


def test_param_groups_exempt_1d_params_and_named_embeddings():
    params = TinyNet().trainable_params()
    decay, no_decay, order = param_groups_weight_decay(params, 0.05, no_weight_decay={"pos_embed", "cls_token"})
    assert {p.name for p in decay["params"]} == {"fc.weight"} and decay["weight_decay"] == 0.05
    assert {p.name for p in no_decay["params"]} == NO_DECAY and no_decay["weight_decay"] == 0.0
    assert order["order_params"] == params


@pytest.mark.parametrize("weight_decay_filter, decayed", [
    ("norm_and_bias", {"fc.weight"}),
    ("disable", {"fc.weight"} | NO_DECAY),
    ("auto", {"fc.weight", "fc.bias", "pos_embed", "cls_token"}),  # MindSpore's own filter: 'gamma'/'beta' names
])
def test_weight_decay_reaches_exactly_the_filtered_params(pynative, weight_decay_filter, decayed):
    # With zero gradients AdamW's only change is the decoupled decay p -= lr * wd * p.
    net = TinyNet()
    before = _values(net)
    optimizer = create_optimizer(net, opt="adamw", lr=0.5, weight_decay=0.1, weight_decay_filter=weight_decay_filter)
    optimizer(ms.mutable(_zero_grads(net)))
    for name, value in _values(net).items():
        expected = before[name] * (1 - 0.05) if name in decayed else before[name]
        np.testing.assert_allclose(value, expected, rtol=1e-6, err_msg=name)


def test_no_weight_decay_names_can_also_be_passed(pynative):
    net = TinyNet()
    params = net.trainable_params()  # a parameter list carries no no_weight_decay() of its own
    before = _values(net)
    optimizer = create_optimizer(params, opt="adamw", lr=0.5, weight_decay=0.1, no_weight_decay={"pos_embed"})
    optimizer(ms.mutable(_zero_grads(net)))
    after = _values(net)
    np.testing.assert_allclose(after["pos_embed"], before["pos_embed"])
    np.testing.assert_allclose(after["cls_token"], before["cls_token"] * 0.95, rtol=1e-6)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_each_optimizer_trains_one_step_with_per_step_lr(mode, opt):
    net = TinyNet()
    optimizer = create_optimizer(net, opt=opt, lr=[0.1, 0.05, 0.02], weight_decay=0.05)
    def forward(x, y):
        return ops.mean((net(x) - y) ** 2)

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)

    def train_step(x, y):
        loss, grads = grad_fn(x, y)
        optimizer(grads)
        return loss

    step = ms.jit(train_step) if mode == ms.GRAPH_MODE else train_step
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32))
    y = Tensor(np.ones((2, 3), np.float32))
    before = _values(net)
    step(x, y)
    changed = {name for name, value in _values(net).items() if not np.array_equal(value, before[name])}
    assert "fc.weight" in changed and "norm.gamma" in changed
    assert int(optimizer.global_step.asnumpy()[0]) == 1


def _run_steps(optimizer, net, grads_per_step):
    """Apply given gradients; in graph mode the optimizer cell compiles (once: the gradients are mutable)."""
    for grads in grads_per_step:
        optimizer(ms.mutable(tuple(Tensor(g) for g in grads)))
    return _values(net)


def _adamw_reference(params, grads_per_step, lrs, weight_decays, beta1=0.9, beta2=0.999, eps=1e-8):
    """torch.optim.AdamW's update, written out in numpy."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for i, (g, wd) in enumerate(zip(grads, weight_decays)):
            params[i] = params[i] * (1 - lr * wd)
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            m_hat, v_hat = m[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


def _lion_reference(params, grads_per_step, lrs, weight_decays, beta1=0.9, beta2=0.99):
    """Lion's update (Chen et al. 2023, Algorithm 2), written out in numpy."""
    params = [p.astype(np.float64) for p in params]
    m = [np.zeros_like(p) for p in params]
    for grads, lr in zip(grads_per_step, lrs):
        for i, (g, wd) in enumerate(zip(grads, weight_decays)):
            update = np.sign(beta1 * m[i] + (1 - beta1) * g)
            params[i] = params[i] - lr * (update + wd * params[i])
            m[i] = beta2 * m[i] + (1 - beta2) * g
    return params


@pytest.mark.parametrize("opt, reference", [("adamw", _adamw_reference), ("lion", _lion_reference)])
def test_own_optimizers_match_reference_updates(mode, opt, reference):
    net = TinyNet()
    names = [p.name for p in net.trainable_params()]
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    rng = np.random.default_rng(1)
    grads_per_step = [[rng.standard_normal(p.shape).astype(np.float32) for p in before] for _ in range(3)]
    lrs, loss_scale = [0.1, 0.05, 0.02], 4.0
    optimizer = create_optimizer(net, opt=opt, lr=lrs, weight_decay=0.1, loss_scale=loss_scale)
    scaled = [[g * loss_scale for g in grads] for grads in grads_per_step]  # the optimizer divides loss_scale out
    after = _run_steps(optimizer, net, scaled)

    weight_decays = [0.0 if name in NO_DECAY else 0.1 for name in names]
    expected = reference(before, grads_per_step, lrs, weight_decays)
    for name, value in zip(names, expected):
        np.testing.assert_allclose(after[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_loss_scale_is_divided_out_of_gradients_only(pynative, opt):
    rng = np.random.default_rng(3)
    shapes = [p.shape for p in TinyNet().trainable_params()]
    grads_per_step = [[rng.standard_normal(shape).astype(np.float32) for shape in shapes] for _ in range(2)]
    results = []
    for loss_scale in (1.0, 8.0):
        ms.set_seed(0)
        net = TinyNet()
        optimizer = create_optimizer(net, opt=opt, lr=0.05, weight_decay=0.1, loss_scale=loss_scale)
        results.append(_run_steps(optimizer, net, [[g * loss_scale for g in grads] for grads in grads_per_step]))
    for name, value in results[0].items():
        np.testing.assert_allclose(results[1][name], value, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("opt, state_prefixes", [
    ("adamw", ("adam_m.", "adam_v.", "beta1_power", "beta2_power")),
    ("adam", ("moment1.", "moment2.", "beta1_power", "beta2_power")),
    ("momentum", ("moments.",)),
    ("sgd", ("accum.", "stat.")),
    ("lion", ("lion_m.",)),
])
def test_saved_optimizer_state_resumes_exactly(pynative, tmp_path, opt, state_prefixes):
    rng = np.random.default_rng(2)
    shapes = [p.shape for p in TinyNet().trainable_params()]
    grads_per_step = [[rng.standard_normal(shape).astype(np.float32) for shape in shapes] for _ in range(3)]
    lrs = [0.1, 0.05, 0.02]

    ms.set_seed(0)
    net = TinyNet()
    optimizer = create_optimizer(net, opt=opt, lr=lrs, weight_decay=0.1)
    _run_steps(optimizer, net, grads_per_step[:2])
    ckpt = str(tmp_path / "optim.ckpt")
    ms.save_checkpoint(optimizer, ckpt)  # the optimizer holds the network's parameters too
    uninterrupted = _run_steps(optimizer, net, grads_per_step[2:])

    saved_names = set(ms.load_checkpoint(ckpt))
    assert {"global_step", "learning_rate"} <= saved_names
    for prefix in state_prefixes:
        assert any(name.startswith(prefix) for name in saved_names), prefix

    ms.set_seed(1)  # different initial weights: everything must come from the checkpoint
    resumed_net = TinyNet()
    resumed_optimizer = create_optimizer(resumed_net, opt=opt, lr=lrs, weight_decay=0.1)
    not_loaded, _ = ms.load_param_into_net(resumed_optimizer, ms.load_checkpoint(ckpt))
    assert not not_loaded
    assert int(resumed_optimizer.global_step.asnumpy()[0]) == 2
    resumed = _run_steps(resumed_optimizer, resumed_net, grads_per_step[2:])
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_bad_arguments_say_what_is_wrong():
    params = TinyNet().trainable_params()
    with pytest.raises(ValueError, match="rmsprop"):
        create_optimizer(params, opt="rmsprop")
    with pytest.raises(ValueError, match="layer_decay"):
        create_optimizer(params, opt="adamw", layer_decay=0.75)
    with pytest.raises(ValueError, match="eps"):
        create_optimizer(params, opt="lion", eps=1e-8)
    with pytest.raises(ValueError, match="nesterov"):
        create_optimizer(params, opt="adamw", nesterov=True)
    with pytest.raises(ValueError, match="weight_decay_filter"):
        create_optimizer(params, opt="adamw", weight_decay_filter="bias")
