"""Model architectures, each a list of layers on 28×28 inputs in [0, 1], plus its recipe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


NOT_A_DIGIT = 10  # class index of the images that are not one digit (trainer/nondigits.py)


@dataclass(frozen=True)
class Recipe:
    """How an architecture is trained (Adam, categorical crossentropy); kept in the metadata."""

    epochs: int
    batch_size: int
    learning_rate: float
    cosine: bool = False  # warm up, then cosine-decay the learning rate; else keep it constant
    stroke_jitter: bool = False  # randomly thicken or thin strokes in the input pipeline
    nondigits: int = 0  # images of touching pairs and fragments added as an 11th class

    @property
    def classes(self) -> int:
        return NOT_A_DIGIT + 1 if self.nondigits else 10


RECIPES = {
    # The seed model, exactly: 784 -> 512 -> 512 -> 10, Adam, 8 epochs.
    "mlp": Recipe(epochs=8, batch_size=128, learning_rate=1e-3),
    "cnn": Recipe(
        epochs=12,
        batch_size=128,
        learning_rate=3e-3,
        cosine=True,
        stroke_jitter=True,
        nondigits=6000,
    ),
}


def build(name: str) -> keras.Model:
    """Return the (uncompiled) architecture `name`; inputs are (28, 28) floats in [0, 1]."""
    import keras
    from keras import layers

    if name == "mlp":
        return keras.Sequential(
            [
                keras.Input(shape=(28, 28), name="image"),
                layers.Flatten(),
                layers.Dense(512, activation="relu"),
                layers.Dense(512, activation="relu"),
                layers.Dense(10, activation="softmax"),
            ],
            name="mlp",
        )
    if name == "cnn":
        return keras.Sequential(
            [
                keras.Input(shape=(28, 28), name="image"),
                layers.Reshape((28, 28, 1)),
                # augmentation: active while training only
                layers.RandomRotation(0.04, fill_mode="constant"),
                layers.RandomZoom(0.1, fill_mode="constant"),
                layers.RandomTranslation(0.08, 0.08, fill_mode="constant"),
                *_conv_block(32),
                *_conv_block(64),
                layers.Flatten(),
                layers.Dropout(0.3),
                layers.Dense(128, activation="relu"),
                layers.Dropout(0.3),
                layers.Dense(RECIPES["cnn"].classes, activation="softmax"),
            ],
            name="cnn",
        )
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(RECIPES)}")


def _conv_block(filters: int) -> list:
    """Two 3×3 convolutions with batch norm and ReLU, then 2×2 max pooling."""
    from keras import layers

    block = []
    for _ in range(2):
        block += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.Activation("relu"),
        ]
    return [*block, layers.MaxPooling2D()]
