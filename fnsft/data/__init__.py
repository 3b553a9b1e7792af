"""Dataset files, format detection and normalisation for SFT, preference (DPO) and prompt-only (RL) data."""
