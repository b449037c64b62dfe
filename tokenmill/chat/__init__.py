"""Chat and instruction fine-tuning data: validate, template, mask, pack, shard."""
