"""Confidential model training: the tutorial's XGBoost job on data decrypted inside the CVM."""
