"""The rules of the two-person review: states, who may see what and who may do what. Pure logic, no I/O."""
