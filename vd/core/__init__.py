"""What every part of the study shares: the validated config, the stance and topic vocabulary, the chat
format, atomic files and the SQLite cache. Nothing here imports from the rest of `vd`."""
