"""What ships in the package: the default prior and the derived dataset."""

import numpy as np
import torch

from invdiff.priors.registry import resolve_prior


def test_default_prior_ships_and_denoises_better_than_identity():
    prior = resolve_prior("default")
    assert tuple(prior.image_shape) == (1, 128, 128)
    assert prior.gamma(torch.tensor([0.0, 1.0])).diff().item() > 0
    # a trained prior predicts the noise of a noisy held-out slice far better than eps_hat = 0
    from importlib import resources

    with resources.as_file(resources.files("invdiff") / "data" / "brain128.npz") as p:
        val = np.load(p)["val"]
    x = torch.from_numpy(val[len(val) // 2].astype(np.float32))[None, None]
    t = torch.tensor([0.5])
    alpha, sigma = prior.alpha_sigma(t)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (prior.eps(alpha * x + sigma * eps, t) - eps).pow(2).mean().item()
    assert err < 0.5  # 1.0 for predicting zero


def test_derived_dataset_ships_in_the_prior_range():
    from importlib import resources

    with resources.as_file(resources.files("invdiff") / "data" / "brain128.npz") as p:
        d = np.load(p)
        train, val = d["train"], d["val"]
    assert train.shape[1:] == val.shape[1:] == (128, 128)
    assert train.dtype == np.float16 and len(train) > 500 and len(val) > 50
    assert train.min() >= -1 and train.max() <= 1
