"""The general sparse allocation model (items, options, resources, pools, setups) and its solver: a
linear relaxation for the bound and a first plan, then CP-SAT (and HiGHS beside it) to improve it."""
