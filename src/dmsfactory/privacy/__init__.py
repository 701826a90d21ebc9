"""privacy package."""


# --- privacy gate (lazy: importing the package must not load dlib / MediaPipe) ---
_GATE = {
    "PrivacyConfig": "dmsfactory.privacy.config",
    "PrivacyStage": "dmsfactory.privacy.stage",
    "leakcheck_main": "dmsfactory.privacy.leakcheck",
}


def __getattr__(name: str):
    if name in _GATE:
        import importlib

        return getattr(importlib.import_module(_GATE[name]), name)
    raise AttributeError(f"module 'dmsfactory.privacy' has no attribute {name!r}")
