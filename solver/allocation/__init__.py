"""Who makes what, where: the planner's entry point (`allocate.solve`), urgent insertion into a
standing plan (`emergency`) and the explanation of every choice (`explain`)."""
