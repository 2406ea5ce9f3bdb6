"""Fine-tuning: LoRA/QLoRA SFT with curricula, DPO style preference, data builders, Slurm jobs.

Heavy libraries (torch, transformers, peft, trl) are imported inside the functions that need
them, so the CLI and the config checks work without the ``train`` extra.
"""
