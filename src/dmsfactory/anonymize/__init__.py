"""Anonymisation of real driver footage that keeps its labels (docs/anonymize.md).

``dmsfactory anonymize INPUT --out DIR [--key KEYFILE] [--mode replace|hide] [--backend procedural|diffusion]``
replaces every face by a synthetic identity rendered by the factory's head generator with the
original's head pose, eye openness, mouth opening and gaze, lit to match; ``dmsfactory recover``
restores the originals bit-exactly from AES-GCM records with the user's key.

Python::

    from dmsfactory.anonymize import Anonymizer, AnonymizeConfig, anonymize_path, recover_path
"""

from dmsfactory.anonymize.config import AnonymizeConfig, DiffusionAnonConfig

__all__ = ["AnonymizeConfig", "DiffusionAnonConfig", "Anonymizer", "anonymize_path", "recover_path",
           "generate_key_file", "RecoveryError", "WrongKeyError", "TamperedRecordError", "RecoveryMismatchError"]


def __getattr__(name: str):
    if name == "Anonymizer":
        from dmsfactory.anonymize.core import Anonymizer

        return Anonymizer
    if name == "anonymize_path":
        from dmsfactory.anonymize.run import anonymize_path

        return anonymize_path
    if name == "recover_path":
        from dmsfactory.anonymize.recover import recover_path

        return recover_path
    if name in ("generate_key_file", "RecoveryError", "WrongKeyError", "TamperedRecordError", "RecoveryMismatchError"):
        from dmsfactory.anonymize import keys

        return getattr(keys, name)
    raise AttributeError(f"module 'dmsfactory.anonymize' has no attribute {name!r}")
