"""Train an architecture on MNIST, evaluate it, and publish it to the registry."""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from trainer import mnist, models, newwriters, nondigits, registry, say, strings
from trainer.storage import Store


def _stroke_jitter(images: Any, labels: Any) -> tuple[Any, Any]:
    """Thicken 15% and thin 10% of a batch's digits by a grey 2×2 dilation or erosion."""
    import tensorflow as tf

    planes = images[..., None]
    thick = tf.nn.max_pool2d(planes, 2, 1, "SAME")
    thin = -tf.nn.max_pool2d(-planes, 2, 1, "SAME")
    draw = tf.random.uniform([tf.shape(images)[0], 1, 1, 1])
    out = tf.where(draw < 0.15, thick, tf.where(draw > 0.9, thin, planes))
    return out[..., 0], labels


def _to_unit(images: Any, labels: Any) -> tuple[Any, Any]:
    """uint8 images as float32 in [0, 1]."""
    import tensorflow as tf

    return tf.cast(images, tf.float32) / 255.0, labels


def _batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, transform: Callable
) -> dict[str, Any]:
    """`model.fit` inputs: shuffled batches of (x, y), each passed through `transform`. Only
    the shuffled indices go through tf.data, each batch gathered from the arrays as it is
    needed: a dataset of the arrays themselves would copy them, and its shuffle buffer would
    hold a second copy (a gigabyte each for the reader's lines)."""
    import tensorflow as tf

    def gather(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[index], y[index]

    def load(index: Any) -> tuple[Any, Any]:
        images, targets = tf.numpy_function(
            gather, [index], [tf.as_dtype(x.dtype), tf.as_dtype(y.dtype)], stateful=False
        )
        return (
            tf.ensure_shape(images, (None, *x.shape[1:])),
            tf.ensure_shape(targets, (None, *y.shape[1:])),
        )

    dataset = (
        tf.data.Dataset.range(len(x))
        .shuffle(len(x), seed=seed)
        .batch(batch_size)
        .map(load, num_parallel_calls=2)
        .map(transform, num_parallel_calls=2)
        .prefetch(2)
    )
    return {"x": dataset, "shuffle": False}  # the dataset shuffles itself


def _fit(
    model: Any,
    inputs: dict[str, Any],
    recipe: models.Recipe,
    epochs: int,
    steps: int,
    loss: Any,
    log: Callable[[str], None],
) -> None:
    """Compile `model` with Adam (and the recipe's schedule) and fit it, logging each epoch."""
    import keras

    rate = recipe.learning_rate
    if recipe.cosine:
        total = epochs * max(1, steps)
        rate = keras.optimizers.schedules.CosineDecay(
            rate / 3, total, warmup_target=rate, warmup_steps=total // 10
        )
    optimizer = keras.optimizers.Adam(rate, use_ema=recipe.ema, ema_momentum=0.999)
    model.compile(optimizer=optimizer, loss=loss)
    started = time.monotonic()

    def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
        log(
            f"{model.name} epoch {epoch + 1}/{epochs}  loss {logs['loss']:.4f}  "
            f"({time.monotonic() - started:.0f} s)"
        )

    callback = keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)
    model.fit(**inputs, epochs=epochs, verbose=0, callbacks=[callback])


