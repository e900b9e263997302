"""The lab agent: lab file, join the mesh, accept jobs, schedule machines, execute, report."""
