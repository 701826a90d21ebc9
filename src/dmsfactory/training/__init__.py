"""The DMS classifier and its private fine-tune (DP-SGD / PATE) with SynFace domain mixup."""

from dmsfactory.training.config import TrainConfig

__all__ = ["TrainConfig", "train_from_spec", "run_training", "load_model", "evaluate", "DMSNet"]


def __getattr__(name):  # torch is imported lazily so `import dmsfactory.spec` stays light
    if name in ("train_from_spec", "run_training", "load_model", "evaluate"):
        from dmsfactory.training import train

        return getattr(train, name)
    if name == "DMSNet":
        from dmsfactory.training.model import DMSNet

        return DMSNet
    raise AttributeError(name)