# lines of MNIST digits -> (framed lines, targets), as strings.make: (digits, labels, count, seed)
Lines = Callable[[np.ndarray, np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]


def _reader(
    data: mnist.Mnist,
    limit: int | None,
    count: int,
    epochs: int | None,
    seed: int,
    log: Callable[[str], None],
    scanned: Lines | None,
    others: tuple[np.ndarray, np.ndarray],
) -> tuple[Any, dict[str, Any]]:
    """Train the string reader on `count` lines of MNIST training digits and `others` (other
    writers' digits), the recipe's share of them framed from scans by `scanned` when given;
    score it on lines of test digits (whole lines read exactly)."""
    import keras

    recipe = models.READER
    epochs = epochs or recipe.epochs
    digits = np.concatenate([data.x_train[:limit], others[0]])
    labels = np.concatenate([data.y_train[:limit], others[1]])
    rendered = round(count * recipe.scanned) if scanned else 0
    lines, targets = strings.make(digits, labels, count - rendered, seed)
    framed = 0
    if rendered:
        started = time.monotonic()
        more, more_targets = scanned(digits, labels, rendered, seed)
        framed = len(more)
        lines, targets = np.concatenate([lines, more]), np.concatenate([targets, more_targets])
        del more, more_targets  # else the fit would hold the framed lines twice
        log(f"reader: {framed} lines framed from scans ({time.monotonic() - started:.0f} s)")
    reader = models.build_reader()
    # the lines stay uint8 (a quarter of float32's memory), scaled to [0, 1] a batch at a time
    scaled = _batches(lines, targets, recipe.batch_size, seed, _to_unit)
    started = time.monotonic()
    _fit(reader, scaled, recipe, epochs, -(-count // recipe.batch_size), keras.losses.CTC(), log)
    seconds = time.monotonic() - started
    test, truth = strings.make(data.x_test, data.y_test, max(100, count // 20), seed + 1)
    logits = reader.predict(test.astype(np.float32) / 255.0, batch_size=256, verbose=0)
    read = [[digit for digit, _, _ in strings.decode(row)] for row in logits]
    right = sum(r == [k - 1 for k in t if k] for r, t in zip(read, truth.tolist(), strict=True))
    return reader, {
        "lines": len(lines),
        "scanned_lines": framed,
        "epochs": epochs,
        "line_accuracy": round(right / len(read), 5),
        "training_seconds": round(seconds, 1),
    }


def train(
    name: str,
    data: mnist.Mnist,
    epochs: int | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    log: Callable[[str], None] = say,
    scanned: Lines | None = None,
    writers: newwriters.Writers | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit architecture `name`; return the model and its metadata (metrics, recipe, provenance).
    `scanned` frames reader training lines from scans (the worker's lines.scanned); `writers`
    adds the adapted part of other writers' digits, as many copies as the recipe says."""
    import keras
    import tensorflow as tf

    recipe = models.RECIPES[name]
    given, epochs = epochs, epochs or recipe.epochs  # `given` also sets the reader's
    batch_size = batch_size or recipe.batch_size
    keras.utils.set_random_seed(seed)
    x_train, y_train = data.x_train[:limit], data.y_train[:limit]
    others = _others(writers, recipe.adapt, len(x_train))
    if recipe.nondigits:
        extra = nondigits.make(x_train, y_train, recipe.nondigits * len(x_train) // 60000, seed)
        x_train = np.concatenate([x_train, extra])
        y_train = np.concatenate([y_train, np.full(len(extra), models.NOT_A_DIGIT, np.uint8)])
    x_train, y_train = np.concatenate([x_train, others[0]]), np.concatenate([y_train, others[1]])
    x_train = x_train.astype(np.float32) / 255.0
    x_test = data.x_test.astype(np.float32) / 255.0
    onehot = keras.utils.to_categorical

    model = models.build(name)
    labels = onehot(y_train, recipe.classes)
    if recipe.stroke_jitter:
        inputs = _batches(x_train, labels, batch_size, seed, _stroke_jitter)
    else:
        inputs = {"x": x_train, "y": labels, "batch_size": batch_size, "shuffle": True}
    started = time.monotonic()
    _fit(
        model,
        inputs,
        recipe,
        epochs,
        -(-len(x_train) // batch_size),
        "categorical_crossentropy",
        log,
    )
    del inputs  # the reader trains next: free the CNN's batches first
    seconds = time.monotonic() - started
    model.compile(optimizer=model.optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    train_loss, train_acc = model.evaluate(x_train, labels, batch_size=1024, verbose=0)
    test_loss, test_acc = model.evaluate(
        x_test, onehot(data.y_test, recipe.classes), batch_size=1024, verbose=0
    )
    metadata = {
        "architecture": name,
        "parameters": model.count_params(),
        "layers": [layer.__class__.__name__ for layer in model.layers],
        "hyperparameters": {
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": recipe.learning_rate,
            "schedule": "warmup+cosine" if recipe.cosine else "constant",
            "stroke_jitter": recipe.stroke_jitter,
            "nondigit_images": int((y_train == models.NOT_A_DIGIT).sum()),
            "other_writers_images": len(others[0]),
            "optimizer": "adam",
            "loss": "categorical_crossentropy",
            "seed": seed,
            "train_images": len(x_train),
        },
        "train_accuracy": round(float(train_acc), 5),
        "train_loss": round(float(train_loss), 5),
        "test_accuracy": round(float(test_acc), 5),
        "test_loss": round(float(test_loss), 5),
        "training_seconds": round(seconds, 1),
        "dataset_sha256": data.fingerprint,
        "other_writers_sha256": writers.fingerprint if writers is not None else None,
        "libraries": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if recipe.lines:
        count = max(200, recipe.lines * len(data.x_train[:limit]) // 60000)
        reader, metadata["reader"] = _reader(data, limit, count, given, seed, log, scanned, others)
        model = models.together(model, reader)
    return model, metadata


def _others(
    writers: newwriters.Writers | None, copies: int, images: int
) -> tuple[np.ndarray, np.ndarray]:
    """`copies` of the other writers' adapted digits and their labels (none without writers),
    as large a share of them as `images` is of MNIST's 60,000 training images."""
    if writers is None or not copies:
        return np.empty((0, 28, 28), np.uint8), np.empty(0, np.uint8)
    count = min(len(writers.x_adapt), -(-len(writers.x_adapt) * images // 60000))
    x, y = writers.x_adapt[:count], writers.y_adapt[:count]
    return np.tile(x, (copies, 1, 1)), np.tile(y, copies)


def run(
    store: Store,
    name: str,
    data_source: str | None,
    promote: str = "if-better",
    writers: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Load MNIST (and other writers' digits from the folder `writers`, if given), train,
    publish; return the published metadata plus `promoted`."""
    store.check()
    data = mnist.load(data_source)
    others = newwriters.load(writers) if writers else None
    model, metadata = train(name, data, writers=others, **options)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "model.keras")
        models.bare(model).save(path)
        version, promoted = registry.publish(store, path, metadata, promote)
    return {**registry.resolve(store, version), "promoted": promoted}
