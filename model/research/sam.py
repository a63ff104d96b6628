"""Sharpness-aware minimisation (Foret et al., 2021) for a compiled Keras model.

Each step takes the gradient at the weights nudged uphill by ``rho`` (in the gradient's direction,
L2 norm ``rho``) and applies it at the original weights: it prefers minima whose neighbourhood is
flat, which is reported to resist label noise, and FER2013's labels are noisy. It costs a second
forward and backward pass per step.
"""
from __future__ import annotations


def use_sam(model, rho: float) -> None:
    """Replace ``model``'s train step by a SAM step. Only the instance is changed, so the model
    saves and loads as the plain network it is; a resumed run calls this again."""
    import keras
    import tensorflow as tf

    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weights = model.trainable_weights
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        model._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        grads = tape.gradient(loss, weights)
        scale = rho / (tf.linalg.global_norm(grads) + 1e-12)
        nudges = [g * scale for g in grads]
        for w, e in zip(weights, nudges):
            w.assign_add(e)
        # The BatchNorm statistics see this batch twice; model.average recomputes them anyway.
        with tf.GradientTape() as tape:
            sharp = model._compute_loss(x=x, y=y, y_pred=model(x, training=True), sample_weight=sample_weight,
                                        training=True)
        grads = tape.gradient(sharp, weights)
        for w, e in zip(weights, nudges):
            w.assign_sub(e)
        model.optimizer.apply_gradients(zip(grads, weights))
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    model.train_step = train_step
