"""The shared language of the mesh: records, messages, codec, transport. Imports nothing of ours."""
