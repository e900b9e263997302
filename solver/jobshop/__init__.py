"""Scheduling inside a lab: the flexible job-shop instance, its solvers (CP-SAT beside a tabu search),
the Brandimarte reader, and the lab's own schedule of its jobs on its machines (`lab_schedule`)."""
