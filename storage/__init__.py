"""Encrypted evidence storage: the envelope format, the keyring and the object stores."""
