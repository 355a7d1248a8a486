"""Completing at a cursor: KV-cache decoding, stop rules, the workspace 5-gram, match model and mixture, and the
served model both servers and the CLI use."""
