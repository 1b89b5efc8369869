"""Modular division mod p: every label right, the split seeded, disjoint and complete."""

import numpy as np
import pytest
import torch

from idprops.data import ModularDivision, load_dataset, load_modular_division


def test_sizes_for_p_97():
    train, val = ModularDivision(), ModularDivision(train=False)
    assert (len(train), len(val), len(ModularDivision(train=None))) == (1862, 7450, 9312)
    assert train.vocab_size == 99


@pytest.mark.parametrize("train", [True, False])
def test_every_label_is_a_over_b_mod_p(train):
    data = ModularDivision(p=97, train=train, seed=3)
    a, b = data.pairs[:, 0], data.pairs[:, 1]
    assert np.all((data.targets * b) % 97 == a)
    assert np.all((a >= 0) & (a < 97) & (b >= 1) & (b < 97))
    tokens, label = data[5]
    assert tokens.dtype == torch.long and tokens.tolist() == [a[5], 97, b[5], 98] and label == data.targets[5]
    assert torch.equal(data.tokens[:, 1], torch.full((len(data),), 97))
    assert torch.equal(data.tokens[:, 3], torch.full((len(data),), 98))


def test_split_is_disjoint_covers_every_pair_and_depends_on_the_seed():
    train, val = ModularDivision(seed=1), ModularDivision(train=False, seed=1)
    as_set = lambda d: {tuple(pair) for pair in d.pairs.tolist()}  # noqa: E731
    assert as_set(train).isdisjoint(as_set(val))
    assert as_set(train) | as_set(val) == {(a, b) for a in range(97) for b in range(1, 97)}
    assert np.array_equal(ModularDivision(seed=1).pairs, train.pairs)
    assert as_set(ModularDivision(seed=2)) != as_set(train)


def test_small_prime_by_hand():
    data = ModularDivision(p=5, train=None)
    table = {tuple(pair): int(y) for pair, y in zip(data.pairs.tolist(), data.targets, strict=True)}
    assert table[(3, 2)] == 4 and table[(1, 4)] == 4 and table[(0, 3)] == 0 and table[(4, 2)] == 2


def test_loader_signature_registry_and_errors():
    assert len(load_dataset("modular_division", train=False, p=7, train_fraction=0.5)) == 21
    some = load_modular_division(n=100, seed=0)
    assert len(some) == 100 and np.all((some.targets * some.pairs[:, 1]) % 97 == some.pairs[:, 0])
    two = load_modular_division(classes=[5, 0])
    assert set(two.targets.tolist()) == {0, 1} and two.classes == ["5", "0"]
    fives = two.pairs[two.targets == 0]  # relabelled 0: the equations a / b = 5
    assert len(fives) > 0 and np.all(fives[:, 0] == (5 * fives[:, 1]) % 97)
    with pytest.raises(ValueError, match="prime"):
        ModularDivision(p=91)
    with pytest.raises(ValueError, match="pixel scale"):
        load_modular_division(scale="paper")
