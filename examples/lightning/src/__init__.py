"""The example Lightning app's model and data (lightning-hydra-template's src/, in small)."""
