"""Model architectures, each a list of layers on 28×28 inputs in [0, 1], plus its recipe; and
the string reader, a model of whole lines of digits trained alongside the CNN."""

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
    ema: bool = False  # publish an exponential moving average of the weights (Polyak averaging)
    stroke_jitter: bool = False  # randomly thicken or thin strokes in the input pipeline
    nondigits: int = 0  # images of touching pairs and fragments added as an 11th class
    lines: int = 0  # lines of digits (trainer/strings.py) to train a string reader on, if any
    scanned: float = 0.0  # share of a reader's lines rendered as scans, framed as the worker does
    adapt: int = 0  # copies of other writers' digits (trainer/newwriters.py) trained on, if given

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
        ema=True,
        stroke_jitter=True,
        nondigits=6000,
        lines=120000,
        adapt=2,
    ),
}
READER = Recipe(epochs=4, batch_size=64, learning_rate=3e-3, cosine=True, ema=True, scanned=0.5)


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


def build_reader() -> keras.Model:
    """The string reader: convolutions over a framed line (trainer/strings.py) down to one
    column of features per 4 pixels, a bidirectional LSTM along the line, and per column the
    logits of blank (0) and digits 0-9 (1-10), for CTC."""
    import keras
    from keras import layers

    from trainer import strings

    line = keras.Input(shape=(strings.HEIGHT, strings.WIDTH), name="line")
    x = layers.Reshape((strings.HEIGHT, strings.WIDTH, 1))(line)
    for filters, pool in ((16, (2, 2)), (32, (2, 2)), (64, (2, 1)), (96, (4, 1))):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(pool)(x)
    x = layers.Reshape((strings.WIDTH // 4, 96))(x)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    return keras.Model(line, layers.Dense(11)(x), name="reader")


def together(classifier: keras.Model, reader: keras.Model) -> keras.Model:
    """One model file holding the digit classifier and the string reader side by side."""
    import keras

    inputs = {"image": classifier.inputs[0], "line": reader.inputs[0]}
    outputs = {"digit": classifier(inputs["image"]), "line": reader(inputs["line"])}
    return keras.Model(inputs, outputs, name=f"{classifier.name}+reader")


def parts(model: keras.Model) -> tuple[keras.Model, keras.Model | None]:
    """The digit classifier and string reader (None if it has none) of a published model."""
    names = {layer.name for layer in model.layers}
    if "reader" not in names:
        return model, None
    return model.get_layer(model.name.split("+")[0]), model.get_layer("reader")


def bare(model: keras.Model) -> keras.Model:
    """A copy of a trained model with its weights and nothing of its training (no optimizer
    state, no compile settings): what a worker loads, in a quarter of the trained one's file."""
    classifier, reader = parts(model)
    if reader is None:
        return _rebuilt(classifier)
    return together(_rebuilt(classifier), _rebuilt(reader))


def _rebuilt(model: keras.Model) -> keras.Model:
    """`model` made again from its layers' configuration, uncompiled, with its weights."""
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


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
