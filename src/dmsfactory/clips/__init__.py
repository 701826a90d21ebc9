"""Driver-state clips with temporal ground truth; see docs/clips.md.

``make_clip_plan(spec)`` -> clip plans; ``ClipGenerator(procedural_config, clips_config).generate(plans)``
-> ``ClipSample``s; shards in :mod:`dmsfactory.clips.shards`.
"""

from dmsfactory.clips.config import ClipsConfig, CoverageConfig, Script, Segment, TemporalCfg

__all__ = ["ClipsConfig", "CoverageConfig", "Script", "Segment", "TemporalCfg", "make_clip_plan", "clip_shard_jobs",
           "ClipGenerator", "ClipSample"]


def __getattr__(name):  # lazy: the planner imports dmsfactory.spec (which imports our config), the generator the renderer
    if name in ("make_clip_plan", "clip_shard_jobs"):
        from dmsfactory.clips import plan

        return getattr(plan, name)
    if name in ("ClipGenerator", "ClipSample", "clip_labels"):
        from dmsfactory.clips import generate

        return getattr(generate, name)
    raise AttributeError(name)
