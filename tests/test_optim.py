"""Optimizers: which parameters decay, one training step in both modes, exact updates, and resumable state."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from mindcv_lite.models import load_checkpoint, read_checkpoint, save_checkpoint
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
    optimizer = create_optimizer(params, opt="adamw", lr=0.5, weight_decay=0.1, no_weight_decay={"pos_embed"},
                                 weight_decay_filter="norm_and_bias")
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


def _reference_step(opt, lr, wd):
    """One step of `opt`'s published update rule for one parameter, in float64 numpy: (p, g, state, t) -> p."""
    def l2(p, g):
        return g + wd * p

    def sgd(p, g, s, t, nesterov=False):  # MindSpore/torch SGD: momentum buffer starts at the first gradient
        g = l2(p, g)
        s["buf"] = g if t == 1 else 0.9 * s["buf"] + g
        return p - lr * (g + 0.9 * s["buf"] if nesterov else s["buf"])

    def momentum(p, g, s, t, nesterov=False):  # MindSpore ApplyMomentum: v = m v + g; p -= lr (g + m v | v)
        g = l2(p, g)
        s["v"] = 0.9 * s.get("v", 0.0) + g
        return p - lr * (g + 0.9 * s["v"] if nesterov else s["v"])

    def adam(p, g, s, t):
        g = l2(p, g)
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        return p - lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * s["m"] / (np.sqrt(s["v"]) + 1e-8)  # MindSpore's Adam

    def adamw(p, g, s, t):  # torch.optim.AdamW
        p = p * (1 - lr * wd)
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        return p - lr * (s["m"] / (1 - 0.9**t)) / (np.sqrt(s["v"] / (1 - 0.999**t)) + 1e-8)

    def lion(p, g, s, t):  # Chen et al. 2023, Algorithm 2
        m = s.get("m", 0.0)
        p = p - lr * (np.sign(0.9 * m + 0.1 * g) + wd * p)
        s["m"] = 0.99 * m + 0.01 * g
        return p

    def nadam(p, g, s, t):  # torch.optim.NAdam (momentum_decay = mindcv's schedule_decay = 4e-3)
        g = l2(p, g)
        mu = 0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3))
        mu_next = 0.9 * (1 - 0.5 * 0.96 ** ((t + 1) * 4e-3))
        s["mu_product"] = s.get("mu_product", 1.0) * mu
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        denom = np.sqrt(s["v"] / (1 - 0.999**t)) + 1e-8
        grad_coef, momentum_coef = (1 - mu) / (1 - s["mu_product"]), mu_next / (1 - s["mu_product"] * mu_next)
        return p - lr * (grad_coef * g + momentum_coef * s["m"]) / denom

    def adan(p, g, s, t):  # sail-sg/Adan (Xie et al. 2022), betas (0.98, 0.92, 0.99), proximal weight decay
        diff = g - s["prev"] if t > 1 else np.zeros_like(g)
        s["prev"] = g
        s["m"] = 0.98 * s.get("m", 0.0) + 0.02 * g
        s["v"] = 0.92 * s.get("v", 0.0) + 0.08 * diff
        s["n"] = 0.99 * s.get("n", 0.0) + 0.01 * (g + 0.92 * diff) ** 2
        denom = np.sqrt(s["n"] / (1 - 0.99**t)) + 1e-8
        p = p - lr * (s["m"] / (1 - 0.98**t) + 0.92 * s["v"] / (1 - 0.92**t)) / denom
        return p / (1 + lr * wd)

    def rmsprop(p, g, s, t):  # MindSpore RMSProp (TF): mean square starts at 1; momentum 0.9, decay 0.9, eps 1e-10
        g = l2(p, g)
        s["ms"] = 0.9 * s.get("ms", 1.0) + 0.1 * g * g
        s["mom"] = 0.9 * s.get("mom", 0.0) + lr * g / np.sqrt(s["ms"] + 1e-10)
        return p - s["mom"]

    def adagrad(p, g, s, t):  # MindSpore Adagrad: accumulator starts at 0.1
        g = l2(p, g)
        s["acc"] = s.get("acc", 0.1) + g * g
        return p - lr * g / np.sqrt(s["acc"])

    def lamb(p, g, s, t):  # You et al. 2020, Algorithm 2, with bias correction, eps 1e-6
        s["m"] = 0.9 * s.get("m", 0.0) + 0.1 * g
        s["v"] = 0.999 * s.get("v", 0.0) + 0.001 * g * g
        r = (s["m"] / (1 - 0.9**t)) / (np.sqrt(s["v"] / (1 - 0.999**t)) + 1e-6) + wd * p
        w_norm, r_norm = np.linalg.norm(p), np.linalg.norm(r)
        trust = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
        return p - lr * trust * r

    rules = dict(sgd=sgd, momentum=momentum, nesterov=lambda p, g, s, t: momentum(p, g, s, t, nesterov=True),
                 adam=adam, adamw=adamw, lion=lion, nadam=nadam, adan=adan, rmsprop=rmsprop, adagrad=adagrad,
                 lamb=lamb)
    return rules[opt]


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_each_optimizer_matches_its_published_update_rule(opt):
    # Three steps on a tiny parameter (graph mode: the optimizer cell compiles as in training), with weight decay.
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        rng = np.random.default_rng(1)
        start = rng.standard_normal((2, 3)).astype(np.float32)
        param = Parameter(Tensor(start), name="w")
        grads = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
        lr, wd = 0.05, 0.1
        optimizer = create_optimizer([param], opt=opt, lr=lr, weight_decay=wd)
        for g in grads:
            optimizer(ms.mutable((Tensor(g),)))
    finally:
        ms.set_context(mode=previous)
    step, state, expected = _reference_step(opt, lr, wd), {}, start.astype(np.float64)
    for t, g in enumerate(grads, start=1):
        expected = step(expected, g.astype(np.float64), state, t)
    assert not np.allclose(expected, start)
    np.testing.assert_allclose(param.asnumpy(), expected, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("opt", ["adamw", "lion", "lamb", "adan"])
def test_decoupled_optimizers_follow_group_weight_decay_and_loss_scale(opt):
    # Per-group weight decay (norm_and_bias) with per-step lr and a loss scale the optimizer divides out, in graph
    # mode (the grouped code path compiled as in training).
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    net = TinyNet()
    names = [p.name for p in net.trainable_params()]
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    rng = np.random.default_rng(1)
    grads_per_step = [[rng.standard_normal(p.shape).astype(np.float32) for p in before] for _ in range(3)]
    lrs, loss_scale = [0.1, 0.05, 0.02], 4.0
    optimizer = create_optimizer(net, opt=opt, lr=lrs, weight_decay=0.1, loss_scale=loss_scale,
                                 weight_decay_filter="norm_and_bias")
    try:
        after = _run_steps(optimizer, net, [[g * loss_scale for g in grads] for grads in grads_per_step])
    finally:
        ms.set_context(mode=previous)
    for name, start, index in zip(names, before, range(len(names))):
        wd = 0.0 if name in NO_DECAY else 0.1
        expected, state = start.astype(np.float64), {}
        for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
            expected = _reference_step(opt, lr, wd)(expected, grads[index].astype(np.float64), state, t)
        np.testing.assert_allclose(after[name], expected, rtol=1e-5, atol=1e-6, err_msg=name)


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
    ("nadam", ("nadam_m.", "nadam_v.", "mu_product", "beta2_power")),
    ("adan", ("adan_m.", "adan_v.", "adan_n.", "adan_prev_grad.")),
    ("lamb", ("lamb_m.", "lamb_v.", "beta1_power", "beta2_power")),
    ("rmsprop", ("mean_square.", "moment.")),
    ("adagrad", ("accum.",)),
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


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_optimizer_state_is_skipped_when_loading_the_weights(tmp_path, opt):
    # Checkpoints hold the optimizer's state beside the weights; loading one into a model must skip it, whatever
    # the optimizer (the door learns the names from the file, not from a list of optimizers).
    net = TinyNet()
    optimizer = create_optimizer(net, opt=opt, lr=[0.1, 0.05], weight_decay=0.1)
    weights = {p.name: p for p in net.get_parameters()}
    state = {p.name: p for p in optimizer.get_parameters() if p.name not in weights}
    path = save_checkpoint(weights, tmp_path / "train.ckpt", extra=state)
    assert state and set(state) <= set(read_checkpoint(path))
    load_checkpoint(TinyNet(), path)  # strict: an optimizer entry taken for a weight would be "unexpected"


def test_bad_arguments_say_what_is_wrong():
    params = TinyNet().trainable_params()
    with pytest.raises(ValueError, match="Unknown optimizer 'sgdw'.*rmsprop"):
        create_optimizer(params, opt="sgdw")
    with pytest.raises(ValueError, match="layer_decay"):
        create_optimizer(params, opt="adamw", layer_decay=0.75)
    with pytest.raises(ValueError, match="eps"):
        create_optimizer(params, opt="lion", eps=1e-8)
    with pytest.raises(ValueError, match="nesterov"):
        create_optimizer(params, opt="adamw", nesterov=True)
    with pytest.raises(ValueError, match="weight_decay_filter"):
        create_optimizer(params, opt="adamw", weight_decay_filter="bias")
