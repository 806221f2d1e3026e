"""Model architectures, each a list of layers on 28×28 inputs in [0, 1], plus its recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Recipe:
    """How an architecture is trained: its defaults are recorded in the model metadata."""

    epochs: int
    batch_size: int
    learning_rate: float


RECIPES = {
    # The seed model: 784 -> 512 -> 512 -> 10, Adam, categorical crossentropy, 8 epochs.
    "mlp": Recipe(epochs=8, batch_size=128, learning_rate=1e-3),
}


def build(name: str) -> keras.Model:
    """Return the compiled architecture `name`."""
    import keras
    from keras import layers

    if name == "mlp":
        model = keras.Sequential(
            [
                keras.Input(shape=(28, 28), name="image"),
                layers.Flatten(),
                layers.Dense(512, activation="relu"),
                layers.Dense(512, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ],
            name="mlp",
        )
    else:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(RECIPES)}")
    model.compile(
        optimizer=keras.optimizers.Adam(RECIPES[name].learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
