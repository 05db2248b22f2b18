"""Two-layer feed-forward network of a transformer block."""
from mindspore import nn


class Mlp(nn.Cell):
    """fc1 -> exact GELU -> dropout -> fc2 -> dropout.

    `nn.GELU()` in MindSpore 2.10 is the tanh approximation; the papers' code uses the erf form.
    """

    def __init__(self, in_features, hidden_features, out_features=None, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        self.fc1 = nn.Dense(in_features, hidden_features)
        self.act = nn.GELU(approximate=False)
        self.fc2 = nn.Dense(hidden_features, out_features)
        self.drop = nn.Dropout(p=drop)

    def construct(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))
