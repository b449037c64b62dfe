"""The chat variant of the pipeline: the stages a run config with a ``chat:`` section runs.

The runner (``pipeline.stage_spec``) takes these in place of the base
stages of the same names; dedup has no chat variant (it compares the
conversations' ``text`` and keeps every other column). The stage commands
stay the same (``tokenmill etl`` ...): the config chooses.
"""

from __future__ import annotations

from tokenmill.chat import etl_job, shards_job, tokenize_job

STAGE_SPECS = {spec.name: spec for spec in (etl_job.STAGE_SPEC, tokenize_job.STAGE_SPEC, shards_job.STAGE_SPEC)}
