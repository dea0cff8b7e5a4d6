"""sklearn's 8x8 digits, with a fixed stratified train/test split."""

from __future__ import annotations

import numpy as np

def read_digits(test_size: float = 0.3, random_state: int = 0):
    """sklearn's 8x8 digits (values 0..16) with a fixed stratified split, in original order."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    train_idx, test_idx = train_test_split(np.arange(len(digits.target)), test_size=test_size,
                                           random_state=random_state, stratify=digits.target)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    images, labels = digits.images, digits.target
    return (images[train_idx], labels[train_idx]), (images[test_idx], labels[test_idx])
